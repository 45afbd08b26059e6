"""ART attacks adapted to annt: compiled gradients, seeded starting points, kept adversarial iterates.

What ART 1.20.1 does by itself, and what annt changes (the registry entries in
:mod:`annt.attacks.registry` name ART's classes; the runners here build these subclasses):

* **APGD** (``apgd``, AutoAttack's two APGD members). With ``loss_type`` set, ART replaces a
  ``TensorFlowV2Classifier`` -- annt's compiled one included -- by a new *stock* eager
  ``TensorFlowV2Classifier``, and its DLR loss loops over the batch in Python (it cannot be traced).
  Here APGD runs on a copy of annt's estimator (same class, same model) whose loss object is the APGD
  loss, so ``loss_gradient`` stays compiled; ``compute_loss`` (one call per iteration) evaluates the
  loss on the compiled logits. ART returns each start's *last* iterate; with ``keep_adversarial``
  annt keeps each sample's first adversarial iterate, as the paper's code keeps any adversarial
  iterate. Restarts run here: each from a fresh random point around ``x`` on the samples still unbroken.
* **Brendel & Bethge** (``bba``). ART always re-wraps a TensorFlow estimator into a stock eager one,
  and its ``generate`` couples the samples of a batch: the "best other class" of every row excludes
  the labels of *all* rows (``logits[:, labels] = -inf``: a targeted run then accepts points not
  classified as the target), the initial bisection moves all samples by one common fraction, the
  logit-margin loss is the batch mean (each sample's boundary gradient divided by the batch size),
  and the trust region grows with the batch size. Here each sample is attacked as if alone, on
  annt's compiled estimator, while samples with one label share the model calls (:func:`_bba_class`).
  ART draws starting points from an unseeded ``RandomState`` and fails (``AssertionError``) when a
  sample has none; here they come from :func:`random_starts` (seeded). Its results sit within float
  rounding of the boundary; :func:`past_the_boundary` moves them just past it, so they stay
  adversarial whatever batch they are predicted in.
* **HopSkipJump** (``hopskipjump``) and Boundary: starting points drawn here, seeded
  (:func:`random_starts`, used by :func:`annt.attacks.runner._run_from_random_starts`); ART would
  draw them from an unseeded ``RandomState``.
* **AutoAttack** (``autoattack``): ART's default member list (APGD-CE, APGD-DLR, DeepFool, Square,
  with ART's settings) built from the classes above, run in turn; ART's ``generate`` imports the
  ``multiprocess`` package even when it runs nothing in parallel, so the sequential loop is here.
  ART accepts a member's adversarial up to ``(1 + 1e-4) eps``; DeepFool's result is projected on the
  eps-ball first, so every kept adversarial is within eps.
* **Square** (``square``, AutoAttack's Square member): L∞ as ART ships it; ART's L2 update has an
  operator-precedence bug (NaN images, a weakened search), so the L2 loop is re-implemented
  after the paper's reference code (:func:`square_class`). Its runner refuses image sizes the
  squares do not fit (:func:`square_fits`), where ART would crash. It queries only ``predict``.

DeepFool runs as ART ships it; it calls ``predict`` and ``class_gradient``, which annt's estimator
compiles. Square and APGD draw from numpy's (and Square L∞ from Python's) global RNG, which
``generate`` seeds.
"""
from __future__ import annotations

import contextlib
import copy
import functools
import math

import numpy as np

__all__ = ["apgd_class", "random_starts", "run_apgd", "run_autoattack", "run_bba", "run_square", "square_class",
           "square_fits", "with_attack_loss"]


