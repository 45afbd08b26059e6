"""Grids (SPEC §14): expansion through the one loader, cell identity, reuse / resume / recompute,
aggregation to exact values, transfer over the grid's own cells, faults, interruption and bad input.

Cells here run on the ``inline`` executor (this process) or are written by hand; the local and Ray
executors are compared in test_grid_executors.py.
"""
import csv
import json
import os
import shutil
import signal
import textwrap
import time
import zipfile
from pathlib import Path

import pytest
import yaml

from annt import cli
from annt.config import load_config
from annt.config.loader import validate
from annt.grid import executors
from annt.grid.cells import cell_state, run_folders
from annt.tasks.grid import cells_of, grid_folder

ROOT = Path(__file__).resolve().parent.parent
MODELS = ROOT / "models"
FP, ONE = MODELS / "mnist_a-fp", MODELS / "mnist_a-1bit"
needs_models = pytest.mark.skipif(not (FP / "model.keras").is_file() or not (ONE / "model.keras").is_file(),
                                  reason="shipped models missing")


def write_grid(tmp_path, grid: str, name="g", top="") -> Path:
    p = tmp_path / f"{name}.yaml"
    p.write_text(f"task: grid\nname: {name}\noutput_dir: {tmp_path / 'runs'}\n{textwrap.dedent(top)}grid:\n"
                 + textwrap.indent(textwrap.dedent(grid), "  "))
    return p


FGSM_BASE = """\
base:
  task: attack
  data: {dataset: mnist, source: sample}
  attack: {name: fgsm, samples: 6, runs: 2, batch_size: 6, grid_samples: 0}
executor: inline
"""


def tiny(tmp_path, eps="[0.1, 0.2]", models=None, name="g", extra=""):
    models = models or [FP, ONE]
    return write_grid(tmp_path, FGSM_BASE + f"axes:\n  model: [{', '.join(map(str, models))}]\n  eps: {eps}\n" + extra,
                      name=name)


def run_cli(args, capsys):
    rc = cli.main([str(a) for a in args])
    out, err = capsys.readouterr()
    return rc, out, err


def results(grid_dir) -> dict:
    return json.loads((Path(grid_dir) / "results.json").read_text())


def csv_rows(path) -> list[dict]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def fake_model(root: Path, name: str, bits) -> Path:
    """A folder the config check accepts as a model (card + model.keras layout), with no weights."""
    d = root / name
    d.mkdir(parents=True)
    with zipfile.ZipFile(d / "model.keras", "w") as z:
        z.writestr("config.json", "{}")
        z.writestr("model.weights.h5", b"")
    (d / "card.json").write_text(json.dumps({"arch": "mnist_a", "bits": {"weights": bits, "activations": bits},
                                             "dataset": "mnist", "batchnorm": False, "quantize_first_last": False,
                                             "quantize_last_hidden": False}))
    return d


# --------------------------------------------------------------------------- expansion and identity
@needs_models
def test_cells_are_task_configs_the_loader_accepts_in_axis_order(tmp_path):
    cfg = load_config(tiny(tmp_path))
    cells = cells_of(cfg)
    assert [c.label for c in cells] == ["mnist_a-fp-eps0.1", "mnist_a-fp-eps0.2", "mnist_a-1bit-eps0.1",
                                        "mnist_a-1bit-eps0.2"]
    for c in cells:
        assert c.config["task"] == "attack" and c.config["model"]["checkpoint"] in (str(FP), str(ONE))
        assert c.config["attack"]["params"]["eps"] == c.axes["eps"]
        assert c.config["output_dir"] == str(c.folder) and c.folder.parent == grid_folder(cfg) / "cells"
        again = validate(yaml.safe_load(yaml.safe_dump(c.config)), stem=c.label)  # what cell.yaml holds, re-read
        assert again == c.config


