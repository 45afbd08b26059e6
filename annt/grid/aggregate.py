"""A grid's tables and plots, from its cells' ``results.json`` alone (cheap to redo at any time).

Written into the grid folder:

* ``cells.csv``: every cell (label, task, state, hash, axis values, cell folder, run folder, the
  cell's own seconds, error);
* ``long.csv``: one row per cell × run (attack, infer, diagnose and train cells) with the axis
  values, the model's arch and bits, and the run's numbers; ``transfer_long.csv``: one row per
  transfer cell × source × target × run;
* ``tables.md``: per metric a pivot table, rows = the values of the axes other than ``model`` and
  ``seed`` (e.g. the attack), columns = the models, labelled and ordered by bit width (FP first)
  when that tells them apart (:func:`annt.evaluation.transfer.axis_labels`); each entry is the mean ±
  std over every run of the cells it pools (runs within a cell, and the cells of every seed), just
  the mean for one run. With ``grid.paper`` a table of ours | paper | difference follows (see
  :func:`read_paper` for the file's layout); then each transfer cell's matrices; then the wall times;
* ``heatmap_<metric>.png`` (the pivot), ``accuracy_vs_bits.png`` (columns labelled by bits),
  ``accuracy_vs_eps.png`` (an ``eps`` axis) and each transfer cell's heat-maps as
  ``<transfer label>-heatmap_<metric>.png``.
"""
from __future__ import annotations

import csv
import json
import re
import shutil
from pathlib import Path

from annt import bits as bitwidths
from annt.grid.cells import Cell, HASH_CHARS
from annt.io import atomic_write_text
from annt.tables import fmt, markdown, mean_std, pm, to_csv

#: Per task, the metrics of its pivot tables: (long-table column, what it is).
METRICS = {
    "attack": (("adversarial_accuracy", "adversarial accuracy"), ("l2_successful_mean", "mean L2 of successful samples"),
               ("linf_successful_mean", "mean L∞ of successful samples")),
    "infer": (("adversarial_accuracy", "adversarial accuracy"), ("clean_accuracy", "clean accuracy")),
    "train": (("test_accuracy", "test accuracy"), ("val_accuracy", "validation accuracy")),
    "diagnose": (("worst_case_accuracy", "worst-case accuracy"),),
}
#: Metric columns a paper file (``grid.paper``) may hold, each optionally with ``<metric>_pm`` (the paper's ±).
PAPER_METRICS = ("adversarial_accuracy", "clean_accuracy", "test_accuracy", "success_rate", "l2_successful_mean",
                 "linf_successful_mean", "l2_all_mean", "worst_case_accuracy")
PM_SUFFIX = "_pm"
DIGITS = 3


def _rel(path, root: Path) -> str:
    if not path:
        return ""
    try:
        return str(Path(path).relative_to(root))
    except ValueError:
        return str(path)


def _results(run_dir) -> dict | None:
    try:
        return json.loads((Path(run_dir) / "results.json").read_text(encoding="utf-8"))
    except (OSError, ValueError, TypeError):
        return None


def _bits_label(bits) -> str:
    try:
        return bitwidths.label(bits)
    except (ValueError, TypeError):
        return ""


# --------------------------------------------------------------------------- long table
def _run_numbers(r: dict) -> dict:
    out = {k: r.get(k) for k in ("n", "clean_accuracy", "adversarial_accuracy", "success_rate")}
    for d in ("l0", "l0_fraction", "l2", "linf"):
        stats = r.get(d) or {}
        out[f"{d}_successful_mean"] = (stats.get("successful") or {}).get("mean")
    out["l2_successful_median"] = ((r.get("l2") or {}).get("successful") or {}).get("median")
    out["l2_all_mean"] = ((r.get("l2") or {}).get("all") or {}).get("mean")
    if "fooling_rate" in r:
        out["fooling_rate"] = r["fooling_rate"]
    return out