# --------------------------------------------------------------------------- attack losses
def _loss_functions() -> dict:
    """Per-sample losses of logits ``z`` (B, K) and one-hot labels ``y`` (B, K), as TensorFlow ops.

    * ``cross_entropy``: ``logsumexp(z) - z_y``.
    * ``difference_logits_ratio`` (Croce & Hein 2020): ``-(z_y - max_{i!=y} z_i) / (z_pi1 - z_pi3 + 1e-12)``
      with ``z_pi1 >= z_pi2 >= z_pi3`` the sorted logits.
    * ``logits_difference`` (Brendel & Bethge's boundary): ``z_y - max_{i!=y} z_i`` (negative: adversarial).
    """
    import tensorflow as tf

    def best_other(y, z):
        return tf.reduce_max(tf.where(y > 0.5, tf.constant(-np.inf, z.dtype), z), axis=1)

    def true_logit(y, z):
        return tf.reduce_sum(y * z, axis=1)

    def dlr(y, z):
        top = tf.math.top_k(z, k=3).values
        return -(true_logit(y, z) - best_other(y, z)) / (top[:, 0] - top[:, 2] + 1e-12)

    return {
        "cross_entropy": lambda y, z: tf.nn.softmax_cross_entropy_with_logits(labels=y, logits=z),
        "difference_logits_ratio": dlr,
        "logits_difference": lambda y, z: true_logit(y, z) - best_other(y, z),
    }


class AttackLoss:
    """An estimator loss object: :func:`_loss_functions`'s ``name`` per sample, reduced by ``reduction``.

    ``"sum"`` by default, so that each sample's input gradient is the gradient of its own loss whatever
    the batch (ART's stock losses take the batch mean). ART's ``compute_loss`` may set ``reduction``
    to a Keras ``Reduction`` value; ``"none"``, ``"sum"`` and the mean spellings are understood.
    """

    def __init__(self, name: str):
        self.name = name
        self.reduction = "sum"

    def per_sample(self, y, z):
        import tensorflow as tf

        return _loss_functions()[self.name](tf.cast(y, tf.float32), tf.cast(z, tf.float32))

    def __call__(self, y_true, y_pred, *args, **kwargs):
        import tensorflow as tf

        values = self.per_sample(y_true, y_pred)
        reduction = str(getattr(self.reduction, "value", self.reduction)).lower()
        if reduction == "none":
            return values
        return tf.reduce_sum(values) if reduction == "sum" else tf.reduce_mean(values)

    def __repr__(self) -> str:
        return f"AttackLoss({self.name!r})"


class FirstAdversarial:
    """Per row of one attack call: the first input seen that is adversarial (targeted: classified as
    the row's label; untargeted: not as it)."""

    def __init__(self, n: int, shape: tuple, targeted: bool):
        self.kept = np.zeros((n, *shape), dtype=np.float32)
        self.found = np.zeros(n, dtype=bool)
        self.targeted = targeted

    def update(self, x: np.ndarray, logits: np.ndarray, y_onehot: np.ndarray) -> None:
        if len(x) != len(self.found):  # not the rows this record was made for (ART dropped some): keep nothing
            return
        pred, label = np.argmax(logits, axis=1), np.argmax(y_onehot, axis=1)
        new = (pred == label if self.targeted else pred != label) & ~self.found
        self.kept[new] = x[new]
        self.found[new] = True


@functools.lru_cache(maxsize=None)
def _estimator_with_loss_class(base: type) -> type:
    from art.utils import check_and_transform_label_format

    class EstimatorWithAttackLoss(base):
        """``base`` (annt's estimator class) with an attack's :class:`AttackLoss`; ``compute_loss``
        evaluates it on ``predict``'s (compiled) logits and feeds :attr:`record` when one is set."""

        record: FirstAdversarial | None = None

        def compute_loss(self, x, y, reduction: str = "none", training_mode: bool = False, **kwargs):
            x = np.asarray(x, dtype=np.float32)
            y = check_and_transform_label_format(np.asarray(y), nb_classes=self.nb_classes).astype(np.float32)
            logits = self.predict(x, batch_size=max(len(x), 1), training_mode=training_mode)
            if self.record is not None:
                self.record.update(x, logits, y)
            values = self._loss_object.per_sample(y, logits).numpy()
            return values if reduction == "none" else (values.sum() if reduction == "sum" else values.mean())

    EstimatorWithAttackLoss.__name__ = EstimatorWithAttackLoss.__qualname__ = f"{base.__name__}WithAttackLoss"
    return EstimatorWithAttackLoss


