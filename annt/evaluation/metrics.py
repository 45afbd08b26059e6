"""Perturbation sizes, per-sample records and summaries (SPEC §7).

All distances are on the [0, 1] pixel scale. For one sample, ``δ = x_adv − x`` flattened over all
pixels and channels (``n`` elements):

* ``l0 = #{i : |δ_i| > 1e-6}`` (count of changed elements; the threshold ignores float noise),
  ``l0_fraction = l0 / n``;
* ``l2 = ‖δ‖₂ = sqrt(Σ δ_i²)``;
* ``linf = ‖δ‖∞ = max_i |δ_i|``.

Accuracy over the ``n`` attacked samples with true labels ``y``:

* ``clean_accuracy = mean(clean_pred == y)``;
* ``adversarial_accuracy = mean(adv_pred == y)`` (still classified as the true label);
* ``success_rate = 1 − adversarial_accuracy`` (evasion rate); a sample's ``success`` is
  ``adv_pred != y``.

Distance statistics are reported over successful samples (the paper's convention) and over all.

Curves (SPEC §12): a minimum-norm attack's robust accuracy at thresholds t,
``acc(t) = mean_i [adv_pred_i == y_i  or  d_i > t]`` (:func:`robust_accuracy_at`), and curves over
runs as mean ± std per x value (:func:`aggregate_curve`).
"""
from __future__ import annotations

from typing import Any, Iterable, Mapping

import numpy as np

from annt.tables import mean_std, to_csv

__all__ = ["L0_THRESHOLD", "DISTANCES", "RECORD_FIELDS", "aggregate", "aggregate_curve", "perturbation_norms",
           "records_csv", "robust_accuracy_at", "sample_records", "summarize"]

L0_THRESHOLD = 1e-6
"""An element counts as changed when ``|δ| > L0_THRESHOLD`` (float32 round-off is ~6e-8 at 1.0)."""

DISTANCES = ("l0", "l0_fraction", "l2", "linf")
#: Columns of the per-sample CSV (``counted`` is added by evaluation on another model).
RECORD_FIELDS = ("index", "true_label", "clean_pred", "adv_pred", "target", "success", *DISTANCES)


def perturbation_norms(x: np.ndarray, x_adv: np.ndarray) -> dict[str, np.ndarray]:
    """Per-sample ``l0``, ``l0_fraction``, ``l2``, ``linf`` of ``δ = x_adv − x`` (see module docstring).

    :param x, x_adv: arrays of the same shape ``(N, ...)`` on the [0, 1] scale.
    :return: dict of arrays of shape ``(N,)``: ``l0`` int64, the others float64.
    """
    x = np.asarray(x)
    x_adv = np.asarray(x_adv)
    if x.shape != x_adv.shape:
        raise ValueError(f"x and x_adv differ in shape: {x.shape} vs {x_adv.shape}")
    # float64 so that L2 of large images does not lose digits to float32 accumulation
    delta = (x_adv.astype(np.float64) - x.astype(np.float64)).reshape(len(x), -1)
    n_elements = delta.shape[1]
    absd = np.abs(delta)
    l0 = np.count_nonzero(absd > L0_THRESHOLD, axis=1).astype(np.int64)
    return {
        "l0": l0,
        "l0_fraction": l0 / n_elements if n_elements else np.zeros(len(x)),
        "l2": np.sqrt(np.sum(delta * delta, axis=1)),
        "linf": absd.max(axis=1) if n_elements else np.zeros(len(x)),
    }


def sample_records(
    index: np.ndarray,
    y_true: np.ndarray,
    clean_pred: np.ndarray,
    adv_pred: np.ndarray,
    x: np.ndarray,
    x_adv: np.ndarray,
) -> list[dict[str, Any]]:
    """One record per sample: ``index`` (into the dataset split), ``true_label``, ``clean_pred``,
    ``adv_pred``, ``success`` (``adv_pred != true_label``), ``l0``, ``l0_fraction``, ``l2``, ``linf``.

    Values are plain Python ints/floats/bools, ready for JSON or CSV.
    """
    cols = {
        "index": np.asarray(index),
        "true_label": np.asarray(y_true),
        "clean_pred": np.asarray(clean_pred),
        "adv_pred": np.asarray(adv_pred),
    }
    n = len(x)
    for key, col in cols.items():
        if col.shape != (n,):
            raise ValueError(f"{key} has shape {col.shape}, expected ({n},)")
    norms = perturbation_norms(x, x_adv)
    success = cols["adv_pred"] != cols["true_label"]
    return [
        {
            "index": int(cols["index"][i]),
            "true_label": int(cols["true_label"][i]),
            "clean_pred": int(cols["clean_pred"][i]),
            "adv_pred": int(cols["adv_pred"][i]),
            "success": bool(success[i]),
            **{k: (int(norms[k][i]) if k == "l0" else float(norms[k][i])) for k in DISTANCES},
        }
        for i in range(n)
    ]


def _stats(values: np.ndarray) -> dict[str, float]:
    if len(values) == 0:
        return {"mean": float("nan"), "median": float("nan")}
    return {"mean": float(np.mean(values)), "median": float(np.median(values))}


