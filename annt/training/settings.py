"""Training hyperparameters: their names, allowed values and per-architecture defaults, in one place.

The ``train:`` config section, :func:`annt.training.fit.fit` and the model card's
``train_settings`` all use :data:`SETTINGS`; defaults come from the architecture's registry entry
(:mod:`annt.models.registry`). Pure Python: no TensorFlow.
"""
from __future__ import annotations

from typing import Any, Mapping

from annt.models.registry import arch_spec

OPTIMIZERS = ("adam", "sgd", "rmsprop")
LR_SCHEDULES = ("constant", "cosine", "step")
#: Every hyperparameter ``fit`` takes from the config, in the order the card records them.
SETTINGS = ("epochs", "batch_size", "optimizer", "learning_rate", "lr_schedule", "lr_decay_epochs",
            "lr_decay_factor", "weight_decay", "momentum", "augment")


def default_train_settings(arch: str) -> dict[str, Any]:
    """The architecture's training recipe (:attr:`annt.models.registry.ArchSpec.training`), all of :data:`SETTINGS`."""
    defaults = dict(arch_spec(arch).training)
    return {key: (list(defaults[key]) if isinstance(defaults[key], (list, tuple)) else defaults[key]) for key in SETTINGS}


def resolve_train_settings(arch: str, given: Mapping[str, Any]) -> dict[str, Any]:
    """:data:`SETTINGS` with the values ``given`` (a ``train:`` section) where not null, else the arch's defaults."""
    settings = default_train_settings(arch)
    settings.update({k: given[k] for k in SETTINGS if given.get(k) is not None})
    return settings
