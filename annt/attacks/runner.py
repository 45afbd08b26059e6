"""Running attacks on arrays: one batch (:func:`generate`) and a whole selection in batches (:func:`attack`).

Conventions: ART attacks get the *true* labels as ``y`` when untargeted (success means leaving the
true class, not the model's prediction) and the target labels when targeted. Images are float32
NHWC on the [0, 1] pixel scale. ART and TensorFlow are imported when an attack runs.
"""
from __future__ import annotations

import functools
import importlib
import inspect
import weakref
from dataclasses import dataclass
from typing import Any, Mapping

import numpy as np

from annt.attacks.registry import ATTACKS, AttackSpec, attack_spec, gradient_options, validate_attack_params
from annt.errors import ConfigError
from annt.evaluation.metrics import sample_records, summarize
from annt.evaluation.predict import predict_labels
from annt.progress import progress_bar


@dataclass
class AttackOutput:
    """Result of :func:`generate` on one batch (float32 images on the [0, 1] scale).

    :ivar success: targeted: ``adv_pred == target``; untargeted: ``adv_pred != y`` (evasion).
    :ivar evaded: ``adv_pred != y`` in both cases (what adversarial accuracy counts).
    :ivar target: target class per sample (targeted runs, and JSMA's random targets), else None.
    :ivar perturbation: universal perturbation, shape ``(1, *image_shape)`` (``uap`` only).
    :ivar fooling_rate: fraction of the selection whose label the perturbation changes (``uap`` only).
    :ivar members: ``ensemble`` only: ``names`` (member labels), ``evaded`` (members x samples: broken
        within the threat model) and ``broken_by`` (index of the first member that broke each sample, -1: none).
    :ivar info: JSON-ready facts about the run for ``results.json`` (``substitute``: the substitute's
        accuracy and agreement with the target, its training set size, the oracle queries).
    """

    x_adv: np.ndarray
    clean_pred: np.ndarray
    adv_pred: np.ndarray
    success: np.ndarray
    evaded: np.ndarray
    target: np.ndarray | None
    params: dict
    perturbation: np.ndarray | None = None
    fooling_rate: float | None = None
    members: dict | None = None
    info: dict | None = None


def resolve_targets(y: np.ndarray, target: Any, nb_classes: int = 10, seed: int = 0) -> np.ndarray:
    """Target class per sample.

    ``"next"``: ``(y + 1) mod nb_classes``; ``"random"``: uniform over the classes other than ``y``,
    drawn from ``np.random.default_rng(seed)``; an int: that class for all; an int array: as given.
    ``"all_other"`` (one adversarial per image and other class) changes the rows themselves: expand
    them first with :func:`annt.evaluation.advset.expand_all_other`, then pass the targets it returns.
    """
    y = np.asarray(y)
    if isinstance(target, str):
        if target == "all_other":
            raise ValueError("target 'all_other' needs one row per (image, class): expand the samples with "
                             "annt.evaluation.advset.expand_all_other and pass its targets")
        if target == "next":
            return ((y + 1) % nb_classes).astype(np.int64)
        if target == "random":
            shift = np.random.default_rng(seed).integers(1, nb_classes, size=len(y))
            return ((y + shift) % nb_classes).astype(np.int64)
        raise ValueError(f"target must be 'next', 'random', an int or an int array, got {target!r}")
    t = np.broadcast_to(np.asarray(target, dtype=np.int64), y.shape).copy()
    if t.size and (t.min() < 0 or t.max() >= nb_classes):
        raise ValueError(f"target classes must lie in [0, {nb_classes})")
    return t


# Wrapping a Keras model traces new graphs; remember the wrapper so per-batch calls reuse it.
_CLASSIFIERS: "weakref.WeakKeyDictionary[Any, Any]" = weakref.WeakKeyDictionary()