@needs_models
def test_attack_entries_with_parameter_lists_expand_to_cells(tmp_path):
    p = write_grid(tmp_path, FGSM_BASE + textwrap.dedent(f"""\
        axes:
          attack: [fgsm, {{name: pgd, params: {{eps: [0.1, 0.2], max_iter: 3, eps_step: 0.05}}}}]
          model: [{FP}]
        """))
    cells = cells_of(load_config(p))
    assert [c.label for c in cells] == ["fgsm-mnist_a-fp", "pgd-eps0.1-mnist_a-fp", "pgd-eps0.2-mnist_a-fp"]
    assert [c.axes["attack"] for c in cells] == ["fgsm", "pgd eps=0.1", "pgd eps=0.2"]
    assert cells[2].config["attack"]["params"]["eps"] == 0.2 and cells[2].config["attack"]["params"]["max_iter"] == 3


@needs_models
def test_cell_hash_ignores_where_the_grid_lives_and_changes_with_config_and_inputs(tmp_path):
    models = tmp_path / "m"
    shutil.copytree(FP, models / "mnist_a-fp")
    shutil.copytree(ONE, models / "mnist_a-1bit")
    a = {c.label: c.hash for c in cells_of(load_config(tiny(tmp_path, models=sorted(models.iterdir()))))}
    other = tmp_path / "elsewhere"
    other.mkdir()
    moved = tmp_path / "moved"
    shutil.copytree(models, moved)  # the same models in another folder, the grid under another name and output_dir
    b = {c.label: c.hash for c in cells_of(load_config(tiny(other, models=sorted(moved.iterdir()), name="h")))}
    assert a == b and len(set(a.values())) == 4
    c = {c.label: c.hash for c in cells_of(load_config(tiny(tmp_path, eps="[0.1, 0.3]", models=sorted(models.iterdir()))))}
    assert c["mnist_a-fp-eps0.1"] == a["mnist_a-fp-eps0.1"] and c["mnist_a-fp-eps0.3"] not in a.values()
    card = models / "mnist_a-1bit" / "card.json"  # "retrained": the 1-bit cells change, the fp ones do not
    card.write_text(card.read_text().replace('"epochs": 15', '"epochs": 16'))
    d = {c.label: c.hash for c in cells_of(load_config(tiny(tmp_path, models=sorted(models.iterdir()))))}
    assert d["mnist_a-fp-eps0.2"] == a["mnist_a-fp-eps0.2"] and d["mnist_a-1bit-eps0.2"] != a["mnist_a-1bit-eps0.2"]
    e = {c.label: c.hash for c in cells_of(load_config(tiny(tmp_path, models=sorted(models.iterdir())),
                                                     ["grid.identity=commit"]))}
    assert set(e.values()).isdisjoint(d.values())  # the commit is part of the code version now


@needs_models
def test_cell_hash_leaves_out_keys_at_their_default_so_a_new_key_keeps_finished_cells(tmp_path):
    from annt.grid.identity import config_material, digest

    base = {"task": "attack", "data": {"source": "sample"}, "model": {"checkpoint": str(FP)},
            "attack": {"name": "pgd", "params": {"eps": 0.1}}}

    def material(**changes):
        raw = json.loads(json.dumps(base))
        for section, values in changes.items():
            for k, v in values.items():
                (raw[section]["params"] if k in ("eot_samples", "temperature") else raw[section])[k] = v
        return digest(config_material(validate(raw, file="t.yaml", base=tmp_path)))

    plain = material()
    # written at their defaults: the same cell
    assert material(model={"stochastic_passes": 10, "input_bits": None, "options": {}},
                    attack={"eot_samples": 1, "temperature": None}) == plain
    older = validate(json.loads(json.dumps(base)), file="t.yaml", base=tmp_path)  # as an annt without these keys
    del older["model"]["input_bits"], older["model"]["stochastic_passes"], older["attack"]["params"]["eot_samples"]
    assert digest(config_material(older)) == plain
    # any other value is another cell
    assert len({plain, material(model={"stochastic_passes": 3}), material(attack={"eot_samples": 2}),
                material(attack={"samples": 7})}) == 4


