"""The gradient-masking report (SPEC §12): is a measured robustness real, or do the attacks fail?

:func:`diagnose` runs, on one set of correctly classified samples of one model, at one threat model
(norm, eps):

1. **gradient statistics** at the clean inputs (:func:`gradient_statistics`);
2. **accuracy against PGD iterations** (``iterations``) at eps, and **against eps** (``eps_curve``,
   which should end at an eps so large that an attack must reach 0%: 1.0 in L∞ on [0, 1] images);
3. **final versus best iterate** of PGD (ART returns the last; annt keeps the first adversarial one);
4. **white-box versus gradient-free versus transfer versus noise**: the APGD-CE/APGD-DLR ensemble,
   Square, PGD on the full-precision twin evaluated on this model, and random noise of the same norm.

Each check ends in a one-line verdict, and the report ends with the worst case per sample over every
attack it ran at eps, beside PGD-20's number. PGD here uses annt's ``pgd`` (random start, best
iterate kept) with step ``2.5 · eps / iterations`` (Madry et al.); PGD-20 uses step ``eps / 10``.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from annt.attacks.ensemble import distance

#: Verdict thresholds (accuracy differences on [0, 1]; fractions of samples).
GAP = 0.05  # a difference in accuracy larger than this is reported as a finding
VANISHING = 1e-12  # |gradient| below this counts as vanishing
PGD20_ITERATIONS = 20


def gradient_statistics(classifier, x: np.ndarray, y: np.ndarray, batch_size: int = 50) -> dict[str, float]:
    """Statistics of the input gradients and outputs at clean inputs ``x`` with labels ``y``.

    * ``zero_gradient_fraction``: samples whose loss gradient is exactly zero everywhere;
    * ``vanishing_gradient_fraction``: samples whose largest |gradient| is below :data:`VANISHING`;
    * ``nonzero_pixel_fraction``: mean over samples of the fraction of input elements with a non-zero gradient;
    * ``mean_singular_value``: mean singular value of J = ∂logits/∂x (d × N per sample; paper 000, Table 1);
    * ``mean_psi_norm``: mean ‖ψ‖₂, ψ = softmax(logits) − onehot(y) (the CE gradient w.r.t. the logits);
    * ``mean_logit_gap``: mean top-1 − top-2 logit;
    * ``mean_max_probability`` and ``saturated_fraction`` (max softmax probability exactly 1.0 in float32).
    """
    n = len(x)
    onehot = np.eye(classifier.nb_classes, dtype=np.float32)[y]
    grads, sv, logits = [], [], []
    for i in range(0, n, batch_size):
        xb = x[i:i + batch_size]
        grads.append(classifier.loss_gradient(xb, onehot[i:i + batch_size]).reshape(len(xb), -1))
        jac = classifier.class_gradient(xb).reshape(len(xb), classifier.nb_classes, -1)
        sv.append(np.linalg.svd(jac.astype(np.float64), compute_uv=False))
        logits.append(classifier.predict(xb, batch_size=len(xb)))
    g, s, z = np.concatenate(grads), np.concatenate(sv), np.concatenate(logits).astype(np.float32)
    p = np.exp(z - z.max(axis=1, keepdims=True))
    p /= p.sum(axis=1, keepdims=True)
    top2 = np.sort(z, axis=1)[:, -2:]
    absg = np.abs(g)
    return {
        "zero_gradient_fraction": float(np.mean(absg.max(axis=1) == 0)),
        "vanishing_gradient_fraction": float(np.mean(absg.max(axis=1) < VANISHING)),
        "nonzero_pixel_fraction": float(np.mean(np.mean(absg > 0, axis=1))),
        "mean_singular_value": float(s.mean()),
        "mean_psi_norm": float(np.mean(np.linalg.norm(p - onehot, axis=1))),
        "mean_logit_gap": float(np.mean(top2[:, 1] - top2[:, 0])),
        "mean_max_probability": float(np.mean(p.max(axis=1))),
        "saturated_fraction": float(np.mean(p.max(axis=1) == np.float32(1.0))),
    }


@dataclass
class Check:
    """One check of the report: its name, the numbers it measured and its one-line verdict."""

    name: str
    values: dict
    verdict: str
    finding: bool  # True when the check points at masking or a non-converged attack


@dataclass
class Diagnosis:
    checks: list[Check]
    robust: dict[str, np.ndarray] = field(default_factory=dict)  # attack at eps -> per-sample robust mask
    gradient_stats: dict = field(default_factory=dict)

    def accuracy(self, name: str) -> float:
        return float(np.mean(self.robust[name]))

    @property
    def worst_case(self) -> np.ndarray:
        return np.logical_and.reduce(list(self.robust.values()))

    def to_dict(self) -> dict:
        return {"gradient_statistics": self.gradient_stats,
                "accuracy_at_eps": {k: self.accuracy(k) for k in self.robust},
                "worst_case_accuracy": float(np.mean(self.worst_case)),
                "checks": [{"name": c.name, **c.values, "verdict": c.verdict, "finding": c.finding} for c in self.checks]}


def _noise(x: np.ndarray, eps: float, norm, rng: np.random.Generator) -> np.ndarray:
    """Random noise of norm exactly eps (before clipping to [0, 1]): random signs for L∞, a random direction for L2."""
    if norm == "inf":
        d = eps * rng.choice(np.array([-1.0, 1.0], np.float32), size=x.shape)
    else:
        d = rng.standard_normal(x.shape).astype(np.float32)
        d *= eps / np.linalg.norm(d.reshape(len(x), -1), axis=1).reshape(-1, *[1] * (x.ndim - 1))
    return np.clip(x + d, 0.0, 1.0).astype(np.float32)


def diagnose(model, x: np.ndarray, y: np.ndarray, *, eps: float, norm="inf", iterations=(10, 20, 50, 100, 200, 1000),
             eps_curve=None, twin=None, apgd_iterations: int = 100, apgd_restarts: int = 1, square_queries: int = 5000,
             seed: int = 0, batch_size: int = 200, progress: Callable[[str], None] | None = None) -> Diagnosis:
    """The masking report of SPEC §12 for ``model`` on correctly classified ``x`` (float32 NHWC in [0, 1]).

    :param eps_curve: eps values for accuracy vs eps (PGD, ``max(iterations)``/5 iterations, at least 100);
        default ``eps/4, eps/2, eps, 2 eps, 4 eps`` and 1.0 (L∞) or 10 (L2), where PGD must reach 0%.
    :param twin: the full-precision twin (a Keras model) for the transfer check, or None to skip it.
    :param apgd_iterations, apgd_restarts: APGD-CE and APGD-DLR settings (Croce & Hein: 100 iterations).
    :param square_queries: Square's query budget (Andriushchenko et al.: 5000 on MNIST).
    :param progress: called with a short description before each attack (for a log or a bar).
    """
    from annt.attacks.estimator import make_classifier
    from annt.attacks.runner import generate

    say = progress or (lambda _msg: None)
    classifier = make_classifier(model)
    n = len(x)
    robust: dict[str, np.ndarray] = {}
    checks: list[Check] = []

    def run(name, params, label, on=classifier, attack_seed=seed):
        say(label)
        out = generate(on, x, y, name, params=params, seed=attack_seed, batch_size=batch_size)
        return out

    def pgd(iters, e=eps, keep=True, on=classifier, step=None):
        params = {"eps": e, "eps_step": step or 2.5 * e / iters, "max_iter": iters, "norm": norm, "keep_adversarial": keep}
        return run("pgd", params, f"pgd {iters} it, eps {e:g}", on)

    def evaded_on_model(x_adv):  # an adversarial made elsewhere, judged on this model within eps
        pred = np.argmax(classifier.predict(x_adv, batch_size=batch_size), axis=1)
        return (pred != y) & (distance(x, x_adv, norm) <= eps + 1e-5)

    # 1. gradients
    say("gradient statistics")
    stats = gradient_statistics(classifier, x, y)
    masked = max(stats["zero_gradient_fraction"], stats["vanishing_gradient_fraction"])
    verdict = (f"{masked:.0%} of samples have a zero or vanishing input gradient: gradient attacks cannot move them "
               "(shattered or zero gradients)" if masked > GAP else
               f"gradients are informative ({stats['nonzero_pixel_fraction']:.0%} of pixels non-zero, "
               f"mean singular value {stats['mean_singular_value']:.3g})")
    if stats["saturated_fraction"] > GAP:
        verdict += f"; softmax saturated (p = 1.0) on {stats['saturated_fraction']:.0%}: CE gradients underflow"
    checks.append(Check("gradients", stats, verdict, masked > GAP or stats["saturated_fraction"] > GAP))

    # 2. accuracy against iterations (and PGD-20, the weak baseline users quote)
    pgd20 = pgd(PGD20_ITERATIONS, step=eps / 10)
    robust["pgd-20"] = ~pgd20.evaded
    curve = {}
    for it in sorted(set(iterations)):
        out = pgd(it)
        curve[it] = float(1 - out.evaded.mean())
        robust[f"pgd-{it} (step 2.5 eps/{it})"] = ~out.evaded
    its = sorted(curve)
    drop = curve[its[0]] - curve[its[-1]]
    tail = curve[its[-2]] - curve[its[-1]] if len(its) > 1 else 0.0
    verdict = (f"accuracy still falls with iterations ({curve[its[-2]]:.3f} at {its[-2]} -> {curve[its[-1]]:.3f} at "
               f"{its[-1]}): PGD has not converged; trust no fixed-iteration number" if tail > GAP / 2 else
               f"PGD converges: {curve[its[0]]:.3f} at {its[0]} -> {curve[its[-1]]:.3f} at {its[-1]} iterations")
    checks.append(Check("iterations", {"accuracy": {str(k): v for k, v in curve.items()}, "drop": drop}, verdict, tail > GAP / 2))

    # 3. final versus best iterate (at the most iterations)
    final = pgd(its[-1], keep=False)
    best_acc, final_acc = curve[its[-1]], float(1 - final.evaded.mean())
    gap = final_acc - best_acc
    verdict = (f"the last iterate overstates accuracy by {gap:.3f} ({final_acc:.3f} vs best {best_acc:.3f}): iterates "
               "step in and out of the adversarial region (flat, noisy loss)" if gap > GAP / 2 else
               f"last and best iterate agree ({final_acc:.3f} vs {best_acc:.3f})")
    checks.append(Check("final_vs_best", {"final": final_acc, "best": best_acc}, verdict, gap > GAP / 2))

    # 4. accuracy against eps: an unbounded attack must reach 0%
    big = 1.0 if norm == "inf" else 10.0
    eps_values = sorted(set(eps_curve or (eps / 4, eps / 2, eps, 2 * eps, 4 * eps, big)))
    eps_iters = max(100, its[-1] // 5)
    eps_acc = {e: float(1 - pgd(eps_iters, e=e).evaded.mean()) for e in eps_values}
    top = max(eps_values)
    unbounded = top >= big
    verdict = (f"PGD leaves {eps_acc[top]:.3f} accuracy at eps {top:g}, where any image can be reached: gradients are "
               "masked (or the attack is broken)" if unbounded and eps_acc[top] > 0 else
               f"accuracy falls to {eps_acc[top]:.3f} at eps {top:g}" + (" as it must" if unbounded else ""))
    checks.append(Check("eps", {"accuracy": {f"{k:g}": v for k, v in eps_acc.items()}, "iterations": eps_iters}, verdict,
                        unbounded and eps_acc[top] > 0))

    # 5. white-box ensemble vs gradient-free vs transfer vs noise, at eps
    apgd = {"max_iter": apgd_iterations, "restarts": apgd_restarts}
    white = run("ensemble", {"eps": eps, "norm": norm, "attacks": [{"name": "apgd", "params": {"loss": "ce", **apgd}},
                                                                    {"name": "apgd", "params": {"loss": "dlr", **apgd}}]},
                "apgd-ce + apgd-dlr")
    for i, name in enumerate(white.members["names"]):
        robust[name] = ~white.members["evaded"][i]
    square = run("ensemble", {"eps": eps, "norm": norm,
                              "attacks": [{"name": "square", "params": {"max_iter": square_queries}}]}, "square")
    robust[square.members["names"][0]] = ~square.members["evaded"][0]
    white_acc = float(np.mean(~white.evaded & ~pgd20.evaded & np.logical_and.reduce(
        [robust[k] for k in robust if k.startswith("pgd-")])))
    square_acc = float(np.mean(~square.evaded))
    values = {"white_box": white_acc, "gradient_free": square_acc}
    if twin is not None:
        say("pgd on the full-precision twin")
        tw = generate(twin, x, y, "pgd", params={"eps": eps, "eps_step": 2.5 * eps / 100, "max_iter": 100, "norm": norm},
                      seed=seed, batch_size=batch_size)
        robust["transfer from fp twin"] = ~evaded_on_model(tw.x_adv)
        values["transfer"] = float(np.mean(robust["transfer from fp twin"]))
    say("random noise")
    robust["random noise"] = ~evaded_on_model(_noise(x, eps, norm, np.random.default_rng(seed)))
    values["noise"] = float(np.mean(robust["random noise"]))
    findings = []
    if square_acc < white_acc - GAP:
        findings.append(f"gradient-free beats white-box by {white_acc - square_acc:.2f}: gradients are masked or the "
                        "attack has not converged")
    if "transfer" in values and values["transfer"] < white_acc - GAP:
        findings.append(f"transfer from the fp twin beats white-box by {white_acc - values['transfer']:.2f}: "
                        "this model's own gradients mislead the attack")
    if values["noise"] < white_acc - GAP:
        findings.append(f"random noise beats white-box by {white_acc - values['noise']:.2f}: gradients are useless here")
    verdict = "; ".join(findings) if findings else (
        f"white-box ({white_acc:.3f}) is the strongest: gradient-free {square_acc:.3f}"
        + (f", transfer {values['transfer']:.3f}" if "transfer" in values else "") + f", noise {values['noise']:.3f}")
    checks.append(Check("attack_types", values, verdict, bool(findings)))

    d = Diagnosis(checks, robust, stats)
    worst = float(np.mean(d.worst_case))
    pgd20_acc = d.accuracy("pgd-20")
    verdict = (f"worst case over {len(robust)} attacks {worst:.3f} vs PGD-20 {pgd20_acc:.3f}: "
               + (f"PGD-20 overstates robustness by {pgd20_acc - worst:.3f}" if pgd20_acc - worst > GAP else
                  "PGD-20 is close to the worst case"))
    checks.append(Check("worst_case", {"worst_case": worst, "pgd20": pgd20_acc, "n": n}, verdict, pgd20_acc - worst > GAP))
    return d
