"""Task files (SPEC §5): read a YAML task file, apply ``--set`` overrides, validate, resolve.

* :mod:`annt.config.schema`: the one validation engine (:class:`~annt.config.schema.Key`, one
  error format, did-you-mean), used by config keys and attack parameters alike;
* :mod:`annt.config.loader`: the task-file schema, per-task checks, ``--set`` overrides and
  :func:`load_config`.

Names are imported on first use so that ``annt.attacks.registry`` can use the engine without
importing the loader (which itself reads the attack registry). No TensorFlow anywhere here.
"""
from __future__ import annotations

import importlib

_LOADER = ("load_config", "validate", "describe_schema", "parse_override", "apply_overrides", "read_yaml",
           "SCHEMA", "TASK_SECTIONS", "TASKS")

__all__ = list(_LOADER)


def __getattr__(name: str):
    if name in _LOADER:
        return getattr(importlib.import_module("annt.config.loader"), name)
    raise AttributeError(f"module 'annt.config' has no attribute {name!r}")
