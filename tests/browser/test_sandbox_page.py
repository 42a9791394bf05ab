"""The sandbox in a real browser: `python main.py` with no token, headless Chromium on its page.

It plays the demand loop as the issue tells it (a resident files in the group, the secretary
accepts privately and dispatches, the member resolves, the resident taps five stars and sees the
thanks), moves the clock a day to see the SLA reminder, resets, and plays it all once more in
English. On the way it saves the screenshots the user's guides show: into $LINLI_SCREENSHOTS
(`make screenshots` sets docs/img), else into the test's temporary folder.
"""

from __future__ import annotations

import os
import queue
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from bot.sandbox.community import RESIDENT_CHAT
from tests.browser.conftest import CHROMIUM_FLAGS

try:
    from playwright.sync_api import BrowserContext, Locator, Page, expect, sync_playwright
except ImportError:
    if os.environ.get("LINLI_REQUIRE_BROWSER") == "1":
        raise
    pytest.skip("browser test skipped: Playwright for Python is not installed", allow_module_level=True)

ROOT = Path(__file__).resolve().parents[2]
SECRETARY, RESIDENT, MEMBER = 1001, 2001, 3001
STEP = 30_000  # ms: generous, the machine may be busy; every wait ends as soon as its condition holds
READY = 120_000  # ms: the first start imports the framework and sets the community up through the bot
LOAD_WITHIN = 10.0  # seconds from the command to a usable page


class Sandbox:
    def __init__(self, proc: subprocess.Popen[str], address: str, started: float, log: Path) -> None:
        self.proc = proc
        self.address = address
        self.started = started
        self.log = log


def _first_line(proc: subprocess.Popen[str], timeout: float) -> str:
    lines: queue.Queue[str] = queue.Queue()
    assert proc.stdout is not None
    stdout = proc.stdout
    threading.Thread(target=lambda: lines.put(stdout.readline()), daemon=True).start()
    try:
        return lines.get(timeout=timeout)
    except queue.Empty:
        raise AssertionError(f"no output within {timeout}s") from None


@pytest.fixture
def page(chromium_path: str, tmp_path: Path) -> Iterator[Page]:
    """A fresh headless Chromium (launched before the sandbox, so its start-up is not timed)."""
    with sync_playwright() as pw:
        browser: BrowserContext = pw.chromium.launch_persistent_context(
            str(tmp_path / "chromium-profile"),  # a fresh profile every run
            executable_path=chromium_path, args=CHROMIUM_FLAGS, headless=True,
            viewport={"width": 1280, "height": 800}, locale="zh-CN", timezone_id="Asia/Shanghai",
        )
        try:
            yield browser.new_page()
        finally:
            browser.close()


@pytest.fixture
def sandbox(page: Page, tmp_path: Path) -> Iterator[Sandbox]:
    env = {k: v for k, v in os.environ.items() if k not in ("BOT_TOKEN", "LINLI_CONFIG", "SANDBOX_HOST")}
    env.update(SANDBOX_PORT="0", LOG_LEVEL="WARNING", PYTHONUNBUFFERED="1")
    log = tmp_path / "sandbox.log"
    started = time.monotonic()
    with log.open("w") as err:
        # As `make run` does with no BOT_TOKEN; in a folder of its own, so data/ is fresh.
        proc = subprocess.Popen(
            [sys.executable, str(ROOT / "main.py")], cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=err,
            text=True,
        )
    try:
        first = _first_line(proc, LOAD_WITHIN).strip()
        print(f"\nthe address came {time.monotonic() - started:.1f}s after the command")
        assert re.fullmatch(r"http://127\.0\.0\.1:\d+", first), f"first line is not the address: {first!r}"
        yield Sandbox(proc, first, started, log)
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)  # Ctrl+C
            try:
                proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        assert proc.returncode == 0, f"the sandbox exited with {proc.returncode}"


