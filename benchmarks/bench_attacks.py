"""Seconds per image of the paper's C&W-L2 and Boundary: stock ART, annt's ART path and the in-graph versions.

Each attack runs with the paper's settings (SPEC §6; C&W: confidence 5, max_iter 25,
binary_search_steps 20, initial_const 0.01; Boundary: max_iter 15) on the shipped 4-bit Mnist A and
the first images of the shipped MNIST test sample, all images of a batch size in one call:

* stock ART: ART's attack on ART's stock ``TensorFlowV2Classifier`` (eager). Its C&W is timed on 2 of
  the 20 binary-search rounds and scaled x10 (every round runs the same max_iter iterations from x;
  ``--full`` runs all 20 at the first batch size).
* annt ART: ART's attack on annt's compiled estimator (``implementation: art``).
* graph: the in-graph version (``implementation: graph``, the default).
* floor, measured in the same run at the same batch: C&W, compiled forward + input-gradient time x
  its binary_search_steps x max_iter = 500 gradient steps; "work floor" adds the forward passes of
  ART's line search, counted in the graph run (the algorithm needs them too). Boundary: forward time
  x the images its walk classified (counted), measured at the walk's batch (batch x sample_size).

Agreement (graph vs annt ART, same images and starts): success rate (points) and mean L2 of the
successes (%), on the 4-bit model (the timed runs' outputs) and on its float twin models/mnist_a-fp.

    python benchmarks/bench_attacks.py            # quick (default): batch 20, agreement on 20 float images
    python benchmarks/bench_attacks.py --full     # batches 20 and 1000, stock C&W in full at 20, 200 float images
    options: --batches 20 200  --agreement N  --attacks cw_l2 boundary  --model DIR  --threads 1

Times of one run, wall clock and process CPU (all threads); ratios are measured side by side in that
run and quoted by CPU time, which other jobs on a shared machine disturb far less than the wall clock.
"""
from __future__ import annotations

import argparse
import os
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

import numpy as np  # noqa: E402

from annt.attacks.registry import ATTACKS, gradient_options, paper_params  # noqa: E402

STOCK_ROUNDS = 2  # quick mode: stock C&W binary-search rounds timed (of the paper's 20)


class Clock:
    """Wall-clock and process CPU seconds (all threads) of a block. On a shared machine the CPU time
    is the steadier measure of an attack's work: other jobs stretch the wall clock, not it."""

    def __enter__(self):
        self.wall, self.cpu = time.perf_counter(), time.process_time()
        return self

    def __exit__(self, *exc):
        self.wall, self.cpu = time.perf_counter() - self.wall, time.process_time() - self.cpu


def run(name: str, classifier, x: np.ndarray, y: np.ndarray, implementation: str, **override):
    """The registry runner of ``name`` (what ``annt.attacks.runner.generate`` calls) with the paper's
    settings: ``(x_adv, attack object, Clock)``. Seeded as ``generate`` seeds."""
    spec = ATTACKS[name]
    params = {**paper_params(name, "mnist"), **override, "implementation": implementation}
    params = {k: v for k, v in params.items() if k not in gradient_options(spec, params)}
    module, _, function = spec.runner.partition(":")
    runner = getattr(__import__(module, fromlist=[function]), function)
    onehot = np.eye(10, dtype=np.float32)[y]
    import keras

    keras.utils.set_random_seed(0)
    with Clock() as clock:
        x_adv, attack = runner(spec, classifier, x, onehot, params, False, len(x))
    return np.asarray(x_adv, np.float32), attack, clock


def per_image(fn, n: int, reps: int) -> np.ndarray:
    """Median (wall, CPU) seconds per image of ``fn()`` over ``reps`` calls (after one warm-up)."""
    fn()
    times = []
    for _ in range(reps):
        with Clock() as clock:
            fn()
        times.append((clock.wall, clock.cpu))
    return np.median(np.array(times), axis=0) / n


def show(seconds: np.ndarray) -> str:
    """(wall, CPU) seconds per image, in ms below 0.1 s."""
    if seconds[0] < 0.1:
        return f"{seconds[0] * 1e3:.4g} ms/img (cpu {seconds[1] * 1e3:.4g})"
    return f"{seconds[0]:.4g} s/img (cpu {seconds[1]:.4g})"


