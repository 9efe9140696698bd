"""Confidence intervals and significance tests of the results tables (HTML report).

Why: with 3 seeds most differences between methods are within noise, and a table of means
cannot say which. Every comparison of a row against the reference row therefore gets two tests,
and every table one multiple-comparison correction:

* **over seeds** — runs of one dataset, budget and seed share their split (``split.json``; a
  pair whose split files differ in more than the training images, which ``data.selection``
  chooses, is not paired), so the per-run means are paired by seed:
  paired t-test (:func:`scipy.stats.ttest_rel`) over the shared seeds. Not Wilcoxon: with n
  pairs its smallest two-sided p is 2 / 2ⁿ (0.25 for 3 seeds), so it could never reject. Rows
  without a shared split fall back to Welch's unpaired t-test (:func:`scipy.stats.ttest_ind`).
  With 3 seeds (2 degrees of freedom) the test has little power: only large, consistent
  differences reach p < 0.05, and "not significant" is no evidence of "no difference".
* **over test images** — Wilcoxon signed-rank (:func:`scipy.stats.wilcoxon`) of the per-image
  score differences (each run's ``eval/<test set>/per_image.csv``), taken within each shared
  seed (same split, same images, same test set) and averaged over those seeds per image. It
  says whether one method is better *on these images*; it does not cover seed-to-seed
  (training) variability, which the seed test does.
* **Holm–Bonferroni** (:func:`holm`) over all comparisons of one table (every non-reference row
  × every column), separately for each of the two tests; a comparison is marked significant when
  its Holm-adjusted p < 0.05 (family-wise error ≤ 5 % per table and test).

Intervals: 95 % t-interval of the mean over seeds, mean ± t₀.₉₇₅,ₙ₋₁ · s / √n (s the sample
std, ddof 1), as :func:`t_interval`.
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping, Sequence

from scarce.utils.paths import set_folder
from scarce.utils.runfolder import PER_IMAGE_FILE, SPLIT_FILE, RunPaths

if TYPE_CHECKING:
    import pandas as pd

ALPHA = 0.05
"""Significance level of the marks (Holm-adjusted p below it)."""


def t_interval(values: Sequence[float], level: float = 0.95) -> tuple[float, float, float]:
    """(mean, low, high) of the ``level`` Student-t confidence interval of the mean of ``values``
    (NaNs dropped): mean ± t_{(1+level)/2, n-1} · s/√n with the sample std s (ddof 1). One value
    gives (value, nan, nan); none gives three NaNs."""
    import numpy as np
    from scipy import stats

    v = np.asarray([x for x in values if x is not None and not math.isnan(float(x))], dtype=np.float64)
    if v.size == 0:
        return math.nan, math.nan, math.nan
    mean = float(v.mean())
    if v.size < 2:
        return mean, math.nan, math.nan
    half = float(stats.t.ppf(0.5 + level / 2, v.size - 1) * v.std(ddof=1) / math.sqrt(v.size))
    return mean, mean - half, mean + half


def holm(pvalues: Sequence[float]) -> list[float]:
    """Holm–Bonferroni adjusted p-values, in the input order; NaN entries (no test) stay NaN and
    do not count in the family size m. Sorted ascending p₍₁₎ ≤ … ≤ p₍ₘ₎ become
    max_{j ≤ i} min(1, (m − j + 1) · p₍ⱼ₎): rejecting adjusted p < α keeps the family-wise error
    rate ≤ α under any dependence between the tests."""
    idx = [i for i, p in enumerate(pvalues) if p is not None and not math.isnan(float(p))]
    out = [math.nan] * len(pvalues)
    m = len(idx)
    running = 0.0
    for rank, i in enumerate(sorted(idx, key=lambda k: float(pvalues[k]))):
        running = max(running, min(1.0, (m - rank) * float(pvalues[i])))
        out[i] = running
    return out


def paired_seed_test(a: Mapping[Any, float], b: Mapping[Any, float],
                     paired: Sequence[Any] | None = None) -> dict[str, Any]:
    """Seed-level comparison of per-run means ``a`` vs ``b`` (``{seed: score}``).

    ``paired``: the seeds whose runs share a split (default: every seed in both). With ≥ 2 such
    seeds: paired t-test over them (``test = "paired t"``, ``diff`` = mean of a − b over the
    pairs); else, with ≥ 2 runs on each side, Welch's t-test (``"Welch t"``, difference of means);
    else no test (p NaN). Returns ``{test, n, diff, p}``; identical pairs give p = 1.
    """
    import numpy as np
    from scipy import stats

    a = {k: float(v) for k, v in a.items() if not math.isnan(float(v))}
    b = {k: float(v) for k, v in b.items() if not math.isnan(float(v))}
    keys = [k for k in (paired if paired is not None else sorted(set(a) & set(b), key=str)) if k in a and k in b]
    if len(keys) >= 2:
        d = np.array([a[k] - b[k] for k in keys])
        if np.allclose(d, d[0]) and abs(d[0]) < 1e-12:
            p = 1.0
        else:
            p = float(stats.ttest_rel([a[k] for k in keys], [b[k] for k in keys]).pvalue)
        return {"test": "paired t", "n": len(keys), "diff": float(d.mean()), "p": p}
    if len(a) >= 2 and len(b) >= 2:
        p = float(stats.ttest_ind(list(a.values()), list(b.values()), equal_var=False).pvalue)
        return {"test": "Welch t", "n": min(len(a), len(b)),
                "diff": float(np.mean(list(a.values())) - np.mean(list(b.values()))), "p": p}
    diff = float(np.mean([a[k] - b[k] for k in keys])) if keys else math.nan
    return {"test": "", "n": len(keys), "diff": diff, "p": math.nan}


def per_image_test(a: Mapping[Any, Mapping[str, float]], b: Mapping[Any, Mapping[str, float]]) -> dict[str, Any]:
    """Wilcoxon signed-rank test over test images of ``a`` vs ``b``: ``{seed: {image stem: score}}``
    of the seeds whose runs share a split. Differences a − b are taken within each seed (images
    scored by both; NaN scores dropped), then averaged over seeds per image. Returns
    ``{n, diff, p}`` (n images, mean difference); all-zero differences give p = 1, fewer than
    one image p = NaN."""
    import numpy as np
    from scipy import stats

    per_stem: dict[str, list[float]] = {}
    for seed in a:
        if seed not in b:
            continue
        for stem, x in a[seed].items():
            y = b[seed].get(stem)
            if y is None or math.isnan(float(x)) or math.isnan(float(y)):
                continue
            per_stem.setdefault(stem, []).append(float(x) - float(y))
    d = np.array([float(np.mean(v)) for _, v in sorted(per_stem.items())])
    if d.size == 0:
        return {"n": 0, "diff": math.nan, "p": math.nan}
    if np.all(np.abs(d) < 1e-12):
        return {"n": int(d.size), "diff": 0.0, "p": 1.0}
    return {"n": int(d.size), "diff": float(d.mean()), "p": float(stats.wilcoxon(d).pvalue)}


def per_image_scores(run_dir: str | Path, test_set: str, metric: str) -> dict[str, float] | None:
    """``{stem: score}`` of ``metric`` from ``<run>/eval/<test set>/per_image.csv`` (written by
    every evaluation), or None when the file or the column is missing."""
    import pandas as pd

    p = RunPaths(run_dir).eval_set_dir(set_folder(test_set)) / PER_IMAGE_FILE
    if not p.is_file():
        return None
    try:
        t = pd.read_csv(p, dtype={"stem": str})
    except (OSError, ValueError):
        return None
    if "stem" not in t.columns or metric not in t.columns:
        return None
    return {str(s): float(v) for s, v in zip(t["stem"], pd.to_numeric(t[metric], errors="coerce"))}


def _split_key(run_dir: Path) -> tuple[str, str, bool] | None:
    """What decides whether two runs may be paired: their split file without its training images
    (and the ``data.selection`` that chose them), the training images, and whether a selection
    strategy chose them. A file that is not a JSON object counts as its text; None when missing."""
    import json

    try:
        text = (run_dir / SPLIT_FILE).read_text()
    except OSError:
        return None
    try:
        data = json.loads(text)
    except ValueError:
        return text, "", False
    if not isinstance(data, dict):
        return text, "", False
    meta = data.get("meta") if isinstance(data.get("meta"), dict) else {}
    chosen = str(meta.get("selection", "random")) != "random"
    train = json.dumps(data.get("train"), sort_keys=True)
    rest = {k: v for k, v in data.items() if k != "train"}
    if meta:
        rest["meta"] = {k: v for k, v in meta.items() if k != "selection"}
    return json.dumps(rest, sort_keys=True), train, chosen


def _same_split(a: tuple[str, str, bool] | None, b: tuple[str, str, bool] | None) -> bool:
    """Two runs of one seed pair when their splits are equal, or, where a selection strategy
    (``data.selection``) chose either run's training images, equal apart from those images: a
    selection is compared with random on the same seed, validation and test images."""
    if a is None or b is None:
        return True
    return a[0] == b[0] and (a[1] == b[1] or a[2] or b[2])


def default_reference(df: "pd.DataFrame") -> str:
    """The row other rows are compared with when none is named: the plain supervised row
    (method ``supervised`` without augmentation; the first by name if several), else the first
    row by name."""
    rows = sorted(df["row"].unique().tolist())
    plain = df[(df["method"] == "supervised") & df["augment"].map(lambda a: a in (None, False, "", "none", "None")
                                                                   or (isinstance(a, float) and math.isnan(a)))]
    cands = sorted(plain["row"].unique().tolist())
    return cands[0] if cands else rows[0]


COMPARISON_COLUMNS = ["dataset", "row", "budget", "test_set", "n_seeds", "mean", "std", "ci_low", "ci_high",
                      "reference", "seed_test", "n_pairs", "diff", "p_seeds", "p_seeds_holm",
                      "n_images", "diff_images", "p_images", "p_images_holm"]


def comparison_table(df: "pd.DataFrame", metric: str, reference: str, runs_root: str | Path,
                     dataset: str | None = None) -> "pd.DataFrame":
    """Seed statistics and tests of every (row, budget, test set) of one table against
    ``reference`` (a row label) at the same budget and test set; :data:`COMPARISON_COLUMNS`.

    ``df`` is :func:`~scarce.reports.tables.collect_runs` output (``run`` relative to
    ``runs_root``), one run per (dataset, row, budget, seed) (the report refuses duplicates).
    ``mean``/``std``/``ci_*``: over seeds of each run's mean ``metric``. The reference row's own
    entries carry no test. Holm runs over all comparisons of the table, per test.
    """
    import pandas as pd

    from scarce.reports.tables import ordered_test_sets

    root = Path(runs_root)
    if dataset is not None:
        df = df[df["dataset"] == dataset]
    col = f"{metric}_mean"
    recs: list[dict[str, Any]] = []
    splits: dict[str, tuple[str, str, bool] | None] = {}

    def split(run: str) -> tuple[str, str, bool] | None:
        if run not in splits:
            splits[run] = _split_key(root / run)
        return splits[run]

    images: dict[tuple[str, str], dict[str, float] | None] = {}

    def scores(run: str, test_set: str) -> dict[str, float] | None:
        if (run, test_set) not in images:
            images[(run, test_set)] = per_image_scores(root / run, test_set, metric)
        return images[(run, test_set)]

    order = ordered_test_sets(df)
    for (ds, budget), g_b in df.groupby(["dataset", "budget"], sort=True, dropna=False):
        for t in [s for s in order if s in set(g_b["test_set"])]:
            g = g_b[g_b["test_set"] == t]
            by_row = {r: gr.drop_duplicates(subset=["seed"], keep="last") for r, gr in g.groupby("row", sort=True)}
            ref = by_row.get(reference)
            for row, gr in by_row.items():
                vals = {s: float(v) for s, v in zip(gr["seed"], gr[col] if col in gr else [math.nan] * len(gr))}
                mean, lo, hi = t_interval(list(vals.values()))
                finite = [v for v in vals.values() if not math.isnan(v)]
                rec: dict[str, Any] = {
                    "dataset": ds, "row": row, "budget": budget, "test_set": t, "n_seeds": len(finite),
                    "mean": mean, "std": float(pd.Series(finite).std(ddof=1)) if len(finite) > 1 else math.nan,
                    "ci_low": lo, "ci_high": hi, "reference": reference, "seed_test": "", "n_pairs": 0,
                    "diff": math.nan, "p_seeds": math.nan, "n_images": 0, "diff_images": math.nan,
                    "p_images": math.nan}
                if ref is not None and row != reference:
                    ref_runs = dict(zip(ref["seed"], ref["run"]))
                    runs = dict(zip(gr["seed"], gr["run"]))
                    ref_vals = {s: float(v) for s, v in zip(ref["seed"], ref[col] if col in ref else [])}
                    shared = [s for s in sorted(set(runs) & set(ref_runs), key=str)
                              if _same_split(split(runs[s]), split(ref_runs[s]))]
                    st = paired_seed_test(vals, ref_vals, paired=shared)
                    rec.update(seed_test=st["test"], n_pairs=st["n"], diff=st["diff"], p_seeds=st["p"])
                    a = {s: scores(runs[s], t) for s in shared}
                    b = {s: scores(ref_runs[s], t) for s in shared}
                    a = {s: v for s, v in a.items() if v is not None and b.get(s) is not None}
                    it = per_image_test(a, {s: b[s] for s in a})
                    rec.update(n_images=it["n"], diff_images=it["diff"], p_images=it["p"])
                recs.append(rec)
    out = pd.DataFrame.from_records(recs, columns=[c for c in COMPARISON_COLUMNS if not c.endswith("_holm")])
    out["p_seeds_holm"] = holm(out["p_seeds"].tolist()) if len(out) else []
    out["p_images_holm"] = holm(out["p_images"].tolist()) if len(out) else []
    return out[COMPARISON_COLUMNS]


__all__ = ["ALPHA", "t_interval", "holm", "paired_seed_test", "per_image_test", "per_image_scores",
           "default_reference", "comparison_table", "COMPARISON_COLUMNS"]