class Play:
    """The visitor's hands: switch person, open a chat, type, press, look."""

    def __init__(self, page: Page, shots: Path) -> None:
        self.page = page
        self.shots = shots

    def act_as(self, user_id: int) -> None:
        self.page.click(f'#people li[data-user="{user_id}"]')
        expect(self.page.locator(f'#people li.active[data-user="{user_id}"]')).to_be_visible()

    def open_chat(self, chat_id: int) -> None:
        self.page.click(f'#chats li[data-chat="{chat_id}"]')
        expect(self.page.locator(f'#chats li.active[data-chat="{chat_id}"]')).to_be_visible()

    def say(self, text: str) -> None:
        self.page.fill("#text", text)
        self.page.press("#text", "Enter")
        expect(self.page.locator("#messages .msg.out", has_text=text).last).to_be_visible(timeout=STEP)

    def bot_says(self, *texts: str, timeout: int = STEP) -> Locator:
        found = self.page.locator("#messages .msg.in")
        for text in texts:
            found = found.filter(has_text=text)
        expect(found.last).to_be_visible(timeout=timeout)
        return found.last

    def press(self, message: Locator, label: str, *, exact: bool = False) -> None:
        message.get_by_role("button", name=label, exact=exact).click()

    def shot(self, name: str) -> None:
        self.page.mouse.move(100, 780)  # no hover effects in the picture
        self.page.wait_for_timeout(300)  # let the last edit's layout settle
        self.page.screenshot(path=str(self.shots / f"sandbox-{name}.png"))


# A whole community played twice in a real browser, with the bot starting from scratch each time.
@pytest.mark.timeout(600)
def test_demand_loop_in_a_real_browser(page: Page, sandbox: Sandbox, tmp_path: Path) -> None:
    shots = Path(os.environ.get("LINLI_SCREENSHOTS") or tmp_path / "screenshots")
    if not shots.is_absolute():
        shots = ROOT / shots
    shots.mkdir(parents=True, exist_ok=True)
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(f"page error: {e}"))
    page.on("console", lambda m: errors.append(f"console: {m.text}") if m.type == "error" else None)
    play_everything(page, Play(page, shots), sandbox)
    assert errors == []
    log = sandbox.log.read_text()
    assert "Traceback" not in log, log[-4000:]


