"""Training-step time of Galloway et al.'s binary CNNs (types B, C, S) against their full-precision twin (type A) and mnist_a.

Issue 12: one K = 64 training epoch on MNIST for galloway A, B, C and S beside the full-precision ``mnist_a``
epoch; the binary types must cost at most 1.5x type A (their full-precision twin: same graph without
BatchNorm, sign activations or sign kernels) per step.

Each model is built by annt (``annt.models.architectures.build_model``, options ``{type, filters}``) and
compiled as the ``train`` task compiles it (``annt.training.fit``: the arch's registry optimizer and learning
rate, sparse softmax cross-entropy on logits, accuracy metric, Keras' default jit setting). All models train
on the same random MNIST-shaped batches (28x28x1 in [0, 1], labels 0-9), default batch 128 as
``configs/papers/galloway2018/train_galloway.yaml`` and the registry's galloway recipe. After warm-up steps
(tracing), each repeat times ``--steps`` steps of every model, in an order rotated per repeat so that load
from other processes falls on all models alike; the table gives the median over repeats, wall clock and
process CPU (all threads), the projection to a 55,000-image epoch (MNIST's 60,000 less the 5,000 held out
for validation; s/step x 55,000 / batch, validation pass not included), the ratios to galloway A and to
mnist_a, and PASS/FAIL of the 1.5x rule (wall clock) for B, C and S.

    python benchmarks/bench_binary_training.py [--threads 1] [--steps 50] [--repeats 5] [--filters 64]
                                               [--batch 128] [--models A B C S mnist_a]
    python benchmarks/bench_binary_training.py --models fcn2 fcn2-bnn fcn1 fcn1-bnn --batch 100 --steps 10 --repeats 1
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

#: --models names: galloway types, the full-precision reference of the issue, and Panda et al.'s fully connected nets
#: (issue 13 asks to time one FCN1 epoch before training it; ``-bnn`` is ``options.binary: true``).
GALLOWAY_TYPES = ("A", "B", "C", "S")
REFERENCE = "mnist_a"
FCN = ("fcn2", "fcn2-bnn", "fcn1", "fcn1-bnn")
EPOCH_IMAGES = 55_000
RULE = 1.5  # issue 12: a binary type may cost at most 1.5x type A per step


def build_compiled(name: str, filters: int):
    """``name`` (a galloway type, ``mnist_a`` or one of :data:`FCN`) built by annt and compiled as
    ``annt.training.fit`` compiles it."""
    import keras

    from annt.models.architectures import build_model
    from annt.training.fit import _optimizer
    from annt.training.settings import default_train_settings

    if name in FCN:
        arch, options = name.removesuffix("-bnn"), {"binary": name.endswith("-bnn")}
    else:
        arch, options = (REFERENCE, None) if name == REFERENCE else ("galloway", {"type": name, "filters": filters})
    keras.utils.set_random_seed(0)
    model = build_model(arch, options=options)
    s = default_train_settings(arch)
    model.compile(optimizer=_optimizer(s["optimizer"], s["learning_rate"], s["momentum"], s["weight_decay"]),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True), metrics=["accuracy"])
    return model


def label(name: str, filters: int) -> str:
    return name if name in (REFERENCE, *FCN) else f"galloway-{name}{filters}"


def time_steps(model, batches) -> tuple[float, float]:
    """(wall, process CPU) seconds per step over ``batches``; ``train_on_batch`` returns numpy logs, so each step
    has finished when it returns."""
    wall, cpu = time.perf_counter(), time.process_time()
    for x, y in batches:
        model.train_on_batch(x, y)
    n = len(batches)
    return (time.perf_counter() - wall) / n, (time.process_time() - cpu) / n


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=[*GALLOWAY_TYPES, REFERENCE],
                        choices=[*GALLOWAY_TYPES, REFERENCE, *FCN],
                        help="models to time (default: the galloway types and mnist_a; fcn1/fcn2 on request)")
    parser.add_argument("--filters", type=int, default=64, help="galloway's K (default 64)")
    parser.add_argument("--batch", type=int, default=None,
                        help="batch size (default: the galloway recipe's, 128, as train_galloway.yaml; fcn1/fcn2 train "
                             "at 100)")
    parser.add_argument("--steps", type=int, default=50, help="timed steps per model and repeat (default 50)")
    parser.add_argument("--repeats", type=int, default=5, help="interleaved repeats; the median is reported (default 5)")
    parser.add_argument("--warmup", type=int, default=3, help="untimed steps per model first (tracing; default 3)")
    parser.add_argument("--threads", type=int, help="TensorFlow CPU threads (default: TensorFlow's); 1 makes CPU "
                                                    "time a measure of work on a machine other jobs share")
    args = parser.parse_args(argv)
    for opt in ("filters", "steps", "repeats"):
        if getattr(args, opt) < 1:
            parser.error(f"--{opt} must be at least 1")
    if args.batch is not None and args.batch < 1:
        parser.error("--batch must be at least 1")
    names = list(dict.fromkeys(args.models))

    from annt.cli import prepare_tensorflow

    prepare_tensorflow(args.threads)
    import keras
    import numpy as np
    import tensorflow as tf

    tf.get_logger().setLevel("ERROR")  # one train function per model traces once; TF's retracing warning counts them together

    from annt.models.registry import arch_spec

    batch = args.batch or arch_spec("galloway").training["batch_size"]
    rng = np.random.default_rng(0)
    batches = [(rng.random((batch, 28, 28, 1), dtype=np.float32), rng.integers(0, 10, batch).astype(np.int64))
               for _ in range(args.steps)]
    load = os.getloadavg()[0]
    models = {name: build_compiled(name, args.filters) for name in names}
    for model in models.values():
        for i in range(args.warmup):
            model.train_on_batch(*batches[i % len(batches)])
    wall: dict[str, list[float]] = {n: [] for n in names}
    cpu: dict[str, list[float]] = {n: [] for n in names}
    start = time.perf_counter()
    for r in range(args.repeats):
        for name in names[r % len(names):] + names[:r % len(names)]:
            w, c = time_steps(models[name], batches)
            wall[name].append(w)
            cpu[name].append(c)
    elapsed = time.perf_counter() - start
    med = {n: statistics.median(wall[n]) for n in names}
    med_cpu = {n: statistics.median(cpu[n]) for n in names}

    jit = {bool(m.jit_compile) for m in models.values()}
    print(f"batch {batch}, K = {args.filters}; {args.warmup} warm-up + {args.repeats} interleaved repeats x {args.steps} "
          f"train steps per model (median); Keras {keras.__version__}, jit_compile {'/'.join(map(str, sorted(jit)))}; "
          f"{os.cpu_count()} CPUs, TensorFlow threads {args.threads or 'default'}; load average {load:.1f} at start, "
          f"{os.getloadavg()[0]:.1f} at end; timed part {elapsed:.0f} s")
    a, ref = med.get("A"), med.get(REFERENCE)
    a_cpu, ref_cpu = med_cpu.get("A"), med_cpu.get(REFERENCE)

    def ratio(x, base):
        return f"{x / base:.2f}x" if base else "-"

    head = (f"{'model':<14} {'params':>8} {'s/step':>8} {'(min-max)':>15} {'cpu s/step':>10} {'s/epoch':>8} "
            f"{'x A':>6} {'x A cpu':>8} {'x mnist_a':>10} {'x mnist_a cpu':>13}  rule <= {RULE}x A")
    print(head)
    for n in names:
        verdict = ("PASS" if med[n] <= RULE * a else "FAIL") if (a and n in ("B", "C", "S")) else ""
        spread = f"{min(wall[n]):.4f}-{max(wall[n]):.4f}"
        print(f"{label(n, args.filters):<14} {models[n].count_params():>8} {med[n]:8.4f} {spread:>15} "
              f"{med_cpu[n]:10.4f} {med[n] * EPOCH_IMAGES / batch:8.1f} {ratio(med[n], a):>6} {ratio(med_cpu[n], a_cpu):>8} "
              f"{ratio(med[n], ref):>10} {ratio(med_cpu[n], ref_cpu):>13}  {verdict}")


if __name__ == "__main__":
    main()