def _as_classifier(model_or_classifier, nb_classes: int, options: Mapping[str, Any] | None = None):
    """The estimator for a model (cached per model) or the classifier given, with the gradient
    ``options`` (``temperature``, ``eot_samples``, ``bpda``): annt's estimator derives one per option
    set and caches it (:meth:`~annt.attacks.estimator.FastTensorFlowV2Classifier.with_gradient_options`)."""
    from art.estimators.classification.classifier import ClassifierMixin

    if isinstance(model_or_classifier, ClassifierMixin):
        clf = model_or_classifier
    else:
        from annt.attacks.estimator import make_classifier

        clf = _CLASSIFIERS.get(model_or_classifier)
        if clf is None:
            clf = make_classifier(model_or_classifier, nb_classes=nb_classes)
            _CLASSIFIERS[model_or_classifier] = clf
    if not options:
        return clf
    if hasattr(clf, "with_gradient_options"):
        return clf.with_gradient_options(**options)
    from annt.attacks.estimator import GradientOptions

    if GradientOptions(**options) != GradientOptions():
        raise ValueError(f"gradient options {dict(options)} need annt's estimator "
                         f"(annt.attacks.estimator.make_classifier), not {type(clf).__name__}")
    return clf


def _seed_everything(seed: int) -> None:
    """Seed Python's ``random`` (UAP's shuffle), numpy's global RNG (ART's random starts and
    targets) and TensorFlow, so the same inputs and seed give byte-identical outputs."""
    import keras

    keras.utils.set_random_seed(int(seed))


def _import_class(path: str):
    module, _, name = path.rpartition(".")
    return getattr(importlib.import_module(module), name)


def _art_kwargs(cls, art_params: dict, targeted: bool, batch_size: int) -> dict:
    """Constructor kwargs: the attack's params plus the generic ones the class accepts."""
    accepted = inspect.signature(cls.__init__).parameters
    kwargs = dict(art_params)
    for key, value in (("targeted", targeted), ("batch_size", batch_size), ("verbose", False)):
        if key in accepted:
            kwargs[key] = value
    return kwargs


def _build_attack(spec: AttackSpec, classifier, params: dict, targeted: bool, batch_size: int, cls=None):
    cls = cls if cls is not None else _import_class(spec.art_class)
    art_params = spec.to_art(params) if spec.to_art else dict(params)
    return cls(classifier, **_art_kwargs(cls, art_params, targeted, batch_size))


def _run_art(spec, classifier, x, y_onehot, params, targeted, batch_size):
    attack = _build_attack(spec, classifier, params, targeted, batch_size)
    return attack.generate(x, y=y_onehot), attack


@functools.lru_cache(maxsize=None)
def _pgd_keep_adversarial_class():
    """ART's numpy PGD, recording each sample's first adversarial iterate.

    ART returns the last iterate of the best start; on 1-bit models the loss surface is flat
    almost everywhere, iterates step in and out of the adversarial region, and the last iterate
    overstates accuracy (SPEC §6). After every step we predict the batch and keep, per sample, the
    first iterate that is adversarial (untargeted: class != y; targeted: class == target).
    """
    from art.attacks.evasion.projected_gradient_descent.projected_gradient_descent_numpy import (
        ProjectedGradientDescentNumpy,
    )

    class PGDKeepAdversarial(ProjectedGradientDescentNumpy):
        def begin(self, n: int, shape: tuple) -> None:
            self.kept = np.zeros((n, *shape), dtype=np.float32)
            self.found = np.zeros(n, dtype=bool)

        def _compute(self, x, x_init, y, mask, eps, eps_step, project, random_init, batch_id_ext=None, **kw):
            x_next = super()._compute(x, x_init, y, mask, eps, eps_step, project, random_init, batch_id_ext, **kw)
            start = (batch_id_ext or 0) * self.batch_size
            pred = np.argmax(self.estimator.predict(x_next, batch_size=self.batch_size), axis=1)
            label = np.argmax(y, axis=1)
            adversarial = pred == label if self.targeted else pred != label
            rows = np.arange(start, start + len(x_next))
            new = adversarial & ~self.found[rows]
            self.kept[rows[new]] = x_next[new]
            self.found[rows[new]] = True
            return x_next

    return PGDKeepAdversarial


def _run_pgd(spec, classifier, x, y_onehot, params, targeted, batch_size):
    if not params["keep_adversarial"]:
        return _run_art(spec, classifier, x, y_onehot, params, targeted, batch_size)
    attack = _build_attack(spec, classifier, params, targeted, batch_size, cls=_pgd_keep_adversarial_class())
    attack.begin(len(x), x.shape[1:])
    x_last = attack.generate(x, y=y_onehot)
    return np.where(attack.found.reshape(-1, *[1] * (x.ndim - 1)), attack.kept, x_last), attack


