"""Bit widths: the one place that parses, checks, names and orders them (SPEC §4).

A bit width k is one of :data:`WIDTHS`; ``32`` (:data:`FP`) means full precision. A model's bits
are a pair ``{"weights": k1, "activations": k2}``. Two spellings exist, both made here:

* :func:`tag` names things: run folders, model folders and the card's ``bits.label``
  (``"fp"``, ``"4bit"``, mixed ``"w2a4"`` / ``"w1afp"``);
* :func:`label` is what tables and plot axes show (``"FP"``, ``"4"``, mixed ``"W2A4"``).

Order everywhere (tables, axes, reports, docs) is :data:`WIDTHS`: full precision first, the
reference model, then increasing precision, as in the papers' tables. Pure Python: no TensorFlow.
"""
from __future__ import annotations

import numbers
from collections.abc import Mapping
from typing import Any

FP = 32
#: Allowed widths in display order: full precision first, then 1 … 16.
WIDTHS: tuple[int, ...] = (FP, 1, 2, 4, 8, 12, 16)

#: Input bit depths δ of input discretization (``model.input_bits``; Panda et al., SPEC §13).
INPUT_BITS: tuple[int, ...] = (1, 2, 3, 4, 8)

_FP_WORDS = ("fp", "fp32", "full", "float", "float32", "32")


def parse(value: Any) -> int:
    """One bit width from a config or a label: ``fp``/``FP``/``32``/``"32"`` -> 32; ``4``, ``"4"``,
    ``"4bit"`` -> 4. Anything else (bools, floats, other ints) raises ``ValueError``."""
    if isinstance(value, str):
        text = value.strip().lower()
        if text in _FP_WORDS:
            return FP
        text = text.removesuffix("bits").removesuffix("bit")
        if text.isdigit():
            value = int(text)
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or int(value) not in WIDTHS:
        raise ValueError(f"not a bit width: {value!r} (allowed: {allowed()})")
    return int(value)


def check(k: Any, what: str = "bits") -> int:
    """``k`` as an int if it is an allowed width (int-valued numbers accepted), else ``ValueError``."""
    try:
        ok = not isinstance(k, bool) and int(k) == k and int(k) in WIDTHS
    except (TypeError, ValueError):
        ok = False
    if not ok:
        raise ValueError(f"{what} must be one of {list(WIDTHS)} (32 = full precision), got {k!r}")
    return int(k)


def allowed() -> str:
    """The allowed widths as users write them: ``fp, 1, 2, 4, 8, 12, 16``."""
    return ", ".join("fp" if k == FP else str(k) for k in WIDTHS)


def pair(bits: Any) -> tuple[int, int]:
    """``(weights, activations)`` from a mapping with those keys, or one width for both."""
    if isinstance(bits, Mapping):
        if not {"weights", "activations"} <= set(bits):
            raise ValueError(f"bits mapping needs 'weights' and 'activations': {dict(bits)!r}")
        return parse(bits["weights"]), parse(bits["activations"])
    k = FP if bits is None else parse(bits)
    return k, k


def tag(bits: Any) -> str:
    """Name tag: ``"fp"``, ``"4bit"`` (same width for both), ``"w2a4"`` / ``"w1afp"`` (mixed)."""
    w, a = pair(bits)
    if w == a:
        return "fp" if w == FP else f"{w}bit"
    return f"w{'fp' if w == FP else w}a{'fp' if a == FP else a}"


def label(bits: Any) -> str:
    """Display label: ``"FP"``, ``"4"``, mixed ``"W4A8"`` (full precision written 32: ``"W32A4"``).
    ``None`` and ``"fp"`` mean full precision."""
    w, a = pair(bits)
    if w == a:
        return "FP" if w == FP else str(w)
    return f"W{w}A{a}"


def sort_key(bits: Any) -> tuple[int, int]:
    """Sort key putting full precision first, then increasing weight and activation widths."""
    w, a = pair(bits)
    return WIDTHS.index(w), WIDTHS.index(a)


def label_order(labels) -> list:
    """``labels`` (display labels or anything :func:`pair` reads) sorted by :func:`sort_key`;
    things that are not bit widths keep their order after the widths."""
    def key(item):
        i, x = item
        try:
            return (0, *sort_key(_from_label(x)), i)
        except ValueError:
            return (1, 0, 0, i)
    return [x for _, x in sorted(enumerate(labels), key=key)]


def _from_label(x: Any) -> Any:
    """Reads ``label`` output back (``"W4A8"`` -> mapping), and anything :func:`pair` reads."""
    if isinstance(x, str) and x[:1] in "Ww" and "A" in x.upper()[1:]:
        w, a = x[1:].upper().split("A", 1)
        return {"weights": w, "activations": a}
    return x
