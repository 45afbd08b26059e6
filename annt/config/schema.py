"""The one validation engine: a :class:`Key` per config key or attack parameter, one error format.

Every check raises :class:`~annt.errors.ConfigError` with ONE line::

    FILE: key.path = VALUE[ (from --set)]: what is allowed[ (did you mean 'x'?)]

(``FILE: `` is left out when no file is involved, e.g. ``annt.attack(...)`` from Python.) Types
are strict: ``true`` is not 1, ``2.5`` is not an int, a string is not a number except the YAML 1.1
spelling ``1e-3`` (no dot), which users mean as a number. Pure Python: no TensorFlow.
"""
from __future__ import annotations

import copy
import difflib
import math
import numbers
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from annt import bits as bitwidths
from annt.errors import ConfigError


class _Required:
    def __repr__(self):
        return "<required>"


REQUIRED = _Required()
#: Spellings of the L-infinity norm order; norms are stored as ``"inf"``, 1 or 2 (JSON-safe, ART accepts them).
NORMS = ("inf", 1, 2)


@dataclass(frozen=True)
class Key:
    """One key: its kind, default, constraints and the doc line shown in the wiki.

    ``kind``: ``int``, ``float``, ``bool``, ``str``, ``choice`` (one of ``choices``), ``norm``
    (``inf``, 1 or 2), ``path`` (resolved against the config file's folder), ``bits``
    (:mod:`annt.bits`, stored as ``{weights, activations}``), ``list`` (of ``item``), ``dict`` or ``any``.
    Numeric bounds ``min``/``max`` are inclusive unless ``min_open``/``max_open``.
    """

    kind: str
    default: Any = None
    doc: str = ""
    choices: tuple = ()
    min: float | None = None
    max: float | None = None
    min_open: bool = False
    max_open: bool = False
    nullable: bool = False
    must_exist: bool = False
    item: str | None = None

    def allowed(self) -> str:
        """What the key accepts, as the tail of an error message and the wiki's 'allowed' column."""
        k = self.kind
        if k in ("choice", "norm"):
            text = "one of " + ", ".join(map(str, self.choices or NORMS))
        elif k == "bool":
            text = "true or false"
        elif k in ("int", "float"):
            text = ("an integer" if k == "int" else "a number") + self._range()
        elif k == "bits":
            text = f"{bitwidths.allowed()} (32 = fp), or {{weights: k, activations: k}}"
        elif k == "list":
            text = f"a list of {self.item}s"
        elif k == "dict":
            text = "a mapping"
        elif k == "path":
            text = "a path" + (" that exists" if self.must_exist else "")
        else:
            text = f"a {k}" if k != "any" else "see the doc"
        return text + (", or null" if self.nullable and k != "path" else "")

    def _range(self) -> str:
        if self.min is None and self.max is None:
            return ""
        lo = "(-inf" if self.min is None else ("(" if self.min_open else "[") + f"{self.min:g}"
        hi = "inf)" if self.max is None else f"{self.max:g}" + (")" if self.max_open else "]")
        return f" in {lo}, {hi}"


def fmt_value(v: Any) -> str:
    """A value as the user wrote it (YAML flow style), cut to 80 characters."""
    if v is REQUIRED:
        return "<missing>"
    s = repr(v) if isinstance(v, str) else yaml.safe_dump(v, default_flow_style=True, width=10**6).strip()
    s = s[:-4].strip() if s.endswith("\n...") else s
    return s if len(s) <= 80 else s[:77] + "..."


