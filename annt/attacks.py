"""Attack registry and the array-level attack function.

``ATTACKS`` maps a config name (``attack.name``) to an :class:`AttackSpec`: the ART class (as a
dotted path, imported only when an attack runs, so that ``import annt.attacks`` and config
validation stay free of TensorFlow and ART), its documented parameters, and the paper's settings
per dataset. Adding an attack means adding one entry to ``ATTACKS``.

:func:`generate` attacks one batch of images (float32 NHWC on the [0, 1] pixel scale); the caller
loops over batches and draws the progress bar. Universal perturbations (``uap``) are the
exception: one perturbation is fitted to the whole selection, so call ``generate`` once on all of
it (``AttackSpec.per_batch`` is ``False``).

Conventions: ART attacks get the *true* labels as ``y`` when untargeted (success means leaving the
true class, not the model's prediction) and the target labels when targeted. Norms are written
``"inf"``, ``1`` or ``2`` (JSON-safe, and ART accepts the string ``"inf"``).
"""
from __future__ import annotations

import copy
import difflib
import functools
import importlib
import inspect
import math
import weakref
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

import numpy as np

from annt.errors import ConfigError

__all__ = [
    "ATTACKS",
    "AttackOutput",
    "AttackSpec",
    "Param",
    "generate",
    "paper_params",
    "resolve_targets",
    "validate_attack_params",
]


# --------------------------------------------------------------------------- parameters
@dataclass(frozen=True)
class Param:
    """One attack parameter: default, type, allowed values and a one-line doc (ART's meaning).

    ``kind`` is one of ``float``, ``int``, ``bool``, ``norm`` (``"inf"``, 1 or 2), ``choice``
    (one of ``choices``) or ``dict``. Numeric bounds are ``low``/``high``; ``low_open``/``high_open``
    make them exclusive. ``None`` as a bound means unbounded.
    """

    default: Any
    kind: str
    doc: str
    low: float | None = None
    high: float | None = None
    low_open: bool = False
    high_open: bool = False
    choices: tuple = ()

    def allowed(self) -> str:
        """Human-readable description of the allowed values, used in error messages."""
        if self.kind in ("norm", "choice"):
            return "one of " + ", ".join(repr(c) if isinstance(c, str) else str(c) for c in self.choices)
        if self.kind == "bool":
            return "true or false"
        if self.kind == "dict":
            return "a mapping"
        what = "an integer" if self.kind == "int" else "a number"
        if self.low is None and self.high is None:
            return what
        lo = "(-inf" if self.low is None else ("(" if self.low_open else "[") + f"{self.low:g}"
        hi = "inf)" if self.high is None else f"{self.high:g}" + (")" if self.high_open else "]")
        return f"{what} in {lo}, {hi}"

    def check(self, value: Any, path: str) -> Any:
        """Return ``value`` normalised (ints to float for float params, norms to ``"inf"``/1/2);
        raise :class:`ConfigError` naming ``path`` when it is not allowed."""
        given = value

        def fail() -> ConfigError:
            return ConfigError(f"{path}: got {given!r} ({type(given).__name__}); expected {self.allowed()}")

        if self.kind == "bool":
            if not isinstance(value, (bool, np.bool_)):
                raise fail()
            return bool(value)
        if self.kind == "dict":
            if not isinstance(value, Mapping):
                raise fail()
            return dict(value)
        if self.kind == "norm":
            norm = _normalise_norm(value)
            if norm not in self.choices:
                raise fail()
            return norm
        if self.kind == "choice":
            if value not in self.choices:
                raise fail()
            return value
        # Numbers. YAML 1.1 reads 1e-2 (no dot) as a string: users mean the number.
        if self.kind == "float" and isinstance(value, str):
            try:
                value = float(value)
            except ValueError:
                pass
        # bool is an int subclass in Python: a YAML `true` must not pass as 1.
        if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, float, np.integer, np.floating)):
            raise fail()
        if self.kind == "int":
            if isinstance(value, (float, np.floating)) and not float(value).is_integer():
                raise fail()
            value = int(value)
        else:
            value = float(value)
            if not math.isfinite(value):
                raise fail()
        if self.low is not None and (value < self.low or (self.low_open and value == self.low)):
            raise fail()
        if self.high is not None and (value > self.high or (self.high_open and value == self.high)):
            raise fail()
        return value


