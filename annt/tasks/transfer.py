"""The ``transfer`` task: evaluate source adversarial sets on target models; tables and heat-maps.

Writes ``transfer_samples.csv`` (every sample), ``transfer_long.csv`` (one row per source ×
target × run), ``transfer_cells.csv`` (mean and std over runs per source × target),
``transfer.md`` (the matrices, labelled and ordered as in :mod:`annt.evaluation.transfer`) and
``heatmap_adversarial_accuracy.png`` / ``heatmap_transfer_rate.png``.
"""
from __future__ import annotations

import time

from annt.data import load_split
from annt.errors import AnntError
from annt.evaluation.transfer import LabelCollision, cells, check_unique_labels, markdown_matrix, matrix, transfer
from annt.io import atomic_write_text
from annt.runs import Run
from annt.tables import markdown, to_csv
from annt.config.schema import REQUIRED, Key
from annt.config.sections import MODEL, adversarial_path, check_data, check_sets_fit_models, expand_paths

#: (key of :func:`annt.evaluation.transfer.cells`, what it is, heat-map drawn)
MATRICES = (("adversarial_accuracy", "adversarial accuracy", True), ("transfer_rate", "transfer rate", True),
            ("l2_successful", "mean L2 of successful samples", False))

USES = ("data", "transfer")  # the config sections this task reads
SECTION = {
    "sources": Key("list", REQUIRED, "Adversarial sets: .npz files or attack run folders (globs allowed).", item="path"),
    "targets": Key("list", REQUIRED, "Target model folders or glob patterns (e.g. models/mnist_a-*).", item="path"),
    "batch_size": Key("int", 256, "Inference batch size.", min=1),
    "stochastic_passes": MODEL["stochastic_passes"],  # for targets random at inference, as model.stochastic_passes
}


def check(ctx, cfg) -> None:
    """Checks across keys, run after every key has been validated (TF-free)."""
    check_data(ctx, cfg)
    ctx.dataset = cfg["data"]["dataset"]
    t = cfg["transfer"]
    t["sources"] = [adversarial_path(ctx, "transfer.sources", p)
                    for p in expand_paths(ctx, "transfer.sources", t["sources"], lambda p: p.exists())]
    t["targets"] = expand_paths(ctx, "transfer.targets", list(dict.fromkeys(t["targets"])),
                           lambda p: (p / "card.json").is_file() and (p / "model.keras").is_file(),
                           "is not a model folder (needs card.json and model.keras)")
    check_sets_fit_models(ctx, "transfer.sources", t["sources"], t["targets"])
    try:  # two sources (or targets) that the matrix could not tell apart
        check_unique_labels(t["sources"], t["targets"])
    except LabelCollision as e:
        raise ctx.fail(e.key, e.value, e.reason) from None



def run_transfer(cfg: dict, run: Run) -> dict:
    from annt.plots import transfer_heatmap

    t0 = time.time()
    t = cfg["transfer"]
    try:  # the config check refuses this first; here for callers that skip it
        rows_axis, cols_axis = check_unique_labels(t["sources"], t["targets"])
    except LabelCollision as e:
        raise AnntError(str(e)) from None
    records: list[dict] = []
    rows = transfer(t["sources"], t["targets"], dataset=lambda: load_split(cfg), batch_size=t["batch_size"], log=run.log,
                    records_out=records, passes=t["stochastic_passes"], seed=cfg["seed"])
    cell_rows = cells(rows)
    for r in (*rows, *cell_rows):
        r["source_label"], r["target_label"] = rows_axis.label(r["source"]), cols_axis.label(r["target"])
    atomic_write_text(run.file("transfer_samples.csv"), to_csv(records))
    atomic_write_text(run.file("transfer_long.csv"), to_csv(rows))
    atomic_write_text(run.file("transfer_cells.csv"), to_csv(cell_rows))
    attack = ", ".join(sorted({c["attack"] for c in cell_rows}))
    md = (f"# Transfer: {attack}\n\nCells: mean ± std over runs (just the mean where there is one run); only samples "
          "the target classifies correctly when clean count.\n\n")
    for side, axis in (("Rows (sources)", rows_axis), ("Columns (targets)", cols_axis)):
        md += f"{side}, labelled by {axis.by}:\n\n" + markdown(["label", "path"], zip(axis.labels, axis.paths)) + "\n"
    for key, what, heatmap in MATRICES:
        mat = matrix(cell_rows, key, rows=rows_axis, cols=cols_axis)
        md += markdown_matrix(mat, what) + "\n"
        if heatmap:
            transfer_heatmap(run.file(f"heatmap_{key}.png"), mat.values, list(mat.rows.labels), list(mat.cols.labels),
                             std=mat.std, title=f"{attack}: {what}", value_label=what,
                             xlabel=mat.cols.title("target"), ylabel=mat.rows.title("source"))
    atomic_write_text(run.file("transfer.md"), md)
    run.log.info("\n%s", md)
    return {"sources": t["sources"], "targets": t["targets"], "row_labels": list(rows_axis.labels),
            "col_labels": list(cols_axis.labels), "cells": cell_rows, "rows": rows,
            "elapsed_s": round(time.time() - t0, 2)}
