"""Predictions and the choice of attacked samples (SPEC §6).

One prediction path (:func:`predict_labels`) serves attack, infer and transfer, so direct
evaluation reproduces attack-time numbers exactly.
"""
from __future__ import annotations

import numpy as np

from annt.errors import AnntError


def predict_labels(model, x: np.ndarray, batch_size: int = 500) -> np.ndarray:
    return np.concatenate([np.argmax(np.asarray(model(x[i:i + batch_size], training=False)), axis=1)
                           for i in range(0, len(x), batch_size)]) if len(x) else np.zeros(0, np.int64)


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