def with_attack_loss(estimator, loss: str):
    """A shallow copy of ``estimator`` (same model and settings; compiled graphs are traced anew) whose
    loss object is :class:`AttackLoss` ``loss``. The original estimator is left unchanged."""
    clone = copy.copy(estimator)
    clone.__class__ = _estimator_with_loss_class(type(estimator))
    clone.set_params(loss_object=AttackLoss(loss))  # annt's estimator drops its compiled graphs here
    clone._reduce_labels = False  # AttackLoss takes one-hot labels
    return clone


def _adversarial(classifier, x: np.ndarray, labels: np.ndarray, targeted: bool, batch_size: int) -> np.ndarray:
    pred = np.argmax(classifier.predict(x, batch_size=batch_size), axis=1)
    return pred == labels if targeted else pred != labels


@contextlib.contextmanager
def _no_progress_bars():
    """ART's Brendel & Bethge shows a tqdm bar it has no switch for (it imports ``tqdm.auto.trange`` in ``generate``)."""
    import tqdm.auto

    trange = tqdm.auto.trange
    tqdm.auto.trange = functools.partial(trange, disable=True)
    try:
        yield
    finally:
        tqdm.auto.trange = trange


# --------------------------------------------------------------------------- starting points
def random_starts(classifier, x: np.ndarray, labels: np.ndarray, targeted: bool, init_size: int,
                  batch_size: int) -> tuple[np.ndarray, np.ndarray]:
    """Adversarial starting points for boundary-following attacks, from numpy's global RNG.

    Per sample: ``x`` itself if it already meets the criterion (targeted: classified as
    ``labels[i]``; untargeted: not as ``labels[i]``), else the first of ``init_size`` uniform images
    in ``[clip_min, clip_max]`` that does (the distribution and budget ART uses). ``generate`` seeds
    the RNG, so the same seed gives the same starts.

    :return: ``(starts, found)``; ``starts[i] = x[i]`` where ``found[i]`` is False (no start).
    """
    clip_min, clip_max = classifier.clip_values
    starts = x.copy()
    found = _adversarial(classifier, x, labels, targeted, batch_size)
    for i in np.flatnonzero(~found):
        draws = np.random.uniform(clip_min, clip_max, size=(init_size, *x.shape[1:])).astype(np.float32)
        cls = np.argmax(classifier.predict(draws, batch_size=batch_size), axis=1)
        hits = np.flatnonzero(cls == labels[i] if targeted else cls != labels[i])
        if hits.size:
            starts[i], found[i] = draws[hits[0]], True
    return starts, found