def did_you_mean(word: Any, options) -> str:
    close = difflib.get_close_matches(str(word), [str(o) for o in options], n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


class Context:
    """Where values come from: the file (for messages), its folder (to resolve paths) and the key
    paths set with ``--set`` (named as such in errors, and resolved against the working directory)."""

    def __init__(self, file: str | None = None, base: Path | None = None, overridden: set[str] | None = None):
        self.file = file
        self.base = Path(base or Path.cwd())
        self.overridden = overridden or set()

    def fail(self, path: str, value: Any, allowed: str) -> ConfigError:
        src = " (from --set)" if path in self.overridden else ""
        where = f"{self.file}: " if self.file else ""
        return ConfigError(f"{where}{path} = {fmt_value(value)}{src}: {allowed}")

    def unknown(self, path: str, key: Any, options) -> ConfigError:
        where = f"{self.file}: " if self.file else ""
        section = path.rpartition(".")[0] or "top level"
        return ConfigError(f"{where}{path}: unknown key in {section}{did_you_mean(key, options)}; "
                           f"allowed: {', '.join(map(str, options))}")

    def base_for(self, path: str) -> Path:
        from_cli = any(path == o or path.startswith(o + ".") or path.startswith(o + "[") for o in self.overridden)
        return Path.cwd() if from_cli else self.base


def _number(value: Any, kind: str) -> Any:
    """``value`` as an int/float of ``kind`` if it is one (strictly), else None."""
    if isinstance(value, str) and kind == "float":
        try:
            value = float(value)  # YAML 1.1 reads 1e-3 (no dot) as a string
        except ValueError:
            return None
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        return None
    if kind == "int":
        return int(value) if isinstance(value, numbers.Integral) else None
    value = float(value)
    return value if math.isfinite(value) else None


def normalise_norm(value: Any) -> Any:
    """``inf``, ``"inf"``, ``np.inf``, ``2``, ``2.0`` -> ``"inf"`` / ``2``; anything else unchanged."""
    if isinstance(value, str) and value.strip().lower() in ("inf", "linf", "np.inf", "infinity"):
        return "inf"
    if isinstance(value, numbers.Real) and not isinstance(value, bool):
        if math.isinf(value) and value > 0:
            return "inf"
        if float(value).is_integer():
            return int(value)
    return value


def check(ctx: Context, path: str, key: Key, value: Any) -> Any:
    """``value`` checked against ``key`` and normalised; :class:`ConfigError` naming ``path`` otherwise."""
    if value is None:
        if key.nullable or (key.default is None and key.kind != "bits"):
            return None
        raise ctx.fail(path, value, f"must not be null ({key.allowed()})")
    k = key.kind
    if k in ("int", "float"):
        v = _number(value, k)
        bad = v is None or (key.min is not None and (v < key.min or (key.min_open and v == key.min))) or \
            (key.max is not None and (v > key.max or (key.max_open and v == key.max)))
        if bad:
            raise ctx.fail(path, value, f"must be {key.allowed()}")
        return v
    if k == "bool":
        if not isinstance(value, bool) and type(value).__name__ != "bool_":
            raise ctx.fail(path, value, "must be true or false")
        return bool(value)
    if k == "str":
        if not isinstance(value, str):
            raise ctx.fail(path, value, "must be a string")
        return value
    if k in ("choice", "norm"):
        v = normalise_norm(value) if k == "norm" else value
        choices = key.choices or NORMS
        if isinstance(v, (list, dict)) or v not in choices or isinstance(v, bool):
            raise ctx.fail(path, value, f"allowed: {', '.join(map(str, choices))}{did_you_mean(value, choices)}")
        return v
    if k == "path":
        if not isinstance(value, (str, os.PathLike)) or str(value) == "":
            raise ctx.fail(path, value, "must be a path string")
        p = Path(os.path.expanduser(str(value)))
        p = Path(os.path.normpath(p if p.is_absolute() else ctx.base_for(path) / p))
        if key.must_exist and not p.exists():
            raise ctx.fail(path, value, f"no such file or folder: {p}")
        return str(p)
    if k == "bits":
        if isinstance(value, Mapping):
            if set(value) != {"weights", "activations"}:
                raise ctx.fail(path, value, "a bits mapping needs exactly the keys weights and activations")
            return {part: _one_width(ctx, f"{path}.{part}", value[part]) for part in ("weights", "activations")}
        b = _one_width(ctx, path, value)
        return {"weights": b, "activations": b}
    if k == "list":
        if isinstance(value, str) and key.item == "path":
            value = [value]
        if not isinstance(value, list) or (key.default is REQUIRED and not value):
            raise ctx.fail(path, value, f"must be a {'non-empty ' if key.default is REQUIRED else ''}list of {key.item}s")
        item = Key(key.item, None, min=0 if key.item == "int" else None)
        return [check(ctx, f"{path}[{i}]", item, v) for i, v in enumerate(value)]
    if k == "dict":
        if not isinstance(value, Mapping):
            raise ctx.fail(path, value, "must be a mapping")
        return dict(value)
    return value  # any


def _one_width(ctx: Context, path: str, value: Any) -> int:
    try:
        return bitwidths.parse(value)
    except ValueError:
        raise ctx.fail(path, value, f"allowed: {bitwidths.allowed()} (32 = fp)") from None


def walk(ctx: Context, schema: Mapping[str, Any], given: Any, prefix: str = "") -> dict:
    """Check a mapping against ``schema`` (``name -> Key`` or a nested schema for a section):
    unknown keys are refused with a did-you-mean, missing ones take their default."""
    if not isinstance(given, Mapping):
        raise ctx.fail(prefix.rstrip(".") or "top level", given, "must be a mapping of keys")
    for k in given:
        if k not in schema:
            raise ctx.unknown(prefix + str(k), k, list(schema))
    out = {}
    for k, spec in schema.items():
        path = prefix + k
        if isinstance(spec, Mapping):
            if given.get(k) is not None and not isinstance(given[k], Mapping):
                raise ctx.fail(path, given[k], "must be a mapping of keys (a section)")
            # a null section (as written in config.resolved.yaml for unused ones) counts as absent
            out[k] = walk(ctx, spec, given[k], path + ".") if given.get(k) is not None else None
        elif k in given:
            out[k] = check(ctx, path, spec, given[k])
        elif spec.default is REQUIRED:
            raise ctx.fail(path, REQUIRED, f"required ({spec.allowed()})")
        elif spec.kind == "bits" and spec.default is not None:
            out[k] = check(ctx, path, spec, spec.default)
        else:
            out[k] = copy.deepcopy(spec.default)
    return out
