"""The ``infer`` task: clean accuracy of a model, or an adversarial set evaluated on it (direct or transfer)."""
from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from annt.data import load_split
from annt.evaluation.evaluate import attach_clean_images, evaluate, model_label, source_sets
from annt.evaluation.metrics import aggregate, records_csv
from annt.evaluation.predict import DEFAULT_PASSES, predict_with_accuracy
from annt.io import atomic_write_text

from annt.models.card import read_card_json
from annt.runs import Run
from annt.tables import pm, to_csv
from annt.config.schema import Key
from annt.config.sections import adversarial_path, check_data, check_model, check_sets_fit_models

USES = ("data", "model", "infer")  # the config sections this task reads
SECTION = {
    "adversarial": Key("path", None, "Adversarial set (.npz or attack run folder); null = clean accuracy.",
                       nullable=True, must_exist=True),
    "batch_size": Key("int", 256, "Inference batch size.", min=1),
}


def check(ctx, cfg) -> None:
    """Checks across keys, run after every key has been validated (TF-free)."""
    check_data(ctx, cfg)
    ctx.dataset = cfg["data"]["dataset"]
    check_model(ctx, cfg, need_checkpoint=True)
    adv = cfg["infer"]["adversarial"]
    if adv is not None:
        cfg["infer"]["adversarial"] = adversarial_path(ctx, "infer.adversarial", adv)
        check_sets_fit_models(ctx, "infer.adversarial", [cfg["infer"]["adversarial"]], [cfg["model"]["checkpoint"]])



def run_infer(cfg: dict, run: Run) -> dict:
    from annt.models.folder import load_configured_model

    t0 = time.time()
    model, card = load_configured_model(cfg["model"])
    bs = cfg["infer"]["batch_size"]
    passes = {"passes": cfg["model"].get("stochastic_passes", DEFAULT_PASSES), "seed": cfg["seed"]}
    if cfg["infer"]["adversarial"] is None:
        ds = load_split(cfg)
        pred, acc = predict_with_accuracy(model, ds.x, ds.y, batch_size=bs, **passes)  # stochastic: vote; mean over passes
        acc = acc["mean"] if len(ds) else float("nan")
        run.log.info("clean accuracy of %s on %s/%s (%d images, from %s): %.4f", model_label(card), ds.name, ds.split,
                     len(ds), ds.source, acc)
        rows = [{"index": int(i), "true_label": int(t), "pred": int(p)} for i, t, p in zip(ds.index, ds.y, pred)]
        atomic_write_text(run.file("predictions.csv"), to_csv(rows, ["index", "true_label", "pred"]))
        return {"mode": "clean", "model": model_label(card), "dataset": ds.name, "split": ds.split,
                "n": len(ds), "clean_accuracy": acc, "elapsed_s": round(time.time() - t0, 2)}
    sets = source_sets(cfg["infer"]["adversarial"])
    per_run = []
    for r, s in enumerate(sets):
        if s.clean_images is None:
            s = attach_clean_images(s, load_split(cfg))
        res = evaluate(model, s, batch_size=bs, **passes)
        atomic_write_text(run.file(f"samples_run{r}.csv"), records_csv(res.records))
        direct = _same_model(s.metadata.get("source_model"), cfg["model"])
        per_run.append({"run": r, "set": s.path, **res.summary, "all_samples": res.summary_all})
        run.log.info("run %d (%s): %d of %d samples counted, adversarial accuracy %.4f (all samples: %.4f)", r,
                     "direct" if direct else "transfer", res.summary["n"], len(s), res.summary["adversarial_accuracy"],
                     res.summary_all["adversarial_accuracy"])
    agg = aggregate(per_run)
    run.log.info("adversarial accuracy over %d run(s): %s", len(per_run), pm(agg["adversarial_accuracy"]))
    return {"mode": "adversarial", "model": model_label(card), "direct": _same_model(sets[0].metadata.get("source_model"), cfg["model"]),
            "runs": per_run, "aggregate": agg, "elapsed_s": round(time.time() - t0, 2)}


def _same_model(source: dict | None, model_cfg: dict) -> bool:
    """Is the model the set's source? Same folder, or (for a set made on another machine) a folder of
    the same name whose card has the same arch, bits and test accuracy."""
    if not source:
        return False
    src, ck = Path(str(source.get("checkpoint"))), Path(model_cfg["checkpoint"])
    if src.resolve() == ck.resolve():
        return True
    card = read_card_json(ck) or {}
    return (src.name == ck.name and card.get("arch") == source.get("arch") and card.get("bits") == source.get("bits")
            and card.get("test_accuracy") == source.get("test_accuracy"))


