"""Static HTML report (``scarce report RUNS... -o OUT --html``): one folder a browser opens offline.

Why a static folder: results get looked at on laptops, in e-mails and in CI artefacts, from
``file://``, with no server and no network. ``OUT/index.html`` carries its CSS and JavaScript
inline; every picture is a file beside it (the Markdown report's PNGs, the per-image tiles under
``OUT/per_image/``), referenced by relative paths. Figures are matplotlib PNGs (the Markdown
report's own, :mod:`scarce.reports.plots` / :mod:`scarce.reports.extras`): plotly's interactive
views would need its multi-megabyte JavaScript bundle inlined in every report (a CDN is not reachable
offline), and a table of means with intervals plus the image browser already answer what
zooming into a curve would.

The page (``index.html``):

* **Tables with intervals and tests** — per dataset, the primary metric per (row, test set @
  budget): mean ± std over seeds, the 95 % t-interval, and for every row but the reference the
  difference and two tests (seed-paired t-test; per-image Wilcoxon signed-rank), Holm-corrected
  over the table (:mod:`scarce.reports.stats`); also written as ``<dataset>_<metric>_stats.csv``.
  A cell whose runs trained in different set-ups is marked ``†`` as in the Markdown tables, with the
  same footnote under the table (:class:`~scarce.reports.environments.EnvironmentMarks`).
* **Figures and full report** — ``results.md`` (tables, sample-efficiency curves or bars, trimap
  plots, α histories and E2EAug galleries; :func:`scarce.reports.report.write_report`) rendered
  as HTML.
* **Per-image browser** (last: it is long) — per dataset and test set, the images sorted
  worst-first by a chosen method's score (one seed: the smallest seed every method has), each
  shown as image, ground truth and every method's prediction (contours: ground truth green, prediction red, drawn by
  :func:`scarce.evaluation.evaluate.overlay_image`); methods can be hidden, test sets switched.
  Predictions come from each run's ``eval/<set>/predictions/``; runs evaluated with
  ``eval.save_predictions=false`` are re-predicted from their best checkpoint when a ``predict``
  callback is given (:func:`scarce.reports.make.repredict`: the caller's
  :func:`scarce.api.evaluate_run` into a temporary folder; the reports layer cannot import the api
  itself), else their tiles say so.
"""
from __future__ import annotations

import difflib
import html
import io
import json
import math
import re
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Sequence

from scarce.reports.environments import MARK, NOTE, EnvironmentMarks
from scarce.reports.report import _roots, primary_metric, write_report
from scarce.reports.stats import ALPHA, comparison_table, default_reference, per_image_scores
from scarce.reports.tables import cell_runs, collect_roots, column_label, keep_newest, ordered_test_sets
from scarce.utils.io import atomic_write_bytes, atomic_write_text
from scarce.utils.paths import set_folder
from scarce.utils.runfolder import CONFIG_FILE, PREDICTIONS_DIR, RunPaths

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd

BROWSER_IMAGES = 48
"""Default cap of images per test set in the per-image browser (each method's worst, in turn)."""
TILE_SIDE = 256
"""Longest side of a browser tile (JPEG) in pixels."""
PER_IMAGE_DIR = "per_image"

Predict = Callable[[Path, Path], Any]
"""``predict(run_dir, out_dir)`` writes ``out_dir/<test set>/predictions/*.png`` (and
``per_image.csv``) from the run's best checkpoint, e.g. ``scarce.api.evaluate_run(run, out=...)``."""


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", str(text)).strip("_") or "x"


def _esc(x: Any) -> str:
    return html.escape(str(x), quote=True)


def _num(v: Any, fmt: str = ".3f") -> str:
    try:
        f = float(v)
    except (TypeError, ValueError):
        return "—"
    return "—" if math.isnan(f) else format(f, fmt)


def _p(v: Any) -> str:
    try:
        f = float(v)
    except (TypeError, ValueError):
        return "—"
    if math.isnan(f):
        return "—"
    return "< 0.001" if f < 0.001 else f"{f:.3f}"


# --------------------------------------------------------------------------- tables