def _normalise_norm(value: Any) -> Any:
    """Map the spellings of a norm order (``inf``, ``"inf"``, ``np.inf``, ``2``, ``2.0``) to ``"inf"`` / int."""
    if isinstance(value, str) and value.strip().lower() in ("inf", "linf", "np.inf", "infinity"):
        return "inf"
    if isinstance(value, (bool, np.bool_)):
        return value
    if isinstance(value, (int, float, np.integer, np.floating)):
        if math.isinf(value) and value > 0:
            return "inf"
        if float(value).is_integer():
            return int(value)
    return value


def _eps(default: float, doc: str) -> Param:
    return Param(default, "float", doc, low=0.0, low_open=True)


def _count(default: int, doc: str, low: int = 1) -> Param:
    return Param(default, "int", doc, low=low)


# --------------------------------------------------------------------------- registry
@dataclass(frozen=True)
class AttackSpec:
    """Everything annt knows about one attack.

    :ivar art_class: dotted path of the ART class, imported lazily.
    :ivar params: annt's parameters with ART's defaults and meanings (see ``to_art`` for those
        annt handles itself).
    :ivar paper: the paper's settings per dataset (only the parameters it fixes).
    :ivar targeted: ``"optional"`` (either), ``"never"`` (untargeted only) or ``"always"``
        (ART's implementation is targeted: an untargeted run draws random target classes).
    :ivar per_batch: ``False`` when one perturbation is fitted to the whole selection.
    :ivar to_art: maps validated params to ART constructor keyword arguments (default: as is).
    :ivar cross_check: rules across parameters, ``(params, params_path) -> None`` raising ConfigError.
    :ivar runner: name of the module function running the attack (default ``_run_art``).
    :ivar extras: output fields read off the ART attack object after ``generate``
        (``{AttackOutput field: attribute}``).
    """

    name: str
    art_class: str
    doc: str
    params: Mapping[str, Param]
    paper: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    targeted: str = "optional"
    per_batch: bool = True
    to_art: Callable[[dict], dict] | None = None
    cross_check: Callable[[dict, str], None] | None = None
    runner: str = "_run_art"
    extras: Mapping[str, str] = field(default_factory=dict)

    def defaults(self) -> dict:
        # deep copy: a mutable default (uap's attacker_params) must not be shared between runs
        return copy.deepcopy({k: p.default for k, p in self.params.items()})


_NORMS = ("inf", 1, 2)


def _pgd_to_art(p: dict) -> dict:
    # restarts/random_start are ART's num_random_init (0 = start at x, n = n random starts);
    # keep_adversarial is annt's (see _run_pgd).
    art = {k: v for k, v in p.items() if k not in ("restarts", "random_start", "keep_adversarial")}
    art["num_random_init"] = p["restarts"] if p["random_start"] else 0
    return art


def _pgd_cross_check(p: dict, path: str) -> None:
    if p["restarts"] > 1 and not p["random_start"]:
        raise ConfigError(
            f"{path}.restarts: got {p['restarts']}; restarts > 1 need random_start: true (they would repeat the same run)"
        )


# ART's names for UniversalPerturbation's inner attack -> annt's registry entry used to validate
# its attacker_params (others are passed to ART unchecked).
_UAP_INNER = {"fgsm": "fgsm", "carlini": "cw_l2", "jsma": "jsma"}


def _uap_cross_check(p: dict, path: str) -> None:
    inner = _UAP_INNER.get(p["attacker"])
    if inner is not None:
        p["attacker_params"] = _check_params(ATTACKS[inner], p["attacker_params"], f"{path}.attacker_params")


_CW_PARAMS = {
    "confidence": Param(0.0, "float", "margin kappa: the target logit must exceed all others by this much", low=0.0),
    "learning_rate": Param(0.01, "float", "initial step size of the inner gradient descent", low=0.0, low_open=True),
    "binary_search_steps": _count(10, "binary-search steps over the trade-off constant c"),
    "max_iter": _count(10, "gradient-descent iterations per binary-search step"),
    "initial_const": Param(0.01, "float", "initial trade-off constant c between distance and loss", low=0.0, low_open=True),
    "max_halving": _count(5, "max halvings of the learning rate in a line search"),
    "max_doubling": _count(5, "max doublings of the learning rate in a line search"),
}