def _run_from_random_starts(spec, classifier, x, y_onehot, params, targeted, batch_size):
    """ART's Boundary or HopSkipJump attack with starting points drawn here from the seeded global RNG.

    ART draws them from an unseeded ``np.random.RandomState()``, which would make runs
    irreproducible. Same distribution and budget as ART: up to ``init_size`` uniform images in
    [clip_min, clip_max]; the first one that is adversarial (targeted: classified as the target;
    untargeted: not as the clean prediction, ART's criterion for both) starts the walk
    (:func:`annt.attacks.art_attacks.random_starts`). Samples without one are returned unchanged
    (ART would report the attack as failed for them too).
    """
    from annt.attacks.art_attacks import random_starts

    clean = np.argmax(classifier.predict(x, batch_size=batch_size), axis=1)
    labels = np.argmax(y_onehot, axis=1) if targeted else clean
    x_init, found = random_starts(classifier, x, labels, targeted, params["init_size"], batch_size)
    attack = _build_attack(spec, classifier, params, targeted, batch_size)
    x_adv = x.copy()
    if found.any():
        x_adv[found] = attack.generate(x[found], y=y_onehot[found], x_adv_init=x_init[found])
    return x_adv, attack


def generate(
    classifier_or_model,
    x: np.ndarray,
    y: np.ndarray,
    name: str,
    *,
    params: Mapping[str, Any] | None = None,
    targeted: bool = False,
    target: Any = None,
    seed: int = 0,
    batch_size: int | None = None,
    nb_classes: int = 10,
    holdout: np.ndarray | None = None,
) -> AttackOutput:
    """Run attack ``name`` on one batch ``x`` (float32 NHWC in [0, 1]) with true labels ``y``.

    :param classifier_or_model: an ART classifier, or a Keras model (logits) wrapped with
        :func:`annt.attacks.estimator.make_classifier` (cached per model).
    :param y: true labels, indices ``(N,)`` or one-hot ``(N, nb_classes)``.
    :param params: attack parameters; validated and completed with defaults here. The gradient
        options among them (``temperature``, ``eot_samples``, ``bpda``) select the estimator
        (:func:`_as_classifier`); the rest go to the attack.
    :param targeted: aim for ``target`` instead of any wrong class.
    :param target: ``"next"`` (default when targeted), ``"random"`` (seeded by ``seed``), an int, or
        an int array per sample; see :func:`resolve_targets`.
    :param seed: seeds Python, numpy and TensorFlow before ART runs. Callers looping over batches
        should pass a different seed per batch (e.g. ``seed + batch_index``) for independent noise.
    :param batch_size: ART's internal batch size; default ``len(x)`` (the whole batch at once).
    :param holdout: clean images, never among ``x``, for attacks that need held-out data
        (``AttackSpec.holdout``: ``substitute`` trains its substitute from them); ignored by the others.
    """
    spec = attack_spec(name)
    resolved = validate_attack_params(name, params)
    if targeted and spec.targeted == "never":
        raise ConfigError(f"attack.targeted: {name} has no targeted variant; use targeted: false")

    x = np.ascontiguousarray(x, dtype=np.float32)
    y = np.asarray(y)
    labels = (np.argmax(y, axis=1) if y.ndim == 2 else y).astype(np.int64)
    options = gradient_options(spec, resolved)
    classifier = _as_classifier(classifier_or_model, nb_classes, options)
    nb_classes = classifier.nb_classes
    batch_size = int(batch_size or max(len(x), 1))

    targets = None
    if targeted:
        targets = resolve_targets(labels, "next" if target is None else target, nb_classes, seed)
    elif spec.targeted == "always":
        # ART's JSMA only moves towards a target; untargeted = random wrong class, seeded like ours.
        targets = resolve_targets(labels, "random", nb_classes, seed)
    art_labels = targets if targets is not None else labels
    y_onehot = np.eye(nb_classes, dtype=np.float32)[art_labels]

    clean_pred = np.argmax(classifier.predict(x, batch_size=batch_size), axis=1)
    _seed_everything(seed)
    if hasattr(classifier, "calibrate"):
        classifier.calibrate(x, labels)  # njs / hns temperatures: fitted to this clean batch and its true labels
    runner = _import_class(spec.runner.replace(":", ".")) if ":" in spec.runner else globals()[spec.runner]
    art_params = {k: v for k, v in resolved.items() if k not in options}  # gradient options went to the estimator
    extra = {}
    if spec.holdout:
        if holdout is None:
            raise ValueError(f"{name} needs held-out clean images (holdout=...), never among the attacked ones")
        extra["holdout"] = np.ascontiguousarray(holdout, dtype=np.float32)
    x_adv, attack = runner(spec, classifier, x, y_onehot, art_params, targeted or spec.targeted == "always", batch_size,
                           **extra)
    x_adv = np.asarray(x_adv, dtype=np.float32)
    adv_pred = np.argmax(classifier.predict(x_adv, batch_size=batch_size), axis=1)

    evaded = adv_pred != labels
    extras = {field_name: getattr(attack, attr) for field_name, attr in spec.extras.items()}
    if extras.get("perturbation") is not None:
        extras["perturbation"] = np.asarray(extras["perturbation"], dtype=np.float32)
    if extras.get("fooling_rate") is not None:
        extras["fooling_rate"] = float(extras["fooling_rate"])
    return AttackOutput(
        x_adv=x_adv,
        clean_pred=clean_pred,
        adv_pred=adv_pred,
        success=(adv_pred == targets) if targeted else evaded,
        evaded=evaded,
        target=targets,
        params=resolved,
        **extras,
    )


