"""The attack registry: config name -> ART class, documented parameters and the papers' settings.

``ATTACKS`` maps a config name (``attack.name``) to an :class:`AttackSpec`: the ART class (as a
dotted path, imported only when an attack runs, so that this module and config validation stay
free of TensorFlow and ART), its parameters as :class:`annt.config.schema.Key` (the one validation
engine, so attack parameters and config keys fail with the same one-line message), and the
paper's settings per dataset. Adding an attack means adding one entry to ``ATTACKS``; config
choices, docs and the runner (:mod:`annt.attacks.runner`) read it.

Universal perturbations (``uap``) fit one perturbation to the whole selection
(``AttackSpec.per_batch`` is ``False``). Norms are written ``"inf"``, ``1`` or ``2`` (JSON-safe,
and ART accepts the string ``"inf"``).
"""
from __future__ import annotations

import copy
import math
from dataclasses import dataclass, field, replace
from typing import Any, Callable, Mapping

from annt.config.schema import NORMS as _NORMS, REQUIRED, Context, Key, did_you_mean, walk
from annt.errors import ConfigError

__all__ = ["ATTACKS", "AttackSpec", "GRADIENT_OPTIONS", "TEMPERATURE_RULES", "attack_spec", "gradient_options",
           "paper_params", "validate_attack_params"]


# --------------------------------------------------------------------------- parameters
def _eps(default: float, doc: str) -> Key:
    return Key("float", default, doc, min=0.0, min_open=True)


def _count(default: int, doc: str, low: int = 1) -> Key:
    return Key("int", default, doc, min=low)


#: Named temperature rules of paper 000 (:mod:`annt.attacks.temperature`).
TEMPERATURE_RULES = ("njs", "hns")
#: What ``temperature`` accepts (its error messages and the wiki's "allowed" column).
TEMPERATURE_ALLOWED = "null, a number > 0, njs or hns"

#: Options of the estimator's gradients, common to every attack with ``gradients=True`` and merged
#: into its parameters by validation (defined once here; an entry may change their defaults with
#: ``AttackSpec.gradient_defaults``). The runner hands them to the estimator
#: (:class:`annt.attacks.estimator.GradientOptions`), never to ART.
GRADIENT_OPTIONS: dict[str, Key] = {
    "temperature": Key("any", None, "loss temperature beta (paper 000): the attack follows the gradient of "
                       "CE(softmax(beta * logits), y), predictions unchanged; null = none (beta = 1); njs: inverse "
                       "mean Jacobian singular value of the batch, rescaled per iteration where the softmax "
                       "saturates; hns: per sample, maximises the loss Hessian norm at the clean image. Changes "
                       "only loss-gradient attacks (not those that follow logit gradients: cw_l2, cw_l2_adam, jsma, deepfool)",
                       nullable=True),
    "eot_samples": _count(1, "gradients are the mean over this many forward/backward passes (EOT, for models "
                             "with stochastic layers)"),
    "bpda": Key("bool", True, "layers marked non-differentiable (rounding, discretization) are the identity in "
                              "the attack's backward pass (BPDA); false keeps their own, masked, gradient"),
}


