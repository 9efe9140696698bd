"""A run's model: ``scarce export-model`` (ONNX / TorchScript, :mod:`scarce.model_export`) and
``scarce gan pretrain`` (the mask→image GAN of E2EAug / separate, :func:`scarce.api.pretrain_gan_run`)."""
from __future__ import annotations

import argparse
import json

from scarce.cli.common import OVERWRITE_HELP, cfg_args, group_help, load_cfg, sets_arg


def add_parsers(sub: argparse._SubParsersAction) -> None:
    for add in (_export_model_parser, _gan_parsers):
        add(sub)


def _export_model_parser(sub: argparse._SubParsersAction) -> None:
    x = sub.add_parser("export-model", help="export a finished run's segmenter as ONNX or TorchScript, with its "
                       "preprocessing in the file's metadata, checked against scarce's own predictions")
    x.add_argument("run_dir", metavar="RUN")
    x.add_argument("--format", "-f", dest="fmt", choices=("onnx", "torchscript"), default="onnx",
                   help="onnx (needs pip install \"scarce[onnx]\"; default) or torchscript")
    x.add_argument("-o", "--out", metavar="FILE",
                   help="export file (default RUN/export/model.onnx or model.torchscript.pt; a FILE.json record "
                        "is written beside it)")
    x.add_argument("--check-images", type=int, default=64, metavar="N",
                   help="test images of the run the export is checked on (default 64)")
    sets_arg(x, "override a key of the run's config, e.g. --set train.threads=1")
    x.add_argument("--data-root", metavar="DIR")
    x.add_argument("--overwrite", action="store_true", help="replace an export this command wrote earlier")
    x.add_argument("--json", action="store_true", help="print the result as JSON (for scripts)")
    x.set_defaults(func=export_model)


def export_model(a: argparse.Namespace) -> int:
    from scarce import model_export

    res = model_export.export_model(a.run_dir, a.fmt, a.out, overwrite=a.overwrite, sets=a.sets,
                                    data_root=a.data_root, check_images=a.check_images)
    if a.json:
        print(json.dumps(res, indent=2))
        return 0
    print(f"exported {a.run_dir} ({res['format']}) to {res['path']}  (metadata and check: {res['record']})")
    print(f"check on {res['images']} test images ({', '.join(res['test_sets'])}): max |difference| of the "
          f"probabilities vs scarce's own {res['max_abs_diff']:.2g}; {res['labels_differing']} of "
          f"{res['pixels']} labels differ")
    return 0


def _gan_parsers(sub: argparse._SubParsersAction) -> None:
    g = sub.add_parser("gan", help="mask→image GAN utilities (E2EAug / separate)")
    g.set_defaults(func=group_help(g))
    gsub = g.add_subparsers(dest="gan_cmd", metavar="ACTION")
    x = gsub.add_parser("pretrain", help="pretrain Pix2Pix on the split's training pairs (cached, reused by the methods)")
    cfg_args(x)
    x.add_argument("--out", help="shortcut for --set out=... (gallery goes here; cache beside it)")
    x.add_argument("--vanilla", action="store_true", help="the non-searched 4-2-1 generator (as `separate` uses)")
    x.add_argument("--overwrite", action="store_true", help=OVERWRITE_HELP)
    x.set_defaults(func=gan_pretrain)


def gan_pretrain(a: argparse.Namespace) -> int:
    from scarce.api import pretrain_gan_run

    cfg = load_cfg(a, [f"out={a.out}"] if a.out else [])
    print(json.dumps(pretrain_gan_run(cfg, vanilla=a.vanilla, overwrite=a.overwrite), indent=2))
    return 0
