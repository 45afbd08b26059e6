"""Direct and transfer evaluation of adversarial sets on a model (SPEC §7): counting rules and per-sample records.

Counting rule (the paper's): a sample counts on a target model only if the target classifies its
clean image correctly (and the source did too, when the set was prefiltered with
``only_correct``). Over the counted samples:

* adversarial accuracy = mean(adv_pred == true label); transfer (evasion) rate = 1 - that;
* L0/L2/L∞ of δ = x_adv − x, mean and median over successful samples and over all.

Direct inference is transfer with target = source; with a prefiltered set it reproduces the
attack-time numbers exactly (``summary_all`` counts every sample, as the attack did).

A model random at inference (:func:`annt.evaluation.predict.is_stochastic`) is predicted in
``passes`` seeded passes: a sample's clean and adversarial labels (records, the counting rule) are
the majority votes, and the accuracies in both summaries are means over passes on the same samples,
with their std under ``summary["stochastic"]`` (:func:`annt.evaluation.predict.summary_over_passes`).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from annt.evaluation.advset import AdversarialSet, load_adversarial_set, set_files
from annt.errors import AnntError
from annt.evaluation.metrics import sample_records, summarize
from annt.evaluation.predict import DEFAULT_PASSES, is_stochastic, predict_passes, summary_over_passes, vote


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


def evaluate(model, adv: AdversarialSet | str | Path, *, dataset=None, batch_size: int = 500,
             passes: int = DEFAULT_PASSES, seed: int = 0) -> EvalResult:
    """Evaluate an adversarial set (object or path) on ``model`` (Keras, logits); ``passes`` and
    ``seed`` matter only for a model random at inference (module docstring).

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
    kw = {"passes": passes, "seed": seed, "batch_size": batch_size}
    clean_passes, adv_passes = predict_passes(model, adv.clean_images, **kw), predict_passes(model, adv.images, **kw)
    clean_pred, adv_pred = vote(clean_passes), vote(adv_passes)
    counted = clean_pred == adv.labels
    if adv.prefiltered and adv.clean_pred is not None:
        counted &= adv.clean_pred == adv.labels
    records = sample_records(adv.image_index, adv.labels, clean_pred, adv_pred, adv.clean_images, adv.images)
    targets = adv.target if adv.target is not None else np.full(len(records), -1)
    for r, c, t in zip(records, counted, targets):
        r["target"] = int(t) if t >= 0 else ""
        r["counted"] = bool(c)
    summary = summarize([r for r in records if r["counted"]])
    summary_all = summarize(records)
    if is_stochastic(model):
        summary.update(summary_over_passes(clean_passes, adv_passes, adv.labels, seed=seed, mask=counted))
        summary_all.update(summary_over_passes(clean_passes, adv_passes, adv.labels, seed=seed))
    summary["n_total"] = len(records)
    summary["transfer_rate"] = summary["success_rate"]
    return EvalResult(summary, summary_all, records, clean_pred, adv_pred, counted)


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
    return [load_adversarial_set(f) for f in set_files(path)]


def model_label(card: dict) -> str:
    """``"mnist_a 4bit"``: architecture and bit tag of a model card (or a set's source-model metadata)."""
    return f"{card.get('arch')} {(card.get('bits') or {}).get('label', '?')}"