# --------------------------------------------------------------------------- registry
@dataclass(frozen=True)
class AttackSpec:
    """Everything annt knows about one attack.

    :ivar art_class: dotted path of the ART class, imported lazily (None: annt's own, e.g. ``ensemble``).
    :ivar params: annt's parameters with ART's defaults and meanings (see ``to_art`` for those
        annt handles itself).
    :ivar paper: the paper's settings per dataset (only the parameters it fixes).
    :ivar targeted: ``"optional"`` (either), ``"never"`` (untargeted only) or ``"always"``
        (ART's implementation is targeted: an untargeted run draws random target classes).
    :ivar per_batch: ``False`` when one perturbation is fitted to the whole selection.
    :ivar to_art: maps validated params to ART constructor keyword arguments (default: as is).
    :ivar cross_check: rules across parameters, ``(params, params_path, ctx) -> None`` raising ``ctx.fail(...)``.
    :ivar runner: the function running the attack: a name in :mod:`annt.attacks.runner` (default
        ``_run_art``) or ``"module:function"``.
    :ivar extras: output fields read off the ART attack object after ``generate``
        (``{AttackOutput field: attribute}``).
    :ivar gradients: the attack uses the model's gradients (white-box); gradient-free attacks
        (decision- or score-based) refuse gradient options such as a loss temperature.
    :ivar bounded: ``True``: it searches inside an eps-ball (robust accuracy at that eps);
        ``False``: a minimum-norm attack (robust accuracy at thresholds from its distances).
    :ivar norm: the threat model's norm when the attack has no ``norm`` parameter
        (``"inf"``, 2, 1 or 0); see :meth:`threat_norm`.
    :ivar gradient_defaults: this attack's defaults for :data:`GRADIENT_OPTIONS` where they differ
        (``pgd++``: ``{"temperature": "njs"}``); ``params`` holds only the attack's own parameters.
    :ivar holdout: name of the parameter giving how many held-out clean images of the attacked split
        the attack needs (``substitute``: its initial training set); the ``attack`` task picks them,
        never among the attacked ones, and ``generate`` hands them to the runner as ``holdout=``.
    """

    name: str
    art_class: str | None
    doc: str
    params: Mapping[str, Key]
    paper: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    targeted: str = "optional"
    per_batch: bool = True
    to_art: Callable[[dict], dict] | None = None
    cross_check: Callable[[dict, str, Context], None] | None = None
    runner: str = "_run_art"
    extras: Mapping[str, str] = field(default_factory=dict)
    gradients: bool = True
    bounded: bool = True
    norm: Any = None
    gradient_defaults: Mapping[str, Any] = field(default_factory=dict)
    holdout: str | None = None

    def threat_norm(self, params: Mapping[str, Any]) -> Any:
        """The norm of the threat model these (validated) params attack in: ``"inf"``, 2, 1 or 0
        (an attack wrapping an ``inner`` one, ``substitute``, attacks in the inner attack's)."""
        if isinstance(params.get("inner"), str) and params["inner"] in ATTACKS:
            return ATTACKS[params["inner"]].threat_norm(params.get("inner_params") or {})
        return params.get("norm", self.norm)

    def defaults(self) -> dict:
        # deep copy: a mutable default (uap's attacker_params) must not be shared between runs
        return copy.deepcopy({k: p.default for k, p in self.params.items()})


def _pgd_to_art(p: dict) -> dict:
    # restarts/random_start are ART's num_random_init (0 = start at x, n = n random starts);
    # keep_adversarial is annt's (see _run_pgd).
    art = {k: v for k, v in p.items() if k not in ("restarts", "random_start", "keep_adversarial")}
    art["num_random_init"] = p["restarts"] if p["random_start"] else 0
    return art


def _pgd_cross_check(p: dict, path: str, ctx: Context) -> None:
    if p["restarts"] > 1 and not p["random_start"]:
        raise ctx.fail(f"{path}.restarts", p["restarts"], "restarts > 1 need random_start: true (they would repeat the same run)")


# ART's names for UniversalPerturbation's inner attack -> annt's registry entry used to validate
# its attacker_params (others are passed to ART unchecked).
_UAP_INNER = {"fgsm": "fgsm", "carlini": "cw_l2", "jsma": "jsma"}


def _uap_cross_check(p: dict, path: str, ctx: Context) -> None:
    inner = _UAP_INNER.get(p["attacker"])
    if inner is not None:
        # the inner attack runs on the UAP's estimator: gradient options belong to the uap entry; ART builds
        # the inner attack itself, so only ART's parameters stay (not annt's implementation choice)
        spec = ATTACKS[inner]
        checked = _check_params(spec, p["attacker_params"], f"{path}.attacker_params", ctx, gradient_options=False)
        p["attacker_params"] = spec.to_art(checked) if spec.to_art else checked


