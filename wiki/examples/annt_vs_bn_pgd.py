"""PGD robustness of the two shipped model families, ANNT graph vs BatchNorm graph (offline, ~2 minutes on CPU).

    python wiki/examples/annt_vs_bn_pgd.py [MODEL ...]     # default: mnist_a 1- and 2-bit of both families

PGD L-inf, 100 steps of 0.01, one random start (seed 0), on the first 200 images of the shipped real-MNIST
test sample. Adversarial accuracy counts all 200 images (a clean error stays an error).
"""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # run from a checkout without installing

import annt  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
names = sys.argv[1:] or ["mnist_a-1bit", "mnist_a-bn-1bit", "mnist_a-2bit", "mnist_a-bn-2bit"]
ds = annt.load_sample()
x, y = ds.x[:200], ds.y[:200]
print("| model | graph | clean accuracy | PGD eps 0.1 | PGD eps 0.2 |\n|---|---|---|---|---|")
for name in names:
    model, card = annt.load_model(ROOT / "models" / name)
    adv = [annt.attack(model, x, y, "pgd", eps=eps, eps_step=0.01, max_iter=100, seed=0).summary for eps in (0.1, 0.2)]
    graph = "BatchNorm" if card["batchnorm"] else "ANNT (no BN)"
    print(f"| `{name}` | {graph} | {adv[0]['clean_accuracy']:.3f} | {adv[0]['adversarial_accuracy']:.3f} | "
          f"{adv[1]['adversarial_accuracy']:.3f} |", flush=True)
