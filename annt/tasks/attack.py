"""The ``attack`` task: its config section, checks and run (the array-level call is :func:`annt.attacks.runner.attack`).

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
from annt.attacks.ensemble import member_label, summarize_members
from annt.attacks.runner import AttackResult, _combine, batch_seed
from annt.evaluation.predict import predict_labels, select_samples
from annt.progress import progress_bar
from annt.attacks.registry import ATTACKS, paper_params, validate_attack_params
from annt.config.schema import Key
from annt.config.sections import check_data, check_model, split_size

USES = ("data", "model", "attack")  # the config sections this task reads
SECTION = {
    "name": Key("choice", None, "Attack (see wiki/Attacks.md).", nullable=True, choices=tuple(ATTACKS)),
    "preset": Key("choice", None, "Start params from a named preset: `paper` (SPEC §6 settings for the dataset) or "
                  "`robust` (the worst case over SPEC §12's default ensemble, APGD-CE, APGD-DLR and Square, at "
                  "params.eps and params.norm; sets name: ensemble).", choices=("paper", "robust"), nullable=True),
    "params": Key("dict", None, "Attack parameters with ART's meaning; unknown ones are rejected.", nullable=True),
    "samples": Key("int", 100, "Clean images attacked per run.", min=1),
    "select": Key("choice", "random", "random (seeded) or first N of the split.", choices=("random", "first")),
    "only_correct": Key("bool", True, "Attack only images the source model classifies correctly (ANNT 'prefiltered')."),
    "runs": Key("int", 1, "Repeats, each on fresh samples (disjoint blocks of one seeded candidate order).", min=1, max=1000),
    "batch_size": Key("int", 50, "Images per attack batch (the unit of progress and resume).", min=1),
    "targeted": Key("bool", False, "Targeted attack (needs `target`)."),
    "target": Key("any", None, "Targets: next ((y+1) mod 10), random, or a list of class ids, one per sample.", nullable=True),
    "grid_samples": Key("int", 8, "Samples drawn in the PNG grid.", min=0, max=64),
    "resume": Key("path", None, "Interrupted attack run folder to finish.", nullable=True, must_exist=True),
}


def check(ctx, cfg) -> None:
    """Checks across keys, run after every key has been validated (TF-free)."""
    check_data(ctx, cfg)
    check_model(ctx, cfg, need_checkpoint=True)
    a = cfg["attack"]
    if a["preset"] == "robust":
        if a["name"] not in (None, "ensemble"):
            raise ctx.fail("attack.name", a["name"], "preset robust is the ensemble attack; leave attack.name out")
        a["name"] = "ensemble"
    if a["name"] is None:
        raise ctx.fail("attack.name", None, f"required; allowed: {', '.join(ATTACKS)}")
    params = paper_params(a["name"], cfg["data"]["dataset"], ctx) if a["preset"] == "paper" else {}
    params.update(a["params"] or {})
    a["params"] = validate_attack_params(a["name"], params, "attack", ctx)
    if a["targeted"] and ATTACKS[a["name"]].targeted == "never":
        raise ctx.fail("attack.targeted", True, f"{a['name']} has no targeted variant; use targeted: false")
    available = split_size(cfg["data"])
    if available is not None and a["samples"] * a["runs"] > available:
        raise ctx.fail("attack.samples", a["samples"], f"samples x runs = {a['samples'] * a['runs']} but "
                       f"{cfg['data']['dataset']}/{cfg['data']['split']} ({cfg['data']['source']}) has {available} images")
    t = a["target"]
    if a["targeted"]:
        if t is None:
            raise ctx.fail("attack.target", None, "required when attack.targeted is true: next, random or a list of class ids")
        if isinstance(t, list):
            if not all(isinstance(v, int) and not isinstance(v, bool) and 0 <= v < 10 for v in t):
                raise ctx.fail("attack.target", t, "a list of class ids in [0, 9]")
            if len(t) != a["samples"]:
                raise ctx.fail("attack.target", t, f"needs one class id per sample (attack.samples = {a['samples']})")
        elif t not in ("next", "random"):
            raise ctx.fail("attack.target", t, "allowed: next, random, or a list of class ids")
    elif t is not None:
        raise ctx.fail("attack.target", t, "only used when attack.targeted is true")



def preflight(cfg: dict) -> None:
    """The dataset must be loadable before the run folder is made."""
    require_data(cfg["data"])


def run_attack(cfg: dict, run: Run) -> dict:
    from annt.models.folder import load_configured_model

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
    member_names = [member_label(m) for m in a["params"]["attacks"]] if a["name"] == "ensemble" else None
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
                        outs.append(_load_part(part, member_names))
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
            if result.members is not None:  # kept in the set, so a resumed run reports it too
                meta["ensemble"] = {"names": member_names, "evaded": result.members["evaded"].tolist(),
                                    "broken_by": result.members["broken_by"].tolist()}
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
        if result.members is not None:
            summary["ensemble"] = summarize_members(result.members)
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
    members = s.metadata.get("ensemble")
    if members is not None:
        members = {"names": members["names"], "evaded": np.asarray(members["evaded"], dtype=bool),
                   "broken_by": np.asarray(members["broken_by"], dtype=np.int64)}
    return AttackResult(s.images, records, summarize(records), s.clean_pred, s.adv_pred, tgt, None,
                        s.metadata.get("fooling_rate"), members)


def _save_part(path: Path, out) -> None:
    arrays = {"x_adv": out.x_adv, "clean_pred": out.clean_pred, "adv_pred": out.adv_pred}
    if out.members is not None:
        arrays["member_evaded"], arrays["broken_by"] = out.members["evaded"], out.members["broken_by"]
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
    members: dict | None = None


def _load_part(path: Path, member_names: list[str] | None) -> _Part:
    with np.load(path, allow_pickle=False) as f:
        members = ({"names": member_names, "evaded": f["member_evaded"], "broken_by": f["broken_by"]}
                   if "broken_by" in f.files else None)
        return _Part(f["x_adv"], f["clean_pred"], f["adv_pred"], f["target"] if "target" in f.files else None,
                     f["perturbation"] if "perturbation" in f.files else None,
                     float(f["fooling_rate"]) if "fooling_rate" in f.files else None, members)


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
    if "ensemble" in s:
        e = s["ensemble"]
        run.log.info("run %d: worst case over %d attacks %s; per attack: %s", r, len(e["members"]),
                     _fmt(e["worst_case_accuracy"]), ", ".join(f"{m['name']} {_fmt(m['adversarial_accuracy'])}"
                                                               for m in e["members"]))
