"""The local and Ray executors on the shipped tiny grid (configs/grid/tiny_fgsm.yaml): the same numbers
from either, and a worker killed in the middle of a cell costs only that cell, which is run again and
resumes where the dead worker's last batch ended."""
import csv
import json
import os
import signal
import threading
import time
from pathlib import Path

import pytest

from annt import cli
from annt.config import load_config
from annt.grid.cells import run_folders
from annt.tasks.grid import cells_of

ROOT = Path(__file__).resolve().parent.parent
TINY = ROOT / "configs" / "grid" / "tiny_fgsm.yaml"
pytestmark = pytest.mark.skipif(not (ROOT / "models" / "mnist_a-fp" / "model.keras").is_file(),
                                reason="shipped models missing")


class Killer(threading.Thread):
    """Kills (SIGKILL) the worker running the grid's first cell once it has saved 3 batches."""

    def __init__(self, folder: Path):
        super().__init__(daemon=True)
        self.folder, self.killed, self.stop = folder, None, False

    def run(self):
        deadline = time.time() + 300
        while not self.stop and time.time() < deadline:
            parts = list(self.folder.glob("*/partial/run0_batch*.npz"))
            if len(parts) >= 3 and (self.folder / "worker.json").is_file():
                pid = json.loads((self.folder / "worker.json").read_text())["pid"]
                os.kill(pid, signal.SIGKILL)
                self.killed = pid
                return
            time.sleep(0.01)


def run_grid(tmp_path, name, executor):
    out = tmp_path / name
    # batches of one image: a cell takes long enough to be killed half way
    overrides = [f"output_dir={out}", "grid.base.attack.batch_size=1", f"grid.executor={executor}"]
    args = [str(TINY), "--jobs", "2", *(x for o in overrides for x in ("--set", o))]
    cells = cells_of(load_config(TINY, overrides))
    killer = Killer(cells[0].folder)
    killer.start()
    try:
        rc = cli.main(args)
    finally:
        killer.stop = True
    return rc, out / "grid-tiny-fgsm", cells, killer


def numbers(grid_dir):
    with open(grid_dir / "long.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    keep = ("cell", "model", "eps", "bits", "run", "n", "clean_accuracy", "adversarial_accuracy", "success_rate")
    exact = [{k: r[k] for k in keep} for r in rows]
    dist = [float(r["l2_successful_mean"] or "nan") for r in rows]
    return exact, dist


def check_killed_cell_resumed(grid_dir, cells, killer):
    assert killer.killed is not None, "the first cell finished before it could be killed"
    [run] = run_folders(cells[0].folder)  # resumed in the same run folder, not started again
    console = (cells[0].folder / "console.txt").read_text()
    assert console.count("=== ") == 2 and f"resuming {run}" in console
    res = json.loads((grid_dir / "results.json").read_text())
    assert (res["done"], res["ran"]) == (4, 4)
    assert all(len(run_folders(c.folder)) == 1 for c in cells[1:])


@pytest.fixture(scope="module")
def local_run(tmp_path_factory):
    return run_grid(tmp_path_factory.mktemp("grid"), "local", "local")


def test_a_killed_local_worker_loses_only_its_cell(local_run):
    rc, local, cells, killer = local_run
    assert rc == 0
    check_killed_cell_resumed(local, cells, killer)
    assert f"worker died running {cells[0].label}" in (local / "log.txt").read_text()


def test_ray_gives_the_local_numbers_and_reruns_a_killed_workers_cell(tmp_path, local_run):
    pytest.importorskip("ray", reason="Ray not installed (pip install -r requirements-ray.txt); the local executor "
                                      "is tested without it")
    rc, local, cells, _ = local_run
    assert rc == 0
    rc, on_ray, ray_cells, killer = run_grid(tmp_path, "ray", "ray")  # Ray reruns the dead worker's cell itself
    assert rc == 0
    check_killed_cell_resumed(on_ray, ray_cells, killer)
    assert [c.folder.name for c in ray_cells] == [c.folder.name for c in cells]  # same cells, same hashes
    (exact_l, dist_l), (exact_r, dist_r) = numbers(local), numbers(on_ray)
    assert len(exact_l) == 4 * 2 and exact_l == exact_r
    assert dist_l == pytest.approx(dist_r, rel=1e-6, nan_ok=True)
    tables_l = json.loads((local / "results.json").read_text())["tables"]
    tables_r = json.loads((on_ray / "results.json").read_text())["tables"]
    assert tables_l["adversarial_accuracy"] == tables_r["adversarial_accuracy"]