# --------------------------------------------------------------------------- APGD
@functools.lru_cache(maxsize=None)
def apgd_class():
    """ART's ``AutoProjectedGradientDescent`` on annt's estimator (see the module docstring).

    Extra attribute ``keep_adversarial`` (default True). ``generate`` needs labels ``y``.
    """
    from art.attacks.evasion import AutoProjectedGradientDescent
    from art.utils import check_and_transform_label_format

    class APGD(AutoProjectedGradientDescent):
        keep_adversarial = True

        @functools.wraps(AutoProjectedGradientDescent.__init__)  # ART's signature: runner._art_kwargs reads it
        def __init__(self, estimator, *args, loss_type: str | None = "cross_entropy", **kwargs):
            # loss_type=None: ART uses the estimator as given (no stock re-wrap); the loss is set here.
            super().__init__(with_attack_loss(estimator, loss_type or "cross_entropy"), *args, loss_type=None, **kwargs)
            self.loss_type = loss_type or "cross_entropy"

        def generate(self, x: np.ndarray, y: np.ndarray | None = None, **kwargs) -> np.ndarray:
            if y is None:
                raise ValueError("APGD needs labels y (true labels, or targets when targeted)")
            y = check_and_transform_label_format(y, nb_classes=self.estimator.nb_classes).astype(np.float32)
            labels = np.argmax(y, axis=1)
            x = np.asarray(x, dtype=np.float32)
            x_adv = x.copy()
            restarts, self.nb_random_init = self.nb_random_init, 1
            try:
                for _ in range(restarts):
                    todo = np.flatnonzero(~_adversarial(self.estimator, x_adv, labels, self.targeted, self.batch_size))
                    for rows in np.array_split(todo, -(-len(todo) // self.batch_size)) if len(todo) else []:
                        # ART attacks the rows it finds unbroken at x: all of them, in order, in one batch
                        record = FirstAdversarial(len(rows), x.shape[1:], self.targeted) if self.keep_adversarial else None
                        self.estimator.record = record
                        x_last = super().generate(x[rows], y=y[rows], **kwargs)
                        if record is not None:
                            x_last = np.where(record.found.reshape(-1, *[1] * (x.ndim - 1)), record.kept, x_last)
                        x_adv[rows] = x_last
            finally:
                self.nb_random_init = restarts
                self.estimator.record = None
            return x_adv

    return APGD


def run_apgd(spec, classifier, x, y_onehot, params, targeted, batch_size):
    """Runner of ``apgd``."""
    from annt.attacks.runner import _build_attack

    attack = _build_attack(spec, classifier, params, targeted, batch_size, cls=apgd_class())
    attack.keep_adversarial = params["keep_adversarial"]
    return attack.generate(x, y=y_onehot), attack


# --------------------------------------------------------------------------- Square
def square_fits(norm, p_init: float, height: int, width: int) -> str | None:
    """Why the Square attack cannot run on ``height x width`` images, or None if it can.

    Its first square has side ``round(sqrt(p_init * height * width))`` (L2: at least 3, made odd) and
    must be smaller than the image (ART draws its corner with ``randint(0, side - height)``); the L2
    version starts from a 5 x 5 grid of tiles of side ``min(height, width) // 5``.
    """
    side = int(round(math.sqrt(p_init * height * width)))
    if norm == 2:
        if min(height, width) < 5:
            return f"square's L2 version needs images at least 5 pixels high and wide; these are {height}x{width}"
        side = max(side, 3) + (max(side, 3) % 2 == 0)
    if max(side, 1) >= min(height, width):
        return (f"square's first square ({side} pixels) must be smaller than the {height}x{width} image; "
                "use a smaller p_init")
    return None


def _pseudo_gaussian(rows: int, cols: int) -> np.ndarray:
    """The reference code's bump: nested rectangles around the centre, weights 1/k^2, unit L2 norm."""
    delta = np.zeros((rows, cols))
    r, c = rows // 2, cols // 2
    for k in range(max(r, c) + 1):
        delta[max(r, 0):min(r + 2 * k + 1, rows), max(c, 0):min(c + 2 * k + 1, cols)] += 1.0 / (k + 1) ** 2
        r, c = r - 1, c - 1
    return delta / max(np.sqrt(np.sum(delta**2)), 1e-12)


def _square_update(side: int) -> np.ndarray:
    """A ``side x side`` L2 update: a positive bump above a negative one (unit norm), transposed with probability 1/2."""
    delta = np.concatenate([_pseudo_gaussian(side // 2, side), -_pseudo_gaussian(side - side // 2, side)])
    delta /= np.sqrt(np.sum(delta**2))
    return delta.T if np.random.rand() > 0.5 else delta


def _square_loss(logits: np.ndarray, y_onehot: np.ndarray) -> np.ndarray:
    """ART's ``SquareAttack._get_logits_diff`` from logits: the label's logit minus the second-highest logit."""
    label = np.take_along_axis(logits, np.argmax(y_onehot, axis=1)[:, None], axis=1)
    second = np.take_along_axis(logits, np.argsort(logits, axis=1)[:, -2][:, None], axis=1)
    return (label - second)[:, 0]


def _unit_l2(d: np.ndarray, axis) -> np.ndarray:
    return np.sqrt(np.sum(d**2, axis=axis, keepdims=True))


@functools.lru_cache(maxsize=None)
def square_class():
    """ART's ``SquareAttack`` with one forward pass per iteration, and its L2 version re-implemented after the
    paper's reference code.

    *One pass per iteration.* ART 1.20.1 predicts three times per iteration: every image (to find those still
    robust), the robust ones again (their current margin) and the candidates. Here the logits of the current
    images are kept and replaced where a candidate is accepted, so only the candidates are predicted. Same
    proposals, same random draws in the same order, same acceptance rule (ART's ``_get_logits_diff`` margin,
    strictly lower): on a model whose outputs do not depend on the batch the images are ART's exactly
    (tests/test_new_attacks.py); on TensorFlow models a candidate that ties its image's margin to float noise
    can be decided the other way.

    *L2.* ART 1.20.1 rescales a window's new perturbation with ``delta_new /= norm(delta_new) * budget``:
    it *divides* by the window's L2 budget ``sqrt(max(eps^2 - |delta|^2, 0) / c + |delta_windows|^2)``
    instead of scaling to it, so the window swamps the perturbation found so far, and a budget of 0
    gives NaN images (ART then counts them as adversarial: argmax of NaN logits is class 0). Here the
    L2 loop (images NHWC) follows the reference: same schedule of square sizes (ART's
    ``_get_percentage_of_elements``), same loss (ART's logit margin), same restarts. The L∞ proposals are ART's.
    """
    from art.attacks.evasion import SquareAttack
    from art.utils import check_and_transform_label_format

    class Square(SquareAttack):
        def generate(self, x: np.ndarray, y: np.ndarray | None = None, **kwargs) -> np.ndarray:
            if y is None:
                raise ValueError("Square needs labels y")
            if self.estimator.channels_first:
                raise ValueError("Square here takes NHWC images")
            y = check_and_transform_label_format(y, nb_classes=self.estimator.nb_classes)
            x = np.asarray(x, dtype=np.float32)
            x_adv = x.copy()
            clean_logits = self.estimator.predict(x, batch_size=self.batch_size)
            logits = clean_logits.copy()  # of x_adv, row by row
            linf = self.norm != 2
            for _ in range(self.nb_restarts):
                robust = np.flatnonzero(~self.adv_criterion(logits, y))
                if not robust.size:
                    break
                # a restart starts from the clean images, kept where its first candidate does not beat them
                x0 = x[robust]
                self._keep_better(x_adv, logits, robust, x0, clean_logits[robust],
                                  self.propose_start_linf(x0) if linf else self.propose_start(x0), y)
                for i_iter in range(self.max_iter):
                    robust = np.flatnonzero(~self.adv_criterion(logits, y))
                    if not robust.size:
                        break
                    x0, x_best = x[robust], x_adv[robust]
                    x_new = self.propose_linf(x0, x_best, i_iter) if linf else self.propose(x0, x_best, i_iter)
                    self._keep_better(x_adv, logits, robust, x_best, logits[robust], x_new, y)
            return x_adv

        def _keep_better(self, x_adv, logits, rows, x_best, best_logits, x_new, y):
            """Rows ``rows`` of ``x_adv`` (and ``logits``): ``x_new`` (clipped to the pixel range) where it lowers
            ART's margin loss below ``x_best``'s, else ``x_best``. One forward pass, of the candidates."""
            x_new = np.clip(x_new, *self.estimator.clip_values).astype(np.float32)
            new_logits = self.estimator.predict(x_new, batch_size=self.batch_size)
            better = _square_loss(new_logits, y[rows]) - _square_loss(best_logits, y[rows]) < 0.0
            x_adv[rows] = np.where(better.reshape(-1, 1, 1, 1), x_new, x_best)
            logits[rows] = np.where(better.reshape(-1, 1), new_logits, best_logits)

        def propose_start_linf(self, x0):
            """ART's L∞ start: vertical stripes of ±eps, one sign per image, column and channel."""
            n, _, w, c = x0.shape
            return x0 + self.eps * np.random.choice([-1, 1], size=(n, 1, w, c))

        def propose_linf(self, x0, x_best, i_iter):
            """ART's L∞ step: one square of ±2·eps per channel (position and signs shared by the batch, as ART
            draws them), projected on the eps-ball around ``x0``."""
            h, w, c = x0.shape[1:]
            side = max(int(round(math.sqrt(self._get_percentage_of_elements(i_iter) * h * w))), 1)
            row, col = np.random.randint(0, h - side), np.random.randint(0, w - side)
            delta = np.zeros((h, w, c))
            delta[row:row + side, col:col + side, :] = np.random.choice([-2 * self.eps, 2 * self.eps], size=[1, 1, c])
            return np.minimum(np.maximum(x_best + delta, x0 - self.eps), x0 + self.eps)

        def propose_start(self, x0):
            """5 x 5 tiles of bumps with random signs per channel, scaled to norm eps (before clipping)."""
            n, h, w, c = x0.shape
            side = min(h, w) // 5
            delta = np.zeros(x0.shape)
            for i in range(5):
                for j in range(5):
                    delta[:, i * side:(i + 1) * side, j * side:(j + 1) * side, :] += (
                        _square_update(side)[None, :, :, None] * np.random.choice([-1, 1], size=(n, 1, 1, c)))
            return x0 + self.eps * delta / np.maximum(_unit_l2(delta, (1, 2, 3)), 1e-12)

        def propose(self, x0, x_best, i_iter):
            """Iteration ``i_iter``'s candidate (before clipping): window 2's perturbation moves into window 1
            with a new bump; the window gets the norm left over, so the total is eps and the rest is unchanged."""
            n, h, w, c = x0.shape
            side = max(int(round(math.sqrt(self._get_percentage_of_elements(i_iter) * h * w))), 3)
            side += side % 2 == 0
            r1, c1, r2, c2 = (np.random.randint(0, h - side), np.random.randint(0, w - side),
                              np.random.randint(0, h - side), np.random.randint(0, w - side))
            win1 = (slice(None), slice(r1, r1 + side), slice(c1, c1 + side), slice(None))
            win2 = (slice(None), slice(r2, r2 + side), slice(c2, c2 + side), slice(None))
            delta = (x_best - x0).astype(np.float64)
            both = np.zeros(x0.shape)
            both[win1] = both[win2] = 1.0
            budget = np.sqrt(np.maximum(self.eps**2 - _unit_l2(delta, (1, 2, 3)) ** 2, 0) / c
                             + _unit_l2(delta * both, (1, 2)) ** 2)  # per sample and channel
            new = (_square_update(side)[None, :, :, None] * np.random.choice([-1, 1], size=(n, 1, 1, c))
                   + delta[win1] / (1e-10 + _unit_l2(delta[win1], (1, 2))))
            new = new / np.maximum(_unit_l2(new, (1, 2)), 1e-12) * budget
            delta[win2] = 0.0
            delta[win1] = new
            return x0 + self.eps * delta / np.maximum(_unit_l2(delta, (1, 2, 3)), 1e-12)

    return Square


def run_square(spec, classifier, x, y_onehot, params, targeted, batch_size):
    """Runner of ``square``: :func:`square_class`, after checking that its squares fit the images."""
    from annt.attacks.runner import _build_attack
    from annt.errors import ConfigError

    problem = square_fits(params["norm"], params["p_init"], *x.shape[1:3])
    if problem:
        key = "norm" if params["norm"] == 2 and min(x.shape[1:3]) < 5 else "p_init"
        raise ConfigError(f"attack.params.{key} = {params[key]}: {problem}")
    attack = _build_attack(spec, classifier, params, targeted, batch_size, cls=square_class())
    return attack.generate(x, y=y_onehot), attack


# --------------------------------------------------------------------------- AutoAttack
@functools.lru_cache(maxsize=None)
def _deepfool_in_ball_class():
    from art.attacks.evasion import DeepFool
    from art.utils import projection

    class DeepFoolInBall(DeepFool):
        """DeepFool whose result is projected on the eps-ball ``ball = (eps, norm)`` around ``x``."""

        ball: tuple = (np.inf, 2)

        def generate(self, x: np.ndarray, y: np.ndarray | None = None, **kwargs) -> np.ndarray:
            x = np.asarray(x, dtype=np.float32)
            delta = super().generate(x, y, **kwargs) - x
            return (x + projection(delta, *self.ball)).astype(np.float32)

    return DeepFoolInBall


@functools.lru_cache(maxsize=None)
def _autoattack_class():
    from art.attacks.evasion import AutoAttack
    from art.attacks.evasion.auto_attack import run_attack
    from art.utils import check_and_transform_label_format

    class SequentialAutoAttack(AutoAttack):
        """ART's ``AutoAttack.generate`` without its parallel branch (and the ``multiprocess`` import),
        untargeted: each member attacks the samples still robust; ``best_attacks[i]`` is the index of
        the member that broke sample ``i`` (-1: none, -2: misclassified before any attack)."""

        def generate(self, x: np.ndarray, y: np.ndarray | None = None, **kwargs) -> np.ndarray:
            y = check_and_transform_label_format(y, nb_classes=self.estimator.nb_classes)
            x_adv = np.array(x, dtype=np.float32)
            robust = ~_adversarial(self.estimator, x_adv, np.argmax(y, axis=1), False, self.batch_size)
            self.best_attacks = np.where(robust, self.SAMPLE_DEFAULT, self.SAMPLE_MISCLASSIFIED)
            for i, attack in enumerate(self.attacks):
                if not robust.any():
                    break
                x_adv, robust = run_attack(x=x_adv, y=y, sample_is_robust=robust, attack=attack,
                                           estimator_orig=self.estimator, norm=self.norm, eps=self.eps, **kwargs)
                self.best_attacks[(self.best_attacks == self.SAMPLE_DEFAULT) & ~robust] = i
            return x_adv

    return SequentialAutoAttack


def run_autoattack(spec, classifier, x, y_onehot, params, targeted, batch_size):
    """Runner of ``autoattack``: ART's default members and settings, except the configurable
    ``max_iter``/``restarts`` (APGD) and ``queries``/``restarts`` (Square)."""
    from annt.attacks.runner import _art_kwargs

    from annt.errors import ConfigError

    art = spec.to_art(params)
    eps, norm = art["eps"], art["norm"]
    problem = square_fits(norm, 0.8, *x.shape[1:3])
    if problem:
        raise ConfigError(f"attack.params.norm = {norm}: the Square member cannot run: {problem}")
    apgd = apgd_class()
    common = {"norm": norm, "eps": eps, "eps_step": art["eps_step"], "max_iter": params["max_iter"],
              "nb_random_init": params["restarts"], "batch_size": batch_size, "verbose": False}
    deepfool = _deepfool_in_ball_class()(classifier, max_iter=100, epsilon=1e-3, nb_grads=10,
                                         batch_size=batch_size, verbose=False)
    deepfool.ball = (eps, norm)
    members = [
        apgd(classifier, loss_type="cross_entropy", **common),
        apgd(classifier, loss_type="difference_logits_ratio", **common),
        deepfool,
        square_class()(classifier, norm=norm, max_iter=params["queries"], eps=eps, p_init=0.8,
                     nb_restarts=params["restarts"], batch_size=batch_size, verbose=False),
    ]
    cls = _autoattack_class()
    attack = cls(classifier, attacks=members, **_art_kwargs(cls, art, False, batch_size))
    return attack.generate(x, y=y_onehot), attack


# --------------------------------------------------------------------------- Brendel & Bethge
@functools.lru_cache(maxsize=None)
def _bba_class():
    from art.attacks.evasion.brendel_bethge import BrendelBethgeAttack

    class BBA(BrendelBethgeAttack):
        """ART's Brendel & Bethge on annt's estimator, each sample on its own; ``generate`` needs
        adversarial ``starting_points``.

        ART's ``generate`` couples the rows of a batch; each coupling is undone here, so that every
        sample is attacked as if alone (as in the paper), while rows with one label still share
        the model calls: starts are bisected to the boundary per sample (ART's bisection moves the
        batch by one fraction), ART runs once per label (it sets the logits of *every* row's label
        to -inf when it looks for a row's best other class), ``lr`` is divided by the rows of the
        run (ART's trust region is ``lr`` times the size of the whole batch array), and the margin
        loss is summed, not averaged.
        """

        @functools.wraps(BrendelBethgeAttack.__init__)  # ART's signature: runner._art_kwargs reads it
        def __init__(self, estimator, *args, **kwargs):
            super().__init__(estimator, *args, **kwargs)
            self._estimator = with_attack_loss(estimator, "logits_difference")  # replaces ART's stock re-wrap

        def generate(self, x: np.ndarray, y: np.ndarray | None = None, **kwargs) -> np.ndarray:
            x = np.asarray(x, dtype=np.float32)
            labels = np.argmax(y, axis=1)
            starts = self._bisect(x, np.asarray(kwargs.pop("starting_points"), dtype=np.float32), labels)
            x_adv, lr = np.empty_like(x), self.lr
            try:
                with _no_progress_bars():
                    for label in np.unique(labels):
                        rows = np.flatnonzero(labels == label)
                        self.lr = lr / len(rows)
                        x_adv[rows] = super().generate(x[rows], y=y[rows], starting_points=starts[rows], **kwargs)
            finally:
                self.lr = lr
            return x_adv

        def _bisect(self, x0: np.ndarray, x1: np.ndarray, labels: np.ndarray) -> np.ndarray:
            """Per sample, the point of ART's ``mid_points`` path from ``x0`` to adversarial ``x1`` closest to
            ``x0`` that is still adversarial, within 2^-binary_search_steps of the path."""
            low, high = np.zeros(len(x0)), np.ones(len(x0))
            for _ in range(self.binary_search_steps):
                mid = (low + high) / 2
                adv = _adversarial(self.estimator, self.mid_points(x0, x1, mid, self.estimator.clip_values), labels,
                                   self.targeted, self.batch_size)
                low, high = np.where(adv, low, mid), np.where(adv, mid, high)
            return self.mid_points(x0, x1, high, self.estimator.clip_values)

    return BBA


#: Brendel & Bethge ends within float rounding of the decision boundary (logit margins ~1e-6, which
#: a different batch composition flips: measured on Mnist A); its results are pushed this far past it.
BOUNDARY_MARGIN = 1e-4
_OVERSHOOTS = (0.0, 1e-4, 1e-3, 3e-3, 1e-2, 3e-2, 0.1)


def _margin(logits: np.ndarray, labels: np.ndarray, targeted: bool) -> np.ndarray:
    """Negative where adversarial: untargeted ``z_y - max_{i!=y} z_i``, targeted ``max_{i!=t} z_i - z_t``."""
    rows = np.arange(len(labels))
    other = logits.copy()
    other[rows, labels] = -np.inf
    gap = logits[rows, labels] - other.max(axis=1)
    return -gap if targeted else gap


def past_the_boundary(classifier, x, x_adv, labels, targeted, batch_size) -> np.ndarray:
    """Per sample, ``x + (1 + tau) (x_adv - x)`` (clipped) for the smallest ``tau`` in
    ``(0, 1e-4, 1e-3, 3e-3, 1e-2, 3e-2, 0.1)`` whose logit margin is below ``-BOUNDARY_MARGIN``;
    ``x_adv`` where none is."""
    out = x_adv.copy()
    todo = np.ones(len(x), dtype=bool)
    for tau in _OVERSHOOTS:
        cand = np.clip(x + (1 + tau) * (x_adv - x), *classifier.clip_values).astype(np.float32)
        done = todo & (_margin(classifier.predict(cand, batch_size=batch_size), labels, targeted) < -BOUNDARY_MARGIN)
        out[done] = cand[done]
        todo &= ~done
        if not todo.any():
            break
    return out


def run_bba(spec, classifier, x, y_onehot, params, targeted, batch_size):
    """Runner of ``bba``: seeded starts (:func:`random_starts`, criterion against ``y``: the true
    label, or the target), which ART bisects to the boundary; results pushed just past the boundary
    (:func:`past_the_boundary`); samples adversarial at ``x`` and samples without a start are
    returned as ``x``."""
    from annt.attacks.runner import _build_attack

    labels = np.argmax(y_onehot, axis=1)
    at_x = _adversarial(classifier, x, labels, targeted, batch_size)
    starts, found = random_starts(classifier, x, labels, targeted, params["init_size"], batch_size)
    attack = _build_attack(spec, classifier, params, targeted, batch_size, cls=_bba_class())
    x_adv = x.copy()
    run = found & ~at_x
    if run.any():
        found_adv = attack.generate(x[run], y=y_onehot[run], starting_points=starts[run])
        x_adv[run] = past_the_boundary(classifier, x[run], found_adv, labels[run], targeted, batch_size)
    return x_adv, attack