def ratio(a: np.ndarray, b: np.ndarray) -> str:
    """a / b by CPU time (wall clock in parentheses)."""
    return f"{a[1] / b[1]:.2f}x (wall {a[0] / b[0]:.2f}x)"


def floors(fast, x: np.ndarray, y: np.ndarray, rows: int) -> dict:
    """Compiled forward + input-gradient and forward seconds per image at batch len(x), and forward
    seconds per image at ``rows`` images per call (the Boundary walk's batches)."""
    reps = max(3, 2000 // len(x))
    big = np.ascontiguousarray(np.resize(x, (rows, *x.shape[1:])))
    return {"grad": per_image(lambda: fast.class_gradient(x, label=y), len(x), reps),
            "fwd": per_image(lambda: fast.predict(x, batch_size=len(x)), len(x), reps),
            "fwd_rows": per_image(lambda: fast.predict(big, batch_size=rows), rows, max(3, 2000 // rows))}


def outcome(fast, x, y, x_adv) -> tuple[np.ndarray, np.ndarray]:
    evaded = np.argmax(fast.predict(x_adv, batch_size=256), axis=1) != y
    return evaded, np.sqrt(((x_adv - x) ** 2).reshape(len(x), -1).sum(axis=1))


def agreement(fast, x, y, graph_adv, art_adv) -> str:
    (eg, lg), (ea, la) = outcome(fast, x, y, graph_adv), outcome(fast, x, y, art_adv)
    mg, ma = (float(lg[eg].mean()) if eg.any() else float("nan")), (float(la[ea].mean()) if ea.any() else float("nan"))
    return (f"n={len(x)}: success graph {eg.mean():.1%} / ART {ea.mean():.1%} ({100 * (eg.mean() - ea.mean()):+.1f} "
            f"points); mean L2 of successes {mg:.4f} / {ma:.4f} ({100 * (mg / ma - 1):+.2f}%); same outcome on "
            f"{np.mean(eg == ea):.1%} of samples")


def bench_cw(model, fast, stock, x_all, y_all, batches, full: bool) -> None:
    paper = paper_params("cw_l2", "mnist")
    steps = paper["binary_search_steps"] * paper["max_iter"]
    run("cw_l2", fast, x_all[:2], y_all[:2], "graph", max_iter=1, binary_search_steps=1)  # trace once
    for b in batches:
        x, y = x_all[:b], y_all[:b]
        floor_before = floors(fast, x, y, b)
        graph_adv, graph_run, c_graph = run("cw_l2", fast, x, y, "graph")
        art_adv, _, c_art = run("cw_l2", fast, x, y, "art")
        floor_after = floors(fast, x, y, b)
        f = {k: (floor_before[k] + floor_after[k]) / 2 for k in floor_before}
        graph, art = np.array([c_graph.wall, c_graph.cpu]) / b, np.array([c_art.wall, c_art.cpu]) / b
        stats = graph_run.stats
        floor = steps * f["grad"]
        work = (stats["gradient_rows"] * f["grad"] + stats["forward_rows"] * f["fwd"]) / b
        print(f"cw_l2 batch {b}: graph {show(graph)} | annt ART {show(art)}: {ratio(art, graph)} the graph's")
        rounds = paper["binary_search_steps"] if full and b == batches[0] else STOCK_ROUNDS
        _, _, c_stock = run("cw_l2", stock, x, y, "art", binary_search_steps=rounds)
        stock_t = np.array([c_stock.wall, c_stock.cpu]) / b * paper["binary_search_steps"] / rounds
        scaled = f" (timed on {rounds} of 20 rounds, x{20 // rounds})" if rounds < paper["binary_search_steps"] else ""
        print(f"      stock ART {show(stock_t)}{scaled}: {ratio(stock_t, graph)} the graph's")
        print(f"      floor: fwd+grad {show(f['grad'])} x {steps} steps = {show(floor)}; graph at {ratio(graph, floor)} "
              f"the floor")
        print(f"      line search: {stats['forward_rows'] / b / steps:.2f} forwards/img/step at {show(f['fwd'])}: "
              f"work floor {show(work)}; graph at {ratio(graph, work)} it")
        print(f"      agreement, 4-bit: {agreement(fast, x, y, graph_adv, art_adv)}")


def bench_boundary(model, fast, stock, x_all, y_all, batches, full: bool) -> None:
    paper = paper_params("boundary", "mnist")
    run("boundary", fast, x_all[:2], y_all[:2], "graph", max_iter=1)  # trace once
    for b in batches:
        x, y = x_all[:b], y_all[:b]
        graph_adv, graph_run, c_graph = run("boundary", fast, x, y, "graph")
        art_adv, _, c_art = run("boundary", fast, x, y, "art")
        graph, art = np.array([c_graph.wall, c_graph.cpu]) / b, np.array([c_art.wall, c_art.cpu]) / b
        rows = min(b * paper["sample_size"], 4000)
        f = floors(fast, x, y, rows)
        walked = graph_run.stats["forward_rows"] / b
        floor = walked * f["fwd_rows"]
        print(f"boundary batch {b}: graph {show(graph)} | annt ART {show(art)}: {ratio(art, graph)} the graph's")
        _, _, c_stock = run("boundary", stock, x, y, "art")
        stock_t = np.array([c_stock.wall, c_stock.cpu]) / b
        print(f"      stock ART {show(stock_t)}: {ratio(stock_t, graph)} the graph's")
        print(f"      floor: {walked:.0f} forwards/img ({walked / paper['max_iter']:.1f} per iteration) x fwd "
              f"{show(f['fwd_rows'])} at {rows} rows = {show(floor)}; graph at {ratio(graph, floor)} the floor "
              f"(the graph's time includes drawing the starting points)")
        print(f"      agreement, 4-bit: {agreement(fast, x, y, graph_adv, art_adv)}")


def float_agreement(attacks, x, y) -> None:
    from annt.attacks.estimator import make_classifier
    from annt.models.folder import load_model_folder

    model, _ = load_model_folder(os.path.join(ROOT, "models", "mnist_a-fp"))
    fast = make_classifier(model)
    for name in attacks:
        graph_adv, _, c_graph = run(name, fast, x, y, "graph")
        art_adv, _, c_art = run(name, fast, x, y, "art")
        print(f"{name} agreement, float (mnist_a-fp, batch {len(x)}; cpu s/img graph {c_graph.cpu / len(x):.4f}, annt "
              f"ART {c_art.cpu / len(x):.4f}): {agreement(fast, x, y, graph_adv, art_adv)}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--full", action="store_true", help="batches 20 and 1000, stock C&W in full at batch 20, "
                                                            "agreement on 200 float images")
    parser.add_argument("--batches", type=int, nargs="+", help="batch sizes (default: 20; --full: 20 1000)")
    parser.add_argument("--agreement", type=int, help="float-model agreement images (default 20; --full: 200)")
    parser.add_argument("--attacks", nargs="+", default=["cw_l2", "boundary"], choices=["cw_l2", "boundary"])
    parser.add_argument("--model", default=os.path.join(ROOT, "models", "mnist_a-4bit"))
    parser.add_argument("--threads", type=int, help="TensorFlow CPU threads (default: TensorFlow's); 1 makes CPU "
                                                    "times a measure of work on a machine other jobs share")
    args = parser.parse_args()
    from annt.cli import prepare_tensorflow

    prepare_tensorflow(args.threads)
    from annt.attacks.estimator import make_classifier
    batches = args.batches or ([20, 1000] if args.full else [20])
    n_agree = args.agreement or (200 if args.full else 20)

    from annt.data import load_sample
    from annt.models.folder import load_model_folder

    model, card = load_model_folder(args.model)
    ds = load_sample()
    x_all, y_all = np.ascontiguousarray(ds.x), np.asarray(ds.y)
    if max(batches + [n_agree]) > len(x_all):
        parser.error(f"the shipped sample has {len(x_all)} images")
    fast, stock = make_classifier(model), make_classifier(model, fast=False)
    print(f"model {args.model} ({card['arch']} {card['bits']['label']}), shipped MNIST sample; batches {batches}; "
          f"{'full' if args.full else 'quick'} mode; {os.cpu_count()} CPUs, TensorFlow threads "
          f"{args.threads or 'default'}, load average "
          f"{os.getloadavg()[0]:.1f} at start")
    if "cw_l2" in args.attacks:
        bench_cw(model, fast, stock, x_all, y_all, batches, args.full)
    if "boundary" in args.attacks:
        bench_boundary(model, fast, stock, x_all, y_all, batches, args.full)
    float_agreement(args.attacks, x_all[:n_agree], y_all[:n_agree])
    print(f"load average at the end {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
