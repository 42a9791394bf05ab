"""/street stats over a busy street: C communities with D demands each (states, ratings and levels
mixed), the figures computed in SQL (two grouped queries, bot/services/grid_ledger.py), and the chart
drawn. Printed: the time for the figures and for the chart (and the first chart of a process, which
loads matplotlib and the CJK font), and the ratio (figures + chart) / 1 s (target: a street officer
gets the answer within a second; <= 1 passes). The figures are checked
against a plain Python count over the same rows.

    python -m bench.street_stats [--communities 30] [--demands 2000] [--database-url URL]
"""

from __future__ import annotations

import argparse
import asyncio
import random
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlalchemy import insert, select

from bot.services.grid_ledger import chart_png, street_figures
from bot.storage.db import make_engine, make_session_factory, migrate
from bot.storage.models import Community, Demand

TARGET = 1.0
STATES = ["new", "accepted", "assigned", "resolved", "rated", "rejected", "duplicate", "reopened"]
LEVELS = ["grid", "community", "street"]


async def run(communities: int, demands: int, url: str | None) -> None:
    tmp = Path(tempfile.mkdtemp())
    engine = make_engine(url or f"sqlite+aiosqlite:///{tmp / 'bench.sqlite3'}")
    await migrate(engine)
    sessions = make_session_factory(engine)
    rnd = random.Random(7)
    t0 = datetime(2026, 11, 1, tzinfo=UTC)
    async with sessions() as s:
        ids = []
        for i in range(communities):
            c = Community(name=f"社区{i + 1}")
            s.add(c)
            await s.flush()
            ids.append(c.id)
        rows = []
        for cid in ids:
            for n in range(1, demands + 1):
                filed = t0 + timedelta(minutes=rnd.randrange(0, 29 * 24 * 60))
                state = rnd.choice(STATES)
                rating = rnd.randint(1, 5) if state == "rated" else None
                accepted = filed + timedelta(hours=rnd.choice([1, 5, 30])) if state != "new" else None
                rows.append({
                    "community_id": cid, "number": n, "text": "3号楼电梯坏了", "category": "lifts",
                    "urgency": "general", "state": state, "public": True, "filed_at": filed,
                    "accepted_at": accepted, "accept_by": filed + timedelta(hours=24),
                    "resolve_by": filed + timedelta(days=7), "rating": rating, "level": rnd.choice(LEVELS),
                    "version": 1, "updated_at": filed,
                })
        for i in range(0, len(rows), 5000):
            await s.execute(insert(Demand), rows[i:i + 5000])
        await s.commit()
    now = t0 + timedelta(days=30)
    async with sessions() as s:
        comms = list(await s.scalars(select(Community).order_by(Community.id)))
        start = time.perf_counter()
        figures = await street_figures(s, comms, t0, t0 + timedelta(days=30), now)
        t_fig = time.perf_counter() - start
        # The same figures counted in Python, to check the SQL.
        all_rows = list(await s.scalars(select(Demand).where(Demand.community_id == comms[0].id)))
    counted = [d for d in all_rows if d.state not in ("rejected", "duplicate")]
    f0 = figures[0]
    assert f0.filed == len(counted)
    assert f0.resolved == sum(d.state in ("resolved", "rated") for d in counted)
    assert f0.accepted_in_time == sum(d.accepted_at is not None and d.accepted_at <= d.accept_by for d in counted)
    assert f0.satisfied == sum((d.rating or 0) >= 4 for d in counted)
    start = time.perf_counter()
    png = chart_png(figures, "街道", {"response": "响应率", "resolution": "解决率", "satisfaction": "满意率"})
    t_cold = time.perf_counter() - start  # the first chart of a process loads matplotlib and the font
    start = time.perf_counter()
    chart_png(figures, "街道", {"response": "响应率", "resolution": "解决率", "satisfaction": "满意率"})
    t_chart = time.perf_counter() - start
    await engine.dispose()
    total = t_fig + t_chart
    print(f"street stats: {communities} communities x {demands} demands = {communities * demands} rows "
          f"({engine.dialect.name})")
    print(f"  figures (SQL): {t_fig * 1000:.0f} ms   chart: {t_chart * 1000:.0f} ms "
          f"(first in the process {t_cold * 1000:.0f} ms; {len(png) // 1024} KiB)")
    print(f"  ratio (figures + chart) / {TARGET:.0f} s = {total / TARGET:.2f}  ({'pass' if total <= TARGET else 'FAIL'})")


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--communities", type=int, default=30)
    p.add_argument("--demands", type=int, default=2000)
    p.add_argument("--database-url")
    a = p.parse_args()
    asyncio.run(run(a.communities, a.demands, a.database_url))


if __name__ == "__main__":
    main()