def _head(cell: Cell) -> dict:
    """What identifies a cell in the long table: its label, task, axis values, model folder name, arch, bits, attack."""
    m = cell.meta
    return {"cell": cell.label, "task": cell.task, **{k: _shown(v) for k, v in cell.axes.items()},
            "model": Path(m["model"]).name if m.get("model") else "", "arch": m.get("arch") or "",
            "bits": _bits_label(m.get("bits")) if m.get("bits") else "", "attack": m.get("attack") or ""}


def long_rows(cell: Cell, res: dict, grid_dir: Path) -> list[dict]:
    """One row per run of a done cell (transfer cells: see :func:`transfer_rows`)."""
    head = _head(cell)
    tail = {"cell_seconds": res.get("elapsed_s"), "run_dir": _rel(res.get("run_dir"), grid_dir)}
    if cell.task in ("attack",) or (cell.task == "infer" and res.get("mode") == "adversarial"):
        return [{**head, "run": r.get("run", i), **_run_numbers(r), **tail} for i, r in enumerate(res.get("runs", []))]
    if cell.task == "infer":
        return [{**head, "run": 0, "n": res.get("n"), "clean_accuracy": res.get("clean_accuracy"), **tail}]
    if cell.task == "train":
        return [{**head, "run": 0, "val_accuracy": res.get("val_accuracy"), "test_accuracy": res.get("test_accuracy"),
                 "best_epoch": res.get("best_epoch"), "epochs": res.get("epochs"), **tail}]
    if cell.task == "diagnose":
        rows = []
        for name, d in (res.get("models") or {}).items():
            acc = {f"accuracy_{k}": v for k, v in (d.get("accuracy_at_eps") or {}).items()}
            rows.append({**head, "model": name, "run": 0, "worst_case_accuracy": d.get("worst_case_accuracy"),
                         **acc, **tail})
        return rows
    return []


def transfer_rows(cell: Cell, res: dict, grid_dir: Path) -> list[dict]:
    return [{"cell": cell.label, **{k: _shown(v) for k, v in cell.axes.items()},
             **{k: (_rel(v, grid_dir) if k == "source" else v) for k, v in row.items()}} for row in res.get("rows", [])]


def _shown(v):
    return v if isinstance(v, (int, float, str)) or v is None else json.dumps(v)


def _columns(rows: list[dict]) -> list[str]:
    cols: dict[str, None] = {}
    for r in rows:
        cols.update(dict.fromkeys(r))
    return list(cols)


# --------------------------------------------------------------------------- pivots
def _column_labels(cells: list[Cell]) -> dict[str, str]:
    """Model path -> column label: bit widths when they tell the models apart, else folder names."""
    from annt.evaluation.transfer import LabelCollision, axis_labels, target_facts

    models = list(dict.fromkeys(c.meta["model"] for c in cells if c.meta.get("model")))
    if not models:
        return {}
    try:
        axis = axis_labels([target_facts(p) for p in models], "grid.axes.model")
        return dict(zip(axis.paths, axis.labels))  # in display order: FP first
    except LabelCollision:
        return {p: Path(p).name for p in models}


def pivot(cells: list[Cell], rows_by_cell: dict[str, list[dict]], metric: str):
    """``(row labels, column labels, {(row, col): mean_std})`` of ``metric`` over the runs of the
    cells in each entry. Rows: the axes other than model and seed (in axis order); columns: the
    models (by bits when that tells them apart, FP first), or the bit widths of train cells with a
    ``model.bits`` axis, or one column."""
    col_of_model = _column_labels(cells)
    axes = list(cells[0].axes) if cells else []
    by_bits = not col_of_model and "model.bits" in axes
    row_axes = [a for a in axes if a not in ("model", "seed") and not (by_bits and a == "model.bits")]
    entries: dict[tuple, list] = {}
    row_order, col_order = [], []
    for c in cells:
        if c.meta.get("model"):
            col = col_of_model[c.meta["model"]]
        elif by_bits:
            col = _bits_label(c.meta.get("bits"))
        else:
            col = metric
        row = (", ".join(str(c.axes[a]) if a == "attack" else f"{a}={c.axes[a]}" for a in row_axes)
               or c.meta.get("attack") or "all")
        if row not in row_order:
            row_order.append(row)
        if col not in col_order:
            col_order.append(col)
        entries.setdefault((row, col), []).extend(r.get(metric) for r in rows_by_cell.get(c.label, []))
    if col_of_model:
        col_order = [lab for lab in col_of_model.values() if lab in col_order]
    else:
        col_order = bitwidths.label_order(col_order)
    return row_order, col_order, {k: mean_std(v) for k, v in entries.items()}


