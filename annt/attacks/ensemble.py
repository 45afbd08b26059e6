"""Worst-case robust accuracy over an attack ensemble (SPEC §12; Croce & Hein 2020).

A sample is robust only if **every** member fails inside the threat model (norm, eps). Each member
runs on every sample (so each member's own accuracy is reported too, not only the survivors of the
previous one); per sample the ensemble keeps the adversarial of the first member, in the listed
order, that broke it, else the clean image. Minimum-norm members (C&W, DeepFool, Boundary, ...)
count as breaking a sample only when their adversarial lies within eps in the ensemble's norm.

The default ensemble (``attack.preset: robust``, or ``attacks: null``) is :data:`DEFAULT_MEMBERS`:
APGD-CE, APGD-DLR and Square, at the ensemble's eps and norm.
"""
from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

#: SPEC §12's default L∞/L2 ensemble: two white-box losses and one gradient-free attack.
DEFAULT_MEMBERS: tuple[dict, ...] = (
    {"name": "apgd", "params": {"loss": "ce"}},
    {"name": "apgd", "params": {"loss": "dlr"}},
    {"name": "square", "params": {}},
)
#: Slack on the budget check of a member's adversarial (float32 round-off on the [0, 1] scale).
BUDGET_TOLERANCE = 1e-5


def member_label(member: dict) -> str:
    """``apgd(loss=dlr)``: a member's name plus the parameters it was given explicitly."""
    given = member.get("given") or {}
    return member["name"] + (f"({', '.join(f'{k}={v}' for k, v in given.items())})" if given else "")


def distance(x: np.ndarray, x_adv: np.ndarray, norm) -> np.ndarray:
    """Per-sample ‖x_adv − x‖ in ``norm`` (``"inf"``, 2, 1 or 0) on the [0, 1] scale."""
    d = (np.asarray(x_adv, np.float64) - np.asarray(x, np.float64)).reshape(len(x), -1)
    if norm == "inf":
        return np.abs(d).max(axis=1) if d.size else np.zeros(len(x))
    if norm == 0:
        return np.count_nonzero(np.abs(d) > 1e-6, axis=1).astype(np.float64)
    return np.linalg.norm(d, ord=int(norm), axis=1)


@dataclass
class _EnsembleRun:
    """What :func:`run_ensemble` leaves for ``generate`` to read (``AttackSpec.extras``)."""

    members: dict


def run_ensemble(spec, classifier, x, y_onehot, params, targeted, batch_size):
    """Runner of the ``ensemble`` attack (see the module docstring); members get derived seeds."""
    from annt.attacks.runner import generate

    labels = np.argmax(y_onehot, axis=1)
    eps, norm = params["eps"], params["norm"]
    members = params["attacks"]
    x_best = x.copy()
    broken_by = np.full(len(x), -1, dtype=np.int64)
    evaded = np.zeros((len(members), len(x)), dtype=bool)
    seconds = np.zeros(len(members))
    seeds = np.random.randint(0, 2**31 - 1, size=len(members))  # the global RNG is seeded by generate
    for i, member in enumerate(members):
        t0 = time.perf_counter()
        out = generate(classifier, x, labels, member["name"], params=member["params"], seed=int(seeds[i]),
                       batch_size=batch_size)
        seconds[i] = time.perf_counter() - t0
        within = distance(x, out.x_adv, norm) <= eps + BUDGET_TOLERANCE
        evaded[i] = out.evaded & within
        new = evaded[i] & (broken_by < 0)
        x_best[new] = out.x_adv[new]
        broken_by[new] = i
    return x_best, _EnsembleRun({"names": [member_label(m) for m in members], "evaded": evaded,
                                 "broken_by": broken_by, "seconds": seconds})


def summarize_members(members: dict) -> dict:
    """Per-member adversarial accuracy (within the threat model) and time taken (seconds, when known),
    the worst case over them, and how many samples each member broke first."""
    evaded = np.asarray(members["evaded"], dtype=bool)
    broken_by = np.asarray(members["broken_by"])
    n = evaded.shape[1]
    nan = float("nan")
    seconds = members.get("seconds")
    return {
        "members": [{"name": name, "adversarial_accuracy": float(1 - evaded[i].mean()) if n else nan,
                     **({"seconds": round(float(seconds[i]), 2)} if seconds is not None else {})}
                    for i, name in enumerate(members["names"])],
        "worst_case_accuracy": float(np.mean(broken_by < 0)) if n else nan,
        "broken_first_by": {name: int(np.sum(broken_by == i)) for i, name in enumerate(members["names"])},
    }


def combine_members(parts: list[dict], names: list[str]) -> dict:
    """The members record of a whole selection from its batches' records."""
    out = {"names": list(names), "evaded": np.concatenate([p["evaded"] for p in parts], axis=1),
           "broken_by": np.concatenate([p["broken_by"] for p in parts])}
    if all(p.get("seconds") is not None for p in parts):
        out["seconds"] = np.sum([p["seconds"] for p in parts], axis=0)
    return out
