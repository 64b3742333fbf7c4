"""The README and the documentation site point only at what ships, and name what users need.

(`mkdocs build --strict` in scripts/test.sh checks the site's own links and API references.)
"""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
README = (ROOT / "README.md").read_text(encoding="utf-8")
DOCS = {p: p.read_text(encoding="utf-8") for p in (ROOT / "docs").rglob("*.md")}


def test_readme_links_resolve_in_a_checkout() -> None:
    targets = re.findall(r"\]\(([^)\s#]+)(?:#[^)]*)?\)", README)
    local = [t for t in targets if not re.match(r"[a-z]+://", t)]
    assert local, "the README links into docs/"
    missing = [t for t in local if not (ROOT / t).exists()]
    assert missing == []


def test_nothing_points_at_files_that_do_not_ship() -> None:
    for path, text in {ROOT / "README.md": README, **DOCS}.items():
        assert "DESIGN.md" not in text, path


def test_readme_names_the_test_command_and_the_offline_switch() -> None:
    assert "bash scripts/test.sh" in README  # what CI (.ci/run) runs
    assert "HF_HUB_OFFLINE=1" in README
    assert "not on the package index" in README and "git+https://" in README
    assert "models/crossrank-minilm-l6" in README and (ROOT / "models/crossrank-minilm-l6").is_dir()


def test_every_backend_name_the_registry_accepts_is_documented() -> None:
    from rerank_core import BACKENDS

    text = README + "".join(DOCS.values())
    undocumented = [name for name in BACKENDS if f"`{name}`" not in text]
    assert undocumented == []