def stats_table_html(comp: "pd.DataFrame", reference: str, metric: str,
                     env_marks: EnvironmentMarks | None = None, df: "pd.DataFrame | None" = None) -> str:
    """HTML table of :func:`~scarce.reports.stats.comparison_table` output: rows = row labels
    (reference first), columns = ``<test set> @ <budget>``; a cell holds mean ± std, the 95 %
    interval and, for non-reference rows, Δ vs the reference with both Holm-adjusted p-values
    (raw p in the tooltip); significant comparisons are marked ▲ (better) / ▼ (worse).
    ``env_marks`` with ``df`` (the table's ``collect_runs`` rows): cells whose runs trained in
    different set-ups get its mark, and the table its footnote (:func:`env_footnote_html`)."""
    budgets = sorted(comp["budget"].dropna().unique().tolist())
    order = list(dict.fromkeys(comp["test_set"].tolist()))
    cols = [(b, t) for b in budgets for t in order if len(comp[(comp["budget"] == b) & (comp["test_set"] == t)])]
    rows = [reference] + sorted(r for r in comp["row"].unique().tolist() if r != reference)
    head = "".join(f"<th>{_esc(column_label(t, b))}</th>" for b, t in cols)
    out = [f'<table class="stats" data-metric="{_esc(metric)}"><thead><tr><th>row</th>{head}</tr></thead><tbody>']
    for row in rows:
        tds = []
        for b, t in cols:
            s = comp[(comp["row"] == row) & (comp["budget"] == b) & (comp["test_set"] == t)]
            if s.empty:
                tds.append("<td></td>")
                continue
            r = s.iloc[0]
            std = "" if math.isnan(float(r["std"])) else f" ± {_num(r['std'])}"
            if env_marks is not None and df is not None and env_marks(cell_runs(df, row, b, [t])):
                std += (f'<sup class="env-mark" title="runs trained in different set-ups: see the note under the '
                        f'table">{MARK}</sup>')
            ci = (f"[{_num(r['ci_low'])}, {_num(r['ci_high'])}]" if not math.isnan(float(r["ci_low"]))
                  else "one seed: no interval")
            body = [f'<div class="mean">{_num(r["mean"])}{std}</div>',
                    f'<div class="ci" title="95 % t-interval over {int(r["n_seeds"])} seeds">{ci}</div>']
            cls = ""
            if row == reference:
                body.append('<div class="ref">reference</div>')
                cls = "ref"
            elif r["seed_test"] or int(r["n_images"]):
                marks = []
                for key, name, n, raw in (("p_seeds_holm", "seeds", r["n_pairs"], r["p_seeds"]),
                                          ("p_images_holm", "images", r["n_images"], r["p_images"])):
                    adj = float(r[key])
                    sig = not math.isnan(adj) and adj < ALPHA
                    diff = float(r["diff"] if name == "seeds" else r["diff_images"])
                    arrow = ("▲" if diff > 0 else "▼") if sig else ""
                    test = r["seed_test"] if name == "seeds" else "Wilcoxon"
                    tip = f"{test or 'no test'} over {int(n)} {name if name == 'images' else 'seed pairs'}; raw p = {_p(raw)}"
                    marks.append(f'<span class="p{" sig" if sig else ""}" data-test="{name}" title="{_esc(tip)}">'
                                 f"{name} p<sub>Holm</sub> {_p(adj)}{arrow}</span>")
                    if sig:
                        cls = "sig-up" if diff > 0 else "sig-down"
                body.append(f'<div class="diff">Δ {_num(r["diff"], "+.3f")}</div>')
                body.append(f'<div class="tests">{" · ".join(marks)}</div>')
            tds.append(f'<td class="cmp {cls}">{"".join(body)}</td>')
        out.append(f"<tr><th>{_esc(row)}</th>{''.join(tds)}</tr>")
    out.append("</tbody></table>")
    if env_marks is not None:
        out.append(env_footnote_html(env_marks))
    return "\n".join(out)


def env_footnote_html(marks: EnvironmentMarks) -> str:
    """The footnote of :meth:`EnvironmentMarks.footnote` as HTML (empty when no cell is marked)."""
    notes = marks.notes()
    if not notes:
        return ""
    items = []
    for label, fields, missing in notes:
        parts = ["; ".join(f"{_esc(name)}: " + ", ".join(f"{_esc(v)} ({_esc(marks.seeds_text(w))})"
                                                         for v, w in values)
                           for name, values in fields)]
        if missing:
            parts.append(f"not recorded: {_esc(marks.seeds_text(missing))}")
        items.append(f"<li><code>{_esc(label)}</code> — {'; '.join(parts)}</li>")
    return f'<div class="env-note warn"><p>{MARK} {_esc(NOTE)}</p><ul>{"".join(items)}</ul></div>'


