"""Predictions and the choice of attacked samples (SPEC §6, §12).

One prediction path (:func:`predict_labels`) serves attack, infer and transfer, so direct
evaluation reproduces attack-time numbers exactly.

**Models random at inference** (a layer marked ``annt_stochastic``, :mod:`annt.attacks.adaptive`,
e.g. stochastic binary weights; found with :func:`is_stochastic`, no card needed). Each forward
pass is a fresh draw, so:

* a *pass* predicts every image once (in batches of ``batch_size``; each batch call is one draw);
  pass ``p`` first reseeds all randomness from ``(seed, p)`` (:func:`reseed`), so the same seed,
  pass count and batch size give the same labels, and the clean and adversarial images of one
  evaluation see the same draws (pass ``p`` of both starts from the same state);
* an **accuracy** is the mean over ``passes`` passes of each pass's accuracy, reported with the
  population std over passes (:func:`pass_accuracy`);
* a sample's **label** is the majority vote of the passes (ties: the smallest class), so "the
  model classifies it correctly" (``only_correct`` sample selection, transfer's counting rule) means
  correct under the vote.

Deterministic models are predicted once, unseeded; ``passes`` and ``seed`` are ignored.
"""
from __future__ import annotations

import random

import numpy as np

from annt.errors import AnntError
from annt.tables import mean_std

#: Passes per prediction of a stochastic model when the caller gives none (``model.stochastic_passes``'s default).
DEFAULT_PASSES = 10


def is_stochastic(model) -> bool:
    """Whether ``model`` has a layer that samples at inference (``annt_stochastic``)."""
    from annt.attacks.adaptive import STOCHASTIC, marked_layers

    return bool(marked_layers(model, STOCHASTIC))


def pass_seed(seed: int, p: int) -> int:
    """The seed of pass ``p`` under run seed ``seed`` (a 31-bit int from ``SeedSequence([seed, p])``)."""
    return int(np.random.SeedSequence([int(seed), int(p)]).generate_state(1)[0] & 0x7FFFFFFF)


def reseed(model, seed: int) -> None:
    """Put every random source a forward pass of ``model`` can draw from in a state fixed by ``seed``:
    TensorFlow's global seed and Keras' global ``SeedGenerator`` (``keras.utils.set_random_seed``;
    Python's and NumPy's global states are restored afterwards, so sample selection and attacks are
    unaffected), and the state of every ``keras.random.SeedGenerator`` the model's layers own
    (generator ``i`` in layer order gets ``[pass_seed(seed, i), 0]``)."""
    import keras

    py_state, np_state = random.getstate(), np.random.get_state()
    try:
        keras.utils.set_random_seed(int(seed))
    finally:
        random.setstate(py_state)
        np.random.set_state(np_state)
    layers = model._flatten_layers(include_self=True, recursive=True) if hasattr(model, "_flatten_layers") else []
    seen: set[int] = set()
    for layer in layers:
        for gen in getattr(layer, "_seed_generators", ()):
            if id(gen) not in seen:
                gen.state.assign(np.array([pass_seed(seed, len(seen)), 0], dtype=gen.state.dtype))
                seen.add(id(gen))


def _one_pass(model, x: np.ndarray, batch_size: int) -> np.ndarray:
    return np.concatenate([np.argmax(np.asarray(model(x[i:i + batch_size], training=False)), axis=1)
                           for i in range(0, len(x), batch_size)]) if len(x) else np.zeros(0, np.int64)


def predict_passes(model, x: np.ndarray, *, passes: int = DEFAULT_PASSES, seed: int = 0,
                   batch_size: int = 500) -> np.ndarray:
    """Predicted labels per pass, shape ``(P, N)``: ``P = passes`` reseeded passes for a stochastic
    model (module docstring), ``P = 1`` unseeded pass for a deterministic one."""
    if not is_stochastic(model):
        return _one_pass(model, x, batch_size)[None]
    out = []
    for p in range(max(int(passes), 1)):
        reseed(model, pass_seed(seed, p))
        out.append(_one_pass(model, x, batch_size))
    return np.stack(out)


def vote(pass_preds: np.ndarray) -> np.ndarray:
    """Majority label per sample over the passes ``(P, N)``; ties go to the smallest class."""
    pass_preds = np.asarray(pass_preds, dtype=np.int64)
    if pass_preds.shape[0] == 1 or pass_preds.shape[1] == 0:
        return pass_preds[0]
    classes = int(pass_preds.max()) + 1
    counts = np.stack([np.bincount(col, minlength=classes) for col in pass_preds.T])
    return np.argmax(counts, axis=1)