def test_shipped_table6_grid_is_the_papers_experiment():
    path = ROOT / "configs" / "papers" / "annt2024" / "table6_mnist.yaml"
    cells = cells_of(load_config(path))
    assert len(cells) == 35 and {c.meta["attack"] for c in cells} == {"fgsm", "jsma", "uap", "cw_l2", "boundary"}
    assert {Path(c.meta["model"]).name for c in cells} == {f"mnist_a-annt-{b}" for b in
                                                           ("fp", "1bit", "2bit", "4bit", "8bit", "12bit", "16bit")}
    for c in cells:  # the ANNT graph at the paper's settings, 1000 prefiltered test images x 3 runs
        a = c.config["attack"]
        assert (a["preset"], a["samples"], a["runs"], a["only_correct"]) == ("paper", 1000, 3, True)
        assert c.config["model"]["batchnorm"] is False and c.config["data"]["split"] == "test"
    assert cells[0].config["attack"]["params"]["eps"] == 0.25 and cells[-1].config["attack"]["params"]["max_iter"] == 15
    quick = load_config(path, ["grid.quick=true"])
    qcells = cells_of(quick)
    assert grid_folder(quick).name == "annt2024-table6-mnist-quick".join(["grid-", ""])
    assert {(c.config["attack"]["samples"], c.config["attack"]["runs"]) for c in qcells} == {(20, 2)}
    assert not {c.hash for c in qcells} & {c.hash for c in cells}
    matrix = cells_of(load_config(ROOT / "configs" / "grid" / "mnist_a_fgsm_7x7.yaml"))
    assert [c.task for c in matrix] == ["attack"] * 7 + ["transfer"] and len(matrix[-1].depends) == 7
    assert matrix[-1].template["transfer"]["targets"] == [c.meta["model"] for c in matrix[:7]]


# --------------------------------------------------------------------------- bad input: one line, exit 2, nothing made
@pytest.mark.parametrize("grid, fragment", [
    ("axes: {eps: []}", "grid.axes.eps = []: an axis needs at least one value"),
    ("axes: {model: [MODELS/nothing-*]}", "grid.axes.model[0] = "),
    ("axes: {model: [MODELS/mnist_a-fp, 'MODELS/mnist_a-f?']}", "would be the same run"),
    ("axes: {eps: [0.1, 0.1]}", "would be the same run"),
    ("axes: {eps: [0.1, -1]}", "grid cell eps-1: attack.params.eps = -1: must be a number in (0, inf)"),
    ("axes: {attack: [fgms]}", "grid.axes.attack[0].name = 'fgms'"),
    ("axes: {atack.samples: [5]}", "grid.axes.atack.samples"),
    ("transfer: all-pairs\naxes: {eps: [0.1]}", "grid.transfer = 'all-pairs': needs a base of task attack and a model axis"),
])
@needs_models
def test_bad_grid_one_line_exit_2_nothing_started(tmp_path, capsys, grid, fragment):
    base = FGSM_BASE.replace("attack: {name: fgsm,", f"model: {{checkpoint: {FP}}}\n  attack: {{name: fgsm,")
    p = write_grid(tmp_path, base + grid.replace("MODELS", str(MODELS)) + "\n")
    rc, out, err = run_cli([p], capsys)
    assert rc == 2 and err.count("\n") == 1 and fragment in err, err
    assert not (tmp_path / "runs").exists()