def pivot_markdown(rows, cols, stats, corner: str) -> str:
    return markdown([corner, *cols], [[r, *(pm(stats[(r, c)], DIGITS) if (r, c) in stats else "" for c in cols)]
                                      for r in rows])


# --------------------------------------------------------------------------- the paper
def read_paper(path) -> tuple[list[str], list[str], list[dict]]:
    """``(key columns, metric columns, rows)`` of a paper's numbers: a CSV (``#`` lines are comments) with one
    row per entry. Metric columns are those of :data:`PAPER_METRICS` present, each optionally with
    ``<metric>_pm`` (the paper's ±, shown beside its value); every other column is a key, matched against the
    long table's column of the same name: ``attack``, ``bits`` (any spelling of a bit width), ``model`` (the
    model folder's name; a ``-seed<N>`` suffix on ours is ignored, so the seeds of one model pool), an axis such
    as ``eps``. Key columns the grid's cells do not have are not compared."""
    with open(path, encoding="utf-8", newline="") as f:
        lines = [ln for ln in f if ln.strip() and not ln.lstrip().startswith("#")]
    reader = csv.DictReader(lines)
    columns = list(reader.fieldnames or [])
    metrics = [c for c in columns if c in PAPER_METRICS]
    keys = [c for c in columns if c not in PAPER_METRICS and not (c.endswith(PM_SUFFIX) and c[:-len(PM_SUFFIX)] in metrics)]
    rows = [{k: (v or "").strip() for k, v in r.items()} for r in reader]
    return keys, metrics, rows


def _match_value(column: str, value) -> str:
    """A key value as compared with the paper's: bit widths by label, model names without -seed<N>, numbers by value."""
    text = "" if value is None else str(value).strip()
    if column == "bits" and text:
        try:
            return _bits_label(bitwidths.parse(text))
        except (ValueError, TypeError):
            return text
    if column == "model":
        return re.sub(r"-seed\d+$", "", text)
    try:
        return repr(float(text))
    except ValueError:
        return text


def paper_table(cells: list[Cell], rows_by_cell: dict[str, list[dict]], paper) -> str:
    """Ours | paper | difference (ours − paper) for each metric the paper has, one line per group of cells that
    agree on the paper's key columns (cells of several seeds pool), in the cells' order (bit widths FP first)."""
    keys, metrics, paper_rows = paper
    heads = {c.label: _head(c) for c in cells}
    shared = [k for k in keys if any(k in h for h in heads.values())]
    ref: dict[tuple, dict] = {}
    for r in paper_rows:
        ref.setdefault(tuple(_match_value(k, r.get(k)) for k in shared), r)
    groups: dict[tuple, list[dict]] = {}
    shown: dict[tuple, list] = {}
    for c in cells:
        h = heads[c.label]
        key = tuple(_match_value(k, h.get(k)) for k in shared)
        shown.setdefault(key, [_match_value("model", h.get(k)) if k == "model" else h.get(k, "") for k in shared])
        groups.setdefault(key, []).extend(rows_by_cell.get(c.label, []))
    order = list(groups)
    if "bits" in shared:  # FP first within each group of the other keys
        i = shared.index("bits")
        rest = list(dict.fromkeys(k[:i] + k[i + 1:] for k in order))
        order = [k for r in rest for b in bitwidths.label_order([k[i] for k in order if k[:i] + k[i + 1:] == r])
                 for k in order if k[:i] + k[i + 1:] == r and k[i] == b]
    header = list(shared)
    for m in metrics:
        header += [f"{m} ours", "paper", "difference"]
    body = []
    for key in order:
        theirs_row = ref.get(key, {})
        line = list(shown[key])
        for m in metrics:
            st = mean_std(r.get(m) for r in groups[key])
            theirs = float(theirs_row[m]) if theirs_row.get(m) else None
            pm_text = theirs_row.get(m + PM_SUFFIX)
            line += [pm(st, DIGITS),
                     "" if theirs is None else fmt(theirs, DIGITS) + (f" ± {fmt(float(pm_text), DIGITS)}" if pm_text else ""),
                     "" if theirs is None or st["n"] == 0 else f"{st['mean'] - theirs:+.{DIGITS}f}"]
        body.append(line)
    return markdown(header, body)


