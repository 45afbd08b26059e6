"""Tables: mean ± std over runs, CSV and Markdown, the one place results become text.

Numbers are written without binary noise (``0.30000000000000004`` -> ``0.3``, see
:func:`clean_float`), missing values (None, NaN) as an empty CSV cell or ``n/a``, and ``± std``
only when there was more than one run. JSON files get the same floats
(:func:`annt.io.to_json` passes its object through :func:`clean`).
"""
from __future__ import annotations

import csv
import io
import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np


def mean_std(values: Iterable[Any]) -> dict[str, float | int]:
    """``{"mean", "std", "n"}`` over the values that are numbers (None and NaN skipped);
    ``std`` is the population standard deviation (over runs, not an estimate); NaN when empty."""
    v = np.array([np.nan if x is None else x for x in values], dtype=np.float64)
    v = v[~np.isnan(v)]
    if not len(v):
        return {"mean": float("nan"), "std": float("nan"), "n": 0}
    return {"mean": clean_float(v.mean()), "std": clean_float(v.std()), "n": int(len(v))}


def is_missing(v: Any) -> bool:
    return v is None or (isinstance(v, (float, np.floating)) and math.isnan(v))


#: A float at most this many units in the last place away from a number with 12 significant
#: digits is that number plus binary noise (sums and means of a few values are off by 1-3 ulps).
NOISE_ULPS = 8


def clean_float(v: float) -> float:
    """``v`` without binary noise: the nearest number with 12 significant digits when ``v`` is
    within :data:`NOISE_ULPS` ulps of it (``0.1 + 0.2`` -> ``0.3``, ``np.std([0.1, 0.3])`` -> ``0.1``),
    else ``v`` unchanged. So genuine values keep every digit (``5/6`` stays ``0.8333333333333334``,
    and a float32 accuracy read back from JSON is the same float), and writing, reading and
    writing again gives the same text."""
    v = float(v)
    if not math.isfinite(v) or v == 0.0:
        return v
    short = float(f"{v:.12g}")
    return short if abs(short - v) <= NOISE_ULPS * math.ulp(v) else v


def clean(obj: Any) -> Any:
    """``obj`` with every float (also numpy scalars, in nested dicts and lists) passed through :func:`clean_float`."""
    if isinstance(obj, (bool, np.bool_)):
        return bool(obj)
    if isinstance(obj, (float, np.floating)):
        return clean_float(obj)
    if isinstance(obj, np.integer):
        return int(obj)
    if isinstance(obj, np.ndarray):
        return clean(obj.tolist())
    if isinstance(obj, Mapping):
        return {k: clean(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [clean(v) for v in obj]
    return obj


def fmt(v: Any, digits: int = 4) -> str:
    """A number for humans: ``n/a`` when missing, else ``digits`` decimals."""
    return "n/a" if is_missing(v) else f"{float(v):.{digits}f}"


def pm(stats: Mapping[str, Any], digits: int = 4) -> str:
    """``mean ± std`` from :func:`mean_std` output; just ``mean`` when there was one value (no ``± 0.000``)."""
    if is_missing(stats.get("mean")):
        return "n/a"
    if stats.get("n", 2) <= 1 or is_missing(stats.get("std")):
        return fmt(stats["mean"], digits)
    return f"{fmt(stats['mean'], digits)} ± {fmt(stats['std'], digits)}"


def to_csv(rows: Sequence[Mapping[str, Any]], fields: Sequence[str] | None = None) -> str:
    """CSV text of ``rows`` (columns ``fields``, default the first row's keys; extra keys ignored,
    missing ones empty). Floats are cleaned, None/NaN written as empty cells."""
    fields = list(fields if fields is not None else (rows[0] if rows else []))
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=fields, extrasaction="ignore", lineterminator="\n")
    w.writeheader()
    for r in rows:
        w.writerow({k: ("" if is_missing(r.get(k)) else clean(r.get(k))) for k in fields})
    return buf.getvalue()


def markdown(header: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
    """A Markdown table; cells are ``str()``-ed, and ``|`` inside a cell is escaped."""
    def cell(v):
        return str(v).replace("|", "\\|")

    out = "| " + " | ".join(map(cell, header)) + " |\n|" + "---|" * len(header) + "\n"
    for r in rows:
        out += "| " + " | ".join(map(cell, r)) + " |\n"
    return out