def play_everything(page: Page, play: Play, sandbox: Sandbox) -> None:
    # The page is there within seconds of the command, before the bot is even up.
    page.goto(sandbox.address)
    expect(page.locator("#people li").first).to_be_visible(timeout=STEP)
    loaded_after = time.monotonic() - sandbox.started
    assert loaded_after < LOAD_WITHIN, f"the page took {loaded_after:.1f}s to load"
    expect(page.locator("#banner")).to_be_hidden(timeout=READY)  # the community is ready
    print(f"\npage usable {loaded_after:.1f}s, community ready {time.monotonic() - sandbox.started:.1f}s "
          "after the command")

    # How 王书记 set the resident group up: the bot's one welcome, /setup, the community created.
    play.act_as(SECRETARY)
    play.open_chat(RESIDENT_CHAT)
    play.bot_says("已创建社区")
    assert page.locator("#messages .msg.in", has_text="请群管理员发送").count() == 1  # one welcome
    play.shot("setup.zh")

    # 点单: a resident files in the resident group and sees #1.
    play.act_as(RESIDENT)
    play.open_chat(RESIDENT_CHAT)
    play.say("/demand 3号楼电梯坏了")
    play.bot_says("#1", "3号楼电梯坏了")
    play.shot("demand.zh")

    # 受理 and 派单: the secretary presses 受理 in his private chat, then dispatches to 刘建国.
    play.act_as(SECRETARY)
    play.open_chat(SECRETARY)
    alert = play.bot_says("新诉求", "#1")
    play.press(alert, "受理")
    play.bot_says("已受理")  # the alert, edited in place: its button gone, who accepted it
    expect(alert.get_by_role("button", name="受理")).to_have_count(0)
    play.say("/assign 1 @liu_jianguo")
    play.bot_says("已派给 刘建国")
    play.shot("accept.zh")

    # 接单, 办结: the member is told privately and resolves it.
    play.act_as(MEMBER)
    play.open_chat(MEMBER)
    play.bot_says("派给您的诉求", "3号楼电梯坏了")
    play.say("/resolve 1 已联系维保公司，电梯已修好")
    play.bot_says("已办结")
    play.shot("resolve.zh")

    # 评单: the resident taps five stars; the message turns into the bot's thanks.
    play.act_as(RESIDENT)
    play.open_chat(RESIDENT)
    rating = play.bot_says("已办结", "#1")
    play.shot("rating.zh")
    play.press(rating, "⭐⭐⭐⭐⭐", exact=True)
    play.bot_says("谢谢", "⭐⭐⭐⭐⭐")
    play.bot_says("想补充几句评价吗")
    play.shot("rate.zh")

    # The clock: a second demand nobody accepts; a day later the secretary is reminded.
    play.open_chat(RESIDENT_CHAT)
    play.say("/demand 小区东门路灯不亮")
    play.bot_says("#2")
    play.act_as(SECRETARY)
    play.open_chat(SECRETARY)
    play.bot_says("新诉求", "#2")
    page.click("#plus-day")
    expect(page.locator("#offset")).to_contain_text("1", timeout=STEP)
    play.bot_says("超过受理时限", "#2")
    play.shot("sla.zh")

    # Reset: a fresh community, the clock back to now.
    page.once("dialog", lambda d: d.accept())
    page.click("#reset")
    expect(page.locator("#banner")).to_be_visible(timeout=STEP)
    expect(page.locator("#banner")).to_be_hidden(timeout=READY)
    expect(page.locator("#offset")).to_have_text("")
    play.act_as(RESIDENT)
    play.open_chat(RESIDENT_CHAT)
    expect(page.locator("#messages .msg", has_text="#1")).to_have_count(0)
    play.act_as(SECRETARY)
    play.open_chat(RESIDENT_CHAT)
    play.bot_says("已创建社区")

    # The same loop in English: each person says /lang en; the page's own labels follow a toggle.
    page.click("#ui-lang")
    for who in (RESIDENT, SECRETARY, MEMBER):
        play.act_as(who)
        play.open_chat(who)
        play.say("/lang en")
        play.bot_says("Language set to English")
    play.act_as(RESIDENT)
    play.open_chat(RESIDENT_CHAT)
    play.say("/demand The lift in building 3 is broken")
    play.bot_says("#1", "lift in building 3")
    play.shot("demand.en")
    play.act_as(SECRETARY)
    play.open_chat(SECRETARY)
    alert = play.bot_says("New demand", "#1")
    play.press(alert, "Accept")
    play.bot_says("Accepted by")
    play.say("/assign 1 @liu_jianguo")
    play.bot_says("dispatched", "刘建国")
    play.shot("accept.en")
    play.act_as(MEMBER)
    play.open_chat(MEMBER)
    play.bot_says("dispatched to you", "#1")
    play.say("/resolve 1 The lift company fixed it")
    play.bot_says("resolved")
    play.shot("resolve.en")
    play.act_as(RESIDENT)
    play.open_chat(RESIDENT)
    rating = play.bot_says("#1", "Not fixed")
    play.shot("rating.en")
    play.press(rating, "⭐⭐⭐⭐⭐", exact=True)
    play.bot_says("Thank you", "#1")
    play.shot("rate.en")
    play.open_chat(RESIDENT_CHAT)
    play.say("/demand The streetlight by the east gate is out")
    play.bot_says("#2")
    play.act_as(SECRETARY)
    play.open_chat(SECRETARY)
    play.bot_says("New demand", "#2")
    page.click("#plus-day")
    play.bot_says("past its accept deadline", "#2")
    play.shot("sla.en")
    page.click("#ui-lang")
