"""The browser tests need Debian's Chromium and Playwright for Python; without them they skip,
saying why, except where LINLI_REQUIRE_BROWSER=1 (CI) makes a missing browser a failure."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

CHROMIUM = os.environ.get("LINLI_CHROMIUM", "/usr/bin/chromium")
# Headless, and none of Chromium's background connections (a closed network refuses them anyway).
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


def browser_missing() -> str | None:
    """Why the browser test cannot run here, or None."""
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "Playwright for Python is not installed (pip install -e '.[test]')"
    if not (Path(CHROMIUM).exists() or shutil.which(CHROMIUM)):
        return f"Chromium not found at {CHROMIUM}: install Debian's package (apt-get install chromium) to run it"
    return None


@pytest.fixture(scope="session")
def chromium_path() -> str:
    reason = browser_missing()
    if reason is not None:
        if os.environ.get("LINLI_REQUIRE_BROWSER") == "1":
            pytest.fail(f"the browser test must run here (LINLI_REQUIRE_BROWSER=1), but {reason}")
        pytest.skip(f"browser test skipped: {reason}")
    return CHROMIUM
