"""Labels: ``scarce suggest`` (which images to annotate next, :mod:`scarce.suggest`) and
``scarce annotate`` (draw scribbles and clicks in a local web page, :mod:`scarce.annotate`)."""
from __future__ import annotations

import argparse
import json


def add_parsers(sub: argparse._SubParsersAction) -> None:
    for add in (_suggest_parser, _annotate_parser):
        add(sub)


def _suggest_parser(sub: argparse._SubParsersAction) -> None:
    x = sub.add_parser("suggest", help="rank the images worth annotating next (CSV: stem, score, why; "
                       "docs/suggest.md)")
    x.add_argument("dataset", help="registered dataset name or images/(+masks/) folder; its validation and test "
                   "images are never suggested")
    x.add_argument("-n", type=int, required=True, metavar="N", help="how many images to suggest")
    x.add_argument("-o", "--out", required=True, metavar="FILE.csv",
                   help="the ranked list (new file; never inside a dataset); `scarce annotate DATASET --order FILE.csv`")
    x.add_argument("--strategy", default="coreset", metavar="S",
                   help="random | coreset (default) | kmeans; with --run also uncertainty | uncertainty_diversity")
    x.add_argument("--run", metavar="RUN", help="a finished run: its model (uncertainty strategies), size and split")
    x.add_argument("--exclude-labelled", action="store_true",
                   help="leave out the run's labelled training and validation images")
    x.add_argument("--labelled", metavar="FILE",
                   help="images already annotated, left out (split.json, a CSV with a stem column, or one stem a line)")
    x.add_argument("--seed", type=int, metavar="K",
                   help="split seed (whose validation images are left out) and tie-breaking (default: the run's, else 0)")
    x.add_argument("--size", type=int, metavar="PX", help="working size of the features without --run (default 128)")
    x.add_argument("--threads", type=int, default=0, metavar="T", help="torch threads (default: torch's own)")
    x.add_argument("--data-root", metavar="DIR")
    x.add_argument("--overwrite", action="store_true", help="replace a suggestion file this command wrote")
    x.add_argument("--json", action="store_true", help="print the result as JSON (for scripts)")
    x.set_defaults(func=suggest)


def suggest(a: argparse.Namespace) -> int:
    from scarce.api import suggest_images

    res = suggest_images(a.dataset, a.n, a.out, run=a.run, strategy=a.strategy, exclude_labelled=a.exclude_labelled,
                         labelled=a.labelled, seed=a.seed, size=a.size, data_root=a.data_root,
                         overwrite=a.overwrite, threads=a.threads)
    if a.json:
        print(json.dumps(res, indent=2))
        return 0
    out_of = "; ".join(f"{v} {k}" for k, v in res["left_out"].items())
    print(f"wrote {res['suggested']} of {res['candidates']} candidates ({res['strategy']}, seed {res['seed']}) to "
          f"{res['out']}" + (f"  (left out: {out_of})" if out_of else ""))
    return 0


def _annotate_parser(sub: argparse._SubParsersAction) -> None:
    x = sub.add_parser("annotate", help="draw scribbles and clicks on a dataset's images in a local web page "
                       "(saved to DATASET/scribbles/; docs/annotate.md)")
    x.add_argument("dataset", metavar="DATASET", help="registered dataset name or folder with images/ (masks/ optional)")
    x.add_argument("--run", metavar="RUN", help="a finished run: its prediction is shown over each image to correct")
    x.add_argument("--order", metavar="worst|name|FILE.csv",
                   help="image order: worst (lowest predicted confidence first; needs --run, its default), name "
                        "(the default without --run) or a CSV with a stem column (e.g. from `scarce suggest`)")
    x.add_argument("--host", default="127.0.0.1",
                   help="address to listen on (default 127.0.0.1: this computer only; the page has no login)")
    x.add_argument("--port", type=int, default=8765, help="port (default 8765; 0 = any free port)")
    x.add_argument("--data-root", metavar="DIR")
    x.set_defaults(func=annotate)


def annotate(a: argparse.Namespace) -> int:
    from scarce.annotate.server import serve
    from scarce.annotate.session import open_session

    serve(open_session(a.dataset, a.data_root, run=a.run, order=a.order), host=a.host, port=a.port)
    return 0
