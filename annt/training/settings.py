"""Training hyperparameters: their names, allowed values and per-architecture defaults, in one place.

The ``train:`` config section, :func:`annt.training.fit.fit` and the model card's
``train_settings`` all use :data:`SETTINGS`; defaults come from the architecture's registry entry
(:mod:`annt.models.registry`). Pure Python: no TensorFlow.
"""
from __future__ import annotations

import math
from typing import Any, Mapping

from annt.models.registry import arch_spec

OPTIMIZERS = ("adam", "sgd", "rmsprop")
LR_SCHEDULES = ("constant", "cosine", "step")
#: Adversarial training (``train.adversarial.method``): FGSM (Goodfellow et al.), R-FGSM (Tramèr et al.), PGD (Madry et al.).
ADVERSARIAL_METHODS = ("fgsm", "rfgsm", "pgd")
#: How FGSM training draws each example's eps: ``fixed`` = eps; ``truncated_normal`` = Kurakin et al. (2017).
EPS_DISTRIBUTIONS = ("fixed", "truncated_normal")
#: eps when not given: 0.3, Galloway et al.'s and Panda et al.'s MNIST budget (pixels on [0, 1]).
ADVERSARIAL_EPS = 0.3
#: PGD training steps when not given (Madry et al.'s MNIST setting).
PGD_STEPS = 40
#: Every key of a resolved ``train.adversarial`` section, in the order the card records them.
ADVERSARIAL_KEYS = ("method", "eps", "eps_distribution", "alpha", "steps", "step_size", "random_start",
                    "last_epochs", "own_labels", "clean_weight")
#: Every hyperparameter ``fit`` takes from the config, in the order the card records them.
SETTINGS = ("epochs", "batch_size", "optimizer", "learning_rate", "lr_schedule", "lr_decay_epochs",
            "lr_decay_factor", "weight_decay", "l2_dense", "momentum", "augment")

#: Settings added after models were first shipped, each with the value a card written before it implies (the
#: training then had no such option): :func:`card_train_settings` fills them in.
ADDED_SETTINGS = {"l2_dense": 0.0}


def card_train_settings(card: Mapping[str, Any]) -> dict[str, Any]:
    """A model card's ``train_settings``, with any of :data:`ADDED_SETTINGS` it predates at their implied value."""
    return {**ADDED_SETTINGS, **card["train_settings"]}


def default_train_settings(arch: str) -> dict[str, Any]:
    """The architecture's training recipe (:attr:`annt.models.registry.ArchSpec.training`), all of :data:`SETTINGS`."""
    defaults = dict(arch_spec(arch).training)
    return {key: (list(defaults[key]) if isinstance(defaults[key], (list, tuple)) else defaults[key]) for key in SETTINGS}


def resolve_train_settings(arch: str, given: Mapping[str, Any]) -> dict[str, Any]:
    """:data:`SETTINGS` with the values ``given`` (a ``train:`` section) where not null, else the arch's defaults."""
    settings = default_train_settings(arch)
    settings.update({k: given[k] for k in SETTINGS if given.get(k) is not None})
    if given.get("adversarial"):  # absent for plain training, so plain cards keep their exact settings
        settings["adversarial"] = resolve_adversarial(given["adversarial"])
    return settings


def kurakin_sigma(eps_max: float) -> float:
    """σ of Kurakin et al.'s per-example eps: ceil(eps_max·255/2)/255 (0.3 -> 39/255); eps lies in [0, 2σ]."""
    return math.ceil(round(eps_max * 255 / 2, 6)) / 255  # round: 8/255·255 must not ceil to 5


def resolve_adversarial(given: Mapping[str, Any]) -> dict[str, Any]:
    """A ``train.adversarial`` section with every null that applies to its method replaced by the papers' default
    (keys that do not apply to the method stay null):

    * ``alpha`` (rfgsm): eps/2 (Tramèr et al.); ``steps`` (pgd): 40, ``step_size``: 2.5·eps/steps,
      ``random_start``: true (Madry et al.);
    * ``own_labels``: true for fgsm/rfgsm (Galloway et al., Kurakin et al.: no label leaking), false for pgd (Madry);
    * ``clean_weight``: 0.5 for fgsm/rfgsm (loss = ½ clean + ½ adversarial: CleverHans 2.0's ``model_train``
      that Galloway et al. used, and Kurakin's / Tramèr's half-adversarial batches), 0 for pgd (Madry: adversarial only).
    """
    out = {k: given.get(k) for k in ADVERSARIAL_KEYS}
    out["eps"] = ADVERSARIAL_EPS if out["eps"] is None else out["eps"]
    method, eps = out["method"], out["eps"]
    pgd = method == "pgd"
    out["eps_distribution"] = out["eps_distribution"] or "fixed"
    if method == "rfgsm" and out["alpha"] is None:
        out["alpha"] = eps / 2
    if pgd:
        out["steps"] = out["steps"] or PGD_STEPS
        out["step_size"] = out["step_size"] or 2.5 * eps / out["steps"]
        out["random_start"] = True if out["random_start"] is None else out["random_start"]
    if out["own_labels"] is None:
        out["own_labels"] = not pgd
    if out["clean_weight"] is None:
        out["clean_weight"] = 0.0 if pgd else 0.5
    return out