ATTACKS: dict[str, AttackSpec] = {
    "fgsm": AttackSpec(
        name="fgsm",
        art_class="art.attacks.evasion.FastGradientMethod",
        doc="Fast Gradient (Sign) Method: x_adv = clip(x + eps * sign(grad_x loss)) for norm inf (Goodfellow 2015).",
        params={
            "eps": _eps(0.3, "perturbation budget on the [0, 1] scale, in the chosen norm"),
            "norm": Param("inf", "norm", "norm of the perturbation: inf (sign step), 1 or 2", choices=_NORMS),
            "minimal": Param(False, "bool", "search the smallest eps (in steps of eps_step) that fools each sample"),
            "eps_step": _eps(0.1, "step of the minimal-eps search (only with minimal: true)"),
        },
        paper={"mnist": {"eps": 0.25}, "cifar10": {"eps": 0.05}},
    ),
    "pgd": AttackSpec(
        name="pgd",
        art_class="art.attacks.evasion.projected_gradient_descent.projected_gradient_descent_numpy"
        ".ProjectedGradientDescentNumpy",
        doc="Projected Gradient Descent (Madry 2018): iterated FGSM steps projected on the eps-ball, random start.",
        params={
            "eps": _eps(0.3, "perturbation budget on the [0, 1] scale, in the chosen norm"),
            "eps_step": _eps(0.01, "step size of each iteration, in the chosen norm"),
            "max_iter": _count(40, "iterations per start"),
            "norm": Param("inf", "norm", "norm of the eps-ball: inf, 1 or 2", choices=_NORMS),
            "random_start": Param(True, "bool", "start from a uniform random point in the eps-ball"),
            "restarts": _count(1, "random starts per sample (ART's num_random_init)"),
            "keep_adversarial": Param(
                True, "bool", "keep each sample's first adversarial iterate instead of ART's last iterate"
            ),
        },
        to_art=_pgd_to_art,
        cross_check=_pgd_cross_check,
        runner="_run_pgd",
    ),
    "cw_l2": AttackSpec(
        name="cw_l2",
        art_class="art.attacks.evasion.CarliniL2Method",
        doc="Carlini & Wagner L2 (2017): minimise ||delta||_2^2 + c * max(Z_y - max_{j!=y} Z_j, -confidence).",
        params=_CW_PARAMS,
        paper={
            ds: {"confidence": 5.0, "max_iter": 25, "binary_search_steps": 20, "initial_const": 0.01}
            for ds in ("mnist", "cifar10")
        },
    ),
    "boundary": AttackSpec(
        name="boundary",
        art_class="art.attacks.evasion.BoundaryAttack",
        doc="Boundary attack (Brendel 2018): decision-based random walk along the decision boundary.",
        params={
            "delta": Param(0.01, "float", "initial size of the orthogonal (spherical) step", low=0.0, low_open=True),
            "epsilon": Param(0.01, "float", "initial size of the step towards the original image", low=0.0, low_open=True),
            "step_adapt": Param(0.667, "float", "factor adapting both step sizes", low=0.0, high=1.0, low_open=True, high_open=True),
            "max_iter": _count(5000, "maximum number of iterations"),
            "num_trial": _count(25, "trials per iteration"),
            "sample_size": _count(20, "samples drawn per trial"),
            "init_size": _count(100, "random draws to find an adversarial starting point"),
            "min_epsilon": Param(0.0, "float", "stop when the step towards the original falls below this", low=0.0),
        },
        paper={"mnist": {"max_iter": 15}, "cifar10": {"max_iter": 12}},
        runner="_run_boundary",
    ),
    "jsma": AttackSpec(
        name="jsma",
        art_class="art.attacks.evasion.SaliencyMapMethod",
        doc="Jacobian-based Saliency Map Attack (Papernot 2016): perturbs pixel pairs by theta towards a target class.",
        params={
            "theta": Param(0.1, "float", "change applied to each chosen feature (negative: decrease)", low=-1.0, high=1.0),
            "gamma": Param(1.0, "float", "maximum fraction of features that may be changed", low=0.0, high=1.0, low_open=True),
        },
        paper={"mnist": {"theta": 1.0, "gamma": 0.10}, "cifar10": {"theta": 0.3, "gamma": 0.05}},
        targeted="always",
    ),
    "uap": AttackSpec(
        name="uap",
        art_class="art.attacks.evasion.UniversalPerturbation",
        doc="Universal Adversarial Perturbation (Moosavi-Dezfooli 2017): one delta with ||delta|| <= eps for all inputs.",
        params={
            "attacker": Param(
                "fgsm", "choice", "inner attack that proposes perturbation updates (ART's name)",
                choices=("fgsm", "deepfool", "bim", "pgd", "carlini", "carlini_inf", "newtonfool", "jsma", "ead", "vat"),
            ),
            "attacker_params": Param({}, "dict", "parameters of the inner attack (e.g. {eps: 0.1} for fgsm)"),
            "delta": Param(0.2, "float", "stop once the fooling rate reaches 1 - delta", low=0.0, high=1.0),
            "max_iter": _count(20, "maximum passes over the selection"),
            "eps": _eps(10.0, "budget xi of the universal perturbation, in the chosen norm"),
            "norm": Param("inf", "norm", "norm of the universal perturbation: inf, 1 or 2", choices=_NORMS),
        },
        paper={
            "mnist": {"attacker": "fgsm", "attacker_params": {"eps": 0.1}, "eps": 0.6, "norm": "inf"},
            "cifar10": {"attacker": "fgsm", "attacker_params": {"eps": 0.01}, "eps": 0.1, "norm": "inf"},
        },
        targeted="never",
        per_batch=False,
        cross_check=_uap_cross_check,
        extras={"perturbation": "noise", "fooling_rate": "fooling_rate"},
    ),
}


