"""Direct and transfer evaluation of adversarial sets (SPEC §7), and the ``infer``/``transfer`` tasks.

Counting rule (the paper's): a sample counts on a target model only if the target classifies its
clean image correctly (and the source did too, when the set was prefiltered with
``only_correct``). Over the counted samples:

* adversarial accuracy = mean(adv_pred == true label); transfer (evasion) rate = 1 - that;
* L0/L2/L∞ of δ = x_adv − x, mean and median over successful samples and over all.

Direct inference is transfer with target = source; with a prefiltered set it reproduces the
attack-time numbers exactly (``summary_all`` counts every sample, as the attack did).
"""
from __future__ import annotations

import csv
import io
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .advset import AdversarialSet, load_adversarial_set
from .attack_task import aggregate, load_source_model, predict_labels, records_csv
from .data import load_split
from .errors import AnntError
from .io import atomic_write_text
from .metrics import DISTANCES, sample_records, summarize
from .runs import Run


@dataclass
class EvalResult:
    """``summary`` over counted samples, ``summary_all`` over every sample, per-sample ``records``
    (with ``counted``), and the target's predictions."""

    summary: dict
    summary_all: dict
    records: list[dict]
    clean_pred: np.ndarray
    adv_pred: np.ndarray
    counted: np.ndarray


def evaluate(model, adv: AdversarialSet | str | Path, *, dataset=None, batch_size: int = 500) -> EvalResult:
    """Evaluate an adversarial set (object or path) on ``model`` (Keras, logits).

    ``dataset`` (an :class:`annt.data.Dataset`) supplies the clean images of ANNT 3-key sets, looked
    up by ``image_index``; annt's own sets carry them.
    """
    if not isinstance(adv, AdversarialSet):
        adv = load_adversarial_set(adv)
    if adv.clean_images is None:
        if dataset is None:
            raise AnntError(f"{adv.path}: set has no clean images (ANNT format); pass dataset= (the split it indexes)")
        adv = attach_clean_images(adv, dataset)
    shape = tuple(model.input_shape[1:])
    if tuple(adv.images.shape[1:]) != shape:
        raise AnntError(f"{adv.path}: images are {tuple(adv.images.shape[1:])} but the model takes {shape}")
    clean_pred = predict_labels(model, adv.clean_images, batch_size)
    adv_pred = predict_labels(model, adv.images, batch_size)
    counted = clean_pred == adv.labels
    if adv.prefiltered and adv.clean_pred is not None:
        counted &= adv.clean_pred == adv.labels
    records = sample_records(adv.image_index, adv.labels, clean_pred, adv_pred, adv.clean_images, adv.images)
    targets = adv.target if adv.target is not None else np.full(len(records), -1)
    for r, c, t in zip(records, counted, targets):
        r["target"] = int(t) if t >= 0 else ""
        r["counted"] = bool(c)
    summary = summarize([r for r in records if r["counted"]])
    summary["n_total"] = len(records)
    summary["transfer_rate"] = summary["success_rate"]
    return EvalResult(summary, summarize(records), records, clean_pred, adv_pred, counted)


def attach_clean_images(adv: AdversarialSet, dataset) -> AdversarialSet:
    """Fill ``clean_images`` of an ANNT 3-key set from the dataset split it indexes."""
    if adv.clean_images is not None:
        return adv
    pos = {int(i): p for p, i in enumerate(dataset.index)}
    missing = [int(i) for i in adv.image_index if int(i) not in pos]
    if missing:
        raise AnntError(f"{adv.path}: image_index {missing[0]} is not in {dataset.name}/{dataset.split} "
                        f"(loaded from {dataset.source}); set data.dataset/data.split to the set's")
    sel = np.array([pos[int(i)] for i in adv.image_index])
    if not np.array_equal(dataset.y[sel], adv.labels):
        raise AnntError(f"{adv.path}: labels disagree with {dataset.name}/{dataset.split} at the saved indices; "
                        "the set was made on another dataset or split")
    adv.clean_images = dataset.x[sel]
    return adv