def pass_accuracy(pass_preds: np.ndarray, y: np.ndarray, mask: np.ndarray | None = None) -> dict:
    """Accuracy of each pass on the samples ``mask`` selects (all by default), as
    ``{"mean", "std", "n"}`` over passes (:func:`annt.tables.mean_std`: population std, ``n`` = passes)."""
    pass_preds, y = np.asarray(pass_preds), np.asarray(y)
    if mask is not None:
        pass_preds, y = pass_preds[:, np.asarray(mask, dtype=bool)], y[np.asarray(mask, dtype=bool)]
    return mean_std(float(np.mean(row == y)) if len(y) else float("nan") for row in pass_preds)


def predict_labels(model, x: np.ndarray, batch_size: int = 500, *, passes: int = DEFAULT_PASSES,
                   seed: int = 0) -> np.ndarray:
    """Predicted label of each image: one pass for a deterministic model; for a stochastic one the
    majority vote of ``passes`` passes seeded from ``seed`` (module docstring)."""
    return vote(predict_passes(model, x, passes=passes, seed=seed, batch_size=batch_size))


def predict_with_accuracy(model, x: np.ndarray, y: np.ndarray, *, passes: int = DEFAULT_PASSES, seed: int = 0,
                          batch_size: int = 500) -> tuple[np.ndarray, dict]:
    """``(labels, accuracy)``: :func:`predict_labels`'s labels and :func:`pass_accuracy` over the same
    passes (a deterministic model: its accuracy with std 0 and ``n`` 1)."""
    preds = predict_passes(model, x, passes=passes, seed=seed, batch_size=batch_size)
    return vote(preds), pass_accuracy(preds, y)


def summary_over_passes(clean_passes: np.ndarray, adv_passes: np.ndarray, y: np.ndarray, *, seed: int,
                        mask: np.ndarray | None = None) -> dict:
    """The keys of a summary (:func:`annt.evaluation.metrics.summarize`) that are means over passes for
    a stochastic model, from the labels of each pass ``(P, N)`` of the clean and the adversarial
    images: ``clean_accuracy``, ``adversarial_accuracy``, ``success_rate`` (1 − the adversarial mean),
    and ``stochastic``: ``{"passes", "seed", "clean_accuracy", "adversarial_accuracy"}``, each accuracy
    ``{"mean", "std", "n"}`` over passes; on the samples ``mask`` selects (all by default)."""
    clean, adv = pass_accuracy(clean_passes, y, mask), pass_accuracy(adv_passes, y, mask)
    return {"clean_accuracy": clean["mean"], "adversarial_accuracy": adv["mean"], "success_rate": 1.0 - adv["mean"],
            "stochastic": {"passes": int(len(adv_passes)), "seed": int(seed), "clean_accuracy": clean,
                           "adversarial_accuracy": adv}}


def stochastic_summary(model, x: np.ndarray, x_adv: np.ndarray, y: np.ndarray, *, passes: int = DEFAULT_PASSES,
                       seed: int = 0, mask: np.ndarray | None = None, batch_size: int = 500) -> dict:
    """:func:`summary_over_passes` of ``model`` on clean images ``x`` and their adversarials ``x_adv``
    (the same draws for both); ``{}`` for a deterministic model, whose summary is already exact."""
    if not is_stochastic(model):
        return {}
    kw = {"passes": passes, "seed": seed, "batch_size": batch_size}
    return summary_over_passes(predict_passes(model, x, **kw), predict_passes(model, x_adv, **kw), y, seed=seed,
                               mask=mask)


def select_samples(y: np.ndarray, pred: np.ndarray | None, *, samples: int, select: str = "random",
                   only_correct: bool = True, runs: int = 1, seed: int = 0) -> list[np.ndarray]:
    """Positions (into ``y``) of the images attacked in each run.

    The candidate order is a permutation seeded by ``seed`` (``random``) or the split's order
    (``first``); with ``only_correct`` candidates the model misclassifies (``pred != y``) are
    dropped (for a stochastic model ``pred`` is the vote of its passes: :func:`predict_labels`). Run r takes
    the r-th block of ``samples`` candidates, so runs never share an image.
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
