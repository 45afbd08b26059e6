"""The ``attack`` task and :func:`attack`, the array-level call for custom loops.

Per run the task selects ``samples`` clean images (``select`` random|first, seeded; with
``only_correct`` only images the source classifies correctly; each run takes fresh, disjoint
samples), attacks them batch by batch (each finished batch is saved at once under ``partial/``,
so an interrupted attack resumes where it stopped), then writes the adversarial set
``adversarial_run{r}.npz``, the per-sample table ``samples_run{r}.csv`` and the image grid
``grid_run{r}.png``; ``results.json`` holds each run's summary and the mean ± std over runs.
"""
from __future__ import annotations

import csv
import io
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from annt.evaluation.advset import AdversarialSet, load_adversarial_set, make_metadata, save_adversarial_set, set_name
from annt.data import load_split, require_data
from annt.errors import AnntError
from annt.io import atomic_save_npz, atomic_write_text
from annt.evaluation.metrics import DISTANCES, aggregate, records_csv, sample_records, summarize
from annt.runs import Run
from annt.tables import fmt as _fmt, pm as _pm
from annt.attacks.runner import AttackResult, _combine, batch_seed
from annt.evaluation.predict import predict_labels, select_samples
from annt.progress import progress_bar
from annt.models.folder import load_configured_model



def preflight(cfg: dict) -> None:
    """The dataset must be loadable before the run folder is made."""
    require_data(cfg["data"])


def run_attack(cfg: dict, run: Run) -> dict:
    from annt.attacks import runner as attacks_mod
    from annt.attacks.registry import ATTACKS
    from annt.attacks.estimator import make_classifier

    a = cfg["attack"]
    spec = ATTACKS[a["name"]]
    t0 = time.time()
    model, card = load_configured_model(cfg["model"])
    ds = load_split(cfg)
    pred = predict_labels(model, ds.x)
    model_acc = float(np.mean(pred == ds.y)) if len(ds) else float("nan")
    run.log.info("source model %s (%s, %s) clean accuracy on %s/%s (%d images, from %s): %.4f",
                 cfg["model"]["checkpoint"], card.get("arch"), card.get("bits", {}).get("label"), ds.name, ds.split,
                 len(ds), ds.source, model_acc)
    selections = select_samples(ds.y, pred, samples=a["samples"], select=a["select"], only_correct=a["only_correct"],
                                runs=a["runs"], seed=cfg["seed"])
    classifier = make_classifier(model, nb_classes=int(card.get("num_classes") or 10))
    meta_base = make_metadata(
        attack=a["name"], params=a["params"], targeted=a["targeted"], target_rule=a["target"], card=card,
        checkpoint=cfg["model"]["checkpoint"], seed=cfg["seed"], dataset=ds,
        selection={"samples": a["samples"], "select": a["select"], "only_correct": a["only_correct"], "runs": a["runs"]})
    partial = run.file("partial")
    per_run = []
    for r, positions in enumerate(selections):
        final = run.file(set_name(r))
        if final.is_file():  # finished before an interruption
            s = load_adversarial_set(final)
            result = _result_from_set(s)
            run.log.info("run %d: already complete (resumed)", r)
        else:
            x, y, index = ds.x[positions], ds.y[positions], ds.index[positions]
            target = np.asarray(a["target"]) if isinstance(a["target"], list) else a["target"]
            step = a["batch_size"] if spec.per_batch else len(positions)
            chunks = [slice(i, i + step) for i in range(0, len(positions), step)]
            outs = []
            with progress_bar(len(chunks), f"{a['name']} run {r + 1}/{a['runs']}") as bar:
                for b, sl in enumerate(chunks):
                    part = partial / f"run{r}_batch{b:04d}.npz"
                    if part.is_file():  # finished before an interruption
                        outs.append(_load_part(part))
                    else:
                        t = target[sl] if isinstance(target, np.ndarray) else target
                        out = attacks_mod.generate(classifier, x[sl], y[sl], a["name"], params=a["params"],
                                                   targeted=a["targeted"], target=t,
                                                   seed=batch_seed(cfg["seed"], r, b), batch_size=len(y[sl]))
                        _save_part(part, out)
                        outs.append(out)
                    bar.update(1)
            result = _combine(x, y, index, outs, model)
            meta = {**meta_base, "run": r, "fooling_rate": result.fooling_rate}
            s = AdversarialSet(images=result.x_adv, labels=y, image_index=index, clean_images=x,
                               clean_pred=result.clean_pred, adv_pred=result.adv_pred,
                               target=result.target if result.target is not None else np.full(len(y), -1),
                               metadata=meta)
            _write_run_artifacts(run, r, s, result, a["grid_samples"])
            save_adversarial_set(final, s)  # last: its presence marks the run complete
            for p in partial.glob(f"run{r}_batch*.npz"):
                p.unlink()
        summary = {"run": r, **result.summary, "adversarial_set": final.name, "samples_csv": f"samples_run{r}.csv"}
        if result.fooling_rate is not None:
            summary["fooling_rate"] = result.fooling_rate
            summary["perturbation"] = f"perturbation_run{r}.npy"
        if a["targeted"]:
            summary["targeted_success_rate"] = float(np.mean(result.adv_pred == result.target))
        per_run.append(summary)
        _log_summary(run, r, summary)
    if partial.is_dir() and not any(partial.iterdir()):
        partial.rmdir()
    agg = aggregate(per_run)
    run.log.info("over %d run(s): adversarial accuracy %s, success rate %s", len(per_run),
                 _pm(agg["adversarial_accuracy"]), _pm(agg["success_rate"]))
    return {"attack": a["name"], "params": a["params"], "targeted": a["targeted"], "dataset": ds.name,
            "split": ds.split, "data_source": ds.source, "source_model": meta_base["source_model"],
            "model_clean_accuracy": model_acc, "selection": meta_base["selection"], "runs": per_run,
            "aggregate": agg, "elapsed_s": round(time.time() - t0, 2)}