@needs_models
def test_executor_that_cannot_start_is_refused_before_anything(tmp_path, capsys, monkeypatch):
    p = tiny(tmp_path)
    monkeypatch.setattr(executors, "ray_available", lambda: False)
    rc, _, err = run_cli([p, "--set", "grid.executor=ray"], capsys)
    assert rc == 2 and err.count("\n") == 1 and "Ray is not installed" in err
    monkeypatch.setattr(executors, "ray_available", lambda: True)
    rc, _, err = run_cli([p, "--set", "grid.executor=ray", "--set", "grid.ray.address=127.0.0.1:9"], capsys)
    assert rc == 2 and err.count("\n") == 1 and "grid.ray.address = '127.0.0.1:9': cannot reach a Ray cluster" in err
    rc, _, err = run_cli([p, "--set", "grid.ray.address=127.0.0.1:9"], capsys)  # not the ray executor
    assert rc == 2 and "only used with grid.executor: ray" in err
    assert not (tmp_path / "runs").exists()


@needs_models
def test_a_second_grid_process_on_the_same_folder_is_refused(tmp_path, capsys):
    from annt.tasks import grid as grid_task

    p = tiny(tmp_path)
    cfg = load_config(p)
    run = grid_task.run_folder(cfg, None)  # as if another annt process were running this grid
    try:
        rc, _, err = run_cli([p], capsys)
        assert rc == 2 and err.count("\n") == 1
        assert f"grid folder {run.path} is in use by another annt process (pid {os.getpid()})" in err
        assert not (run.path / "cells").exists()
    finally:
        run.close()
        grid_task._release(run.path)


@needs_models
def test_resume_flag_points_a_grid_to_the_same_command(tmp_path, capsys):
    rc, _, err = run_cli([tiny(tmp_path), "--resume", tmp_path], capsys)
    assert rc == 2 and "a grid continues when you run the same command again" in err
    assert not (tmp_path / "runs").exists()


def test_jobs_flag_is_for_grids_only(tmp_path, capsys, fake_model_dir):
    p = tmp_path / "a.yaml"
    p.write_text(f"task: attack\noutput_dir: {tmp_path / 'runs'}\nmodel: {{checkpoint: {fake_model_dir}}}\n"
                 "attack: {name: fgsm}\n")
    rc, _, err = run_cli([p, "--jobs", "2"], capsys)
    assert rc == 2 and "--jobs 2: only for a grid" in err and not (tmp_path / "runs").exists()


# --------------------------------------------------------------------------- run, reuse, recompute, resume
@needs_models
def test_reuse_recompute_and_resume(tmp_path, capsys):
    p = tiny(tmp_path)
    rc, out, err = run_cli([p], capsys)
    assert rc == 0, err
    gdir = tmp_path / "runs" / "grid-g"
    first = results(gdir)
    assert (first["cells"], first["ran"], first["reused"]) == (4, 4, 0)
    folders = {c.label: run_folders(c.folder) for c in cells_of(load_config(p))}
    assert all(len(v) == 1 for v in folders.values())
    listed = csv_rows(gdir / "cells.csv")
    assert [r["status"] for r in listed] == ["done"] * 4
    assert {r["cell"]: gdir / r["run_dir"] for r in listed} == {k: v[0] for k, v in folders.items()}

    rc, out, err = run_cli([p], capsys)  # again: every cell reused, no new run folder
    again = results(gdir)
    assert rc == 0 and (again["ran"], again["reused"]) == (0, 4)
    assert {c.label: run_folders(c.folder) for c in cells_of(load_config(p))} == folders
    assert again["tables"] == first["tables"]

    rc, out, err = run_cli([p, "--check"], capsys)
    assert rc == 0 and "4 cells, 4 done, 0 unfinished, 0 not started" in out

    p2 = tiny(tmp_path, eps="[0.1, 0.3]")  # a changed axis: eps 0.1 reused, eps 0.3 computed
    rc, out, err = run_cli([p2], capsys)
    changed = results(gdir)
    assert rc == 0 and (changed["ran"], changed["reused"]) == (2, 2)
    assert [r["cell"] for r in csv_rows(gdir / "cells.csv")] == ["mnist_a-fp-eps0.1", "mnist_a-fp-eps0.3",
                                                                 "mnist_a-1bit-eps0.1", "mnist_a-1bit-eps0.3"]
    assert all(d.exists() for v in folders.values() for d in v)  # the eps 0.2 cells stay on disk, out of the tables

    # an attack cell interrupted after its first run: the grid resumes it in the same run folder
    cell = next(c for c in cells_of(load_config(p2)) if c.label == "mnist_a-1bit-eps0.3")
    [run] = run_folders(cell.folder)
    kept = (run / "adversarial_run0.npz").stat().st_mtime_ns
    (run / "adversarial_run1.npz").unlink()
    res = json.loads((run / "results.json").read_text())
    (run / "results.json").write_text(json.dumps({**res, "complete": False}))
    assert cell_state(cell.folder).status == "unfinished"
    rc, out, err = run_cli([p2, "--check"], capsys)
    assert "3 done, 1 unfinished" in out and "resumes" in out
    rc, out, err = run_cli([p2], capsys)
    resumed = results(gdir)
    assert rc == 0 and (resumed["ran"], resumed["reused"]) == (1, 3)
    assert run_folders(cell.folder) == [run] and cell_state(cell.folder).run_dir == run
    assert (run / "adversarial_run0.npz").stat().st_mtime_ns == kept and (run / "adversarial_run1.npz").is_file()
    assert "run 0: already complete (resumed)" in (run / "log.txt").read_text()
    assert resumed["tables"] == changed["tables"]  # same numbers as before the interruption


