"""The manual: README.md and docs/ build into a site strictly, offline, with no page left out and no dead link."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"

FENCED_BLOCK = re.compile(r"^(```|~~~).*?^\1", re.S | re.M)
CODE_SPAN = re.compile(r"(`+)[^`]*?\1")
LINK = re.compile(r"!?\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")


def _pages() -> list[Path]:
    return sorted(DOCS.rglob("*.md"))


def _nav_entries(node) -> list[str]:
    if isinstance(node, str):
        return [node]
    if isinstance(node, dict):
        return [entry for value in node.values() for entry in _nav_entries(value)]
    if isinstance(node, list):
        return [entry for item in node for entry in _nav_entries(item)]
    return []


def _relative_links(markdown: str) -> list[str]:
    """Link and image targets outside code, without external URLs and same-page anchors."""
    text = CODE_SPAN.sub("", FENCED_BLOCK.sub("", markdown))
    targets = []
    for target in LINK.findall(text):
        if re.match(r"^[a-z][a-z0-9+.-]*:", target, re.I) or target.startswith("#"):
            continue
        targets.append(target.split("#", 1)[0].split("?", 1)[0])
    return targets


def test_docs_build_strictly_and_offline(tmp_path):
    site = tmp_path / "site"
    built = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "-d", str(site)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert built.returncode == 0, f"mkdocs build --strict failed:\n{built.stdout}\n{built.stderr}"
    assert (site / "api" / "index.html").is_file()
    # the site must read offline: no script or stylesheet fetched from elsewhere
    remote = re.compile(r"<(?:script|link)\b[^>]*\b(?:src|href)=\"(?:https?:)?//", re.I)
    fetching = [str(p.relative_to(site)) for p in site.rglob("*.html") if remote.search(p.read_text(encoding="utf-8"))]
    assert not fetching, f"pages that load remote assets: {fetching}"


def test_every_page_is_in_the_nav_and_every_nav_entry_exists():
    config = yaml.safe_load((ROOT / "mkdocs.yml").read_text(encoding="utf-8"))
    nav = set(_nav_entries(config["nav"]))
    pages = {p.relative_to(DOCS).as_posix() for p in _pages()}
    assert pages - nav == set(), f"pages missing from mkdocs.yml nav: {sorted(pages - nav)}"
    assert nav - pages == set(), f"nav entries without a page: {sorted(nav - pages)}"


def test_relative_links_resolve():
    broken = []
    for source in [ROOT / "README.md", *_pages()]:
        for target in _relative_links(source.read_text(encoding="utf-8")):
            path = (source.parent / target).resolve()
            if not path.exists():
                broken.append(f"{source.relative_to(ROOT)}: {target}")
            elif source.is_relative_to(DOCS) and not path.is_relative_to(DOCS.resolve()):
                # the site holds only docs/; name other files as `code` paths instead
                broken.append(f"{source.relative_to(ROOT)}: {target} (outside docs/)")
    assert not broken, "dead links:\n" + "\n".join(broken)


def test_link_finder_sees_links_but_not_code():
    markdown = '[a](x.md) ![b](img/y.png#z) [c](https://e.org) [d](#here) `[e](no.md)`\n```\n[f](no.md)\n```\n[g](<w.md> "t")'
    assert _relative_links(markdown) == ["x.md", "img/y.png", "w.md"]
