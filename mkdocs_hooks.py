"""mkdocs hook: the repository's README.md is the site's home page, and links keep working.

The pages are written to be read on GitHub (or in an editor) first, so their relative links point
at files of the repository: ``docs/concepts.md`` from the README, ``../README.md`` or
``../configs/foundation.yaml`` from a page under docs/. In the built site only docs/ exists, so
this hook

* fills ``docs/index.md`` (a stub) with README.md, links rewritten relative to docs/;
* rewrites every relative link of every page that leaves docs/: the README becomes the home page,
  anything else (a config, a source file) becomes its link text, as the file is not on the site;
* turns a link to a folder into a link to its ``index.md`` / ``README.md`` page.

``tests/test_docs_build.py`` builds the site with ``mkdocs build --strict`` and checks every
relative link of README.md and docs/ against the repository's files.
"""
from __future__ import annotations

import os
import re
from pathlib import Path

LINK = re.compile(r"(!?)\[((?:[^\[\]]|\[[^\[\]]*\])*)\]\(([^()\s]+)((?:\s+\"[^\"]*\")?)\)")
FENCE = re.compile(r"^(```|~~~)")


def _rewrite(markdown: str, source_dir: Path, page_dir: Path, docs_dir: Path, readme: Path) -> str:
    def one(m: re.Match) -> str:
        bang, text, target, title = m.groups()
        if re.match(r"^[a-z][a-z0-9+.-]*:", target) or target.startswith(("#", "/")):
            return m.group(0)  # URL, anchor, absolute path
        path, _, anchor = target.partition("#")
        resolved = (source_dir / path).resolve()
        if resolved == readme:
            new = os.path.relpath(docs_dir / "index.md", page_dir)
        elif resolved == docs_dir or docs_dir in resolved.parents:
            if resolved.is_dir():
                for name in ("index.md", "README.md"):
                    if (resolved / name).is_file():
                        resolved = resolved / name
                        break
            new = os.path.relpath(resolved, page_dir)
        else:  # a file of the repository outside docs/: not on the site
            return "" if bang else text
        return f"{bang}[{text}]({new.replace(os.sep, '/')}{'#' + anchor if anchor else ''}{title})"

    out, fenced = [], False
    for line in markdown.splitlines(keepends=True):
        if FENCE.match(line.lstrip()):
            fenced = not fenced
        out.append(line if fenced else LINK.sub(one, line))
    return "".join(out)


def on_page_markdown(markdown: str, page, config, files) -> str:
    docs_dir = Path(config["docs_dir"]).resolve()
    readme = (Path(config["config_file_path"]).resolve().parent / "README.md")
    page_dir = (docs_dir / page.file.src_uri).parent
    if page.file.src_uri == "index.md":
        return _rewrite(readme.read_text(encoding="utf-8"), readme.parent, page_dir, docs_dir, readme)
    return _rewrite(markdown, page_dir, page_dir, docs_dir, readme)