@needs_models
def test_transfer_all_pairs_uses_exactly_the_grids_own_attack_runs(tmp_path, capsys):
    extra = "transfer: all-pairs\n"
    p = write_grid(tmp_path, FGSM_BASE + f"axes:\n  model: [{FP}, {ONE}]\n" + extra)
    assert run_cli([p], capsys)[0] == 0
    gdir = tmp_path / "runs" / "grid-g"
    p2 = write_grid(tmp_path, FGSM_BASE.replace("samples: 6", "samples: 5") + f"axes:\n  model: [{FP}, {ONE}]\n" + extra)
    rc, out, err = run_cli([p2], capsys)  # a changed attack: new sources, and a new transfer cell over them
    assert rc == 0, err
    cells = cells_of(load_config(p2))
    attack_runs = [str(cell_state(c.folder).run_dir) for c in cells if c.task == "attack"]
    [tr] = [c for c in cells if c.task == "transfer"]
    assert tr.depends == ("mnist_a-fp", "mnist_a-1bit")
    cell_cfg = yaml.safe_load((tr.folder / "cell.yaml").read_text())
    assert cell_cfg["transfer"]["sources"] == attack_runs
    assert cell_cfg["transfer"]["targets"] == [str(FP), str(ONE)]
    stale = len(list((gdir / "cells").iterdir())) - len(cells)
    assert stale == 3  # the first grid's two attack cells and its transfer cell, left alone
    rows = csv_rows(gdir / "transfer_long.csv")
    assert len(rows) == 2 * 2 * 2 and {r["n_total"] for r in rows} == {"5"}
    assert "## Transfer cell transfer" in (gdir / "tables.md").read_text()
    assert (gdir / "transfer-heatmap_adversarial_accuracy.png").is_file()


@needs_models
def test_transfer_cells_take_the_attack_cells_stochastic_passes_and_keep_their_hash_at_the_default(tmp_path):
    grid = FGSM_BASE + f"axes:\n  model: [{FP}, {ONE}]\ntransfer: all-pairs\n"

    def transfer_cell(text, name):
        [tr] = [c for c in cells_of(load_config(write_grid(tmp_path, text, name=name))) if c.task == "transfer"]
        return tr

    plain = transfer_cell(grid, "plain")
    default = transfer_cell(grid.replace("  task: attack\n", "  task: attack\n  model: {stochastic_passes: 10}\n"), "d")
    three = transfer_cell(grid.replace("  task: attack\n", "  task: attack\n  model: {stochastic_passes: 3}\n"), "t")
    assert plain.template["transfer"]["stochastic_passes"] == 10 and three.template["transfer"]["stochastic_passes"] == 3
    assert default.hash == plain.hash != three.hash  # a finished transfer cell stays valid unless the passes change


