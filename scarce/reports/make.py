"""The report ``scarce report`` writes: the Markdown report (:func:`~scarce.reports.report.write_report`)
or, with ``html``, the HTML report (:func:`~scarce.reports.html.write_html_report`), whose
per-image browser re-predicts the runs saved without predictions.

Re-predicting needs a run's model, which the api layer loads: the caller passes
``scarce.api.evaluate_run`` as ``evaluate`` (the reports layer cannot import the api itself);
:func:`repredict` turns it into the browser's ``predict`` callback.
"""
from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Sequence

from scarce.reports.report import check_report_folder, write_report

if TYPE_CHECKING:
    from scarce.reports.html import Predict

Evaluate = Callable[..., Any]
"""``evaluate(run_dir, out=..., sets=[...])`` evaluates a run's best checkpoint into ``out`` with
``--set`` overrides: :func:`scarce.api.evaluate_run`."""


def repredict(evaluate: Evaluate) -> "Predict":
    """The per-image browser's ``predict(run_dir, dest)`` for runs saved without predictions:
    the run's best checkpoint evaluated into ``dest`` by ``evaluate``, predictions saved (no
    overlays). A run without checkpoints (a result record of ``scarce export``, a run copied
    without them) raises ``ConfigError``: its pictures stay empty."""

    def predict(run_dir: Path, dest: Path) -> None:
        from scarce.config import ConfigError
        from scarce.utils.runfolder import RunPaths

        if not RunPaths(run_dir).checkpoints.is_dir():
            raise ConfigError("no checkpoints: a result record (scarce export) or a copied run without "
                              "them; its pictures stay empty (report the run folder to see them)")
        evaluate(str(run_dir), out=str(dest), sets=["eval.save_predictions=true", "eval.overlays=0"])

    return predict


def make_report(runs: Sequence[str | Path], out: str | Path, *, metric: str | None = None, newest: bool = False,
                overwrite: bool = False, html: bool = False, reference: str | None = None,
                browser_images: int | None = None, evaluate: Evaluate | None = None,
                log: Callable[[str], Any] | None = None) -> Path | None:
    """Report every finished run under ``runs`` into the report folder ``out`` (checked first:
    :func:`~scarce.reports.report.check_report_folder`); returns the path of ``index.html`` with
    ``html``, else None (``out/results.md`` is written either way).

    ``reference`` (the row the HTML report's tests compare with) needs ``html``: ``ConfigError``
    otherwise, before anything is checked or written. ``browser_images`` caps the images per test
    set of the HTML browser (default :data:`~scarce.reports.html.BROWSER_IMAGES`); ``evaluate``
    (:data:`Evaluate`) re-predicts runs saved without predictions for it (:func:`repredict`);
    ``log`` gets its progress lines.
    """
    from scarce.config import ConfigError

    if reference and not html:
        raise ConfigError("--reference needs --html (the tests against a reference row are in the HTML report)")
    check_report_folder(runs, out, overwrite=overwrite)
    if not html:
        write_report(runs, out, metric=metric, newest=newest, require_runs=True)
        return None
    from scarce.reports.html import BROWSER_IMAGES, write_html_report

    return write_html_report(runs, out, metric=metric, reference=reference, newest=newest,
                             browser_images=BROWSER_IMAGES if browser_images is None else browser_images,
                             predict=None if evaluate is None else repredict(evaluate), log=log)


__all__ = ["make_report", "repredict", "Evaluate"]
