"""``scarce data ACTION``: list, inspect, import, export, split, scribble, fingerprint and
synthesise datasets (:mod:`scarce.data`)."""
from __future__ import annotations

import argparse
import json

from scarce.cli.common import OVERWRITE_HELP, budget_arg, cfg_args, group_help, load_cfg, print_table


def add_parsers(sub: argparse._SubParsersAction) -> None:
    d = sub.add_parser("data", help="list, inspect, import and split datasets")
    d.set_defaults(func=group_help(d))
    dsub = d.add_subparsers(dest="data_cmd", metavar="ACTION")
    for add in (_list_parser, _show_parser, _import_parser, _export_nnunet_parser, _split_parser, _scribbles_parser,
                _fingerprint_parser, _synthetic_parser):
        add(dsub)


def _list_parser(dsub: argparse._SubParsersAction) -> None:
    x = dsub.add_parser("list", help="registered datasets and whether they are present under the data root")
    x.add_argument("--data-root", metavar="DIR")
    x.set_defaults(func=data_list)


def data_list(a: argparse.Namespace) -> int:
    from scarce.data import list_datasets

    rows = list_datasets(a.data_root)
    extra = [c for c in ("volumes", "unsupported") if any(c in r for r in rows)]  # only when some folder has them
    if any(r.get("scribbles") or r.get("masks", r["n_images"]) != r["n_images"] for r in rows):
        extra = ["masks", "scribbles", *extra]  # a folder being annotated: how far it is
    print_table(rows, ["name", "task", "metric", "present", "n_images", *extra, "splits", "ood"])
    return 0


def _show_parser(dsub: argparse._SubParsersAction) -> None:
    x = dsub.add_parser("show", help="metadata, counts and splits of one dataset (name or folder)")
    x.add_argument("name")
    x.add_argument("--data-root", metavar="DIR")
    x.set_defaults(func=data_show)


def data_show(a: argparse.Namespace) -> int:
    from scarce.data import show_dataset

    print(json.dumps(show_dataset(a.name, a.data_root), indent=2, default=str))
    return 0


def _import_parser(dsub: argparse._SubParsersAction) -> None:
    x = dsub.add_parser("import", help="convert an official download layout into the scarce folder format")
    x.add_argument("name", help="dataset kind: a registered name (isic2017, busi, montgomery, kvasir_seg, ph2, "
                   "cvc_clinicdb, fundus_drishti, fundus_domain1, prostate_bidmc, ...), 'generic', 'nnunet', "
                   "'decathlon', or a multi-domain download: 'fundus_dofe', 'prostate_saml' (one folder per domain in DEST)")
    x.add_argument("src", help="the downloaded dataset folder (for 'decathlon': the datalist JSON)")
    x.add_argument("dest", help="output folder (images/, masks/, split.csv); must be new or empty")
    x.add_argument("--base-dir", help="decathlon only: folder the datalist paths are relative to")
    x.add_argument("--overwrite", action="store_true", help=OVERWRITE_HELP)
    x.add_argument("--empty-fraction", type=float, metavar="F",
                   help="prostate_saml: share of each volume's slices without prostate to keep (default 0)")
    x.add_argument("--test-fraction", type=float, metavar="F",
                   help="prostate_saml: share of each site's cases in the test split (default 0.2)")
    x.add_argument("--seed", type=int, help="prostate_saml: seed of the case split and empty slices (default 0)")
    x.set_defaults(func=data_import)


def data_import(a: argparse.Namespace) -> int:
    import scarce.data as D

    opts = {k: v for k, v in (("empty_fraction", a.empty_fraction), ("test_fraction", a.test_fraction),
                              ("seed", a.seed)) if v is not None}
    if a.name in ("nnunet", "decathlon"):
        from scarce.data.multidomain import reject_options

        reject_options(opts, a.name)
    if a.name == "nnunet":
        out = D.import_nnunet(a.src, a.dest, overwrite=a.overwrite)
    elif a.name == "decathlon":
        out = D.import_decathlon_json(a.src, a.dest, base_dir=a.base_dir, overwrite=a.overwrite)
    elif D.is_multidomain(a.name):
        outs = D.import_multidomain(a.name, a.src, a.dest, overwrite=a.overwrite, **opts)
        print("imported into " + ", ".join(str(o) for o in outs))
        return 0
    else:
        out = D.import_dataset(a.name, a.src, a.dest, overwrite=a.overwrite, **opts)
    print(f"imported into {out}")
    return 0


def _export_nnunet_parser(dsub: argparse._SubParsersAction) -> None:
    x = dsub.add_parser("export-nnunet", help="write a scarce folder as an nnU-Net raw dataset")
    x.add_argument("src")
    x.add_argument("dest", help="nnU-Net raw folder (Dataset<ID>_<NAME> is created inside)")
    x.add_argument("--id", type=int, default=501, help="nnU-Net dataset id (default 501)")
    x.add_argument("--name", default=None, help="nnU-Net dataset name (default: the source folder's name)")
    x.add_argument("--overwrite", action="store_true", help=OVERWRITE_HELP)
    x.set_defaults(func=data_export_nnunet)