def _methods_note(comps: Sequence["pd.DataFrame"]) -> str:
    n = max([int(c["n_pairs"].max()) for c in comps if len(c)] + [0])
    seeds = max([int(c["n_seeds"].max()) for c in comps if len(c)] + [0])
    low = (f'<p class="warn">Only {max(n, seeds)} seed(s) per row: the seed test has {max(n - 1, 0)} degree(s) of '
           "freedom, so its power is low — only large, consistent differences reach significance, and a "
           "non-significant difference is no evidence that the methods are equal. The per-image test has "
           "more power but covers only the variability between test images, not between trainings.</p>"
           if 0 < max(n, seeds) <= 3 else "")
    return (
        '<div class="methods"><p>Cells: mean ± std over seeds (sample std) of each run\'s mean per-image score; '
        "below it the 95 % t-interval of that mean (mean ± t<sub>0.975, n−1</sub>·s/√n). Every other row is "
        "compared with the reference row at the same budget and test set; Δ = row − reference (mean over "
        "paired seeds).</p><p><b>seeds</b>: runs of one dataset, budget and seed share their split (checked "
        "on <code>split.json</code>), so per-run means are paired by seed: paired t-test over the shared seeds "
        "(Welch's t-test when no split is shared; Wilcoxon over 3 seeds could never go below p = 0.25). "
        "<b>images</b>: Wilcoxon signed-rank test of the per-image score differences "
        "(<code>eval/&lt;test set&gt;/per_image.csv</code>), taken within each shared seed and averaged over "
        "seeds per image.</p><p>Multiple comparisons: Holm–Bonferroni over all comparisons of one table, "
        f"separately per test; shown p-values are Holm-adjusted (raw p in the tooltip). ▲/▼: adjusted p &lt; "
        f"{ALPHA:g}, row better/worse than the reference.</p>{low}</div>")


# --------------------------------------------------------------------------- per-image browser

def pick_images(scores: dict[str, dict[str, float]], stems: Sequence[str], cap: int) -> list[str]:
    """At most ``cap`` of ``stems`` for the browser: all when they fit, else each method's worst
    image in turn (``scores`` = ``{method: {stem: score}}``, NaN/missing counted as best), so
    every method's worst cases are shown whichever method the page is sorted by."""
    stems = list(stems)
    if len(stems) <= cap:
        return stems

    def key(m: str) -> Callable[[str], tuple[float, str]]:
        def k(s: str) -> tuple[float, str]:
            v = scores.get(m, {}).get(s, math.nan)
            return (math.inf if v is None or math.isnan(v) else float(v), s)
        return k

    queues = [sorted(stems, key=key(m)) for m in sorted(scores)] or [sorted(stems)]
    chosen: list[str] = []
    seen: set[str] = set()
    pos = [0] * len(queues)
    while len(chosen) < cap:
        for q, queue in enumerate(queues):
            while pos[q] < len(queue) and queue[pos[q]] in seen:
                pos[q] += 1
            if pos[q] < len(queue) and len(chosen) < cap:
                seen.add(queue[pos[q]])
                chosen.append(queue[pos[q]])
    return chosen


def _jpeg(arr: "np.ndarray") -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="JPEG", quality=88)
    return buf.getvalue()


def _read_labels(path: Path, num_classes: int) -> "np.ndarray":
    import numpy as np
    from PIL import Image

    arr = np.asarray(Image.open(path))
    if arr.ndim == 3:
        arr = arr[..., 0]
    return (arr > 0).astype(np.uint8) if num_classes == 2 else arr.astype(np.uint8)


def _load_tests(run_dir: Path, seed: int) -> dict[str, Any]:
    """The test sets of a run (images resized, masks at original resolution), from its config."""
    import yaml

    from scarce.config import DataConfig, from_dict
    from scarce.data.load import load_test_sets

    cfg = yaml.safe_load((run_dir / CONFIG_FILE).read_text()) or {}
    return load_test_sets(from_dict(DataConfig, cfg.get("data") or {}, "data"), seed=seed)


