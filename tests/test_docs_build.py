"""The documentation builds and its links hold.

Why: README.md and docs/ are read on GitHub and as a mkdocs site; pages move and headings change,
and a broken link sends a newcomer nowhere. Two checks:

* every relative link (and image) of README.md and every page under docs/ points at a file of the
  repository, and a ``#anchor`` into a markdown page names one of its headings — as both GitHub
  and mkdocs spell heading anchors (always runs, no dependency, well under a second);
* ``mkdocs build --strict`` builds the site (mkdocs.yml, mkdocs_hooks.py) without a warning: broken
  links, missing anchors or nav entries fail it (skips when mkdocs-material is not installed:
  ``pip install -c constraints.txt -e ".[docs]"``).
"""
from __future__ import annotations

import importlib.util
import os
import re
import subprocess
import sys
import unicodedata
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
LINK = re.compile(r"!?\[(?:[^\[\]]|\[[^\[\]]*\])*\]\(([^()\s]+)(?:\s+\"[^\"]*\")?\)")
FENCE = re.compile(r"^\s*(```|~~~)")
CODE_SPAN = re.compile(r"`[^`]*`")


def pages() -> list[Path]:
    """README.md and every markdown page under docs/ (generated result pages included)."""
    return [REPO / "README.md"] + sorted((REPO / "docs").rglob("*.md"))


def _prose_lines(text: str):
    """(line number, line without code spans) outside fenced code blocks."""
    fenced = False
    for i, line in enumerate(text.splitlines(), 1):
        if FENCE.match(line):
            fenced = not fenced
            continue
        if not fenced:
            yield i, CODE_SPAN.sub("", line)


def links(page: Path) -> list[tuple[int, str]]:
    return [(i, m.group(1)) for i, line in _prose_lines(page.read_text(encoding="utf-8")) for m in LINK.finditer(line)]


def _heading_text(raw: str) -> str:
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", raw)  # a link in a heading counts by its text
    return text.replace("`", "").replace("*", "").strip()


def github_slug(heading: str) -> str:
    text = _heading_text(heading).lower()
    text = "".join(c for c in text if c.isalnum() or c in " -_")
    return text.replace(" ", "-")


def mkdocs_slug(heading: str) -> str:
    """Python-Markdown's toc slugify (mkdocs' default): ASCII only, runs of spaces and hyphens → one '-'."""
    text = unicodedata.normalize("NFKD", _heading_text(heading)).encode("ascii", "ignore").decode("ascii")
    text = re.sub(r"[^\w\s-]", "", text).strip().lower()
    return re.sub(r"[-\s]+", "-", text)


def anchors(page: Path) -> tuple[set[str], set[str]]:
    """(GitHub anchors, mkdocs anchors) of a markdown page's headings, plus explicit ``id=`` anchors."""
    text = page.read_text(encoding="utf-8")
    heads = [m.group(1) for _, line in _heading_lines(text) for m in [re.match(r"^#{1,6}\s+(.*?)\s*#*\s*$", line)] if m]
    ids = set(re.findall(r"""id=["']([^"']+)["']""", text))
    return {github_slug(h) for h in heads} | ids, {mkdocs_slug(h) for h in heads} | ids


def _heading_lines(text: str):
    fenced = False
    for i, line in enumerate(text.splitlines(), 1):
        if FENCE.match(line):
            fenced = not fenced
        elif not fenced and line.startswith("#"):
            yield i, line


def broken_links(page: Path) -> list[str]:
    out = []
    for line, target in links(page):
        if re.match(r"^[a-z][a-z0-9+.-]*:", target) or target.startswith("/"):
            continue  # URLs, mailto:, absolute paths: not checked here
        path, _, anchor = target.partition("#")
        dest = (page.parent / path).resolve() if path else page
        where = f"{page.relative_to(REPO)}:{line}: {target}"
        if not dest.exists():
            out.append(f"{where} (no such file)")
            continue
        if anchor and dest.suffix == ".md":
            gh, mk = anchors(dest)
            if anchor not in gh or anchor not in mk:
                missing = " and ".join(n for n, s in (("GitHub", gh), ("mkdocs", mk)) if anchor not in s)
                out.append(f"{where} (no heading with this anchor on {missing})")
    return out


