"""docs/methods/<family>.md are what ``scarce methods --markdown --family F`` prints now.

Why: the pages are generated from the method registry and the Config dataclasses; a changed
default, a new key or a new method without regenerated pages fails here, so the docs cannot drift.
Regenerate with ``scarce methods --markdown --family F > docs/methods/F.md`` for each family.
"""
from __future__ import annotations

import re
from pathlib import Path

import pytest

from scarce.cli import main
from scarce.methods import load_builtin_methods
from scarce.methods.docs import families, field_docs

DOCS = Path(__file__).resolve().parents[1] / "docs" / "methods"


@pytest.mark.parametrize("family", families())
def test_committed_page_is_what_the_command_prints(family, capsys):
    assert main(["methods", "--markdown", "--family", family]) == 0
    printed = capsys.readouterr().out
    page = DOCS / f"{family}.md"
    assert page.is_file(), f"missing {page}: run `scarce methods --markdown --family {family} > {page}`"
    assert page.read_text(encoding="utf-8") == printed, (
        f"{page} is out of date: run `scarce methods --markdown --family {family} > docs/methods/{family}.md`")


def test_every_method_is_in_exactly_one_page():
    assert sorted(p.stem for p in DOCS.glob("*.md")) == families()
    seen: dict[str, list[str]] = {}
    for page in DOCS.glob("*.md"):
        for name in re.findall(r"^## `(\w+)`$", page.read_text(encoding="utf-8"), flags=re.M):
            seen.setdefault(name, []).append(page.stem)
    assert sorted(seen) == load_builtin_methods().names()
    assert all(len(pages) == 1 for pages in seen.values()), seen


def test_field_docstrings_are_read_from_the_source_along_the_mro():
    """Attribute docstrings below each Config field, inherited when a subclass only changes a default."""
    cls = load_builtin_methods().get("grid_tr")
    docs = field_docs(cls.Config)
    assert docs["scribbles"].startswith("auto (scribbles/ beside images/)")  # from WeakConfig
    assert docs["lam"].startswith("λ: trust-region weight")


def test_markdown_flags_misuse_is_one_line(capsys):
    assert main(["methods", "--markdown", "--family", "wek"]) == 2
    assert "Did you mean 'weak'" in capsys.readouterr().err
    assert main(["methods", "--family", "weak"]) == 2
    assert "--markdown" in capsys.readouterr().err
