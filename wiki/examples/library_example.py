"""Worked example of annt's Python API: attack, evaluate, transfer, plot (offline, ~1 minute on CPU).

    python wiki/examples/library_example.py
"""
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # run from a checkout without installing

import numpy as np  # noqa: E402

import annt  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
out = Path(tempfile.mkdtemp(prefix="annt-example-"))

# 1. Data and models: the shipped real-MNIST test sample and two shipped Mnist A models.
ds = annt.load_sample()
x, y = ds.x[:64], ds.y[:64]
source, card = annt.load_model(ROOT / "models" / "mnist_a-4bit")   # refuses a folder whose card mismatches
target, _ = annt.load_model(ROOT / "models" / "mnist_a-fp")
print("source:", card["arch"], card["bits"]["label"], "test accuracy", card["test_accuracy"])

# 2. Attack arrays in a custom loop: several PGD budgets from one call each.
for eps in (0.05, 0.1, 0.2):
    res = annt.attack(source, x, y, "pgd", eps=eps, eps_step=eps / 8, max_iter=20, restarts=1, seed=0)
    s = res.summary
    print(f"PGD eps={eps}: adversarial accuracy {s['adversarial_accuracy']:.3f}, "
          f"mean L2 of successful {s['l2']['successful']['mean']:.3f}")

# 3. Package the last result as an adversarial set and evaluate it on another model (transfer).
adv = annt.AdversarialSet(images=res.x_adv, labels=y, image_index=ds.index[:64], clean_images=x,
                          clean_pred=res.clean_pred, adv_pred=res.adv_pred,
                          metadata={"dataset": "mnist", "attack": "pgd", "selection": {"only_correct": False}})
ev = annt.evaluate(target, adv)
print(f"transfer to FP: {ev.summary['n']} of {ev.summary['n_total']} samples counted "
      f"(target classifies the clean image correctly), transfer rate {ev.summary['transfer_rate']:.3f}")

# 4. Per-sample records and distances.
print("first record:", res.records[0])
norms = annt.perturbation_norms(x, res.x_adv)
print("max L_inf over the batch:", float(np.max(norms["linf"])))

# 5. Plots (headless PNGs).
annt.image_grid(out / "grid.png", x[:6], res.x_adv[:6], labels=y[:6], clean_pred=res.clean_pred[:6],
                adv_pred=res.adv_pred[:6])
annt.accuracy_vs_bits(out / "curve.png", {"pgd eps 0.2": {"4": s["adversarial_accuracy"],
                                                          "fp": float(np.mean(ev.adv_pred == y))}})
print("plots in", out)
