"""Demand categories and the keywords that guess them (after common 12345 classifications).

Keys are stable identifiers stored with each demand; names come from the message catalogs
(`cat_<key>`). `CATEGORY_KEYWORDS` (settings) or a community's config may add keywords.
"""

from __future__ import annotations

OTHER = "other"

# Order matters: the first category with the most keyword hits wins a tie.
DEFAULT_KEYWORDS: dict[str, tuple[str, ...]] = {
    "lifts": ("电梯", "梯", "困人", "lift", "elevator"),
    "safety": (
        "安全", "隐患", "消防", "火", "煤气味", "燃气泄漏", "漏电", "电线裸露", "坠落", "高空抛物", "危险", "塌",
        "灭火器", "通道堵塞", "safety", "fire", "hazard", "danger", "gas leak",
    ),
    "utilities": (
        "水", "电", "气", "暖", "停水", "停电", "漏水", "水管", "水压", "暖气", "供暖", "燃气", "水表", "电表",
        "跳闸", "water", "power", "electric", "heating", "gas", "leak",
    ),
    "roads": (
        "路", "路灯", "井盖", "道路", "台阶", "坑", "扶手", "围栏", "大门", "门禁", "健身器材", "设施", "破损",
        "road", "street light", "streetlight", "manhole", "pavement", "sidewalk", "gate", "railing",
    ),
    "sanitation": (
        "垃圾", "卫生", "清扫", "保洁", "异味", "臭", "污水", "下水道", "堵", "老鼠", "蟑螂", "蚊", "狗屎",
        "garbage", "rubbish", "trash", "litter", "smell", "sewage", "drain", "rats",
    ),
    "parking": (
        "停车", "车位", "充电", "电动车", "充电桩", "占道", "乱停", "堵车", "飞线",
        "parking", "charging", "charger", "e-bike", "car park",
    ),
    "disputes": (
        "纠纷", "吵架", "噪音", "扰民", "邻居", "楼上", "楼下", "装修", "宠物", "狗叫", "矛盾",
        "dispute", "noise", "neighbour", "neighbor", "quarrel",
    ),
    OTHER: (),
}

CATEGORIES: tuple[str, ...] = tuple(DEFAULT_KEYWORDS)

# Words that make a demand urgent (SLA: accept within 2 h, resolve within 24 h).
URGENT_KEYWORDS: tuple[str, ...] = (
    "紧急", "急", "马上", "立刻", "救命", "被困", "困人", "困在", "着火", "火灾", "冒烟", "煤气味", "燃气泄漏",
    "漏电", "爆管", "水管爆", "淹", "urgent", "emergency", "asap", "trapped", "fire", "smoke", "gas leak",
)
