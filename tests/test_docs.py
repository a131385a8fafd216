"""The documentation: the docs site builds strictly (a broken link or anchor fails it), and the
README, which mkdocs does not read, stays short and links only to pages and headings that exist."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import unicodedata
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent
README_MAX_LINES = 360
# [text](docs/page.md#anchor) and [text](#anchor): the README's links into the docs and to itself.
LINK = re.compile(r"\]\(((?:docs/[^)\s#]+\.md)?)(?:#([^)\s]*))?\)")


def build(config_dir: Path, site_dir: Path) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(site_dir)]
    return subprocess.run(command, cwd=config_dir, capture_output=True, text=True, check=False)


def slugify(heading: str) -> str:
    """A heading's anchor as mkdocs makes it by default (Python-Markdown's toc slugify)."""
    text = unicodedata.normalize("NFKD", heading.replace("`", ""))
    text = re.sub(r"[^\w\s-]", "", text.encode("ascii", "ignore").decode()).strip().lower()
    return re.sub(r"[-\s]+", "-", text)


def anchors(markdown: str) -> set[str]:
    """The anchors of a Markdown text's headings, leaving out lines inside fenced code."""
    found: set[str] = set()
    fenced = False
    for line in markdown.splitlines():
        if line.startswith("```"):
            fenced = not fenced
        elif not fenced and (heading := re.match(r"#{1,6} +(.+?)\s*#*\s*$", line)):
            found.add(slugify(heading[1]))
    return found


def broken_links(markdown: str) -> list[str]:
    """Links of a README-like text to docs pages, or to its own headings, that lead nowhere."""
    broken: list[str] = []
    for match in LINK.finditer(markdown):
        page, anchor = match[1], match[2]
        target = REPO_ROOT / page if page else None
        if target is not None and not target.is_file():
            broken.append(match[0][2:-1])
        elif anchor is not None:
            text = target.read_text(encoding="utf-8") if target is not None else markdown
            if anchor not in anchors(text):
                broken.append(match[0][2:-1])
    return broken


def test_docs_site_builds_strictly(tmp_path: Path) -> None:
    result = build(REPO_ROOT, tmp_path)

    assert result.returncode == 0, result.stderr
    # Every heading's anchor, as slugify() computes it, is an id in the built pages.
    html = "".join(page.read_text(encoding="utf-8") for page in tmp_path.rglob("*.html"))
    ids = set(re.findall(r'id="([^"]+)"', html))
    for page in (REPO_ROOT / "docs").glob("*.md"):
        assert anchors(page.read_text(encoding="utf-8")) <= ids, page.name


@pytest.mark.parametrize("link", ["[x](no-such-page.md)", "[x](engine.md#no-such-heading)"])
def test_strict_build_fails_on_a_broken_link(tmp_path: Path, link: str) -> None:
    shutil.copy(REPO_ROOT / "mkdocs.yml", tmp_path)
    shutil.copytree(REPO_ROOT / "docs", tmp_path / "docs")
    with (tmp_path / "docs" / "index.md").open("a", encoding="utf-8") as page:
        page.write(f"\n{link}\n")

    result = build(tmp_path, tmp_path / "site")

    assert result.returncode != 0
    assert link.split("(")[1].rstrip(")") in result.stderr


def test_readme_is_short_and_its_links_lead_somewhere() -> None:
    readme = (REPO_ROOT / "README.md").read_text(encoding="utf-8")

    assert len(readme.splitlines()) <= README_MAX_LINES
    assert re.search(r"\]\(docs/", readme)
    assert broken_links(readme) == []


def test_broken_readme_links_are_caught() -> None:
    readme = (REPO_ROOT / "README.md").read_text(encoding="utf-8")
    bad = ["docs/no-such-page.md", "docs/engine.md#no-such-heading", "#nowhere"]

    assert broken_links(readme + "".join(f"\n[x]({url})" for url in bad)) == bad
    assert slugify("Holding up: load, faults") == "holding-up-load-faults"
    assert slugify('TensorFlow (`framework: "tf"`)') == "tensorflow-framework-tf"


def unnamed_modules(page: str) -> list[str]:
    """The modules of handlers/ and layers/textgen/ whose file name `page` never mentions."""
    sources = [*(REPO_ROOT / "handlers").rglob("*.py"), *(REPO_ROOT / "layers").rglob("*.py")]
    return sorted(
        str(path.relative_to(REPO_ROOT))
        for path in sources
        if path.name != "__init__.py" and f"`{path.name}`" not in page
    )


def test_the_layout_page_names_every_module() -> None:
    page = (REPO_ROOT / "docs" / "development.md").read_text(encoding="utf-8")

    assert unnamed_modules(page) == []
    # Live check: a page without one of them is caught.
    assert unnamed_modules(page.replace("`sampling.py`", "")) == [
        "layers/textgen/engine/sampling.py"
    ]