def _ensemble_cross_check(p: dict, path: str, ctx: Context) -> None:
    """Each member must be a registered attack inside the ensemble's threat model (same norm, eps no
    larger); members are stored as ``{name, params (validated, with eps/norm filled), given}``."""
    from annt.attacks.ensemble import DEFAULT_MEMBERS

    members = []
    for i, member in enumerate(p["attacks"] if p["attacks"] is not None else DEFAULT_MEMBERS):
        where = f"{path}.attacks[{i}]"
        # "given" marks a member validated before (generate re-validates resolved params): start from it again
        if not isinstance(member, Mapping) or set(member) - {"name", "params", "given"} or "name" not in member:
            raise ctx.fail(where, member, "a member is {name: ATTACK, params: {...}}")
        spec = attack_spec(member["name"], where, ctx)
        if spec.name == "ensemble":
            raise ctx.fail(f"{where}.name", "ensemble", "an ensemble cannot contain an ensemble")
        if spec.holdout:
            raise ctx.fail(f"{where}.name", spec.name, "needs held-out images; run it as an attack of its own")
        given = dict((member["given"] if "given" in member else member.get("params")) or {})
        params = {**{k: p[k] for k in ("eps", "norm") if k in spec.params and (k != "eps" or spec.bounded)}, **given}
        params = _check_params(spec, params, f"{where}.params", ctx)
        norm = spec.threat_norm(params)
        if norm != p["norm"]:
            raise ctx.fail(f"{where}.name", spec.name, f"attacks in the {norm} norm, outside the ensemble's threat model "
                           f"(norm {p['norm']}); use a member that attacks in norm {p['norm']}")
        if spec.bounded and params.get("eps", p["eps"]) > p["eps"]:
            raise ctx.fail(f"{where}.params.eps", params["eps"], f"must not exceed the ensemble's eps {p['eps']}")
        members.append({"name": spec.name, "params": params, "given": given})
    if not members:
        raise ctx.fail(f"{path}.attacks", [], "an ensemble needs at least one member")
    p["attacks"] = members


def _substitute_cross_check(p: dict, path: str, ctx: Context) -> None:
    """The inner attack is a registered one (not ``substitute``) with its own validated params; the
    substitute's hidden layer sizes are positive."""
    if p["inner"] not in ATTACKS or ATTACKS[p["inner"]].holdout:
        allowed = [n for n, s in ATTACKS.items() if not s.holdout]
        raise ctx.fail(f"{path}.inner", p["inner"], f"allowed: {', '.join(allowed)}{did_you_mean(p['inner'], allowed)}")
    if not p["hidden"] or not all(isinstance(h, int) and not isinstance(h, bool) and h > 0 for h in p["hidden"]):
        raise ctx.fail(f"{path}.hidden", p["hidden"], "a non-empty list of layer sizes (integers > 0)")
    p["inner_params"] = _check_params(ATTACKS[p["inner"]], p["inner_params"], f"{path}.inner_params", ctx)


#: Norms of the attacks whose ART implementation (or annt's tests) cover only L∞ and L2.
_NORMS_INF_2 = ("inf", 2)

#: annt's APGD loss names -> ART's loss_type.
_APGD_LOSSES = {"ce": "cross_entropy", "dlr": "difference_logits_ratio"}


def _step(p: dict) -> float:
    # the APGD paper's initial step eta(0) = 2 eps unless set (ART's default would be 0.1 whatever eps is)
    return p["eps_step"] if p["eps_step"] is not None else 2 * p["eps"]


def _apgd_to_art(p: dict) -> dict:
    # keep_adversarial is annt's (see art_attacks.apgd_class); restarts are ART's nb_random_init
    return {"norm": p["norm"], "eps": p["eps"], "eps_step": _step(p), "max_iter": p["max_iter"],
            "nb_random_init": p["restarts"], "loss_type": _APGD_LOSSES[p["loss"]]}


def _autoattack_to_art(p: dict) -> dict:
    # max_iter, restarts and queries configure the members, which art_attacks.run_autoattack builds
    return {"norm": p["norm"], "eps": p["eps"], "eps_step": _step(p)}


def _to_art(keys: tuple, **names: str) -> Callable[[dict], dict]:
    """``to_art`` passing the attack's own ``keys`` (not options handled by annt), renamed to ART's
    names where ``names`` says so (``restarts="nb_restarts"``)."""
    return lambda p: {names.get(k, k): p[k] for k in keys}


def _hopskipjump_cross_check(p: dict, path: str, ctx: Context) -> None:
    if p["init_eval"] > p["max_eval"]:
        raise ctx.fail(f"{path}.init_eval", p["init_eval"], f"must not exceed max_eval ({p['max_eval']})")


_CW_PARAMS = {
    "confidence": Key("float", 0.0, "margin kappa: the target logit must exceed all others by this much", min=0.0),
    "learning_rate": Key("float", 0.01, "initial step size of the inner gradient descent", min=0.0, min_open=True),
    "binary_search_steps": _count(10, "binary-search steps over the trade-off constant c"),
    "max_iter": _count(10, "gradient-descent iterations per binary-search step"),
    "initial_const": Key("float", 0.01, "initial trade-off constant c between distance and loss", min=0.0, min_open=True),
    "max_halving": _count(5, "max halvings of the learning rate in a line search"),
    "max_doubling": _count(5, "max doublings of the learning rate in a line search"),
    "implementation": Key("choice", "graph", "graph: ART's algorithm for the whole batch in one compiled TensorFlow "
                          "loop (annt.attacks.cw_graph); art: ART's CarliniL2Method itself", choices=("graph", "art")),
}