# --------------------------------------------------------------------------- all of it
def aggregate(cells: list[Cell], outcomes: dict[str, dict], grid_dir: Path, *, paper=None, title: str = "",
              wall_s: float | None = None, plots: bool = True) -> dict:
    """Write every table and plot of the grid (see the module docstring); returns the summary that
    goes to the grid's ``results.json``."""
    grid_dir = Path(grid_dir)
    rows_by_cell: dict[str, list[dict]] = {}
    transfer: list[tuple[Cell, dict]] = []
    cell_rows, seconds = [], {}
    for c in cells:
        o = outcomes.get(c.label) or {}
        res = _results(o.get("run_dir")) if o.get("status") == "done" else None
        if res is not None and c.task == "transfer":
            transfer.append((c, res))
            rows_by_cell[c.label] = transfer_rows(c, res, grid_dir)
        elif res is not None:
            rows_by_cell[c.label] = long_rows(c, res, grid_dir)
        if res is not None and res.get("elapsed_s") is not None:
            seconds[c.label] = res["elapsed_s"]
        cell_rows.append({"cell": c.label, "task": c.task, "status": o.get("status", "not run"),
                          "hash": c.hash[:HASH_CHARS], **{k: _shown(v) for k, v in c.axes.items()},
                          "cell_dir": _rel(c.folder, grid_dir), "run_dir": _rel(o.get("run_dir"), grid_dir),
                          "seconds": seconds.get(c.label), "error": o.get("error", "")})
    atomic_write_text(grid_dir / "cells.csv", to_csv(cell_rows, _columns(cell_rows)))
    long = [r for c in cells if c.task != "transfer" for r in rows_by_cell.get(c.label, [])]
    atomic_write_text(grid_dir / "long.csv", to_csv(long, _columns(long)))
    tlong = [r for c, _ in transfer for r in rows_by_cell[c.label]]
    if tlong:
        atomic_write_text(grid_dir / "transfer_long.csv", to_csv(tlong, _columns(tlong)))

    done = sum(1 for c in cells if (outcomes.get(c.label) or {}).get("status") == "done")
    md = [f"# Grid {title}".rstrip() + "\n",
          f"{done} of {len(cells)} cells done (cells.csv lists every cell and its folder; long.csv has one row per "
          "cell × run). Each entry: mean ± std over the runs it pools (the runs of a cell, and the cells of every "
          "seed); just the mean for one run.\n"]
    outputs = ["cells.csv", "long.csv", "tables.md"] + (["transfer_long.csv"] if tlong else [])
    tables = {}
    main = [c for c in cells if c.task != "transfer"]
    task = main[0].task if main else None
    for metric, what in METRICS.get(task, ()):
        rows, cols, stats = pivot(main, rows_by_cell, metric)
        if not any(st["n"] for st in stats.values()):
            continue
        corner = " / ".join(a for a in main[0].axes if a not in ("model", "seed", "model.bits")) or \
            ("attack" if task == "attack" else "cells")
        md.append(f"## {what} ({metric})\n\n" + pivot_markdown(rows, cols, stats, corner))
        tables[metric] = {"rows": rows, "columns": cols,
                          "values": {f"{r} | {c}": stats[(r, c)] for r in rows for c in cols if (r, c) in stats}}
        if plots:
            outputs += _pivot_plots(grid_dir, metric, what, rows, cols, stats, first=metric == METRICS[task][0][0])
    if plots and task == "attack" and "eps" in (main[0].axes if main else {}):
        outputs += _eps_plot(grid_dir, main, rows_by_cell)
    if paper is not None and main:
        md.append("## Ours beside the paper\n\nours: mean ± std over runs; difference: our mean − the paper's.\n\n"
                  + paper_table(main, rows_by_cell, read_paper(paper)))
    for c, res in transfer:
        text = (Path(res["run_dir"]) / "transfer.md").read_text(encoding="utf-8") if res.get("run_dir") else ""
        md.append(f"## Transfer cell {c.label}\n\nRun folder: {_rel(res.get('run_dir'), grid_dir)}\n\n"
                  + text.split("\n", 1)[-1].lstrip())
        for png in sorted(Path(res["run_dir"]).glob("heatmap_*.png")):
            dest = grid_dir / f"{c.label}-{png.name}"
            shutil.copyfile(png, dest)
            outputs.append(dest.name)
    by_attack: dict[str, list[float]] = {}
    for c in cells:
        if c.label in seconds:
            by_attack.setdefault(c.meta["attack"] if c.task == "attack" else c.task, []).append(seconds[c.label])
    times = [[k, len(v), f"{sum(v):.1f}"] for k, v in by_attack.items()]
    md.append("## Wall time\n\n" + (f"This invocation of the grid: {wall_s:.1f} s.\n\n" if wall_s is not None else "")
              + "Cells' own time (each cell's results.json elapsed_s, whenever it ran; a resumed cell counts its "
                "last session):\n\n" + markdown(["attack or task", "cells", "seconds"], times))
    atomic_write_text(grid_dir / "tables.md", "\n".join(md))
    return {"cells": len(cells), "done": done, "tables": tables, "seconds_by_attack": {k: round(sum(v), 2) for k, v in by_attack.items()},
            "outputs": outputs}