def source_sets(path) -> list[AdversarialSet]:
    """All runs of a source: one ``.npz``, or every ``adversarial_run*.npz`` of an attack run folder."""
    path = Path(path)
    files = sorted(path.glob("adversarial*.npz"), key=_run_number) if path.is_dir() else [path]
    return [load_adversarial_set(f) for f in files]


def _run_number(p: Path) -> int:
    digits = "".join(c for c in p.stem.rsplit("run", 1)[-1] if c.isdigit())
    return int(digits) if digits else 0


def _model_label(card: dict) -> str:
    return f"{card.get('arch')} {(card.get('bits') or {}).get('label', '?')}"


def _bits_of(card_or_meta: dict):
    b = card_or_meta.get("bits") or {}
    w, a = b.get("weights"), b.get("activations")
    return w if w == a else b


# --------------------------------------------------------------------------- infer task
def run_infer(cfg: dict, run: Run) -> dict:
    t0 = time.time()
    model, card = load_source_model(cfg)
    bs = cfg["infer"]["batch_size"]
    if cfg["infer"]["adversarial"] is None:
        ds = load_split(cfg)
        pred = predict_labels(model, ds.x, bs)
        acc = float(np.mean(pred == ds.y)) if len(ds) else float("nan")
        run.log.info("clean accuracy of %s on %s/%s (%d images, from %s): %.4f", _model_label(card), ds.name, ds.split,
                     len(ds), ds.source, acc)
        rows = [{"index": int(i), "true_label": int(t), "pred": int(p)} for i, t, p in zip(ds.index, ds.y, pred)]
        buf = io.StringIO()
        w = csv.DictWriter(buf, fieldnames=["index", "true_label", "pred"], lineterminator="\n")
        w.writeheader()
        w.writerows(rows)
        atomic_write_text(run.file("predictions.csv"), buf.getvalue())
        return {"mode": "clean", "model": _model_label(card), "dataset": ds.name, "split": ds.split,
                "n": len(ds), "clean_accuracy": acc, "elapsed_s": round(time.time() - t0, 2)}
    sets = source_sets(cfg["infer"]["adversarial"])
    per_run = []
    for r, s in enumerate(sets):
        if s.clean_images is None:
            s = attach_clean_images(s, load_split(cfg))
        res = evaluate(model, s, batch_size=bs)
        atomic_write_text(run.file(f"samples_run{r}.csv"), records_csv(res.records))
        direct = _same_model(s.metadata.get("source_model"), cfg["model"])
        per_run.append({"run": r, "set": s.path, **res.summary, "all_samples": res.summary_all})
        run.log.info("run %d (%s): %d of %d samples counted, adversarial accuracy %.4f (all samples: %.4f)", r,
                     "direct" if direct else "transfer", res.summary["n"], len(s), res.summary["adversarial_accuracy"],
                     res.summary_all["adversarial_accuracy"])
    return {"mode": "adversarial", "model": _model_label(card), "direct": _same_model(sets[0].metadata.get("source_model"), cfg["model"]),
            "runs": per_run, "aggregate": aggregate(per_run), "elapsed_s": round(time.time() - t0, 2)}


def _same_model(source: dict | None, model_cfg: dict) -> bool:
    """Is the model the set's source? Same folder, or (for a set made on another machine) a folder of
    the same name whose card has the same arch, bits and test accuracy."""
    if not source:
        return False
    src, ck = Path(str(source.get("checkpoint"))), Path(model_cfg["checkpoint"])
    if src.resolve() == ck.resolve():
        return True
    from .config import read_card_json

    card = read_card_json(ck) or {}
    return (src.name == ck.name and card.get("arch") == source.get("arch") and card.get("bits") == source.get("bits")
            and card.get("test_accuracy") == source.get("test_accuracy"))