_CW_ADAM_PARAMS = {
    "confidence": _CW_PARAMS["confidence"],
    "learning_rate": Key("float", 5e-3, "Adam's learning rate (the authors' and CleverHans's default)", min=0.0,
                         min_open=True),
    "binary_search_steps": _count(5, "binary-search steps over the trade-off constant c (>= 10: the last one runs "
                                     "at c's upper bound, as the authors' code)"),
    "max_iter": _count(1000, "Adam iterations per binary-search step"),
    "initial_const": _CW_PARAMS["initial_const"],
    "abort_early": Key("bool", True, "stop a binary-search round once the loss summed over the batch has not "
                                     "fallen by 0.01% over max_iter/10 iterations (the authors' rule, so a sample's "
                                     "result can depend on its batch)"),
}

ATTACKS: dict[str, AttackSpec] = {
    "fgsm": AttackSpec(
        name="fgsm",
        art_class="art.attacks.evasion.FastGradientMethod",
        doc="Fast Gradient (Sign) Method: x_adv = clip(x + eps * sign(grad_x loss)) for norm inf (Goodfellow 2015).",
        params={
            "eps": _eps(0.3, "perturbation budget on the [0, 1] scale, in the chosen norm"),
            "norm": Key("norm", "inf", "norm of the perturbation: inf (sign step), 1 or 2", choices=_NORMS),
            "minimal": Key("bool", False, "search the smallest eps (in steps of eps_step) that fools each sample"),
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
            "norm": Key("norm", "inf", "norm of the eps-ball: inf, 1 or 2", choices=_NORMS),
            "random_start": Key("bool", True, "start from a uniform random point in the eps-ball"),
            "restarts": _count(1, "random starts per sample (ART's num_random_init)"),
            "keep_adversarial": Key("bool", True, "keep each sample's first adversarial iterate instead of ART's last iterate"
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
        to_art=_to_art(tuple(k for k in _CW_PARAMS if k != "implementation")),
        runner="annt.attacks.cw_graph:run_cw_l2",
        bounded=False,
        norm=2,
        paper={
            ds: {"confidence": 5.0, "max_iter": 25, "binary_search_steps": 20, "initial_const": 0.01}
            for ds in ("mnist", "cifar10")
        },
    ),
    "cw_l2_adam": AttackSpec(
        name="cw_l2_adam",
        art_class=None,
        doc="Carlini & Wagner L2 as the authors' code and CleverHans run it: Adam in tanh space instead of ART's "
            "line search, same objective (annt.attacks.cw_adam; Galloway et al.'s Table 3 ran it).",
        params=_CW_ADAM_PARAMS,
        runner="annt.attacks.cw_adam:run_cw_l2_adam",
        bounded=False,
        norm=2,
    ),
    "boundary": AttackSpec(
        name="boundary",
        art_class="art.attacks.evasion.BoundaryAttack",
        doc="Boundary attack (Brendel 2018): decision-based random walk along the decision boundary.",
        params={
            "delta": Key("float", 0.01, "initial size of the orthogonal (spherical) step", min=0.0, min_open=True),
            "epsilon": Key("float", 0.01, "initial size of the step towards the original image", min=0.0, min_open=True),
            "step_adapt": Key("float", 0.667, "factor adapting both step sizes", min=0.0, max=1.0, min_open=True, max_open=True),
            "max_iter": _count(5000, "maximum number of iterations"),
            "num_trial": _count(25, "trials per iteration"),
            "sample_size": _count(20, "samples drawn per trial"),
            "init_size": _count(100, "random draws to find an adversarial starting point"),
            "min_epsilon": Key("float", 0.0, "stop when the step towards the original falls below this", min=0.0),
            "implementation": Key("choice", "graph", "graph: ART's algorithm for the whole batch at once, per-sample "
                                  "step sizes (annt.attacks.boundary_batched); art: ART's BoundaryAttack itself, one "
                                  "image at a time", choices=("graph", "art")),
        },
        paper={"mnist": {"max_iter": 15}, "cifar10": {"max_iter": 12}},
        to_art=_to_art(("delta", "epsilon", "step_adapt", "max_iter", "num_trial", "sample_size", "init_size",
                        "min_epsilon")),
        runner="annt.attacks.boundary_batched:run_boundary",
        gradients=False,
        bounded=False,
        norm=2,
    ),
    "jsma": AttackSpec(
        name="jsma",
        art_class="art.attacks.evasion.SaliencyMapMethod",
        doc="Jacobian-based Saliency Map Attack (Papernot 2016): perturbs pixel pairs by theta towards a target class.",
        params={
            "theta": Key("float", 0.1, "change applied to each chosen feature (negative: decrease)", min=-1.0, max=1.0),
            "gamma": Key("float", 1.0, "maximum fraction of features that may be changed", min=0.0, max=1.0, min_open=True),
        },
        paper={"mnist": {"theta": 1.0, "gamma": 0.10}, "cifar10": {"theta": 0.3, "gamma": 0.05}},
        targeted="always",
        bounded=False,
        norm=0,
    ),
    "uap": AttackSpec(
        name="uap",
        art_class="art.attacks.evasion.UniversalPerturbation",
        doc="Universal Adversarial Perturbation (Moosavi-Dezfooli 2017): one delta with ||delta|| <= eps for all inputs.",
        params={
            "attacker": Key("choice", "fgsm", "inner attack that proposes perturbation updates (ART's name)",
                choices=("fgsm", "deepfool", "bim", "pgd", "carlini", "carlini_inf", "newtonfool", "jsma", "ead", "vat"),
            ),
            "attacker_params": Key("dict", {}, "parameters of the inner attack (e.g. {eps: 0.1} for fgsm)"),
            "delta": Key("float", 0.2, "stop once the fooling rate reaches 1 - delta", min=0.0, max=1.0),
            "max_iter": _count(20, "maximum passes over the selection"),
            "eps": _eps(10.0, "budget xi of the universal perturbation, in the chosen norm"),
            "norm": Key("norm", "inf", "norm of the universal perturbation: inf, 1 or 2", choices=_NORMS),
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
    "apgd": AttackSpec(
        name="apgd",
        art_class="art.attacks.evasion.AutoProjectedGradientDescent",
        doc="Auto-PGD (Croce & Hein 2020): PGD with momentum and a step size halved at checkpoints when the loss "
            "stalls; loss ce or dlr, run on annt's compiled estimator.",
        params={
            "eps": _eps(0.3, "perturbation budget on the [0, 1] scale, in the chosen norm"),
            "norm": Key("norm", "inf", "norm of the eps-ball: inf or 2", choices=_NORMS_INF_2),
            "loss": Key("choice", "ce", "ce: cross-entropy; dlr: difference of logits ratio "
                        "-(z_y - max_{i!=y} z_i) / (z_pi1 - z_pi3), invariant to the scale of the logits",
                        choices=tuple(_APGD_LOSSES)),
            "eps_step": Key("float", None, "initial step size eta(0) in the chosen norm; null = 2 * eps (the paper's)",
                            min=0.0, min_open=True, nullable=True),
            "max_iter": _count(100, "iterations per start"),
            "restarts": _count(1, "random starts per sample (ART's nb_random_init); a start attacks only the "
                                  "samples that earlier starts left unbroken"),
            "keep_adversarial": Key("bool", True, "keep each sample's first adversarial iterate instead of ART's "
                                                  "last one"),
        },
        to_art=_apgd_to_art,
        runner="annt.attacks.art_attacks:run_apgd",
    ),
    "autoattack": AttackSpec(
        name="autoattack",
        art_class="art.attacks.evasion.AutoAttack",
        doc="ART's AutoAttack (Croce & Hein 2020): APGD-CE, APGD-DLR, DeepFool and Square in turn; each attacks the "
            "samples the previous ones left unbroken, within eps.",
        params={
            "eps": _eps(0.3, "perturbation budget on the [0, 1] scale, in the chosen norm"),
            "norm": Key("norm", "inf", "norm of the eps-ball: inf or 2", choices=_NORMS_INF_2),
            "eps_step": Key("float", None, "initial step size of the two APGD members; null = 2 * eps",
                            min=0.0, min_open=True, nullable=True),
            "max_iter": _count(100, "iterations per start of the two APGD members"),
            "restarts": _count(5, "random starts of the APGD members and restarts of Square (ART's list: 5)"),
            "queries": _count(5000, "iterations (one query per sample each) of the Square member"),
        },
        targeted="never",
        to_art=_autoattack_to_art,
        runner="annt.attacks.art_attacks:run_autoattack",
    ),
    "square": AttackSpec(
        name="square",
        art_class="art.attacks.evasion.SquareAttack",
        doc="Square attack (Andriushchenko et al. 2020): score-based random search with square-shaped updates of "
            "shrinking size, kept when they lower the logit margin; needs no gradients.",
        params={
            "eps": _eps(0.3, "perturbation budget on the [0, 1] scale, in the chosen norm"),
            "norm": Key("norm", "inf", "norm of the eps-ball: inf or 2", choices=_NORMS_INF_2),
            "max_iter": _count(5000, "iterations = model queries per sample (the paper's budget)"),
            "p_init": Key("float", 0.8, "fraction of the image the first square covers; shrinks on a fixed "
                          "schedule (values near 1 make the square larger than the image)", min=0.0, max=1.0,
                          min_open=True, max_open=True),
            "restarts": _count(1, "runs from scratch for the samples still unbroken (ART's nb_restarts)"),
        },
        targeted="never",
        to_art=_to_art(("eps", "norm", "max_iter", "p_init", "restarts"), restarts="nb_restarts"),
        runner="annt.attacks.art_attacks:run_square",
        gradients=False,
    ),
    "deepfool": AttackSpec(
        name="deepfool",
        art_class="art.attacks.evasion.DeepFool",
        doc="DeepFool (Moosavi-Dezfooli et al. 2016): minimum-norm L2 attack stepping to the linearised nearest "
            "decision boundary away from the predicted class.",
        params={
            "max_iter": _count(100, "maximum linearisation steps"),
            "overshoot": Key("float", 0.02, "final perturbation is (1 + overshoot) times the one found (ART's "
                             "epsilon; the paper's 0.02)", min=0.0),
            "nb_grads": _count(10, "class gradients per step: only the nb_grads most likely classes are candidates"),
        },
        targeted="never",
        to_art=_to_art(("max_iter", "overshoot", "nb_grads"), overshoot="epsilon"),
        bounded=False,
        norm=2,
    ),
    "bba": AttackSpec(
        name="bba",
        art_class="art.attacks.evasion.BrendelBethgeAttack",
        doc="Brendel & Bethge attack (2019): minimum-norm; walks along the decision boundary from an adversarial "
            "starting point towards the clean image using the gradient of the logit margin.",
        params={
            "norm": Key("norm", "inf", "norm of the distance it minimises: inf or 2", choices=_NORMS_INF_2),
            "steps": _count(1000, "maximum iterations"),
            "lr": Key("float", 1e-3, "trust-region radius (like a learning rate), relative to the input size",
                      min=0.0, min_open=True),
            "lr_decay": Key("float", 0.5, "factor applied to lr lr_num_decay times, at regular intervals",
                            min=0.0, max=1.0, min_open=True),
            "lr_num_decay": _count(20, "number of lr decays over the steps"),
            "momentum": Key("float", 0.8, "averaging of the boundary estimate over steps (near 1: a long memory)",
                            min=0.0, max=1.0, min_open=True, max_open=True),
            "overshoot": Key("float", 1.1, "aim this far past the boundary (1: exactly onto it)", min=1.0),
            "binary_search_steps": _count(10, "bisection steps moving the starting point to the boundary"),
            "init_size": _count(100, "random draws to find an adversarial starting point"),
        },
        to_art=_to_art(("norm", "steps", "lr", "lr_decay", "lr_num_decay", "momentum", "overshoot",
                        "binary_search_steps", "init_size")),
        runner="annt.attacks.art_attacks:run_bba",
        bounded=False,
    ),
    "hopskipjump": AttackSpec(
        name="hopskipjump",
        art_class="art.attacks.evasion.HopSkipJump",
        doc="HopSkipJump (Chen, Jordan & Wainwright 2020): decision-based minimum-norm attack estimating the "
            "boundary's normal from label queries; needs no gradients.",
        params={
            "norm": Key("norm", 2, "norm of the distance it minimises: 2 or inf", choices=_NORMS_INF_2),
            "max_iter": _count(50, "iterations (gradient estimate, step, binary search)", low=0),
            "max_eval": _count(10000, "maximum model queries per gradient estimate"),
            "init_eval": _count(100, "queries of the first gradient estimate (grows as sqrt(iteration))"),
            "init_size": _count(100, "random draws to find an adversarial starting point"),
        },
        cross_check=_hopskipjump_cross_check,
        runner="_run_from_random_starts",
        gradients=False,
        bounded=False,
    ),
    "ensemble": AttackSpec(
        name="ensemble",
        art_class=None,
        doc="Worst case over an attack ensemble (SPEC §12): a sample is robust only if every member fails within "
            "eps in the ensemble's norm; default members APGD-CE, APGD-DLR, Square (annt.attacks.ensemble).",
        params={
            "attacks": Key("list", None, "members, each {name: ATTACK, params: {...}}; eps and norm are the "
                           "ensemble's unless a member sets a smaller eps; null = APGD-CE, APGD-DLR, Square",
                           item="dict", nullable=True),
            "eps": Key("float", REQUIRED, "budget of the threat model on the [0, 1] scale, in the chosen norm",
                       min=0.0, min_open=True),
            "norm": Key("norm", "inf", "norm of the threat model: inf, 1 or 2", choices=_NORMS),
        },
        targeted="never",
        cross_check=_ensemble_cross_check,
        runner="annt.attacks.ensemble:run_ensemble",
        extras={"members": "members"},
        gradients=False,
    ),
    "substitute": AttackSpec(
        name="substitute",
        art_class=None,
        doc="Papernot et al. (2017) black-box attack: an MLP substitute trained on held-out images labelled by "
            "the target (labels only, no scores or gradients), grown by Jacobian augmentation; the inner attack "
            "runs white-box on the substitute and its adversarials are judged on the target (annt.attacks.substitute).",
        params={
            "inner": Key("str", "fgsm", "attack run white-box on the trained substitute: any registered attack "
                                        "but substitute"),
            "inner_params": Key("dict", {}, "parameters of the inner attack, checked as its own (default: the inner "
                                            "attack's defaults; FGSM's eps 0.3 is Galloway et al.'s Table 4)"),
            "inner_labels": Key("choice", "true", "labels the inner attack moves away from: true (annt's convention) "
                                "or substitute (the substitute's predictions, as CleverHans's FGSM without labels)",
                                choices=("true", "substitute")),
            "holdout": _count(150, "held-out clean images of the attacked split (never attacked) that start the "
                                   "substitute's training set, labelled by the target"),
            "rounds": _count(6, "substitute training rounds; Jacobian augmentation doubles the set between rounds "
                                "(final size holdout * 2^(rounds - 1))"),
            "epochs_per_round": _count(10, "substitute training epochs per round"),
            "lambda_": Key("float", 0.1, "Jacobian augmentation step: x' = clip(x + lambda * sign(dF[label]/dx), 0, 1), "
                           "F the substitute's softmax", min=0.0, min_open=True),
            "tau": Key("int", None, "null: the same lambda every round (the CleverHans code the paper ran); t: "
                       "Papernot et al.'s periodic step lambda * (-1)^floor(round / t)", min=1, nullable=True),
            "hidden": Key("list", [200, 200], "hidden ReLU layer sizes of the MLP substitute ([200, 200]: CleverHans's "
                          "substitute_model, two hidden layers; [200]: one)", item="int"),
            "batch_size": _count(128, "substitute training batch size (Adam)"),
            "learning_rate": Key("float", 1e-3, "Adam learning rate of the substitute", min=0.0, min_open=True),
        },
        paper={"mnist": {"inner": "fgsm", "inner_params": {"eps": 0.3}, "inner_labels": "substitute"}},
        targeted="never",
        per_batch=False,
        cross_check=_substitute_cross_check,
        runner="annt.attacks.substitute:run_substitute",
        extras={"info": "info"},
        gradients=False,
        holdout="holdout",
    ),
}

# Paper 000's temperature-scaled attacks: the same attacks with the NJS loss temperature by default
# (``temperature: hns`` gives the HNS variant). Paper settings: CIFAR-10, L∞ (their Tables 2 and 3).
for _base, _doc in (
    ("fgsm", "FGSM++ (Gupta & Ajanthan, paper 000): FGSM on the temperature-scaled loss CE(softmax(beta * logits), y); "
             "temperature njs by default, hns per sample."),
    ("pgd", "PGD++ (Gupta & Ajanthan, paper 000): PGD on the temperature-scaled loss CE(softmax(beta * logits), y); "
            "temperature njs by default (Algorithm 1), hns per sample (Algorithm 2)."),
):
    ATTACKS[_base + "++"] = replace(
        ATTACKS[_base], name=_base + "++", doc=_doc, gradient_defaults={"temperature": "njs"},
        paper={"cifar10": {"eps": 8 / 255} if _base == "fgsm" else
               {"eps": 8 / 255, "eps_step": 2 / 255, "max_iter": 20, "random_start": True, "restarts": 1}})
del _base, _doc


# --------------------------------------------------------------------------- validation
def attack_spec(name: Any, where: str = "attack", ctx: Context | None = None) -> AttackSpec:
    """The registry entry of ``name``; a one-line :class:`ConfigError` with a did-you-mean otherwise."""
    if not isinstance(name, str) or name not in ATTACKS:
        raise (ctx or Context()).fail(f"{where}.name", name, f"allowed: {', '.join(ATTACKS)}{did_you_mean(name, ATTACKS)}")
    return ATTACKS[name]


def param_schema(spec: AttackSpec) -> dict[str, Key]:
    """The attack's parameters followed by the gradient options (with its own defaults)."""
    options = {k: replace(key, default=spec.gradient_defaults[k]) if k in spec.gradient_defaults else key
               for k, key in GRADIENT_OPTIONS.items()}
    return {**spec.params, **{k: key for k, key in options.items() if k not in spec.params}}


def _check_temperature(value: Any, path: str, ctx: Context) -> float | str | None:
    if value is None or (isinstance(value, str) and value in TEMPERATURE_RULES):
        return value
    number = value
    if isinstance(value, str):
        try:
            number = float(value)  # YAML 1.1 reads 1e-3 (no dot) as a string
        except ValueError:
            pass
    if isinstance(number, (int, float)) and not isinstance(number, bool) and math.isfinite(number) and number > 0:
        return float(number)
    hint = did_you_mean(value, TEMPERATURE_RULES) if isinstance(value, str) else ""
    raise ctx.fail(path, value, f"allowed: {TEMPERATURE_ALLOWED}{hint}")


def _check_params(spec: AttackSpec, params: Mapping[str, Any] | None, path: str, ctx: Context,
                  gradient_options: bool = True) -> dict:
    """Validated params with defaults; with ``gradient_options``, an attack that uses gradients also
    gets :data:`GRADIENT_OPTIONS` and a gradient-free one refuses them in one line."""
    given = {} if params is None else params
    if gradient_options and not spec.gradients and isinstance(given, Mapping):
        for k in GRADIENT_OPTIONS:
            if k in given:
                raise ctx.fail(f"{path}.{k}", given[k], f"{spec.name} is gradient-free; {k} applies only to attacks "
                                                          "that use gradients")
    with_options = gradient_options and spec.gradients
    resolved = walk(ctx, param_schema(spec) if with_options else spec.params, given, path + ".")
    if with_options:
        resolved["temperature"] = _check_temperature(resolved["temperature"], f"{path}.temperature", ctx)
    if spec.cross_check is not None:
        spec.cross_check(resolved, path, ctx)
    return resolved


def gradient_options(spec: AttackSpec, params: Mapping[str, Any]) -> dict:
    """The gradient options in validated ``params`` (``{}`` for a gradient-free attack)."""
    return {k: params[k] for k in GRADIENT_OPTIONS if k in params} if spec.gradients else {}


def validate_attack_params(name: str, params: Mapping[str, Any] | None, where: str = "attack",
                           ctx: Context | None = None) -> dict:
    """Check ``params`` for attack ``name`` and return them with defaults filled in.

    :param where: key path of the attack section; errors name ``{where}.name`` or
        ``{where}.params.<key>`` (e.g. ``attack.params.eps``).
    :param ctx: the config file being validated (its name starts each error), if any.
    :raises ConfigError: one line naming the key path, the bad value and what is allowed; unknown
        names get a did-you-mean suggestion. Needs neither TensorFlow nor ART.
    """
    ctx = ctx or Context()
    return _check_params(attack_spec(name, where, ctx), params, f"{where}.params", ctx)


def paper_params(name: str, dataset: str, ctx: Context | None = None) -> dict:
    """The paper's settings for ``name`` on ``dataset``, with annt's defaults for the rest."""
    spec = attack_spec(name, ctx=ctx)
    if dataset not in spec.paper:
        raise (ctx or Context()).fail("attack.preset", "paper", f"the paper has no {name} setting for {dataset!r}; "
                                      f"available: {', '.join(spec.paper) or 'none'}")
    return validate_attack_params(name, spec.paper[dataset], ctx=ctx)