def _pivot_plots(grid_dir: Path, metric: str, what: str, rows, cols, stats, first: bool) -> list[str]:
    import math

    import numpy as np

    from annt.plots import accuracy_vs_bits, transfer_heatmap

    out = []
    mean = np.array([[stats[(r, c)]["mean"] if (r, c) in stats else math.nan for c in cols] for r in rows], dtype=float)
    std = np.array([[stats[(r, c)]["std"] if (r, c) in stats and stats[(r, c)]["n"] > 1 else math.nan for c in cols]
                    for r in rows], dtype=float)
    if np.isfinite(mean).any():
        transfer_heatmap(grid_dir / f"heatmap_{metric}.png", mean, rows, cols, std=std, title=what, value_label=what,
                         xlabel="model", ylabel="", fmt="{:.3f}" if mean[np.isfinite(mean)].max() <= 1 else "{:.2f}")
        out.append(f"heatmap_{metric}.png")
    if first:
        try:
            series = {r: {c: stats[(r, c)]["mean"] for c in cols if (r, c) in stats} for r in rows}
            accuracy_vs_bits(grid_dir / "accuracy_vs_bits.png", series, ylabel=what)
            out.append("accuracy_vs_bits.png")
        except ValueError:  # columns are not bit widths
            pass
    return out


def _eps_plot(grid_dir: Path, cells: list[Cell], rows_by_cell) -> list[str]:
    from annt.plots import curves

    series: dict[str, dict[float, list]] = {}
    for c in cells:
        name = " ".join(str(v) for k, v in c.axes.items() if k not in ("eps", "seed"))
        for r in rows_by_cell.get(c.label, []):
            series.setdefault(name or "all", {}).setdefault(float(c.axes["eps"]), []).append(r.get("adversarial_accuracy"))
    curves(grid_dir / "accuracy_vs_eps.png", {k: {x: mean_std(v)["mean"] for x, v in pts.items()} for k, pts in series.items()},
           xlabel="eps", ylabel="adversarial accuracy", title="adversarial accuracy vs eps")
    return ["accuracy_vs_eps.png"]
