"""The ``attack`` task: its config section, checks and run (the array-level call is :func:`annt.attacks.runner.attack`).

Per run the task selects ``samples`` clean images (``select`` random|first, seeded; with
``only_correct`` only images the source classifies correctly; each run takes fresh, disjoint
samples), attacks them batch by batch (each finished batch is saved at once under ``partial/``,
so an interrupted attack resumes where it stopped), then writes the adversarial set
``adversarial_run{r}.npz``, the per-sample table ``samples_run{r}.csv`` and the image grid
``grid_run{r}.png``; ``results.json`` holds each run's summary and the mean ± std over runs.

**Sweeps.** ``params.eps`` and ``params.max_iter`` may be increasing lists. A run then attacks the
same samples once per point: every eps at the last max_iter (accuracy vs eps), every max_iter at
the last eps (accuracy vs iterations), each point with the same batch seeds. The final point (last
eps, last max_iter) gives the headline numbers and the saved set, so a swept run's set is an
ordinary one; the curves go to ``results.json`` (``runs[r].sweep``), ``sweep_run{r}.csv`` and
``sweep_{param}_run{r}.png``. Partial batches are keyed by the point, so resume works per point.

**Eps thresholds.** For a minimum-norm attack (``AttackSpec.bounded`` False), ``eps_thresholds``
gives the robust accuracy at each threshold from the per-sample distances in the attack's threat
norm (:func:`annt.evaluation.metrics.robust_accuracy_at`): ``runs[r].robust_accuracy_at``,
``robust_curve_run{r}.csv`` and ``robust_curve_run{r}.png``.

**Every other class.** ``target: all_other`` (targeted) attacks each selected image towards each of
the other classes: the set holds ``samples * (classes - 1)`` rows with their target
(:func:`annt.evaluation.advset.expand_all_other`); the summary counts pairs, and ``runs[r].all_other``
adds Galloway et al.'s Table 3 counting and the per-image view (:func:`annt.evaluation.advset.all_other_summary`).

**Held-out images.** An attack with ``AttackSpec.holdout`` (``substitute``) gets that many clean
images of the same split that no run attacks (:func:`annt.attacks.substitute.holdout_positions`;
the attacked selection is the one any other attack with the same seed gets); their indices are in
``runs[r].attack_info.holdout_index`` and the set's metadata.
"""
from __future__ import annotations

import io
import json
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from annt.evaluation.advset import (AdversarialSet, all_other_summary, expand_all_other, load_adversarial_set,
                                   make_metadata, save_adversarial_set, set_name)
from annt.data import load_split, require_data
from annt.io import atomic_save_npz, atomic_write_text
from annt.evaluation.metrics import (DISTANCES, aggregate, records_csv, robust_accuracy_at, sample_records,
                                     summarize)
from annt.runs import Run
from annt.tables import fmt as _fmt, pm as _pm, to_csv
from annt.attacks.ensemble import distance, member_label, summarize_members
from annt.attacks.runner import AttackResult, _combine, batch_seed
from annt.evaluation.predict import DEFAULT_PASSES, predict_with_accuracy, select_samples, stochastic_summary
from annt.progress import progress_bar
from annt.attacks.registry import ATTACKS, paper_params, validate_attack_params
from annt.config.schema import Key, check as check_value, did_you_mean
from annt.config.sections import check_data, check_model, split_size

