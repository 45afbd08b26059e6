"""Stock ART TensorFlowV2Classifier vs annt's FastTensorFlowV2Classifier on C&W-L2 and JSMA.

Same model, same samples, same seed, same attack settings; prints the wall time of each
estimator, the speed ratio (stock / fast) and whether the adversarial outputs agree.
Run from the repository root:
    python benchmarks/bench_estimator.py [--samples 20] [--model models/mnist_a-4bit | --model synthetic] [--paper]
By default the shipped 4-bit Mnist A attacks images of the shipped real-MNIST test sample.
"""
from __future__ import annotations

import argparse
import os
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

import keras  # noqa: E402
import numpy as np  # noqa: E402

from annt.attacks.runner import generate  # noqa: E402
from annt.attacks.estimator import make_classifier  # noqa: E402

SETTINGS = {
    "cw_l2": {"confidence": 5.0, "max_iter": 10, "binary_search_steps": 5, "initial_const": 1.0},
    "jsma": {"theta": 1.0, "gamma": 0.1},
}


def mnist_like_model(seed: int = 0) -> keras.Model:
    """Mnist A-shaped CNN (capacity 16) on 28x28x1, trained one epoch on synthetic digits-like data
    (10 random prototypes + noise) so that attacks have decision boundaries to cross."""
    keras.utils.set_random_seed(seed)
    model = keras.Sequential([
        keras.Input((28, 28, 1)),
        keras.layers.Conv2D(16, 3, padding="same", activation="relu"),
        keras.layers.MaxPooling2D(),
        keras.layers.Conv2D(16, 3, padding="same", activation="relu"),
        keras.layers.Conv2D(16, 3, padding="same", activation="relu"),
        keras.layers.MaxPooling2D(),
        keras.layers.Conv2D(16, 3, padding="same", activation="relu"),
        keras.layers.Flatten(),
        keras.layers.Dense(512, activation="relu"),
        keras.layers.Dense(10),
    ])
    x, y = synthetic(3000, seed)
    model.compile(keras.optimizers.Adam(1e-3), keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    model.fit(x, y, batch_size=64, epochs=1, verbose=0)
    return model


def synthetic(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    protos = np.random.default_rng(1234).random((10, 28, 28, 1), dtype=np.float32)
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 10, n)
    return (0.4 * protos[y] + 0.6 * rng.random((n, 28, 28, 1))).astype(np.float32), y


def timed_attack(classifier, x, y, name, batch_size=None):
    start = time.perf_counter()
    out = generate(classifier, x, y, name, params=SETTINGS[name], seed=0, batch_size=batch_size)
    return time.perf_counter() - start, out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=20)
    parser.add_argument("--batch-size", type=int, default=None,
                        help="ART's internal batch size (default: all samples at once, as annt runs it)")
    parser.add_argument("--model", default=os.path.join(ROOT, "models", "mnist_a-4bit"),
                        help="model folder, or 'synthetic' for a CNN trained on synthetic data")
    parser.add_argument("--paper", action="store_true", help="C&W at the paper's settings (much slower for stock ART)")
    args = parser.parse_args()
    if args.paper:
        SETTINGS["cw_l2"] = {"confidence": 5.0, "max_iter": 25, "binary_search_steps": 20, "initial_const": 0.01}

    if args.model == "synthetic" or not os.path.isdir(args.model):
        model = mnist_like_model()
        x, y = synthetic(args.samples, seed=99)
        what = "Mnist A-like CNN on synthetic data"
    else:
        from annt.data import load_sample
        from annt.models.folder import load_model_folder

        model, card = load_model_folder(args.model)
        ds = load_sample()
        x, y = ds.x[:args.samples], ds.y[:args.samples]
        what = f"{args.model} ({card['arch']} {card['bits']['label']}) on the real MNIST sample"
    stock, fast = make_classifier(model, fast=False), make_classifier(model, fast=True)
    print(f"model: {what}, {model.count_params()} params; settings {SETTINGS};"
          f" {len(x)} samples 28x28x1; "
          f"clean accuracy {np.mean(np.argmax(fast.predict(x), 1) == y):.2f}; "
          f"ART batch size {args.batch_size or len(x)}")
    # Trace the compiled graphs outside the timed region; tracing is a one-off cost per classifier.
    fast.class_gradient(x[:1], label=0), fast.predict(x[:1])
    print(f"{'attack':8} {'stock s':>8} {'fast s':>8} {'speedup':>8}  agreement")
    for name in SETTINGS:
        t_stock, out_stock = timed_attack(stock, x, y, name, args.batch_size)
        t_fast, out_fast = timed_attack(fast, x, y, name, args.batch_size)
        diff = np.abs(out_stock.x_adv - out_fast.x_adv).max()
        same_pred = np.mean(out_stock.adv_pred == out_fast.adv_pred)
        print(f"{name:8} {t_stock:8.2f} {t_fast:8.2f} {t_stock / t_fast:7.1f}x  "
              f"max|x_adv diff| {diff:.2e}, allclose(atol=1e-5) {np.allclose(out_stock.x_adv, out_fast.x_adv, atol=1e-5)}, "
              f"adv_pred equal {same_pred:.0%}, adv acc stock/fast "
              f"{np.mean(out_stock.adv_pred == y):.2f}/{np.mean(out_fast.adv_pred == y):.2f}")


if __name__ == "__main__":
    main()
