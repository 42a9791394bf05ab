"""Only bot/transport/ may import a chat framework; the rest of the bot speaks the neutral port."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
FRAMEWORKS = ("aiogram", "telegram")
ALLOWED = ROOT / "bot" / "transport"


def framework_imports(path: Path) -> list[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    found = []
    for node in ast.walk(tree):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module]
        found += [n for n in names if n.split(".")[0] in FRAMEWORKS]
    return found


def test_only_transport_imports_frameworks() -> None:
    offenders = {}
    for folder in ("bot", "config"):
        for path in (ROOT / folder).rglob("*.py"):
            if ALLOWED in path.parents:
                continue
            if hits := framework_imports(path):
                offenders[str(path.relative_to(ROOT))] = hits
    for path in [ROOT / "main.py"]:
        if hits := framework_imports(path):
            offenders[str(path.relative_to(ROOT))] = hits
    assert offenders == {}


def test_the_check_sees_imports(tmp_path: Path) -> None:
    sample = tmp_path / "x.py"
    sample.write_text("import aiogram.types\nfrom telegram.ext import Application\nimport telegramx\n")
    assert framework_imports(sample) == ["aiogram.types", "telegram.ext"]


def test_adapters_exist_inside_the_boundary() -> None:
    assert framework_imports(ALLOWED / "aiogram_adapter.py")