# --------------------------------------------------------------------------- validation
def _did_you_mean(word: str, options) -> str:
    close = difflib.get_close_matches(str(word), [str(o) for o in options], n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


def _spec(name: Any, where: str) -> AttackSpec:
    if name not in ATTACKS:
        raise ConfigError(
            f"{where}.name: unknown attack {name!r}{_did_you_mean(name, ATTACKS)}; "
            f"allowed: {', '.join(sorted(ATTACKS))}"
        )
    return ATTACKS[name]


def _check_params(spec: AttackSpec, params: Mapping[str, Any] | None, path: str) -> dict:
    if params is None:
        params = {}
    if not isinstance(params, Mapping):
        raise ConfigError(f"{path}: got {params!r} ({type(params).__name__}); expected a mapping of parameter names to values")
    for key in params:
        if key not in spec.params:
            raise ConfigError(
                f"{path}.{key}: unknown parameter for {spec.name}{_did_you_mean(key, spec.params)}; "
                f"allowed: {', '.join(spec.params)}"
            )
    resolved = spec.defaults()
    for key, value in params.items():
        resolved[key] = spec.params[key].check(value, f"{path}.{key}")
    if spec.cross_check is not None:
        spec.cross_check(resolved, path)
    return resolved


def validate_attack_params(name: str, params: Mapping[str, Any] | None, where: str = "attack") -> dict:
    """Check ``params`` for attack ``name`` and return them with defaults filled in.

    :param where: key path of the attack section in the config; errors name
        ``{where}.name`` or ``{where}.params.<key>`` (e.g. ``attack.params.eps``).
    :raises ConfigError: one line naming the key path, the bad value and what is allowed; unknown
        names get a did-you-mean suggestion. Needs neither TensorFlow nor ART.
    """
    return _check_params(_spec(name, where), params, f"{where}.params")


def paper_params(name: str, dataset: str) -> dict:
    """The paper's settings for ``name`` on ``dataset``, with annt's defaults for the rest."""
    spec = _spec(name, "attack")
    if dataset not in spec.paper:
        raise ConfigError(
            f"attack.name: the paper has no {name} setting for {dataset!r}; "
            f"available: {', '.join(spec.paper) or 'none'}"
        )
    return validate_attack_params(name, spec.paper[dataset])


# --------------------------------------------------------------------------- running
@dataclass
class AttackOutput:
    """Result of :func:`generate` on one batch (float32 images on the [0, 1] scale).

    :ivar success: targeted: ``adv_pred == target``; untargeted: ``adv_pred != y`` (evasion).
    :ivar evaded: ``adv_pred != y`` in both cases (what adversarial accuracy counts).
    :ivar target: target class per sample (targeted runs, and JSMA's random targets), else None.
    :ivar perturbation: universal perturbation, shape ``(1, *image_shape)`` (``uap`` only).
    :ivar fooling_rate: fraction of the selection whose label the perturbation changes (``uap`` only).
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


def resolve_targets(y: np.ndarray, target: Any, nb_classes: int = 10, seed: int = 0) -> np.ndarray:
    """Target class per sample.

    ``"next"``: ``(y + 1) mod nb_classes``; ``"random"``: uniform over the classes other than ``y``,
    drawn from ``np.random.default_rng(seed)``; an int: that class for all; an int array: as given.
    """
    y = np.asarray(y)
    if isinstance(target, str):
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


def _as_classifier(model_or_classifier, nb_classes: int):
    from art.estimators.classification.classifier import ClassifierMixin

    if isinstance(model_or_classifier, ClassifierMixin):
        return model_or_classifier
    from annt.estimator import make_classifier

    clf = _CLASSIFIERS.get(model_or_classifier)
    if clf is None:
        clf = make_classifier(model_or_classifier, nb_classes=nb_classes)
        _CLASSIFIERS[model_or_classifier] = clf
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


def _run_boundary(spec, classifier, x, y_onehot, params, targeted, batch_size):
    """ART's Boundary attack with starting points drawn here from the seeded global RNG.

    ART draws them from an unseeded ``np.random.RandomState()``, which would make runs
    irreproducible. Same distribution and budget as ART: up to ``init_size`` uniform images in
    [clip_min, clip_max]; the first one that is adversarial (targeted: classified as the target;
    untargeted: not as the clean prediction) starts the walk. Samples without one are returned
    unchanged (ART would report the attack as failed for them too).
    """
    clip_min, clip_max = classifier.clip_values
    wanted = np.argmax(y_onehot, axis=1)
    clean = np.argmax(classifier.predict(x, batch_size=batch_size), axis=1)
    x_init = x.copy()
    found = np.zeros(len(x), dtype=bool)
    for i in range(len(x)):
        if targeted and clean[i] == wanted[i]:
            found[i] = True  # already classified as the target: ART leaves it unchanged
            continue
        draws = np.random.uniform(clip_min, clip_max, size=(params["init_size"], *x.shape[1:])).astype(np.float32)
        cls = np.argmax(classifier.predict(draws, batch_size=batch_size), axis=1)
        hits = np.flatnonzero(cls == wanted[i] if targeted else cls != clean[i])
        if hits.size:
            x_init[i], found[i] = draws[hits[0]], True
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
) -> AttackOutput:
    """Run attack ``name`` on one batch ``x`` (float32 NHWC in [0, 1]) with true labels ``y``.

    :param classifier_or_model: an ART classifier, or a Keras model (logits) wrapped with
        :func:`annt.estimator.make_classifier` (cached per model).
    :param y: true labels, indices ``(N,)`` or one-hot ``(N, nb_classes)``.
    :param params: attack parameters; validated and completed with defaults here.
    :param targeted: aim for ``target`` instead of any wrong class.
    :param target: ``"next"`` (default when targeted), ``"random"`` (seeded by ``seed``), an int, or
        an int array per sample; see :func:`resolve_targets`.
    :param seed: seeds Python, numpy and TensorFlow before ART runs. Callers looping over batches
        should pass a different seed per batch (e.g. ``seed + batch_index``) for independent noise.
    :param batch_size: ART's internal batch size; default ``len(x)`` (the whole batch at once).
    """
    spec = _spec(name, "attack")
    resolved = validate_attack_params(name, params)
    if targeted and spec.targeted == "never":
        raise ConfigError(f"attack.targeted: {name} has no targeted variant; use targeted: false")

    x = np.ascontiguousarray(x, dtype=np.float32)
    y = np.asarray(y)
    labels = (np.argmax(y, axis=1) if y.ndim == 2 else y).astype(np.int64)
    classifier = _as_classifier(classifier_or_model, nb_classes)
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
    runner = globals()[spec.runner]
    x_adv, attack = runner(spec, classifier, x, y_onehot, resolved, targeted or spec.targeted == "always", batch_size)
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
