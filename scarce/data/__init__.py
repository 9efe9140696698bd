"""Data layer: dataset registry, folder parsing + validation, few-label splits, caching,
synthetic data and importers. See :mod:`scarce.data.types` for the tensor contract.

Public functions are imported lazily (``from scarce.data import load_folder`` works, but
``import scarce.data`` alone loads only the small contract types).
"""
from __future__ import annotations

import importlib
from typing import Any

from scarce.data.types import DataError, DatasetInfo, RunData, SegData

_LAZY = {
    "DATASETS": "registry", "get_info": "registry",
    "FolderIndex": "folder", "scan_folder": "folder", "read_image": "folder",
    "read_image_pil": "folder", "list_images": "folder",
    "read_mask_raw": "folder", "mask_to_labels": "folder", "read_pair": "folder",
    "DecodeCache": "cache", "get_cache": "cache",
    "Split": "splits", "is_split_file": "splits", "make_split": "splits", "held_out": "splits", "pool_and_test": "splits",
    "make_synthetic": "synthetic", "ensure_synthetic": "synthetic",
    "load_folder": "load", "prepare_run_data": "load", "list_datasets": "load",
    "resolve_dataset": "load", "dataset_split": "load", "validate_folder": "load",
    "load_test_sets": "load", "split_for_config": "load", "show_dataset": "load",
    "load_image": "load", "image_input": "load", "preprocess_intensity": "intensity",
    "import_dataset": "importers", "import_nnunet": "importers",
    "import_decathlon_json": "importers", "export_nnunet": "importers", "IMPORTERS": "importers",
    "import_multidomain": "multidomain", "is_multidomain": "multidomain",
}

__all__ = ["DataError", "DatasetInfo", "RunData", "SegData", *_LAZY]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        value = getattr(importlib.import_module(f"scarce.data.{_LAZY[name]}"), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'scarce.data' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(__all__)