def test_slugs_match_github_and_mkdocs():
    assert github_slug("Semi-supervised: `mean_teacher`, `fixmatch`") == "semi-supervised-mean_teacher-fixmatch"
    assert mkdocs_slug("Semi-supervised: `mean_teacher`, `fixmatch`") == "semi-supervised-mean_teacher-fixmatch"
    assert github_slug("`supervised` — baselines") == "supervised--baselines"  # GitHub keeps both hyphens
    assert mkdocs_slug("`supervised` — baselines") == "supervised-baselines"


def test_every_relative_link_of_readme_and_docs_resolves():
    assert len(pages()) > 10
    broken = [b for p in pages() for b in broken_links(p)]
    assert broken == [], "broken links:\n" + "\n".join(broken)


def test_link_checker_catches_a_broken_link_and_anchor(tmp_path, monkeypatch):
    monkeypatch.setattr(sys.modules[__name__], "REPO", tmp_path)
    (tmp_path / "a.md").write_text("# Title\n\n## Real heading\n\n[ok](a.md#real-heading) [gone](b.md) "
                                   "[bad](a.md#nope) `[code](x.md)`\n```\n[fenced](y.md)\n```\n", encoding="utf-8")
    found = broken_links(tmp_path / "a.md")
    assert len(found) == 2 and "b.md (no such file)" in found[0] and "#nope" in found[1]


def test_readme_is_short_and_links_the_docs():
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    assert len(readme.splitlines()) <= 250
    assert "## Decision guide" in readme
    linked = {(REPO / t.partition("#")[0]).resolve() for _, t in links(REPO / "README.md") if not re.match(r"^[a-z]+:", t)}
    for page in ("concepts", "configuration", "data", "training", "methods", "experiments", "evaluation",
                 "results", "adding-a-method", "DESIGN", "predict", "export"):
        assert (REPO / "docs" / f"{page}.md").resolve() in linked, f"README does not link docs/{page}.md"


def _have_mkdocs() -> str | None:
    for mod, pkg in (("mkdocs", "mkdocs"), ("material", "mkdocs-material")):
        if importlib.util.find_spec(mod) is None:
            return f"{pkg} is not installed (pip install -c constraints.txt -e \".[docs]\")"
    return None


@pytest.mark.skipif(_have_mkdocs() is not None, reason=_have_mkdocs() or "")
def test_mkdocs_build_strict(tmp_path):
    site = tmp_path / "site"
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}
    r = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "-f", str(REPO / "mkdocs.yml"),
                        "-d", str(site)], capture_output=True, text=True, cwd=REPO, env=env, timeout=300)
    assert r.returncode == 0, (r.stdout + r.stderr)[-5000:]
    home = (site / "index.html").read_text(encoding="utf-8")
    assert "Decision guide" in home and 'href="concepts.html' in home  # README is the home page, links rewritten
    assert (site / "adding-a-method.html").is_file()
    assert (site / "methods" / "ssl.html").is_file()
    assert (site / "results.html").is_file() and (site / "results" / "index.html").is_file()  # no collision


def test_site_hook_rewrites_links_that_leave_docs(tmp_path):
    """mkdocs_hooks.py (no mkdocs needed): README links become site links, files outside docs/ text."""
    spec = importlib.util.spec_from_file_location("mkdocs_hooks", REPO / "mkdocs_hooks.py")
    hooks = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(hooks)
    docs = tmp_path / "docs"
    (docs / "methods").mkdir(parents=True)
    (docs / "results" / "x").mkdir(parents=True)
    (docs / "results" / "x" / "README.md").write_text("# x\n")
    readme = tmp_path / "README.md"
    text = ("[c](docs/concepts.md#a) [cfg](configs/foundation.yaml) ![p](docs/results/x/plot.png) "
            "[x](docs/results/x/) [w](https://example.org)\n```\n[kept](docs/concepts.md)\n```\n")
    out = hooks._rewrite(text, tmp_path, docs, docs, readme)
    assert out.splitlines()[0] == ("[c](concepts.md#a) cfg ![p](results/x/plot.png) [x](results/x/README.md) "
                                   "[w](https://example.org)")
    assert "[kept](docs/concepts.md)" in out  # code blocks untouched
    page = hooks._rewrite("[home](../../README.md#decision-guide) [out](../../x.md) [in](../x.md)", docs / "methods",
                          docs / "methods", docs, readme)
    assert page == "[home](../index.md#decision-guide) out [in](../x.md)"