# --------------------------------------------------------------------------- transfer
def transfer(sources, targets, *, dataset=None, batch_size: int = 500, log=None,
             records_out: list | None = None) -> list[dict]:
    """Evaluate every source (npz or attack run folder; each run separately) on every target
    model folder. Returns long-form rows: one per source × target × run. Per-sample records
    (with source, target, run and ``counted``) are appended to ``records_out`` if given.
    ``dataset`` (a Dataset, or a no-argument callable returning one, called at most once) supplies
    the clean images of ANNT 3-key sets."""
    from .modelio import load_model_folder

    rows = []
    loaded = [(str(p), source_sets(p)) for p in sources]
    for t in targets:
        model, card = load_model_folder(t)
        for src, sets in loaded:
            for r, s in enumerate(sets):
                if s.dataset and card.get("dataset") and s.dataset != card["dataset"]:
                    raise AnntError(f"{s.path}: set was made on {s.dataset!r} but target {t} was trained on {card['dataset']!r}")
                if s.clean_images is None:
                    if dataset is None:
                        raise AnntError(f"{s.path}: ANNT set without clean images; give the dataset it indexes")
                    if callable(dataset):
                        dataset = dataset()
                    s = attach_clean_images(s, dataset)
                res = evaluate(model, s, batch_size=batch_size)
                if records_out is not None:
                    # the record's own "target" is the attack's target class; "target" here is the model
                    records_out.extend({"source": src, "target": str(t), "run": r,
                                        **{("attack_target" if k == "target" else k): v for k, v in rec.items()}}
                                       for rec in res.records)
                meta = s.metadata.get("source_model") or {}
                row = {"source": src, "source_model": f"{meta.get('arch', '?')} {(meta.get('bits') or {}).get('label', '?')}",
                       "source_bits": _bits_of(meta), "attack": s.metadata.get("attack", "?"),
                       "target": str(t), "target_model": _model_label(card), "target_bits": _bits_of(card), "run": r,
                       "n_total": len(s), "n_used": res.summary["n"], "adversarial_accuracy": res.summary["adversarial_accuracy"],
                       "transfer_rate": res.summary["transfer_rate"]}
                for d in DISTANCES:
                    row[f"{d}_successful_mean"] = res.summary[d]["successful"]["mean"]
                    row[f"{d}_successful_median"] = res.summary[d]["successful"]["median"]
                rows.append(row)
                if log:
                    log.info("%s -> %s run %d: %d/%d used, adversarial accuracy %.4f", row["source_model"],
                             row["target_model"], r, row["n_used"], row["n_total"], row["adversarial_accuracy"])
    return rows


def cells(rows: list[dict]) -> list[dict]:
    """Per source × target: mean ± std over runs of accuracy, transfer rate and mean L2 (successful)."""
    out = {}
    for row in rows:
        out.setdefault((row["source"], row["target"]), []).append(row)
    result = []
    for (src, tgt), rs in out.items():
        def ms(key):
            v = np.array([np.nan if r[key] is None else r[key] for r in rs], dtype=float)
            v = v[~np.isnan(v)]
            return (float(v.mean()), float(v.std())) if len(v) else (float("nan"), float("nan"))
        acc, tr, l2 = ms("adversarial_accuracy"), ms("transfer_rate"), ms("l2_successful_mean")
        extra = {}
        for key in ("l0_successful_mean", "l0_fraction_successful_mean", "linf_successful_mean", "l2_successful_median"):
            extra[f"{key}_mean"], extra[f"{key}_std"] = ms(key)
        result.append({"source": src, "source_model": rs[0]["source_model"], "source_bits": rs[0]["source_bits"],
                       "attack": rs[0]["attack"], "target": tgt, "target_model": rs[0]["target_model"],
                       "target_bits": rs[0]["target_bits"], "runs": len(rs), "n_used_mean": float(np.mean([r["n_used"] for r in rs])),
                       "adversarial_accuracy_mean": acc[0], "adversarial_accuracy_std": acc[1],
                       "transfer_rate_mean": tr[0], "transfer_rate_std": tr[1],
                       "l2_successful_mean": l2[0], "l2_successful_std": l2[1], **extra})
    return result


def rows_csv(rows: list[dict]) -> str:
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=list(rows[0]), lineterminator="\n")
    w.writeheader()
    for r in rows:
        w.writerow({k: ("" if v is None or (isinstance(v, float) and v != v) else v) for k, v in r.items()})
    return buf.getvalue()