def summarize(records: Iterable[Mapping[str, Any]]) -> dict[str, Any]:
    """Summary of :func:`sample_records` output (see module docstring for the formulas).

    :return: ``n``, ``n_success``, ``clean_accuracy``, ``adversarial_accuracy``, ``success_rate``
        (NaN when ``n == 0``), and for each distance ``d`` in l0, l0_fraction, l2, linf:
        ``{d: {"successful": {"mean", "median"}, "all": {"mean", "median"}}}``; statistics over no
        samples are NaN (written as ``null`` by :func:`annt.io.atomic_write_json`).
    """
    records = list(records)
    n = len(records)
    true = np.array([r["true_label"] for r in records], dtype=np.int64)
    clean = np.array([r["clean_pred"] for r in records], dtype=np.int64)
    adv = np.array([r["adv_pred"] for r in records], dtype=np.int64)
    success = adv != true
    nan = float("nan")
    adv_acc = float(np.mean(~success)) if n else nan
    summary: dict[str, Any] = {
        "n": n,
        "n_success": int(success.sum()),
        "clean_accuracy": float(np.mean(clean == true)) if n else nan,
        "adversarial_accuracy": adv_acc,
        "success_rate": 1.0 - adv_acc if n else nan,
    }
    for key in DISTANCES:
        values = np.array([r[key] for r in records], dtype=np.float64)
        summary[key] = {"successful": _stats(values[success]), "all": _stats(values)}
    return summary


def records_csv(records: list[dict]) -> str:
    """The per-sample CSV: :data:`RECORD_FIELDS` plus ``counted`` (evaluation on another model) and
    ``broken_by`` (ensembles: the first member that broke the sample) when present; ``target`` empty if untargeted."""
    fields = RECORD_FIELDS + tuple(k for k in ("counted", "broken_by") if records and k in records[0])
    return to_csv(records, fields)


def robust_accuracy_at(distances: Any, evaded: Any, thresholds: Iterable[float]) -> list[dict[str, float]]:
    """Robust accuracy of a minimum-norm attack at each threshold (SPEC §12).

    A sample is robust at ``t`` when the attack failed on it (``evaded`` False: still classified as
    its true label) or its adversarial lies farther than ``t``:
    ``acc(t) = mean_i [not evaded_i or d_i > t]``; a distance exactly ``t`` is within the threat model.

    :param distances: per-sample ``‖x_adv − x‖`` in the attack's threat norm, on the [0, 1] scale
        (L0: number of changed elements), shape ``(N,)``.
    :param evaded: per-sample ``adv_pred != y``, shape ``(N,)``.
    :return: ``[{"eps": t, "accuracy": acc(t)}, ...]`` in the order given; accuracy NaN when ``N == 0``.
    """
    d = np.asarray(distances, dtype=np.float64).reshape(-1)
    broken = np.asarray(evaded, dtype=bool).reshape(-1)
    if d.shape != broken.shape:
        raise ValueError(f"distances has {d.size} entries, evaded {broken.size}")
    return [{"eps": float(t), "accuracy": float(np.mean(~broken | (d > t))) if d.size else float("nan")}
            for t in thresholds]


def aggregate_curve(curves: list[list[Mapping[str, Any]]], x: str, y: str) -> list[dict[str, Any]]:
    """A curve over runs: per ``x`` value (in the first run's order), ``{x: value, y: mean_std over runs}``.

    Every run's curve must have the same ``x`` values (runs of one config do)."""
    if not curves:
        return []
    xs = [p[x] for p in curves[0]]
    for c in curves[1:]:
        if [p[x] for p in c] != xs:
            raise ValueError(f"curves differ in their {x} values: {xs} vs {[p[x] for p in c]}")
    return [{x: v, y: mean_std(c[i][y] for c in curves)} for i, v in enumerate(xs)]


def aggregate(per_run: list[dict]) -> dict:
    """Mean, population std and count over runs (:func:`annt.tables.mean_std`) of each run's headline
    numbers: accuracies, success rate, mean distances (successful and all), fooling rate; and, when
    the runs have them, the curves ``robust_accuracy_at`` (eps thresholds) and ``sweep`` (per swept
    parameter), point by point (:func:`aggregate_curve`)."""
    out = {k: mean_std(p[k] for p in per_run) for k in ("clean_accuracy", "adversarial_accuracy", "success_rate")}
    for d in DISTANCES:
        out[f"{d}_successful_mean"] = mean_std(p[d]["successful"]["mean"] for p in per_run)
        out[f"{d}_all_mean"] = mean_std(p[d]["all"]["mean"] for p in per_run)
    if any("fooling_rate" in p for p in per_run):
        out["fooling_rate"] = mean_std(p.get("fooling_rate") for p in per_run)
    if per_run and "robust_accuracy_at" in per_run[0]:
        out["robust_accuracy_at"] = aggregate_curve([p["robust_accuracy_at"] for p in per_run], "eps", "accuracy")
    if per_run and "sweep" in per_run[0]:
        out["sweep"] = {k: aggregate_curve([p["sweep"][k] for p in per_run], "value", "adversarial_accuracy")
                        for k in per_run[0]["sweep"]}
    return out
