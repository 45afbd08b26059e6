"""Grid overhead and parallel speed-up (SPEC §14; wiki/Benchmarks.md).

1. **Overhead**: a grid of ``--cells`` trivial cells (FGSM on 5 images of the shipped MNIST sample, one
   cell per eps, on the shipped FP Mnist A), run with ``--jobs 1`` on the local executor. The cells'
   own work is the sum of their ``results.json`` ``elapsed_s`` (model load and attack); everything
   else (starting the worker and importing TensorFlow, validating and hashing cells, making run
   folders, the scheduler, the tables and plots) is overhead: ``1 - own / wall``. Target: < 10%.
   Also printed: the start-up (grid start to the first cell's start), the mean gap between cells, and
   the cost of re-running the grid when every cell is done (aggregation alone).
2. **Speed-up**: ``--heavy`` CPU-bound cells (PGD, 40 iterations, 500 images each) with ``--jobs 1``
   (one worker, all cores) and ``--jobs 2`` (two workers, cores // 2 threads each), each into a fresh
   folder: ``wall(jobs 1) / wall(jobs 2)``. Target on a 2-core machine: ≥ 1.6×.

Each grid runs as ``python -m annt`` in its own process, as a user runs it. Usage:
``python benchmarks/bench_grid.py [--cells 20] [--heavy 6] [--skip-speedup] [--skip-overhead]``.
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
MODEL = ROOT / "models" / "mnist_a-fp"


def write(folder: Path, name: str, attack: str, axis: str, jobs: int) -> Path:
    p = folder / f"{name}.yaml"
    p.write_text(textwrap.dedent(f"""\
        task: grid
        name: {name}
        output_dir: {folder / 'runs'}
        grid:
          base:
            task: attack
            data: {{dataset: mnist, source: sample}}
            model: {{checkpoint: {MODEL}}}
            attack: {attack}
          axes: {{eps: {axis}}}
          jobs: {jobs}
        """))
    return p


def run(cfg: Path) -> float:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "TF_CPP_MIN_LOG_LEVEL": "2"}
    t0 = time.perf_counter()
    r = subprocess.run([sys.executable, "-m", "annt", str(cfg)], cwd=ROOT, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if r.returncode != 0:
        sys.exit(f"{cfg}: exit {r.returncode}\n{r.stderr[-2000:]}")
    return wall


def cell_times(grid_dir: Path) -> tuple[list[float], list[float]]:
    """Per cell: own seconds (results.json elapsed_s) and start time (worker.json), in start order."""
    own, starts = [], []
    for cell in sorted((grid_dir / "cells").iterdir()):
        worker = json.loads((cell / "worker.json").read_text())
        [res] = [json.loads(p.read_text()) for p in cell.glob("*/results.json")]
        own.append(res["elapsed_s"])
        starts.append(dt.datetime.fromisoformat(worker["started"]).timestamp())
    order = sorted(range(len(starts)), key=starts.__getitem__)
    return [own[i] for i in order], [starts[i] for i in order]


def overhead(tmp: Path, cells: int) -> None:
    eps = [round(0.01 * (i + 1), 2) for i in range(cells)]
    cfg = write(tmp, "overhead", "{name: fgsm, samples: 5, runs: 1, grid_samples: 0}", str(eps), jobs=1)
    t_start = time.time()
    wall = run(cfg)
    own, starts = cell_times(tmp / "runs" / "grid-overhead")
    again = run(cfg)  # every cell done: validation, hashing and the tables only
    gaps = [b - a for a, b in zip(starts, starts[1:])]
    print(f"overhead: {cells} trivial cells, --jobs 1: wall {wall:.1f} s, cells' own work {sum(own):.1f} s "
          f"-> overhead {1 - sum(own) / wall:.1%} (target < 10%)")
    print(f"  start-up to the first cell {starts[0] - t_start:.1f} s (worker start and TensorFlow import); mean start-to-start gap {sum(gaps) / max(1, len(gaps)):.2f} s vs mean own {sum(own) / len(own):.2f} s; "
          f"re-run with every cell done: {again:.1f} s")
    rest = wall - (starts[0] - t_start) - sum(own)
    print(f"  without the start-up (the TensorFlow import every annt process pays, a plain attack run too): "
          f"{rest:.1f} s outside the cells = {rest / wall:.1%} of the wall time")


def speedup(tmp: Path, heavy: int) -> None:
    attack = "{name: pgd, params: {eps_step: 0.01, max_iter: 40}, samples: 500, runs: 1, batch_size: 500, grid_samples: 0}"
    eps = [round(0.05 + 0.01 * i, 2) for i in range(heavy)]
    walls, own = {}, {}
    for jobs in (1, 2):
        walls[jobs] = run(write(tmp / f"jobs{jobs}", f"speed{jobs}", attack, str(eps), jobs=jobs))
        own[jobs] = sum(cell_times(tmp / f"jobs{jobs}" / "runs" / f"grid-speed{jobs}")[0]) / heavy
    print(f"speed-up: {heavy} PGD cells: --jobs 1 {walls[1]:.1f} s, --jobs 2 {walls[2]:.1f} s -> "
          f"{walls[1] / walls[2]:.2f}x (target >= 1.6x on 2 cores; this machine has {os.cpu_count()} cores)")
    print(f"  a cell's own time: {own[1]:.2f} s with every core (--jobs 1), {own[2]:.2f} s with its share (--jobs 2): "
          f"the cells alone bound the speed-up at 2 x {own[1]:.2f} / {own[2]:.2f} = {2 * own[1] / own[2]:.2f}x")


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--cells", type=int, default=20)
    p.add_argument("--heavy", type=int, default=6)
    p.add_argument("--skip-overhead", action="store_true")
    p.add_argument("--skip-speedup", action="store_true")
    args = p.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="bench_grid_") as d:
        tmp = Path(d)
        for sub in ("jobs1", "jobs2"):
            (tmp / sub).mkdir()
        if not args.skip_overhead:
            overhead(tmp, args.cells)
        if not args.skip_speedup:
            speedup(tmp, args.heavy)


if __name__ == "__main__":
    main()