# --------------------------------------------------------------------------- aggregation, exact values
def _fake_done(cell, runs: list[dict], elapsed: float) -> Path:
    run = cell.folder / f"20240101-000000-attack-{cell.label}"
    run.mkdir(parents=True)
    (run / "config.resolved.yaml").write_text(yaml.safe_dump(cell.config))
    (run / "results.json").write_text(json.dumps({"task": "attack", "complete": True, "elapsed_s": elapsed,
                                                  "runs": runs, "run_dir": str(run)}))
    return run


def _run(acc, l2, n=10):
    return {"n": n, "clean_accuracy": 1.0, "adversarial_accuracy": acc, "success_rate": 1 - acc,
            "l2": {"successful": {"mean": l2, "median": l2}, "all": {"mean": l2 / 2, "median": l2}},
            "linf": {"successful": {"mean": 0.25, "median": 0.25}, "all": {"mean": 0.25, "median": 0.25}}}


def test_aggregation_from_known_cell_results(tmp_path, capsys):
    models = [fake_model(tmp_path / "m", "mnist_a-1bit", 1), fake_model(tmp_path / "m", "mnist_a-fp", 32)]
    paper = tmp_path / "paper.csv"
    paper.write_text("# a comment line\nattack,bits,adversarial_accuracy,l2_successful_mean\n"
                     "fgsm,FP,0.337,5.219\nfgsm,1,0.845,5.134\n")
    p = write_grid(tmp_path, f"""\
        base:
          task: attack
          data: {{dataset: mnist, source: sample}}
          attack: {{preset: paper, samples: 10, runs: 2}}
        axes:
          attack: [fgsm, jsma]
          model: [{models[0]}, {models[1]}]
        paper: {paper}
        run: false
        """)
    cells = {c.label: c for c in cells_of(load_config(p))}
    known = {"fgsm-mnist_a-1bit": [_run(0.8, 5.0), _run(0.9, 5.2)], "fgsm-mnist_a-fp": [_run(0.3, 5.1), _run(0.4, 5.3)],
             "jsma-mnist_a-fp": [_run(0.1, 3.0)]}  # jsma on 1 bit: not done
    for label, runs in known.items():
        _fake_done(cells[label], runs, elapsed=len(runs) * 10.0)
    rc, out, err = run_cli([p], capsys)
    assert rc == 0, err
    gdir = tmp_path / "runs" / "grid-g"
    md = (gdir / "tables.md").read_text()
    # Table 6 layout: attack x bits, FP first, mean ± std over runs, no ± for one run, n/a where not done
    assert ("| attack | FP | 1 |\n|---|---|---|\n| fgsm | 0.350 ± 0.050 | 0.850 ± 0.050 |\n"
            "| jsma | 0.100 | n/a |\n") in md
    assert "| fgsm | 5.200 ± 0.100 | 5.100 ± 0.100 |" in md
    assert ("| fgsm | FP | 0.350 ± 0.050 | 0.337 | +0.013 | 5.200 ± 0.100 | 5.219 | -0.019 |\n"
            "| fgsm | 1 | 0.850 ± 0.050 | 0.845 | +0.005 | 5.100 ± 0.100 | 5.134 | -0.034 |\n"
            "| jsma | FP | 0.100 |  |  | 3.000 |  |  |\n| jsma | 1 | n/a |  |  | n/a |  |  |\n") in md
    assert "| fgsm | 2 | 40.0 |\n| jsma | 1 | 10.0 |" in md  # cells and seconds per attack
    long = csv_rows(gdir / "long.csv")
    assert len(long) == 5 and [r["bits"] for r in long] == ["1", "1", "FP", "FP", "FP"]
    assert [float(r["adversarial_accuracy"]) for r in long] == [0.8, 0.9, 0.3, 0.4, 0.1]
    assert [r["run"] for r in long] == ["0", "1", "0", "1", "0"]
    listed = {r["cell"]: r for r in csv_rows(gdir / "cells.csv")}
    assert listed["jsma-mnist_a-1bit"]["status"] == "not run" and listed["jsma-mnist_a-1bit"]["run_dir"] == ""
    assert listed["fgsm-mnist_a-fp"]["run_dir"] == f"cells/{cells['fgsm-mnist_a-fp'].folder.name}/" \
                                                   "20240101-000000-attack-fgsm-mnist_a-fp"
    res = results(gdir)
    assert res["tables"]["adversarial_accuracy"]["columns"] == ["FP", "1"]
    assert res["tables"]["adversarial_accuracy"]["values"]["fgsm | FP"] == {"mean": 0.35, "std": 0.05, "n": 2}
    assert (gdir / "heatmap_adversarial_accuracy.png").is_file() and (gdir / "accuracy_vs_bits.png").is_file()