# --------------------------------------------------------------------------- a whole selection
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
    members: dict | None = None
    info: dict | None = None


def attack(model, x: np.ndarray, y: np.ndarray, name: str, *, index: np.ndarray | None = None,
           targeted: bool = False, target: Any = None, seed: int = 0, batch_size: int = 50,
           progress: bool = False, holdout: np.ndarray | None = None, nb_classes: int = 10,
           **params) -> AttackResult:
    """Attack arrays ``x`` (float32 NHWC in [0, 1]) with labels ``y`` on ``model`` (a Keras model
    returning logits, or an ART classifier). ``params`` are the attack's parameters (ART's meaning;
    see ``annt.attacks.ATTACKS[name]``). Returns the adversarial array and per-sample records.
    ``target="all_other"`` (targeted) attacks every image towards each of the other ``nb_classes - 1``
    classes: the result has one row per (image, class), image-major
    (:func:`annt.evaluation.advset.expand_all_other`). ``holdout``: held-out clean images for
    ``substitute``.
    """
    spec = ATTACKS[name] if name in ATTACKS else None
    y = np.asarray(y).astype(np.int64)
    index = np.arange(len(y)) if index is None else np.asarray(index)
    if targeted and isinstance(target, str) and target == "all_other":
        from annt.evaluation.advset import expand_all_other

        x, y, index, target = expand_all_other(x, y, index, nb_classes)
    per_batch = spec.per_batch if spec else True
    step = batch_size if per_batch else max(len(y), 1)
    chunks = [slice(i, i + step) for i in range(0, len(y), step)]
    outs = []
    with progress_bar(len(chunks), name, enabled=progress) as bar:
        for b, sl in enumerate(chunks):
            t = target[sl] if isinstance(target, (list, np.ndarray)) else target
            outs.append(generate(model, x[sl], y[sl], name, params=params, targeted=targeted, target=t,
                                 seed=batch_seed(seed, 0, b), batch_size=len(y[sl]), holdout=holdout,
                                 nb_classes=nb_classes))
            bar.update(1)
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
    members = None
    if outs[0].members is not None:
        from annt.attacks.ensemble import combine_members

        members = combine_members([o.members for o in outs], outs[0].members["names"])
        for r, i in zip(records, members["broken_by"]):
            r["broken_by"] = members["names"][i] if i >= 0 else ""
    return AttackResult(x_adv, records, summarize(records), clean_pred, adv_pred, target,
                        outs[0].perturbation, outs[0].fooling_rate, members, getattr(outs[0], "info", None))