def browser_sets(df: "pd.DataFrame", dataset: str, metric: str, base: Path, out: Path, cap: int = BROWSER_IMAGES,
                 tile_side: int = TILE_SIDE, predict: Predict | None = None, scratch: Path | None = None,
                 log: Callable[[str], Any] | None = None, reference: str | None = None) -> list[dict[str, Any]]:
    """Browser entries of one dataset, one per test set (see the module docstring); writes the
    tiles under ``out/per_image/``. Methods are (row, budget) pairs, ``reference`` first (the
    page sorts by it until another is chosen). An entry without pictures carries a ``note``."""
    import numpy as np

    from scarce.evaluation.evaluate import overlay_image, prediction_filename

    sub = df[df["dataset"] == dataset]
    combos = sorted({(r, b) for r, b in zip(sub["row"], sub["budget"])},
                    key=lambda x: (x[0] != reference, str(x[0]), -1 if x[1] is None or x[1] != x[1] else x[1]))
    multi = sub["budget"].nunique(dropna=True) > 1
    labels = [r if not multi else f"{r} @ {b}" for r, b in combos]
    seeds = [set(sub[(sub["row"] == r) & (sub["budget"] == b)]["seed"].dropna().astype(int)) for r, b in combos]
    common = set.intersection(*seeds) if seeds else set()
    seed_of = [min(common) if common else (min(s) if s else None) for s in seeds]
    runs: list[str | None] = []
    for (r, b), s in zip(combos, seed_of):
        g = sub[(sub["row"] == r) & (sub["budget"] == b) & (sub["seed"] == s)]
        runs.append(str(g["run"].iloc[0]) if len(g) else None)
    seed_note = (f"seed {min(common)}" if common else
                 "seeds differ between methods: each method's smallest seed")
    entries: list[dict[str, Any]] = []
    first = next((r for r in runs if r is not None), None)
    try:
        tests = _load_tests(base / first, seed_of[runs.index(first)]) if first is not None else {}
        data_error = ""
    except Exception as e:  # data folder moved, unreadable config: say so on the page
        tests, data_error = {}, f"test images not available ({type(e).__name__}: {e})"
    rendered: dict[str, Path | None] = {}

    def pred_dir(run: str, t: str) -> Path | None:
        own = RunPaths(base / run).eval_set_dir(set_folder(t)) / PREDICTIONS_DIR
        if own.is_dir() and any(own.iterdir()):
            return own
        if predict is None or scratch is None:
            return None
        if run not in rendered:
            dest = scratch / _slug(run)
            if log:
                log(f"predicting {(base / run).as_posix()} (no saved predictions) for the per-image browser")
            try:
                predict(base / run, dest)
                rendered[run] = dest
            except Exception as e:  # a run that cannot be re-predicted keeps empty tiles
                if log:
                    log(f"  could not predict {(base / run).as_posix()}: {e}")
                rendered[run] = None
        d = rendered[run]
        pred = None if d is None else d / set_folder(t) / PREDICTIONS_DIR
        return pred if pred is not None and pred.is_dir() else None

    for t in ordered_test_sets(sub):
        entry: dict[str, Any] = {"id": f"{_slug(dataset)}__{_slug(t)}", "dataset": dataset, "test_set": t,
                                 "label": f"{dataset} → {t}", "seed": seed_note, "metric": metric,
                                 "methods": labels, "images": [], "n_total": 0, "note": ""}
        entries.append(entry)
        data = tests.get(t)
        if data is None:
            entry["note"] = data_error or f"test set {t!r} could not be loaded from the runs' data config"
            continue
        scores: dict[str, dict[str, float]] = {}
        for lab, run in zip(labels, runs):
            got = per_image_scores(base / run, t, metric) if run is not None else None
            scores[lab] = got or {}
        dirs = [pred_dir(run, t) if run is not None else None for run in runs]
        stems = list(data.stems)
        entry["n_total"] = len(stems)
        index = {s: i for i, s in enumerate(stems)}
        folder = out / PER_IMAGE_DIR / _slug(dataset) / _slug(t)
        for stem in pick_images(scores, stems, cap):
            i = index[stem]
            gt = data.orig_masks[i] if data.orig_masks is not None else data.masks[i].numpy().astype(np.uint8)
            ch, cw = data.content(i)  # data.aspect=pad: the image without its padding
            both = overlay_image(data.images[i][:, :ch, :cw], gt, np.zeros_like(gt), max_side=tile_side)
            w = both.shape[1] // 2
            name = _slug(stem)
            rel = (folder / name).relative_to(out).as_posix()
            atomic_write_bytes(folder / f"{name}_image.jpg", _jpeg(np.ascontiguousarray(both[:, :w])))
            atomic_write_bytes(folder / f"{name}_gt.jpg", _jpeg(np.ascontiguousarray(both[:, w:])))
            preds: list[str | None] = []
            for k, d in enumerate(dirs):
                p = d / prediction_filename(stem) if d is not None else None
                if p is None or not p.is_file():
                    preds.append(None)
                    continue
                pic = overlay_image(data.images[i][:, :ch, :cw], gt, _read_labels(p, data.num_classes),
                                    max_side=tile_side)
                atomic_write_bytes(folder / f"{name}_m{k}.jpg", _jpeg(np.ascontiguousarray(pic[:, w:])))
                preds.append(f"{rel}_m{k}.jpg")
            sc = [scores[lab].get(stem) for lab in labels]
            entry["images"].append({"stem": stem, "image": f"{rel}_image.jpg", "gt": f"{rel}_gt.jpg", "pred": preds,
                                    "score": [None if v is None or math.isnan(v) else round(float(v), 4)
                                              for v in sc]})
        missing = [lab for lab, d in zip(labels, dirs) if d is None]
        if missing:
            entry["note"] = ("no saved predictions (eval.save_predictions=false) and none rendered for: "
                             + ", ".join(missing))
    return entries