def _result_from_set(s: AdversarialSet) -> AttackResult:
    records = sample_records(s.image_index, s.labels, s.clean_pred, s.adv_pred, s.clean_images, s.images)
    tgt = s.target if s.target is not None and np.all(s.target >= 0) else None
    return AttackResult(s.images, records, summarize(records), s.clean_pred, s.adv_pred, tgt, None,
                        s.metadata.get("fooling_rate"))


def _save_part(path: Path, out) -> None:
    arrays = {"x_adv": out.x_adv, "clean_pred": out.clean_pred, "adv_pred": out.adv_pred}
    if out.target is not None:
        arrays["target"] = out.target
    if out.perturbation is not None:
        arrays["perturbation"] = out.perturbation
        arrays["fooling_rate"] = np.array(out.fooling_rate)
    atomic_save_npz(path, **arrays)


@dataclass
class _Part:
    x_adv: np.ndarray
    clean_pred: np.ndarray
    adv_pred: np.ndarray
    target: np.ndarray | None
    perturbation: np.ndarray | None
    fooling_rate: float | None


def _load_part(path: Path) -> _Part:
    with np.load(path, allow_pickle=False) as f:
        return _Part(f["x_adv"], f["clean_pred"], f["adv_pred"], f["target"] if "target" in f.files else None,
                     f["perturbation"] if "perturbation" in f.files else None,
                     float(f["fooling_rate"]) if "fooling_rate" in f.files else None)


def _write_run_artifacts(run: Run, r: int, s: AdversarialSet, result: AttackResult, grid_samples: int) -> None:
    atomic_write_text(run.file(f"samples_run{r}.csv"), records_csv(result.records))
    if result.perturbation is not None:
        from annt.io import atomic_write_bytes

        buf = io.BytesIO()
        np.save(buf, result.perturbation.astype(np.float32))
        atomic_write_bytes(run.file(f"perturbation_run{r}.npy"), buf.getvalue())
    if grid_samples:
        from annt.plots import image_grid

        k = min(grid_samples, len(s))
        meta = s.metadata
        image_grid(run.file(f"grid_run{r}.png"), s.clean_images[:k], s.images[:k], labels=s.labels[:k],
                   clean_pred=s.clean_pred[:k], adv_pred=s.adv_pred[:k], max_rows=k,
                   title=f"{meta['attack']} on {meta['source_model']['arch']} "
                         f"{(meta['source_model']['bits'] or {}).get('label', '')} (run {r})")


def _log_summary(run: Run, r: int, s: dict) -> None:
    succ = {d: s[d]["successful"] for d in DISTANCES}
    run.log.info("run %d: %d samples, clean accuracy %s, adversarial accuracy %s, success rate %s", r, s["n"],
                 _fmt(s["clean_accuracy"]), _fmt(s["adversarial_accuracy"]), _fmt(s["success_rate"]))
    run.log.info("run %d: successful samples: mean L0 %s (%s of pixels), L2 %s, Linf %s; median L2 %s", r,
                 _fmt(succ["l0"]["mean"]), _fmt(succ["l0_fraction"]["mean"]), _fmt(succ["l2"]["mean"]),
                 _fmt(succ["linf"]["mean"]), _fmt(succ["l2"]["median"]))
    if "fooling_rate" in s:
        run.log.info("run %d: universal perturbation fooling rate %s", r, _fmt(s["fooling_rate"]))
