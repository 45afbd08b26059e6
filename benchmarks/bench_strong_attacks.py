"""annt's strong attacks against ART 1.20.1's classes called directly, same images, same seeds.

    python benchmarks/bench_strong_attacks.py [MODEL_FOLDER] [--samples N]

On the first N (default 100) images of the MNIST sample that the model classifies correctly:

* APGD-CE and APGD-DLR, L∞ eps 0.1, 100 iterations, 2 restarts: adversarial accuracy and time of annt's
  ``apgd`` (compiled estimator) and of ART's class on annt's estimator (which re-wraps it into a stock
  eager ``TensorFlowV2Classifier``). Equal accuracy is expected (same algorithm, same first-start draws).
* Square L∞, eps 0.1, 1000 queries: annt's loop (one forward pass per iteration, of the candidates) against
  ART's (three: every image, the robust ones, the candidates), same seed: time, ratio and accuracy. The same
  proposals and acceptance rule, so the accuracies agree up to float ties.
* Square L2, 1000 queries, eps 1 and 2: annt's L2 loop against ART's, whose update divides by the norm
  budget it should scale to (rows that come back NaN are counted robust here).
* Brendel & Bethge (200 steps, L2 and L∞) on the first 20 images, from the same seeded starting points:
  annt (each sample as if alone) against ART's batched ``generate``; success and median distance.

Timings are printed, never asserted; report the machine's load beside them.
"""
from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def main() -> None:
    import annt
    from art.attacks.evasion import AutoProjectedGradientDescent, BrendelBethgeAttack, SquareAttack

    from annt.attacks import art_attacks
    from annt.attacks.estimator import make_classifier
    from annt.attacks.runner import generate

    args = sys.argv[1:]
    folder = next((a for a in args if not a.startswith("--")), str(ROOT / "models" / "mnist_a-1bit"))
    n = int(args[args.index("--samples") + 1]) if "--samples" in args else 100
    model, _ = annt.load_model(folder)
    ds = annt.load_sample()
    clf = make_classifier(model)
    ok = np.flatnonzero(np.argmax(clf.predict(ds.x), axis=1) == ds.y)[:n]
    x, y = ds.x[ok], ds.y[ok]
    onehot = np.eye(10, dtype=np.float32)[y]
    print(f"{folder}: {len(x)} correctly classified MNIST sample images; load average {os.getloadavg()[0]:.1f} "
          f"on {os.cpu_count()} cores")

    def accuracy(x_adv):
        finite = np.isfinite(x_adv).reshape(len(x_adv), -1).all(axis=1)
        pred = np.argmax(clf.predict(np.where(finite[:, None, None, None], x_adv, x[:len(x_adv)])), axis=1)
        return float(np.mean(pred == y[:len(x_adv)])), int((~finite).sum())

    for loss, art_loss in (("ce", "cross_entropy"), ("dlr", "difference_logits_ratio")):
        t0 = time.perf_counter()
        ours = generate(model, x, y, "apgd", params={"eps": 0.1, "max_iter": 100, "restarts": 2, "loss": loss},
                        seed=0, batch_size=len(x))
        t_ours = time.perf_counter() - t0
        np.random.seed(0)
        t0 = time.perf_counter()
        art = AutoProjectedGradientDescent(clf, eps=0.1, eps_step=0.2, max_iter=100, nb_random_init=2,
                                           loss_type=art_loss, batch_size=len(x), verbose=False).generate(x, y=onehot)
        t_art = time.perf_counter() - t0
        print(f"APGD-{loss.upper()} L∞ 0.1: annt {accuracy(ours.x_adv)[0]:.3f} in {t_ours:.1f} s | ART {accuracy(art)[0]:.3f} "
              f"in {t_art:.1f} s ({t_art / t_ours:.1f}x)")

    t0 = time.perf_counter()
    ours = generate(model, x, y, "square", params={"eps": 0.1, "max_iter": 1000}, seed=0, batch_size=len(x))
    t_ours = time.perf_counter() - t0
    np.random.seed(0)
    t0 = time.perf_counter()
    art = SquareAttack(clf, norm=np.inf, eps=0.1, max_iter=1000, batch_size=len(x), verbose=False).generate(x, y=onehot)
    t_art = time.perf_counter() - t0
    print(f"Square L∞ 0.1, 1000 queries: annt {accuracy(ours.x_adv)[0]:.3f} in {t_ours:.1f} s | ART {accuracy(art)[0]:.3f} "
          f"in {t_art:.1f} s ({t_art / t_ours:.1f}x)")

    for eps in (1.0, 2.0):
        ours = generate(model, x, y, "square", params={"eps": eps, "norm": 2, "max_iter": 1000}, seed=0,
                        batch_size=len(x))
        np.random.seed(0)
        with np.errstate(all="ignore"):
            art = SquareAttack(clf, norm=2, eps=eps, max_iter=1000, batch_size=len(x), verbose=False).generate(x, y=onehot)
        acc, nan = accuracy(art)
        print(f"Square L2 {eps:g}, 1000 queries: annt {accuracy(ours.x_adv)[0]:.3f} | ART {acc:.3f} ({nan} NaN images)")

    m = min(20, len(x))
    for norm, order in ((2, 2), ("inf", np.inf)):
        t0 = time.perf_counter()
        ours = generate(model, x[:m], y[:m], "bba", params={"norm": norm, "steps": 200}, seed=0, batch_size=m)
        t_ours = time.perf_counter() - t0
        np.random.seed(0)
        starts, found = art_attacks.random_starts(clf, x[:m], y[:m], False, 100, m)
        t0 = time.perf_counter()
        with art_attacks._no_progress_bars():
            art = BrendelBethgeAttack(clf, norm=norm, steps=200, batch_size=m).generate(
                x[:m][found], y=onehot[:m][found], starting_points=starts[found])
        t_art = time.perf_counter() - t0

        def summary(x_adv, x0, labels):
            evaded = np.argmax(clf.predict(x_adv), axis=1) != labels
            d = np.linalg.norm((x_adv - x0).reshape(len(x0), -1), ord=order, axis=1)
            return f"{evaded.mean():.2f} fooled, median distance {np.median(d[evaded]) if evaded.any() else np.nan:.3f}"

        print(f"BBA L{norm} 200 steps, {m} images: annt {summary(ours.x_adv, x[:m], y[:m])} in {t_ours:.1f} s "
              f"(incl. numba compile) | ART {summary(art, x[:m][found], y[:m][found])} in {t_art:.1f} s")


if __name__ == "__main__":
    main()