# --------------------------------------------------------------------------- page

CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:0;color:#222;background:#fafafa}
header{background:#23395d;color:#fff;padding:12px 24px}header h1{margin:0 0 4px;font-size:22px}
header nav a{color:#cfe0ff;margin-right:16px}main{padding:8px 24px 40px;max-width:1500px}
h2{border-bottom:2px solid #23395d;padding-bottom:4px;margin-top:32px}
table{border-collapse:collapse;margin:8px 0 16px;background:#fff}
th,td{border:1px solid #ccc;padding:4px 8px;vertical-align:top;font-size:13px}thead th{background:#eef2f8}
table.stats td{min-width:150px}.ci{color:#555;font-size:12px}.ref{color:#23395d;font-style:italic;font-size:12px}
.diff{font-size:12px}.tests{font-size:11px;color:#555}.p.sig{font-weight:bold;color:#000}
td.sig-up{background:#e6f4e6}td.sig-down{background:#fbe9e9}
.methods{background:#fff;border-left:4px solid #23395d;padding:4px 12px;font-size:13px;max-width:1100px}
.warn{color:#8a4b00}img{max-width:100%}.env-mark{color:#8a4b00}.env-note{font-size:13px}
#pi-controls{position:sticky;top:0;background:#fafafa;padding:8px 0;z-index:2;border-bottom:1px solid #ddd}
#pi-controls label{margin-right:12px;font-size:13px}#pi-methods{display:inline}
.pi-card{background:#fff;border:1px solid #ddd;margin:8px 0;padding:6px}
.pi-head{font-size:13px;margin-bottom:4px}.pi-tiles{display:flex;flex-wrap:wrap;gap:6px}
.pi-tiles figure{margin:0;text-align:center}.pi-tiles figure img{height:160px;width:auto;display:block}
figcaption{font-size:11px;max-width:200px;overflow-wrap:anywhere}.none{height:160px;width:120px;background:#eee;
display:flex;align-items:center;justify-content:center;font-size:11px;color:#777}.note{color:#8a4b00;font-size:13px}
#report table td,#report table th{font-size:12px}
"""

JS = r"""
(function(){
  var DATA = JSON.parse(document.getElementById('pi-data').textContent);
  var setSel = document.getElementById('pi-set'), sortSel = document.getElementById('pi-sort');
  var box = document.getElementById('pi-methods'), grid = document.getElementById('pi-grid');
  var info = document.getElementById('pi-info');
  if (!DATA.sets.length) { info.textContent = 'No test set to browse.'; return; }
  DATA.sets.forEach(function(s, i){ var o = document.createElement('option'); o.value = i;
    o.textContent = s.label; setSel.appendChild(o); });
  function cur(){ return DATA.sets[+setSel.value]; }
  function controls(){
    var s = cur(); sortSel.innerHTML = ''; box.innerHTML = '';
    s.methods.forEach(function(m, k){
      var o = document.createElement('option'); o.value = k; o.textContent = m; sortSel.appendChild(o);
      var l = document.createElement('label'), c = document.createElement('input');
      c.type = 'checkbox'; c.checked = true; c.value = m; c.className = 'pi-method';
      c.addEventListener('change', filter); l.appendChild(c); l.appendChild(document.createTextNode(' ' + m));
      box.appendChild(l); });
  }
  function fig(src, cap, method){
    var f = document.createElement('figure');
    if (method !== undefined) f.setAttribute('data-method', method);
    if (src) { var im = document.createElement('img'); im.src = src; im.alt = cap; f.appendChild(im); }
    else { var d = document.createElement('div'); d.className = 'none'; d.textContent = 'no prediction'; f.appendChild(d); }
    var c = document.createElement('figcaption'); c.textContent = cap; f.appendChild(c); return f;
  }
  function fmt(v){ return v === null || v === undefined ? 'n/a' : v.toFixed(3); }
  function render(){
    var s = cur(), k = +sortSel.value;
    var imgs = s.images.slice().sort(function(a, b){
      var x = a.score[k], y = b.score[k];
      x = (x === null || x === undefined) ? Infinity : x; y = (y === null || y === undefined) ? Infinity : y;
      return x - y || (a.stem < b.stem ? -1 : a.stem > b.stem ? 1 : 0); });
    grid.innerHTML = '';
    imgs.forEach(function(im, r){
      var card = document.createElement('div'); card.className = 'pi-card'; card.setAttribute('data-stem', im.stem);
      var h = document.createElement('div'); h.className = 'pi-head';
      h.textContent = '#' + (r + 1) + '  ' + im.stem + ' — ' + s.metric + ' of ' + s.methods[k] + ': ' + fmt(im.score[k]);
      card.appendChild(h);
      var t = document.createElement('div'); t.className = 'pi-tiles';
      t.appendChild(fig(im.image, 'image')); t.appendChild(fig(im.gt, 'ground truth'));
      s.methods.forEach(function(m, j){ t.appendChild(fig(im.pred[j], m + ': ' + fmt(im.score[j]), m)); });
      card.appendChild(t); grid.appendChild(card); });
    info.textContent = s.images.length + ' of ' + s.n_total + ' test images (' + s.seed + '), worst first by ' +
      s.metric + ' of ' + s.methods[k] + '. Contours: ground truth green, prediction red.' + (s.note ? ' ' + s.note : '');
    filter();
  }
  function filter(){
    var on = {}; Array.prototype.forEach.call(box.querySelectorAll('input.pi-method'), function(c){ on[c.value] = c.checked; });
    Array.prototype.forEach.call(grid.querySelectorAll('figure[data-method]'), function(f){
      f.style.display = on[f.getAttribute('data-method')] ? '' : 'none'; });
  }
  setSel.addEventListener('change', function(){ controls(); render(); });
  sortSel.addEventListener('change', render);
  controls(); render();
})();
"""


def _markdown_html(md_text: str) -> str:
    """``results.md`` as HTML (python-markdown, tables extension), its title dropped and headings
    one level down (they sit under the page's own sections)."""
    import markdown

    text = re.sub(r"\A# Results\s*\n", "", md_text)
    body = markdown.markdown(text, extensions=["tables"], output_format="html")
    return re.sub(r"<(/?)h([1-5])>", lambda m: f"<{m.group(1)}h{int(m.group(2)) + 1}>", body)


def write_html_report(runs_root: str | Path | Sequence[str | Path], out_dir: str | Path, metric: str | None = None,
                      reference: str | None = None, newest: bool = False, curves: bool = False,
                      browser_images: int = BROWSER_IMAGES, tile_side: int = TILE_SIDE,
                      predict: Predict | None = None, log: Callable[[str], Any] | None = None) -> Path:
    """Markdown report (:func:`~scarce.reports.report.write_report`) plus ``index.html``, the
    ``<dataset>_<metric>_stats.csv`` tables and the browser tiles, all in ``out_dir``; returns the
    path of ``index.html``.

    ``reference``: the row every other row is compared with (default
    :func:`~scarce.reports.stats.default_reference`, per dataset); a name that is not a row of
    every dataset raises ``ConfigError`` before anything is written. ``browser_images`` caps the
    images per test set in the browser (:func:`pick_images`); ``predict`` re-predicts runs that
    saved no predictions (see :data:`Predict`).
    """
    from scarce.config import ConfigError

    out = Path(out_dir)
    roots = _roots(runs_root)
    if browser_images < 0:
        raise ConfigError(f"--browser-images must be ≥ 0, got {browser_images}")
    df, base = collect_roots(roots) if all(Path(r).is_dir() for r in roots) else (None, Path("."))
    if df is not None and not df.empty and reference is not None:
        for ds in sorted(df["dataset"].unique()):
            rows = sorted(df[df["dataset"] == ds]["row"].unique().tolist())
            if reference not in rows:
                close = difflib.get_close_matches(reference, rows, n=3, cutoff=0.5)
                hint = f" (did you mean {', '.join(repr(c) for c in close)}?)" if close else ""
                raise ConfigError(f"--reference {reference!r} is not a row of dataset {ds!r}{hint}; choose one of: "
                                  f"{', '.join(rows)}; nothing written")
    md_path = write_report(roots, out, metric=metric, curves=curves, newest=newest, require_runs=True)
    df, base = collect_roots(roots)
    if newest:
        df, _ = keep_newest(df, base)
    comps, sections, sets = [], [], []
    with tempfile.TemporaryDirectory(prefix="scarce_report_") as scratch:
        for ds in sorted(df["dataset"].unique().tolist()):
            sub = df[df["dataset"] == ds]
            m = metric or primary_metric(ds, sub)
            ref = reference or default_reference(sub)
            comp = comparison_table(sub, m, ref, base)
            comps.append(comp)
            atomic_write_text(out / f"{_slug(ds)}_{m}_stats.csv", comp.to_csv(index=False, float_format="%.6g"))
            sections.append(f'<h3 id="stats-{_esc(_slug(ds))}">{_esc(ds)} — {_esc(m)} (reference: {_esc(ref)})</h3>'
                            f'<div class="table-wrap" data-dataset="{_esc(ds)}">'
                            f'{stats_table_html(comp, ref, m, EnvironmentMarks(base), sub)}</div>'
                            f'<p><a href="{_esc(_slug(ds))}_{_esc(m)}_stats.csv">all numbers (CSV)</a></p>')
            if browser_images:
                sets += browser_sets(df, ds, m, base, out, browser_images, tile_side, predict, Path(scratch), log, ref)
    n_runs = df["run"].nunique()
    data_json = json.dumps({"sets": sets}, ensure_ascii=False, sort_keys=True).replace("</", "<\\/")
    sources = ", ".join(Path(r).as_posix() for r in roots)
    page = f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>scarce results</title><link rel="icon" href="data:,"><style>{CSS}</style></head>
<body><header><h1>Results</h1><div>{n_runs} runs from {_esc(sources)}</div>
<nav><a href="#stats">Tables and tests</a><a href="#report">Figures and full report</a><a href="#browser">Per-image browser</a>
<a href="results.md">results.md</a><a href="results.csv">results.csv</a></nav></header>
<main>
<section id="stats"><h2>Tables: 95 % intervals and tests against a reference</h2>
{_methods_note(comps)}
{''.join(sections)}
</section>
<section id="report"><h2>Figures and full report</h2>
{_markdown_html(md_path.read_text(encoding="utf-8"))}
</section>
<section id="browser"><h2>Per-image browser</h2>
<div id="pi-controls"><label>Test set <select id="pi-set"></select></label>
<label>Worst first by <select id="pi-sort"></select></label> <span>Show:</span> <div id="pi-methods"></div></div>
<p id="pi-info" class="note"></p><div id="pi-grid"></div>
<script type="application/json" id="pi-data">{data_json}</script>
</section>
</main>
<script>{JS}</script>
</body></html>
"""
    atomic_write_text(out / "index.html", page)
    return out / "index.html"


__all__ = ["write_html_report", "stats_table_html", "browser_sets", "pick_images", "BROWSER_IMAGES", "TILE_SIDE"]