USES = ("data", "model", "attack")  # the config sections this task reads
SECTION = {
    "name": Key("choice", None, "Attack (see wiki/Attacks.md).", nullable=True, choices=tuple(ATTACKS)),
    "preset": Key("choice", None, "Start params from a named preset: `paper` (SPEC §6 settings for the dataset) or "
                  "`robust` (the worst case over SPEC §12's default ensemble, APGD-CE, APGD-DLR and Square, at "
                  "params.eps and params.norm; sets name: ensemble).", choices=("paper", "robust"), nullable=True),
    "params": Key("dict", None, "Attack parameters with ART's meaning; unknown ones are rejected. `eps` and `max_iter` "
                  "also take an increasing list (a sweep: accuracy vs eps at the last max_iter and vs max_iter at the "
                  "last eps, on the same samples; the saved set is the last point's).", nullable=True),
    "samples": Key("int", 100, "Clean images attacked per run.", min=1),
    "select": Key("choice", "random", "random (seeded) or first N of the split.", choices=("random", "first")),
    "only_correct": Key("bool", True, "Attack only images the source model classifies correctly (ANNT 'prefiltered')."),
    "runs": Key("int", 1, "Repeats, each on fresh samples (disjoint blocks of one seeded candidate order).", min=1, max=1000),
    "batch_size": Key("int", 50, "Images per attack batch (the unit of progress and resume).", min=1),
    "targeted": Key("bool", False, "Targeted attack (needs `target`)."),
    "target": Key("any", None, "Targets: next ((y+1) mod 10), random, all_other (one adversarial per image and other "
                  "class: samples x 9 rows, Galloway et al.'s Table 3), or a list of class ids, one per sample.",
                  nullable=True),
    "grid_samples": Key("int", 8, "Samples drawn in the PNG grid.", min=0, max=64),
    "eps_thresholds": Key("list", None, "Minimum-norm attacks only (cw_l2, boundary, jsma, ...): robust accuracy "
                          "at each threshold (increasing, > 0) from the per-sample distances in the attack's norm on "
                          "the [0, 1] scale (L0: changed pixels); a sample is robust at t if the attack failed on it "
                          "or its distance exceeds t.", item="float", nullable=True),
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
    spec = ATTACKS[a["name"]]
    params = paper_params(a["name"], cfg["data"]["dataset"], ctx) if a["preset"] == "paper" else {}
    params.update(a["params"] or {})
    axes = _sweep_lists(ctx, spec, params)
    last = {k: v[-1] for k, v in axes.items()}
    for point in sweep_points(axes)[:-1]:  # every point obeys the attack's cross-parameter rules
        validate_attack_params(a["name"], {**params, **point[2]}, "attack", ctx)
    # the final point's params, with each swept key's list in its place (a valid config again)
    a["params"] = {**validate_attack_params(a["name"], {**params, **last}, "attack", ctx), **axes}
    _check_thresholds(ctx, spec, a["eps_thresholds"])
    if a["targeted"] and ATTACKS[a["name"]].targeted == "never":
        raise ctx.fail("attack.targeted", True, f"{a['name']} has no targeted variant; use targeted: false")
    available = split_size(cfg["data"])
    if available is not None and a["samples"] * a["runs"] > available:
        raise ctx.fail("attack.samples", a["samples"], f"samples x runs = {a['samples'] * a['runs']} but "
                       f"{cfg['data']['dataset']}/{cfg['data']['split']} ({cfg['data']['source']}) has {available} images")
    held = a["params"][spec.holdout] if spec.holdout else 0
    if held and available is not None and a["samples"] * a["runs"] + held > available:
        raise ctx.fail(f"attack.params.{spec.holdout}", held, f"samples x runs + {spec.holdout} = "
                       f"{a['samples'] * a['runs'] + held} but {cfg['data']['dataset']}/{cfg['data']['split']} "
                       f"({cfg['data']['source']}) has {available} images (held-out images are never attacked)")
    t = a["target"]
    if a["targeted"]:
        if t is None:
            raise ctx.fail("attack.target", None, "required when attack.targeted is true: next, random, all_other or a "
                           "list of class ids")
        if isinstance(t, list):
            if not all(isinstance(v, int) and not isinstance(v, bool) and 0 <= v < 10 for v in t):
                raise ctx.fail("attack.target", t, "a list of class ids in [0, 9]")
            if len(t) != a["samples"]:
                raise ctx.fail("attack.target", t, f"needs one class id per sample (attack.samples = {a['samples']})")
        elif t not in TARGET_RULES:
            raise ctx.fail("attack.target", t, f"allowed: {', '.join(TARGET_RULES)}, or a list of class ids"
                           f"{did_you_mean(t, TARGET_RULES)}")
    elif t is not None:
        raise ctx.fail("attack.target", t, "only used when attack.targeted is true")


#: Named target rules of ``attack.target`` (besides a list of class ids).
TARGET_RULES = ("next", "random", "all_other")


# --------------------------------------------------------------------------- sweeps and thresholds
#: Attack parameters that take a list of values (a sweep).
SWEEPABLE = ("eps", "max_iter")


def _increasing(ctx, path: str, values: list) -> None:
    if not values:
        raise ctx.fail(path, values, "a list needs at least one value")
    for i in range(1, len(values)):
        if values[i] <= values[i - 1]:
            raise ctx.fail(f"{path}[{i}]", values[i], f"must exceed {path}[{i - 1}] = {values[i - 1]} "
                           "(list increasing values)")


def _sweep_lists(ctx, spec, params: dict) -> dict[str, list]:
    """Pop the swept parameters out of ``params``: ``{key: [values]}``, each value checked with the
    parameter's own rules (errors name ``attack.params.eps[i]``). A list for a parameter the attack
    lacks is left for the unknown-key check; one for any other parameter is refused."""
    axes = {}
    for key, values in list(params.items()):
        if not isinstance(values, list) or key not in spec.params or spec.params[key].kind == "list":
            continue
        path = f"attack.params.{key}"
        if key not in SWEEPABLE:
            raise ctx.fail(path, values, f"takes one value; only {' and '.join(SWEEPABLE)} take a list (a sweep)")
        checked = [check_value(ctx, f"{path}[{i}]", spec.params[key], v) for i, v in enumerate(values)]
        _increasing(ctx, path, checked)
        axes[key] = checked
        del params[key]
    return {k: axes[k] for k in SWEEPABLE if k in axes}


def sweep_axes(params: dict) -> dict[str, list]:
    """The swept parameters of resolved attack params, ``{key: increasing values}`` ({} when none)."""
    return {k: params[k] for k in SWEEPABLE if isinstance(params.get(k), list)}


def final_params(params: dict) -> dict:
    """Resolved attack params at the sweep's final point (each list's last value): the headline run."""
    return {k: v[-1] if k in SWEEPABLE and isinstance(v, list) else v for k, v in params.items()}


def sweep_points(axes: dict[str, list]) -> list[tuple[str | None, int, dict]]:
    """The settings a sweep runs, as ``(axis, index in that axis, {key: value})``: every value of
    each axis but its last, with the other axes at their last value, then the final point
    ``(None, -1, {each key: last value})``. No sweep: just ``[(None, -1, {})]``."""
    last = {k: v[-1] for k, v in axes.items()}
    points = [(k, i, {**last, k: v}) for k, values in axes.items() for i, v in enumerate(values[:-1])]
    return points + [(None, -1, last)]


def _sweep_curves(axes: dict[str, list], accuracy: dict, final: float) -> dict:
    """``{axis: [{value, adversarial_accuracy}]}`` from each point's accuracy; an axis's last value is the
    final point (accuracy ``final``)."""
    return {k: [{"value": v, "adversarial_accuracy": accuracy.get((k, i), final)} for i, v in enumerate(values)]
            for k, values in axes.items()}


def _check_thresholds(ctx, spec, thresholds) -> None:
    if thresholds is None:
        return
    if spec.bounded:
        minimum_norm = ", ".join(n for n, s in ATTACKS.items() if not s.bounded)
        raise ctx.fail("attack.eps_thresholds", thresholds, f"only for minimum-norm attacks ({minimum_norm}); "
                       f"{spec.name} searches an eps-ball, so its adversarial accuracy is already the one at "
                       "params.eps (sweep it with a list of eps)")
    for i, t in enumerate(thresholds):
        if t <= 0:
            raise ctx.fail(f"attack.eps_thresholds[{i}]", t, "must be a number > 0")
    _increasing(ctx, "attack.eps_thresholds", thresholds)


def _robust_curve(s: AdversarialSet, norm, thresholds) -> list[dict]:
    return robust_accuracy_at(distance(s.clean_images, s.images, norm), s.adv_pred != s.labels, thresholds)


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
    axes = sweep_axes(a["params"])
    params = final_params(a["params"])  # the headline numbers and the saved set are this point's
    points = sweep_points(axes)
    thresholds = a.get("eps_thresholds")  # absent in folders made before it existed (resume)
    norm = spec.threat_norm(params)
    t0 = time.time()
    model, card = load_configured_model(cfg["model"])
    ds = load_split(cfg)
    # a model random at inference: labels = vote of the passes, accuracy = mean over them (annt.evaluation.predict)
    passes = {"passes": cfg["model"].get("stochastic_passes", DEFAULT_PASSES), "seed": cfg["seed"]}
    pred, model_acc = predict_with_accuracy(model, ds.x, ds.y, **passes)
    model_acc = model_acc["mean"] if len(ds) else float("nan")
    run.log.info("source model %s (%s, %s) clean accuracy on %s/%s (%d images, from %s): %.4f",
                 cfg["model"]["checkpoint"], card.get("arch"), card.get("bits", {}).get("label"), ds.name, ds.split,
                 len(ds), ds.source, model_acc)
    selections = select_samples(ds.y, pred, samples=a["samples"], select=a["select"], only_correct=a["only_correct"],
                                runs=a["runs"], seed=cfg["seed"])
    nb_classes = int(card.get("num_classes") or 10)
    classifier = make_classifier(model, nb_classes=nb_classes)
    holdout, holdout_info = None, None
    if spec.holdout:  # clean images of the split that no run attacks (substitute: its initial training set)
        from annt.attacks.substitute import holdout_positions

        held = holdout_positions(len(ds), selections, params[spec.holdout], select=a["select"], seed=cfg["seed"])
        holdout, holdout_info = ds.x[held], {"holdout_index": ds.index[held].tolist()}
        run.log.info("%d held-out images (never attacked) for %s", len(held), a["name"])
    meta_base = make_metadata(
        attack=a["name"], params=params, targeted=a["targeted"], target_rule=a["target"], card=card,
        checkpoint=cfg["model"]["checkpoint"], seed=cfg["seed"], dataset=ds,
        selection={"samples": a["samples"], "select": a["select"], "only_correct": a["only_correct"], "runs": a["runs"]})
    partial = run.file("partial")
    member_names = [member_label(m) for m in params["attacks"]] if a["name"] == "ensemble" else None
    per_run = []
    for r, positions in enumerate(selections):
        final = run.file(set_name(r))
        if final.is_file():  # finished before an interruption
            s = load_adversarial_set(final)
            result = _result_from_set(s)
            sweep = s.metadata.get("sweep")
            robust = _robust_curve(s, norm, thresholds) if thresholds else None
            run.log.info("run %d: already complete (resumed)", r)
        else:
            x, y, index = ds.x[positions], ds.y[positions], ds.index[positions]
            target = np.asarray(a["target"]) if isinstance(a["target"], list) else a["target"]
            if a["targeted"] and isinstance(target, str) and target == "all_other":  # one row per (image, other class)
                x, y, index, target = expand_all_other(x, y, index, nb_classes)
            step = a["batch_size"] if spec.per_batch else max(len(y), 1)
            chunks = [slice(i, i + step) for i in range(0, len(y), step)]
            accuracy = {}  # (axis, index) -> adversarial accuracy at that sweep point
            with progress_bar(len(points) * len(chunks), f"{a['name']} run {r + 1}/{a['runs']}") as bar:
                for axis, i, setting in points:
                    key = f"{axis}{i}_" if axis is not None else ""  # the final point keeps the plain names
                    outs = []
                    for b, sl in enumerate(chunks):
                        part = partial / f"run{r}_{key}batch{b:04d}.npz"
                        if part.is_file():  # finished before an interruption
                            outs.append(_load_part(part, member_names))
                        else:
                            t = target[sl] if isinstance(target, np.ndarray) else target
                            out = attacks_mod.generate(classifier, x[sl], y[sl], a["name"],
                                                       params={**params, **setting}, targeted=a["targeted"],
                                                       target=t, seed=batch_seed(cfg["seed"], r, b),
                                                       batch_size=len(y[sl]), holdout=holdout)
                            _save_part(part, out)
                            outs.append(out)
                        bar.update(1)
                    result = _combine(x, y, index, outs, model)
                    if axis is not None:
                        accuracy[(axis, i)] = result.summary["adversarial_accuracy"]
            sweep = _sweep_curves(axes, accuracy, result.summary["adversarial_accuracy"]) if axes else None
            meta = {**meta_base, "run": r, "fooling_rate": result.fooling_rate}
            if result.members is not None:  # kept in the set, so a resumed run reports it too
                meta["ensemble"] = {"names": member_names, "evaded": result.members["evaded"].tolist(),
                                    "broken_by": result.members["broken_by"].tolist(),
                                    "seconds": (None if result.members.get("seconds") is None
                                                else result.members["seconds"].tolist())}
            if sweep is not None:  # likewise
                meta["sweep"] = sweep
            if result.info is not None or holdout_info is not None:  # likewise
                meta["attack_info"] = {**(result.info or {}), **(holdout_info or {})}
            s = AdversarialSet(images=result.x_adv, labels=y, image_index=index, clean_images=x,
                               clean_pred=result.clean_pred, adv_pred=result.adv_pred,
                               target=result.target if result.target is not None else np.full(len(y), -1),
                               metadata=meta)
            robust = _robust_curve(s, norm, thresholds) if thresholds else None
            _write_run_artifacts(run, r, s, result, a["grid_samples"], sweep, robust, norm)
            save_adversarial_set(final, s)  # last: its presence marks the run complete
            for p in partial.glob(f"run{r}_*.npz"):
                p.unlink()
        summary = {"run": r, **result.summary, **stochastic_summary(model, s.clean_images, s.images, s.labels, **passes),
                   "adversarial_set": final.name, "samples_csv": f"samples_run{r}.csv"}
        if sweep is not None:
            summary["sweep"] = sweep
        if robust is not None:
            summary["robust_accuracy_at"] = robust
        if result.fooling_rate is not None:
            summary["fooling_rate"] = result.fooling_rate
            summary["perturbation"] = f"perturbation_run{r}.npy"
        if a["targeted"]:
            summary["targeted_success_rate"] = float(np.mean(result.adv_pred == result.target))
        if a["targeted"] and a["target"] == "all_other":
            summary["all_other"] = all_other_summary(s)
        if s.metadata.get("attack_info") is not None:
            summary["attack_info"] = s.metadata["attack_info"]
        if result.members is not None:
            summary["ensemble"] = summarize_members(result.members)
        per_run.append(summary)
        _log_summary(run, r, summary)
    if partial.is_dir() and not any(partial.iterdir()):
        partial.rmdir()
    agg = aggregate(per_run)
    run.log.info("over %d run(s): adversarial accuracy %s, success rate %s", len(per_run),
                 _pm(agg["adversarial_accuracy"]), _pm(agg["success_rate"]))
    for k, curve in agg.get("sweep", {}).items():
        run.log.info("over %d run(s): adversarial accuracy vs %s: %s", len(per_run), k,
                     ", ".join(f"{p['value']:g}: {_pm(p['adversarial_accuracy'])}" for p in curve))
    if "robust_accuracy_at" in agg:
        run.log.info("over %d run(s): robust accuracy at L%s thresholds: %s", len(per_run), norm,
                     ", ".join(f"{p['eps']:g}: {_pm(p['accuracy'])}" for p in agg["robust_accuracy_at"]))
    out = {"attack": a["name"], "params": params, "targeted": a["targeted"], "dataset": ds.name,
           "split": ds.split, "data_source": ds.source, "source_model": meta_base["source_model"],
           "model_clean_accuracy": model_acc, "selection": meta_base["selection"], "runs": per_run,
           "aggregate": agg, "elapsed_s": round(time.time() - t0, 2)}
    if thresholds:
        out["threat_norm"] = norm
    return out


def _result_from_set(s: AdversarialSet) -> AttackResult:
    records = sample_records(s.image_index, s.labels, s.clean_pred, s.adv_pred, s.clean_images, s.images)
    tgt = s.target if s.target is not None and np.all(s.target >= 0) else None
    members = s.metadata.get("ensemble")
    if members is not None:
        members = {"names": members["names"], "evaded": np.asarray(members["evaded"], dtype=bool),
                   "broken_by": np.asarray(members["broken_by"], dtype=np.int64),
                   "seconds": None if members.get("seconds") is None else np.asarray(members["seconds"])}
    return AttackResult(s.images, records, summarize(records), s.clean_pred, s.adv_pred, tgt, None,
                        s.metadata.get("fooling_rate"), members)


def _save_part(path: Path, out) -> None:
    arrays = {"x_adv": out.x_adv, "clean_pred": out.clean_pred, "adv_pred": out.adv_pred}
    if out.members is not None:
        arrays["member_evaded"], arrays["broken_by"] = out.members["evaded"], out.members["broken_by"]
        arrays["member_seconds"] = out.members["seconds"]
    if out.target is not None:
        arrays["target"] = out.target
    if out.perturbation is not None:
        arrays["perturbation"] = out.perturbation
        arrays["fooling_rate"] = np.array(out.fooling_rate)
    if getattr(out, "info", None) is not None:
        arrays["info"] = np.array(json.dumps(out.info))
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
    info: dict | None = None


def _load_part(path: Path, member_names: list[str] | None) -> _Part:
    with np.load(path, allow_pickle=False) as f:
        members = ({"names": member_names, "evaded": f["member_evaded"], "broken_by": f["broken_by"],
                    "seconds": f["member_seconds"] if "member_seconds" in f.files else None}
                   if "broken_by" in f.files else None)
        return _Part(f["x_adv"], f["clean_pred"], f["adv_pred"], f["target"] if "target" in f.files else None,
                     f["perturbation"] if "perturbation" in f.files else None,
                     float(f["fooling_rate"]) if "fooling_rate" in f.files else None, members,
                     json.loads(str(f["info"])) if "info" in f.files else None)


def _write_run_artifacts(run: Run, r: int, s: AdversarialSet, result: AttackResult, grid_samples: int,
                         sweep: dict | None = None, robust: list | None = None, norm=None) -> None:
    atomic_write_text(run.file(f"samples_run{r}.csv"), records_csv(result.records))
    what = f"{s.metadata['attack']} on {s.metadata['source_model']['arch']} " \
           f"{(s.metadata['source_model']['bits'] or {}).get('label', '')} (run {r})"
    if sweep is not None or robust is not None:
        from annt.plots import curves
    name = s.metadata["attack"]
    if sweep is not None:
        final = {k: v[-1]["value"] for k, v in sweep.items()}
        rows = [{"parameter": k, "value": p["value"], **final, k: p["value"],
                 "adversarial_accuracy": p["adversarial_accuracy"]} for k, curve in sweep.items() for p in curve]
        atomic_write_text(run.file(f"sweep_run{r}.csv"),
                          to_csv(rows, ["parameter", "value", *sweep, "adversarial_accuracy"]))
        for k, curve in sweep.items():
            others = "".join(f", {o} {v:g}" for o, v in final.items() if o != k)
            curves(run.file(f"sweep_{k}_run{r}.png"), {name: {p["value"]: p["adversarial_accuracy"] for p in curve}},
                   xlabel=k, ylabel="adversarial accuracy", title=what + others,
                   log_x=k == "max_iter" and curve[-1]["value"] >= 10 * curve[0]["value"])
    if robust is not None:
        atomic_write_text(run.file(f"robust_curve_run{r}.csv"), to_csv(robust, ["eps", "accuracy"]))
        curves(run.file(f"robust_curve_run{r}.png"), {name: {p["eps"]: p["accuracy"] for p in robust}},
               xlabel=f"eps threshold (L{norm} distance)", ylabel="robust accuracy", title=what)
    if result.perturbation is not None:
        from annt.io import atomic_write_bytes

        buf = io.BytesIO()
        np.save(buf, result.perturbation.astype(np.float32))
        atomic_write_bytes(run.file(f"perturbation_run{r}.npy"), buf.getvalue())
    if grid_samples:
        from annt.plots import image_grid

        k = min(grid_samples, len(s))
        image_grid(run.file(f"grid_run{r}.png"), s.clean_images[:k], s.images[:k], labels=s.labels[:k],
                   clean_pred=s.clean_pred[:k], adv_pred=s.adv_pred[:k], max_rows=k,
                   title=what)


def _log_summary(run: Run, r: int, s: dict) -> None:
    succ = {d: s[d]["successful"] for d in DISTANCES}
    run.log.info("run %d: %d samples, clean accuracy %s, adversarial accuracy %s, success rate %s", r, s["n"],
                 _fmt(s["clean_accuracy"]), _fmt(s["adversarial_accuracy"]), _fmt(s["success_rate"]))
    run.log.info("run %d: successful samples: mean L0 %s (%s of pixels), L2 %s, Linf %s; median L2 %s", r,
                 _fmt(succ["l0"]["mean"]), _fmt(succ["l0_fraction"]["mean"]), _fmt(succ["l2"]["mean"]),
                 _fmt(succ["linf"]["mean"]), _fmt(succ["l2"]["median"]))
    if "fooling_rate" in s:
        run.log.info("run %d: universal perturbation fooling rate %s", r, _fmt(s["fooling_rate"]))
    for k, curve in s.get("sweep", {}).items():
        run.log.info("run %d: adversarial accuracy vs %s: %s", r, k,
                     ", ".join(f"{p['value']:g}: {_fmt(p['adversarial_accuracy'])}" for p in curve))
    if "robust_accuracy_at" in s:
        run.log.info("run %d: robust accuracy at thresholds: %s", r,
                     ", ".join(f"{p['eps']:g}: {_fmt(p['accuracy'])}" for p in s["robust_accuracy_at"]))
    if "ensemble" in s:
        e = s["ensemble"]
        run.log.info("run %d: worst case over %d attacks %s; per attack: %s", r, len(e["members"]),
                     _fmt(e["worst_case_accuracy"]), ", ".join(f"{m['name']} {_fmt(m['adversarial_accuracy'])}"
                                                               for m in e["members"]))
