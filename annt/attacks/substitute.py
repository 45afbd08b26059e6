"""Papernot et al. (2017) substitute black-box attack, as Galloway et al. (paper 002, Table 4) ran it.

The attacker sees the target ("oracle") only through its **predicted labels**: :class:`LabelOracle`
is the one door to it, and returns ``argmax`` of the target's predictions (never its scores,
logits or gradients). The attack:

1. **Initial set**: ``holdout`` clean images of the attacked split that are never among the
   attacked ones (the ``attack`` task picks them, :func:`holdout_positions`), labelled by the oracle.
2. **Substitute**: an MLP on the flattened image, ``hidden`` ReLU layers then a linear layer to the
   logits. Galloway et al. call it "a two-layer MLP with 200 hidden units"; the code they ran
   (CleverHans v2 ``substitute_model``, in the authors' fork ``cleverhans-attacking-bnns``) is
   Flatten, Linear(200), ReLU, Linear(200), ReLU, Linear(10), Softmax: two *hidden* layers of 200
   units, three weight layers. ``hidden: [200, 200]`` (the default) is that network;
   ``hidden: [200]`` is one hidden layer of 200 units (two weight layers).
3. **Rounds** ρ = 0 … ``rounds`` − 1 (CleverHans's ``data_aug``): train the substitute for
   ``epochs_per_round`` epochs on the current set (Adam, ``learning_rate`` 1e-3, batch
   ``batch_size`` 128, cross-entropy on the oracle's labels: CleverHans's settings; the same model
   keeps training across rounds); then, except after the last round, **Jacobian augmentation**:
   every point x of the set gives x' = clip(x + λ_ρ · sign(∂F[ỹ(x)]/∂x), 0, 1), with F the
   substitute's *softmax* output (CleverHans differentiates the probabilities) and ỹ(x) the
   oracle's label of x; the x' are labelled by the oracle and appended, so the set doubles. The
   final set holds ``holdout · 2^(rounds − 1)`` points (150 · 32 = 4800 with the paper's 6
   rounds), which is also the number of oracle label queries.
   λ_ρ = ``lambda_`` in every round when ``tau`` is null (the CleverHans code Galloway et al. ran);
   ``tau: t`` gives Papernot et al.'s periodic step size λ_ρ = λ · (−1)^⌊ρ / t⌋ (their §4.3, τ = 3
   there). Their reservoir sampling (adding only κ new points per round after round σ, to save
   queries) is not implemented: with 6 rounds the set stays small. Unlike CleverHans v2, new points
   are clipped to the pixel range [0, 1].
4. **Inner attack**: any registered attack (``inner``, default FGSM with its default eps 0.3 as
   in Galloway et al.'s Table 4) runs white-box on the substitute, with ``inner_labels``: the true
   labels (``true``, annt's convention for every attack) or the substitute's own predictions
   (``substitute``: what CleverHans's FGSM does when given no labels, the paper's setting).
   The adversarials are then judged on the target like every other attack's (a transfer).

Everything is seeded from the seed ``generate`` sets (same seed, same arrays). The runner reports
(``AttackOutput.info``): the substitute's accuracy and its agreement with the target on the attacked
clean images, its agreement with the oracle on its own final training set, the set size and the
number of oracle queries.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from annt.errors import AnntError

__all__ = ["LabelOracle", "build_substitute", "holdout_positions", "jacobian_augmentation", "run_substitute",
           "step_size", "train_substitute"]


class LabelOracle:
    """The target as a black-box attacker sees it: ``oracle(x)`` is the predicted class per image.

    :param predict: ``x -> scores`` of the target (any array whose argmax is the class); only the
        argmax leaves this object. ``queries`` counts the images labelled.
    """

    def __init__(self, predict):
        self._predict = predict
        self.queries = 0

    def __call__(self, x: np.ndarray) -> np.ndarray:
        self.queries += len(x)
        return np.argmax(np.asarray(self._predict(x)), axis=1).astype(np.int64)


def holdout_positions(n: int, selections, count: int, *, select: str = "random", seed: int = 0) -> np.ndarray:
    """Positions (into a split of ``n`` images) of the ``count`` held-out images the substitute starts
    from: never among ``selections`` (the attacked positions of every run). ``select: first`` takes
    the first free positions, ``random`` a seeded random draw of them (its own stream, so the attacked
    selection is the one any other attack with the same seed gets). Sorted."""
    taken = np.concatenate([np.asarray(s, dtype=np.int64) for s in selections]) if len(selections) else np.zeros(0, np.int64)
    free = np.setdiff1d(np.arange(n), taken)
    if len(free) < count:
        raise AnntError(f"attack.params.holdout = {count}: only {len(free)} images of the split are not attacked; "
                        "lower attack.samples, attack.runs or the holdout")
    if select == "first":
        return free[:count]
    return np.sort(np.random.default_rng([int(seed), 150]).permutation(free)[:count])


def step_size(lambda_: float, tau: int | None, rho: int) -> float:
    """λ_ρ of round ``rho``: ``lambda_`` (``tau`` None) or λ · (−1)^⌊ρ / τ⌋ (Papernot et al. §4.3)."""
    return float(lambda_) if tau is None else float(lambda_) * (-1.0) ** (rho // int(tau))


def build_substitute(input_shape: tuple, nb_classes: int, hidden=(200, 200)):
    """The substitute MLP (logits out): Flatten, then ``Dense(h, relu)`` per entry of ``hidden``, then
    ``Dense(nb_classes)``. Weights from the current Keras seed."""
    import keras

    layers = [keras.Input(tuple(input_shape)), keras.layers.Flatten()]
    layers += [keras.layers.Dense(int(h), activation="relu") for h in hidden]
    layers.append(keras.layers.Dense(int(nb_classes)))
    return keras.Sequential(layers, name="substitute")


def jacobian_augmentation(model, x: np.ndarray, labels: np.ndarray, lam: float, batch_size: int = 500) -> np.ndarray:
    """New points clip(x + lam · sign(∂softmax(model(x))[label]/∂x), 0, 1), one per row of ``x``.

    Rows are independent (the substitute has no batch statistics), so each row's gradient is the
    gradient of the batch sum of the selected probabilities."""
    import tensorflow as tf

    out = np.empty_like(x, dtype=np.float32)
    for i in range(0, len(x), batch_size):
        xb = tf.convert_to_tensor(x[i:i + batch_size], tf.float32)
        lb = tf.convert_to_tensor(labels[i:i + batch_size], tf.int32)
        with tf.GradientTape() as tape:
            tape.watch(xb)
            p = tf.nn.softmax(model(xb, training=False), axis=-1)
            selected = tf.gather(p, lb, axis=1, batch_dims=1)
        grad = tape.gradient(selected, xb)
        out[i:i + batch_size] = np.clip(xb.numpy() + np.float32(lam) * np.sign(grad.numpy()), 0.0, 1.0)
    return out


@dataclass
class SubstituteTraining:
    """What :func:`train_substitute` returns: the trained ``model`` (logits), its final training set
    ``x``/``labels`` (oracle labels) and per-round ``rounds`` records (set size, step, agreement)."""

    model: object
    x: np.ndarray
    labels: np.ndarray
    rounds: list


def train_substitute(oracle, x_holdout: np.ndarray, *, nb_classes: int = 10, hidden=(200, 200), rounds: int = 6,
                     epochs_per_round: int = 10, lambda_: float = 0.1, tau: int | None = None,
                     batch_size: int = 128, learning_rate: float = 1e-3, seed: int = 0) -> SubstituteTraining:
    """Papernot et al.'s substitute training (module docstring, step 3). ``oracle(x)`` gives labels only."""
    import keras

    keras.utils.set_random_seed(int(seed))
    x_sub = np.ascontiguousarray(x_holdout, dtype=np.float32)
    y_sub = oracle(x_sub)
    model = build_substitute(x_sub.shape[1:], nb_classes, hidden)
    model.compile(optimizer=keras.optimizers.Adam(learning_rate),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    history = []
    for rho in range(rounds):
        model.fit(x_sub, y_sub, batch_size=batch_size, epochs=epochs_per_round, shuffle=True, verbose=0)
        pred = np.argmax(np.asarray(model.predict(x_sub, batch_size=1000, verbose=0)), axis=1)
        record = {"round": rho, "set_size": len(x_sub), "train_agreement": float(np.mean(pred == y_sub))}
        if rho < rounds - 1:
            lam = step_size(lambda_, tau, rho)
            x_new = jacobian_augmentation(model, x_sub, y_sub, lam)
            x_sub = np.concatenate([x_sub, x_new])
            y_sub = np.concatenate([y_sub, oracle(x_new)])
            record["lambda"] = lam
        history.append(record)
    return SubstituteTraining(model, x_sub, y_sub, history)


@dataclass
class _SubstituteRun:
    """What :func:`run_substitute` leaves for ``generate`` to read (``AttackSpec.extras``)."""

    info: dict


def run_substitute(spec, classifier, x, y_onehot, params, targeted, batch_size, holdout=None):
    """Runner of the ``substitute`` attack. ``classifier`` (the target) is reached only through a
    :class:`LabelOracle`; ``holdout`` are the held-out clean images (never the attacked ``x``)."""
    from annt.attacks.estimator import make_classifier
    from annt.attacks.runner import generate

    if holdout is None or len(holdout) == 0:
        raise ValueError("substitute needs held-out images (holdout=...), never among the attacked ones")
    nb_classes = int(classifier.nb_classes)
    seeds = np.random.randint(0, 2**31 - 1, size=2)  # the global RNG is seeded by generate
    oracle = LabelOracle(lambda z: classifier.predict(z, batch_size=batch_size))
    training = train_substitute(
        oracle, holdout, nb_classes=nb_classes, hidden=params["hidden"], rounds=params["rounds"],
        epochs_per_round=params["epochs_per_round"], lambda_=params["lambda_"], tau=params["tau"],
        batch_size=params["batch_size"], learning_rate=params["learning_rate"], seed=int(seeds[0]))
    queries = oracle.queries
    substitute = make_classifier(training.model, nb_classes=nb_classes)
    labels = np.argmax(y_onehot, axis=1)
    sub_clean = np.argmax(substitute.predict(x, batch_size=batch_size), axis=1)
    inner_labels = labels if params["inner_labels"] == "true" else sub_clean
    out = generate(substitute, x, inner_labels, params["inner"], params=params["inner_params"], seed=int(seeds[1]),
                   batch_size=batch_size)
    # reported, not used by the attack: how well the substitute mimics the target on the attacked images
    target_clean = np.argmax(classifier.predict(x, batch_size=batch_size), axis=1)
    info = {
        "substitute_accuracy": float(np.mean(sub_clean == labels)) if len(x) else float("nan"),
        "agreement_with_target": float(np.mean(sub_clean == target_clean)) if len(x) else float("nan"),
        "substitute_adversarial_accuracy": float(np.mean(out.adv_pred == labels)) if len(x) else float("nan"),
        "training_set_size": int(len(training.x)),
        "oracle_queries": int(queries),
        "rounds": training.rounds,
    }
    return out.x_adv, _SubstituteRun(info)
