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

from .advset import AdversarialSet, load_adversarial_set, save_adversarial_set
from .data import load_split
from .errors import AnntError
from .io import atomic_save_npz, atomic_write_text
from .metrics import DISTANCES, sample_records, summarize
from .runs import Run, versions

CSV_FIELDS = ("index", "true_label", "clean_pred", "adv_pred", "target", "success", "l0", "l0_fraction", "l2", "linf")


# --------------------------------------------------------------------------- selection
def select_samples(y: np.ndarray, pred: np.ndarray | None, *, samples: int, select: str = "random",
                   only_correct: bool = True, runs: int = 1, seed: int = 0) -> list[np.ndarray]:
    """Positions (into ``y``) of the images attacked in each run.

    The candidate order is a permutation seeded by ``seed`` (``random``) or the split's order
    (``first``); with ``only_correct`` candidates the model misclassifies (``pred != y``) are
    dropped. Run r takes the r-th block of ``samples`` candidates, so runs never share an image.
    """
    n = len(y)
    order = np.random.default_rng(seed).permutation(n) if select == "random" else np.arange(n)
    if only_correct:
        if pred is None:
            raise ValueError("only_correct needs the model's predictions")
        order = order[pred[order] == y[order]]
    need = samples * runs
    if len(order) < need:
        what = "correctly classified images" if only_correct else "images"
        raise AnntError(f"attack.samples x attack.runs = {samples} x {runs} = {need}, but the split has only "
                        f"{len(order)} {what}; lower attack.samples or attack.runs")
    return [np.sort(order[r * samples:(r + 1) * samples]) if select == "first" else order[r * samples:(r + 1) * samples]
            for r in range(runs)]


def batch_seed(seed: int, run: int, batch: int) -> int:
    """Independent, reproducible seed for one batch (so a resumed batch equals an uninterrupted one)."""
    return int(np.random.SeedSequence([seed, run, batch]).generate_state(1)[0] % (2**31 - 1))


# --------------------------------------------------------------------------- library call
@dataclass
class AttackResult:
    """``x_adv`` (float32, [0, 1]), per-sample ``records`` (SPEC §7) and their ``summary``."""

    x_adv: np.ndarray
    records: list[dict]
    summary: dict
    clean_pred: np.ndarray
    adv_pred: np.ndarray
    target: np.ndarray | None = None
    perturbation: np.ndarray | None = None
    fooling_rate: float | None = None


def attack(model, x: np.ndarray, y: np.ndarray, name: str, *, index: np.ndarray | None = None,
           targeted: bool = False, target: Any = None, seed: int = 0, batch_size: int = 50,
           progress: bool = False, **params) -> AttackResult:
    """Attack arrays ``x`` (float32 NHWC in [0, 1]) with labels ``y`` on ``model`` (a Keras model
    returning logits, or an ART classifier). ``params`` are the attack's parameters (ART's meaning;
    see ``annt.attacks.ATTACKS[name]``). Returns the adversarial array and per-sample records.
    """
    from .attacks import ATTACKS, generate

    spec = ATTACKS[name] if name in ATTACKS else None
    y = np.asarray(y).astype(np.int64)
    index = np.arange(len(y)) if index is None else np.asarray(index)
    per_batch = spec.per_batch if spec else True
    step = batch_size if per_batch else max(len(y), 1)
    chunks = [slice(i, i + step) for i in range(0, len(y), step)]
    outs = []
    for b, sl in enumerate(_progress(chunks, progress, name)):
        t = target[sl] if isinstance(target, (list, np.ndarray)) else target
        outs.append(generate(model, x[sl], y[sl], name, params=params, targeted=targeted, target=t,
                             seed=batch_seed(seed, 0, b), batch_size=len(y[sl])))
    return _combine(x, y, index, outs)


def _combine(x, y, index, outs, model=None) -> AttackResult:
    x_adv = np.concatenate([o.x_adv for o in outs])
    if model is not None:
        # Same prediction path as `infer`, so direct evaluation reproduces these numbers exactly.
        clean_pred, adv_pred = predict_labels(model, x), predict_labels(model, x_adv)
    else:
        clean_pred = np.concatenate([o.clean_pred for o in outs])
        adv_pred = np.concatenate([o.adv_pred for o in outs])
    target = None if outs[0].target is None else np.concatenate([o.target for o in outs])
    records = sample_records(index, y, clean_pred, adv_pred, x, x_adv)
    if target is not None:
        for r, t in zip(records, target):
            r["target"] = int(t)
    return AttackResult(x_adv, records, summarize(records), clean_pred, adv_pred, target,
                        outs[0].perturbation, outs[0].fooling_rate)


def _progress_bar(total: int, desc: str):
    """A tqdm bar that is always closed (also on errors), written to the current stderr."""
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, unit="batch", dynamic_ncols=True, file=sys.stderr)


def _progress(items, enabled: bool, desc: str):
    if not enabled:
        return items
    from tqdm import tqdm

    return tqdm(items, desc=desc, unit="batch", dynamic_ncols=True)


# --------------------------------------------------------------------------- the task
def load_source_model(cfg: dict):
    from .modelio import load_model_folder

    m = cfg["model"]
    return load_model_folder(m["checkpoint"], expect_arch=m["arch"], expect_weight_bits=m["bits"]["weights"],
                             expect_act_bits=m["bits"]["activations"])


def predict_labels(model, x: np.ndarray, batch_size: int = 500) -> np.ndarray:
    return np.concatenate([np.argmax(np.asarray(model(x[i:i + batch_size], training=False)), axis=1)
                           for i in range(0, len(x), batch_size)]) if len(x) else np.zeros(0, np.int64)