def _label(bits, fallback: str) -> str:
    from .plots import bits_label

    try:
        return bits_label(bits)
    except (ValueError, TypeError):
        return fallback


def matrix(cell_rows: list[dict], key: str = "adversarial_accuracy"):
    """(matrix, std, row labels, col labels) ordered by bitwidth (1 … 16, FP) when labels are bits."""
    from .plots import BITS_ORDER

    srcs = list(dict.fromkeys(c["source"] for c in cell_rows))
    tgts = list(dict.fromkeys(c["target"] for c in cell_rows))
    first = {c["source"]: c for c in cell_rows}
    firstt = {c["target"]: c for c in cell_rows}
    rl = {s: _label(first[s]["source_bits"], first[s]["source_model"]) for s in srcs}
    cl = {t: _label(firstt[t]["target_bits"], firstt[t]["target_model"]) for t in tgts}
    order = {b: i for i, b in enumerate(BITS_ORDER)}
    if len(set(rl.values())) == len(srcs):
        srcs.sort(key=lambda s: order.get(rl[s], 99))
    else:  # several sources share a bitwidth: label rows by their run folder / file
        rl = {s: Path(s).name for s in srcs}
    if len(set(cl.values())) == len(tgts):
        tgts.sort(key=lambda t: order.get(cl[t], 99))
    else:
        cl = {t: firstt[t]["target_model"] for t in tgts}
    m = np.full((len(srcs), len(tgts)), np.nan)
    sd = np.full_like(m, np.nan)
    for c in cell_rows:
        i, j = srcs.index(c["source"]), tgts.index(c["target"])
        m[i, j], sd[i, j] = c[f"{key}_mean"], c[f"{key}_std"]
    return m, sd, [rl[s] for s in srcs], [cl[t] for t in tgts]


def markdown_matrix(m, sd, rows, cols, title: str) -> str:
    head = "| source \\ target | " + " | ".join(cols) + " |\n|---|" + "---|" * len(cols) + "\n"
    body = ""
    for i, r in enumerate(rows):
        cells_ = [("n/a" if np.isnan(m[i, j]) else f"{m[i, j]:.3f} ± {sd[i, j]:.3f}") for j in range(len(cols))]
        body += f"| {r} | " + " | ".join(cells_) + " |\n"
    return f"### {title}\n\n{head}{body}"


def run_transfer(cfg: dict, run: Run) -> dict:
    from .plots import transfer_heatmap

    t0 = time.time()
    t = cfg["transfer"]
    records: list[dict] = []
    rows = transfer(t["sources"], t["targets"], dataset=lambda: load_split(cfg), batch_size=t["batch_size"], log=run.log,
                    records_out=records)
    cell_rows = cells(rows)
    atomic_write_text(run.file("transfer_samples.csv"), rows_csv(records))
    atomic_write_text(run.file("transfer_long.csv"), rows_csv(rows))
    atomic_write_text(run.file("transfer_cells.csv"), rows_csv(cell_rows))
    attack = ", ".join(sorted({c["attack"] for c in cell_rows}))
    md = f"# Transfer: {attack}\n\nCells: mean ± std over runs; only samples the target classifies correctly when clean count.\n\n"
    for key, what in (("adversarial_accuracy", "adversarial accuracy"), ("transfer_rate", "transfer rate"),
                      ("l2_successful", "mean L2 of successful samples")):
        m, sd, rl, cl = matrix(cell_rows, key)
        md += markdown_matrix(m, sd, rl, cl, what) + "\n"
        if key != "l2_successful":
            transfer_heatmap(run.file(f"heatmap_{key}.png"), m, rl, cl, std=sd, title=f"{attack}: {what}",
                             value_label=what)
    atomic_write_text(run.file("transfer.md"), md)
    run.log.info("\n%s", md)
    return {"sources": t["sources"], "targets": t["targets"], "cells": cell_rows, "rows": rows,
            "elapsed_s": round(time.time() - t0, 2)}
