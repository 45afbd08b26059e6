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

from annt.architectures import ARCH_DEFAULTS, build_model  # noqa: E402


def steps_per_second(arch: str, bits: int, batch: int, warmup: int, steps: int) -> float:
    keras.utils.set_random_seed(0)
    shape = ARCH_DEFAULTS[arch]["input_shape"]
    model = build_model(arch, shape, weight_bits=bits, act_bits=bits)
    model.compile(optimizer="adam", loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    rng = np.random.default_rng(0)
    x = rng.random((batch, *shape), dtype=np.float32)
    y = rng.integers(0, 10, batch)
    for _ in range(warmup):
        model.train_on_batch(x, y)
    start = time.perf_counter()
    for _ in range(steps):
        model.train_on_batch(x, y)
    return steps / (time.perf_counter() - start)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--archs", nargs="+", default=["lenet5", "mnist_a", "resnet20"])
    parser.add_argument("--bits", nargs="+", type=int, default=[4, 1])
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--steps", type=int, default=20)
    args = parser.parse_args(argv)

    print(f"batch {args.batch}, {args.warmup} warm-up + {args.steps} timed train steps, Keras {keras.__version__}")
    print(f"{'arch':<10} {'bits':>5} {'steps/s':>9} {'slowdown vs fp':>15}")
    for arch in args.archs:
        fp = steps_per_second(arch, 32, args.batch, args.warmup, args.steps)
        print(f"{arch:<10} {'fp':>5} {fp:9.2f} {1.0:14.2f}x", flush=True)
        for bits in args.bits:
            q = steps_per_second(arch, bits, args.batch, args.warmup, args.steps)
            print(f"{arch:<10} {bits:>5} {q:9.2f} {fp / q:14.2f}x", flush=True)


if __name__ == "__main__":
    main()