def run_attack(cfg: dict, run: Run) -> dict:
    from . import attacks as attacks_mod
    from .attacks import ATTACKS
    from .estimator import make_classifier

    a = cfg["attack"]
    spec = ATTACKS[a["name"]]
    t0 = time.time()
    model, card = load_source_model(cfg)
    ds = load_split(cfg)
    pred = predict_labels(model, ds.x)
    model_acc = float(np.mean(pred == ds.y)) if len(ds) else float("nan")
    run.log.info("source model %s (%s, %s) clean accuracy on %s/%s (%d images, from %s): %.4f",
                 cfg["model"]["checkpoint"], card.get("arch"), card.get("bits", {}).get("label"), ds.name, ds.split,
                 len(ds), ds.source, model_acc)
    selections = select_samples(ds.y, pred, samples=a["samples"], select=a["select"], only_correct=a["only_correct"],
                                runs=a["runs"], seed=cfg["seed"])
    classifier = make_classifier(model, nb_classes=int(card.get("num_classes") or 10))
    meta_base = {
        "format": "annt-adversarial-v1", "attack": a["name"], "params": a["params"], "targeted": a["targeted"],
        "target_rule": a["target"] if not isinstance(a["target"], list) else "per-sample list",
        "source_model": {"arch": card.get("arch"), "bits": card.get("bits"), "checkpoint": cfg["model"]["checkpoint"],
                         "test_accuracy": card.get("test_accuracy")},
        "seed": cfg["seed"], "dataset": ds.name, "split": ds.split, "data_source": ds.source,
        "selection": {"samples": a["samples"], "select": a["select"], "only_correct": a["only_correct"], "runs": a["runs"]},
        "versions": versions(),
    }
    partial = run.file("partial")
    per_run = []
    for r, positions in enumerate(selections):
        final = run.file(f"adversarial_run{r}.npz")
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
            with _progress_bar(len(chunks), f"{a['name']} run {r + 1}/{a['runs']}") as bar:
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


def records_csv(records: list[dict]) -> str:
    buf = io.StringIO()
    fields = CSV_FIELDS + (("counted",) if records and "counted" in records[0] else ())
    w = csv.DictWriter(buf, fieldnames=fields, extrasaction="ignore", lineterminator="\n")
    w.writeheader()
    for rec in records:
        w.writerow({**{"target": ""}, **rec})
    return buf.getvalue()


def _write_run_artifacts(run: Run, r: int, s: AdversarialSet, result: AttackResult, grid_samples: int) -> None:
    atomic_write_text(run.file(f"samples_run{r}.csv"), records_csv(result.records))
    if result.perturbation is not None:
        from .io import atomic_write_bytes

        buf = io.BytesIO()
        np.save(buf, result.perturbation.astype(np.float32))
        atomic_write_bytes(run.file(f"perturbation_run{r}.npy"), buf.getvalue())
    if grid_samples:
        from .plots import image_grid

        k = min(grid_samples, len(s))
        meta = s.metadata
        image_grid(run.file(f"grid_run{r}.png"), s.clean_images[:k], s.images[:k], labels=s.labels[:k],
                   clean_pred=s.clean_pred[:k], adv_pred=s.adv_pred[:k], max_rows=k,
                   title=f"{meta['attack']} on {meta['source_model']['arch']} "
                         f"{(meta['source_model']['bits'] or {}).get('label', '')} (run {r})")


def aggregate(per_run: list[dict]) -> dict:
    """Mean and (population) standard deviation over runs of the headline numbers."""
    def ms(values):
        v = np.array([np.nan if x is None else x for x in values], dtype=np.float64)
        v = v[~np.isnan(v)]
        return {"mean": float(v.mean()) if len(v) else float("nan"), "std": float(v.std()) if len(v) else float("nan")}

    out = {k: ms([p[k] for p in per_run]) for k in ("clean_accuracy", "adversarial_accuracy", "success_rate")}
    for d in DISTANCES:
        out[f"{d}_successful_mean"] = ms([p[d]["successful"]["mean"] for p in per_run])
        out[f"{d}_all_mean"] = ms([p[d]["all"]["mean"] for p in per_run])
    if any("fooling_rate" in p for p in per_run):
        out["fooling_rate"] = ms([p.get("fooling_rate") for p in per_run])
    return out


def _pm(d: dict) -> str:
    return f"{d['mean']:.4f} ± {d['std']:.4f}"


def _fmt(v) -> str:
    return "n/a" if v is None or v != v else f"{v:.4f}"


def _log_summary(run: Run, r: int, s: dict) -> None:
    succ = {d: s[d]["successful"] for d in DISTANCES}
    run.log.info("run %d: %d samples, clean accuracy %s, adversarial accuracy %s, success rate %s", r, s["n"],
                 _fmt(s["clean_accuracy"]), _fmt(s["adversarial_accuracy"]), _fmt(s["success_rate"]))
    run.log.info("run %d: successful samples: mean L0 %s (%s of pixels), L2 %s, Linf %s; median L2 %s", r,
                 _fmt(succ["l0"]["mean"]), _fmt(succ["l0_fraction"]["mean"]), _fmt(succ["l2"]["mean"]),
                 _fmt(succ["linf"]["mean"]), _fmt(succ["l2"]["median"]))
    if "fooling_rate" in s:
        run.log.info("run %d: universal perturbation fooling rate %s", r, _fmt(s["fooling_rate"]))
