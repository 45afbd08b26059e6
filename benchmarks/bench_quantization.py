"""Training-step throughput of quantized vs full-precision models (SPEC §4 overhead check).

For each architecture, times ``train_on_batch`` (batch 128, synthetic data of the model's input
shape, Adam) after a few warm-up steps, at fp and at several bit widths, and prints steps/s and
the slowdown ``fp_steps_per_s / quantized_steps_per_s`` measured in this same run.
Target: slowdown ≤ 1.3x. Usage: ``python benchmarks/bench_quantization.py [--steps 20]``.
"""
from __future__ import annotations

import argparse
import os
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

import keras  # noqa: E402
import numpy as np  # noqa: E402

from annt.models.architectures import ARCH_DEFAULTS, build_model  # noqa: E402


def make_step(arch: str, bits: int, batch: int):
    """A compiled model and a closure running one training step on fixed synthetic data."""
    keras.utils.set_random_seed(0)
    shape = ARCH_DEFAULTS[arch]["input_shape"]
    model = build_model(arch, shape, weight_bits=bits, act_bits=bits)
    model.compile(optimizer="adam", loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    rng = np.random.default_rng(0)
    x = rng.random((batch, *shape), dtype=np.float32)
    y = rng.integers(0, 10, batch)
    return lambda: model.train_on_batch(x, y)


def best_rates(steps: dict, warmup: int, total: int, rounds: int) -> dict:
    """Best steps/s of each variant over ``rounds`` interleaved rounds of ``total/rounds`` steps.

    Interleaving and taking the best round keeps load from other processes on a shared
    machine from biasing one variant: background load only ever makes a round slower.
    """
    for step in steps.values():
        for _ in range(warmup):
            step()
    per_round = max(1, total // rounds)
    best = {name: 0.0 for name in steps}
    for _ in range(rounds):
        for name, step in steps.items():
            start = time.perf_counter()
            for _ in range(per_round):
                step()
            best[name] = max(best[name], per_round / (time.perf_counter() - start))
    return best


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--archs", nargs="+", default=["lenet5", "mnist_a", "resnet20"])
    parser.add_argument("--bits", nargs="+", type=int, default=[4, 1])
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--steps", type=int, default=20, help="timed steps per variant")
    parser.add_argument("--rounds", type=int, default=4)
    args = parser.parse_args(argv)

    print(f"batch {args.batch}; per variant {args.warmup} warm-up + {args.steps} timed train steps "
          f"in {args.rounds} interleaved rounds (best round reported); Keras {keras.__version__}")
    print(f"{'arch':<10} {'bits':>5} {'steps/s':>9} {'slowdown vs fp':>15}")
    for arch in args.archs:
        variants = {32: make_step(arch, 32, args.batch)}
        variants.update({b: make_step(arch, b, args.batch) for b in args.bits})
        rates = best_rates(variants, args.warmup, args.steps, args.rounds)
        for bits, rate in rates.items():
            label = "fp" if bits == 32 else str(bits)
            print(f"{arch:<10} {label:>5} {rate:9.2f} {rates[32] / rate:14.2f}x", flush=True)


if __name__ == "__main__":
    main()