def test_train_grid_tables_have_bit_widths_as_columns_pooled_over_seeds(tmp_path, capsys):
    p = write_grid(tmp_path, """\
        base:
          task: train
          data: {dataset: mnist, limit: 500, val_size: 100}
          model: {arch: lenet5}
          train: {epochs: 1}
        axes:
          model.bits: [1, fp]
          seed: [0, 1]
        run: false
        """)
    cells = cells_of(load_config(p))
    assert [c.label for c in cells] == ["bits1-seed0", "bits1-seed1", "bitsfp-seed0", "bitsfp-seed1"]
    for c, acc in zip(cells, (0.90, 0.92, 0.97, 0.99)):
        run = c.folder / f"20240101-000000-train-{c.label}"
        run.mkdir(parents=True)
        (run / "config.resolved.yaml").write_text(yaml.safe_dump(c.config))
        (run / "results.json").write_text(json.dumps({"task": "train", "complete": True, "test_accuracy": acc,
                                                      "val_accuracy": acc - 0.01, "elapsed_s": 5.0}))
    rc, out, err = run_cli([p], capsys)
    assert rc == 0, err
    md = (tmp_path / "runs" / "grid-g" / "tables.md").read_text()
    assert "| cells | FP | 1 |\n|---|---|---|\n| all | 0.980 ± 0.010 | 0.910 ± 0.010 |\n" in md
    assert "| train | 4 | 20.0 |" in md


# --------------------------------------------------------------------------- faults and interruption
@needs_models
def test_a_failing_cell_is_named_the_others_finish_exit_1(tmp_path, capsys):
    broken = fake_model(tmp_path / "m", "mnist_a-4bit", 4)  # passes the config check, cannot be loaded
    p = tiny(tmp_path, eps="[0.1]", models=[FP, broken])
    rc, out, err = run_cli([p], capsys)
    gdir = tmp_path / "runs" / "grid-g"
    cells = {c.label: c for c in cells_of(load_config(p))}
    [bad_run] = run_folders(cells["mnist_a-4bit-eps0.1"].folder)
    last = err.strip().splitlines()[-1]  # above it: the progress bar (and here, inline, the cell's traceback)
    assert rc == 1 and last.startswith("annt: error: 1 of 2 cells failed: mnist_a-4bit-eps0.1 ("), last
    assert f"mnist_a-4bit-eps0.1 ({bad_run})" in last
    assert f"FAILED mnist_a-4bit-eps0.1: " in out and f"(folder {bad_run})" in out
    listed = {r["cell"]: r["status"] for r in csv_rows(gdir / "cells.csv")}
    assert listed == {"mnist_a-fp-eps0.1": "done", "mnist_a-4bit-eps0.1": "failed"}
    assert "Traceback" in (cells["mnist_a-4bit-eps0.1"].folder / "console.txt").read_text() or \
        "error" in json.loads((bad_run / "results.json").read_text())