def data_export_nnunet(a: argparse.Namespace) -> int:
    from scarce.data import export_nnunet

    print(f"exported to {export_nnunet(a.src, a.dest, a.id, a.name, overwrite=a.overwrite)}")
    return 0


def _split_parser(dsub: argparse._SubParsersAction) -> None:
    x = dsub.add_parser("split", help="make (and save) the few-label split of a dataset")
    cfg_args(x)
    x.add_argument("name", nargs="?", help="dataset (default: data.dataset of the config)")
    x.add_argument("--budget", type=budget_arg, metavar="N|all",
                   help="labelled images (default: data.budget, 40); all = every one outside the test part")
    x.add_argument("--seed", type=int)
    x.add_argument("--out", metavar="FILE", help="write the split JSON here (default: print it); an existing file is refused")
    x.add_argument("--overwrite", action="store_true",
                   help="replace a split file this command wrote earlier (no other file is ever replaced)")
    x.set_defaults(func=data_split)


def data_split(a: argparse.Namespace) -> int:
    import scarce.data as D

    if a.out:  # before the (slow) split: an existing file is refused, not overwritten
        from scarce.utils.paths import check_output_file

        check_output_file(a.out, overwrite=a.overwrite, what="split file", command="scarce data split",
                          previous=D.is_split_file)
    extra = [f"data.dataset={a.name}"] if a.name else []
    if a.budget is not None:
        extra.append(f"data.budget={a.budget}")
    if a.seed is not None:
        extra.append(f"train.seed={a.seed}")
    cfg = load_cfg(a, extra)
    from scarce.api import uses_scribble_files

    split = D.split_for_config(cfg.data, seed=cfg.train.seed, scribbles=uses_scribble_files(cfg))
    if a.out:
        split.save(a.out)
        print(f"train {len(split.train)}, val {len(split.val)}, test {len(split.test)} → {a.out}")
    else:
        print(split.to_json())
    return 0


def _scribbles_parser(dsub: argparse._SubParsersAction) -> None:
    x = dsub.add_parser("scribbles", help="synthesise scribbles/clicks from full masks into <dataset>/scribbles/")
    x.add_argument("name", help="registered dataset or folder")
    x.add_argument("--length", type=float, required=True,
                   help="0 = a click per class, 1 = a full medial-axis scribble, in between = part of it")
    x.add_argument("--seed", type=int, default=0)
    x.add_argument("--data-root", metavar="DIR")
    x.add_argument("--overwrite", action="store_true", help=OVERWRITE_HELP)
    x.set_defaults(func=data_scribbles)


def data_scribbles(a: argparse.Namespace) -> int:
    from scarce.config import ConfigError
    from scarce.data.load import resolve_dataset
    from scarce.data.scribbles import write_scribbles

    if not 0.0 <= a.length <= 1.0:
        raise ConfigError(f"--length must be in [0, 1], got {a.length}")
    info, folder = resolve_dataset(a.name, a.data_root)
    print(write_scribbles(folder, a.length, seed=a.seed, num_classes=info.num_classes, overwrite=a.overwrite))
    return 0


def _fingerprint_parser(dsub: argparse._SubParsersAction) -> None:
    x = dsub.add_parser("fingerprint", help="image sizes, object sizes (share of the image), objects per mask and "
                        "intensities of datasets (names or folders), one column each")
    x.add_argument("names", nargs="+", metavar="DATASET")
    x.add_argument("--data-root", metavar="DIR")
    x.add_argument("--json", action="store_true", help="print the fingerprints as JSON (for scripts)")
    x.add_argument("--markdown", action="store_true", help="print the table as Markdown")
    x.set_defaults(func=data_fingerprint)


def data_fingerprint(a: argparse.Namespace) -> int:
    from scarce.data.fingerprint import fingerprint, format_fingerprints

    fps = [fingerprint(n, a.data_root) for n in a.names]
    print(json.dumps(fps, indent=2) if a.json else format_fingerprints(fps, markdown=a.markdown))
    return 0


def _synthetic_parser(dsub: argparse._SubParsersAction) -> None:
    x = dsub.add_parser("synthetic", help="write the built-in synthetic dataset (and its OOD variant)")
    x.add_argument("dest", help="new or empty folder (images/, masks/, split.csv); nothing in it is ever deleted")
    x.add_argument("--n", type=int, default=160)
    x.add_argument("--size", type=int, default=128)
    x.add_argument("--seed", type=int, default=0)
    x.add_argument("--ood", action="store_true", help="write the out-of-distribution variant")
    x.add_argument("--overwrite", action="store_true", help=OVERWRITE_HELP)
    x.set_defaults(func=data_synthetic)


def data_synthetic(a: argparse.Namespace) -> int:
    from scarce.data import make_synthetic

    print(make_synthetic(a.dest, n=a.n, size=a.size, seed=a.seed, ood=a.ood, overwrite=a.overwrite))
    return 0
