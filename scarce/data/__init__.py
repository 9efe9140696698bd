"""Data layer: dataset registry, folder parsing + validation, few-label splits, caching,
synthetic data and importers. See :mod:`scarce.data.types` for the tensor contract."""
from scarce.data.types import DataError, DatasetInfo, RunData, SegData

__all__ = ["DataError", "DatasetInfo", "RunData", "SegData"]