@pytest.mark.parametrize("sig, code, what", [(signal.SIGINT, 130, "interrupted"),
                                             (signal.SIGTERM, 143, "terminated (SIGTERM)")])
@needs_models
def test_interrupted_grid_keeps_finished_cells_and_the_same_command_continues(tmp_path, capsys, monkeypatch, request,
                                                                              sig, code, what):
    p = tiny(tmp_path)
    real = executors.run_cell
    calls = []
    # A shell starts background jobs with SIGINT ignored, and Python then installs no KeyboardInterrupt handler:
    # give this process the interactive default, as a terminal's Ctrl-C would find it.
    saved = signal.signal(signal.SIGINT, signal.default_int_handler)
    request.addfinalizer(lambda: signal.signal(signal.SIGINT, saved))

    def second_cell_interrupted(job):
        calls.append(job["label"])
        if len(calls) == 2:
            os.kill(os.getpid(), sig)  # Ctrl-C / SIGTERM while the second cell runs
            time.sleep(5)
        return real(job)

    monkeypatch.setattr(executors, "run_cell", second_cell_interrupted)
    rc, out, err = run_cli([p], capsys)
    gdir = tmp_path / "runs" / "grid-g"
    assert rc == code and err.strip().splitlines()[-1] == (
        f"annt: {what}; 1 of 4 cells done and kept; run the same command again to continue (unfinished attack and "
        "train cells resume)")
    assert [r["status"] for r in csv_rows(gdir / "cells.csv")][0] == "done"
    monkeypatch.setattr(executors, "run_cell", real)
    rc, out, err = run_cli([p], capsys)
    res = results(gdir)
    assert rc == 0 and (res["ran"], res["reused"]) == (3, 1)


def test_paper_table_matches_on_the_key_columns_the_grid_has(tmp_path, capsys):
    # A Galloway-style paper file: model, a column the grid does not have (type), attack, eps, a metric and its ±.
    models = [fake_model(tmp_path / "m", f"g-A64-seed{s}", 32) for s in (0, 1)]
    for s, m in enumerate(models):  # two trainings of one model: different cards
        card = json.loads((m / "card.json").read_text())
        (m / "card.json").write_text(json.dumps({**card, "seed": s}))
    paper = tmp_path / "paper.csv"
    paper.write_text("model,type,attack,eps,adversarial_accuracy,adversarial_accuracy_pm\n"
                     "g-A64,A,fgsm,0.1,0.74,0.04\ng-A64,A,fgsm,0.2,0.39,0.04\n")
    p = write_grid(tmp_path, f"""\
        base:
          task: attack
          data: {{dataset: mnist, source: sample}}
          attack: {{name: fgsm, samples: 10}}
        axes:
          eps: [0.1, 0.2]
          model: [{models[0]}, {models[1]}]
        paper: {paper}
        run: false
        """)
    cells = {c.label: c for c in cells_of(load_config(p))}
    assert len(cells) == 4
    for label, c in cells.items():  # seed 0 and seed 1 of one model pool into one line per eps
        acc = {"0.1": 0.7, "0.2": 0.3}[str(c.axes["eps"])] + (0.1 if "seed1" in label else 0.0)
        _fake_done(c, [_run(acc, 2.0)], elapsed=1.0)
    rc, out, err = run_cli([p], capsys)
    assert rc == 0, err
    md = (tmp_path / "runs" / "grid-g" / "tables.md").read_text()
    assert ("| model | attack | eps | adversarial_accuracy ours | paper | difference |\n|---|---|---|---|---|---|\n"
            "| g-A64 | fgsm | 0.1 | 0.750 ± 0.050 | 0.740 ± 0.040 | +0.010 |\n"
            "| g-A64 | fgsm | 0.2 | 0.350 ± 0.050 | 0.390 ± 0.040 | -0.040 |\n") in md
