"""Reports layer: results tables, figures and the Markdown report built from run folders.

Reads only files (``config.yaml``, ``metrics.json``, ``log.csv``); imports ``scarce.evaluation``
but never ``scarce.methods``. pandas/matplotlib are imported when first used.
"""
from __future__ import annotations

import importlib
from typing import Any

_NAMES = {
    "collect_runs": "tables", "results_table": "tables", "summarize": "tables", "row_label": "tables",
    "format_cell": "tables", "to_markdown": "tables",
    "sample_efficiency_plot": "plots", "bar_plot": "plots", "curves_plot": "plots",
    "write_report": "report", "primary_metric": "report",
    "trimap_results": "tables", "trimap_widths": "tables", "scribble_length": "tables",
    "trimap_section": "extras", "axis_section": "extras", "architecture_section": "extras",
    "alpha_plot": "extras", "plot_trimap": "trimap_plot",
    "write_html_report": "html", "collect_roots": "tables", "make_report": "make",
    "t_interval": "stats", "holm": "stats", "paired_seed_test": "stats", "per_image_test": "stats",
    "comparison_table": "stats",
    "mean_over_sets": "tables", "monitor_section": "domains", "monitor_plot": "domains",
    "export_records": "records", "record_files": "records",
    "tsne_panel": "tsne", "write_tsne": "tsne", "pooled_features": "tsne",
    "size_section": "sizes", "size_table": "sizes",
    "annotation_time_section": "annotation_time", "annotation_time_table": "annotation_time",
    "annotation_minutes": "cost", "planned_minutes": "cost",
}

__all__ = sorted(_NAMES)


def __getattr__(name: str) -> Any:
    if name in _NAMES:
        return getattr(importlib.import_module(f"scarce.reports.{_NAMES[name]}"), name)
    raise AttributeError(f"module 'scarce.reports' has no attribute {name!r}")
