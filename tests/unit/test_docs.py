"""The user's guides: both exist, the README links them, and every picture they show is there."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
GUIDES = [ROOT / "docs" / "guide.zh.md", ROOT / "docs" / "guide.en.md"]


def test_readme_links_the_guides_and_nothing_outside_the_repository() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    for guide in GUIDES:
        assert f"](docs/{guide.name})" in readme
    assert "../shared" not in readme


def test_every_picture_and_link_of_the_guides_exists() -> None:
    for guide in GUIDES:
        text = guide.read_text(encoding="utf-8")
        targets = re.findall(r"\]\(([^)#\s]+)\)", text)
        assert any(t.startswith("img/") for t in targets), guide.name
        for target in targets:
            if "://" not in target:
                assert (guide.parent / target).is_file(), f"{guide.name} links a missing {target}"
