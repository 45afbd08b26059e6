"""The ``grid`` task: one config, many runs (SPEC §14; wiki/Grids.md).

A grid is a base task config plus axes (:mod:`annt.grid.expand`); every cell is an ordinary run of
that task, validated by the same loader, in a folder named by a hash of its config and inputs
(:mod:`annt.grid.identity`) under the grid folder ``<output_dir>/grid-<name>/cells/`` (``-quick``
appended with ``grid.quick``). Running the same command again reuses done cells, resumes
unfinished attack and train cells and recomputes a cell whose config or inputs changed (it gets a
new hash). Cells run on an executor (:mod:`annt.grid.executors`: ``local`` processes, ``ray``, or
``inline``) under :mod:`annt.grid.schedule`; the grid folder then gets its tables and plots
(:mod:`annt.grid.aggregate`). Unlike other tasks the grid folder has no time stamp: it is the
same folder every time, its aggregate files are rewritten (atomically), its cells never are.

Exit: 0 when every cell is done; 1 when some failed (each named, with its folder); 2 for a bad
config, found before anything starts; 130/143 after Ctrl-C/SIGTERM (the same command continues).
"""
from __future__ import annotations

import fcntl
import os
import time
from pathlib import Path

import yaml

from annt.config.schema import Context, Key, walk
from annt.errors import AnntError, Interrupted
from annt.grid.executors import EXECUTORS
from annt.grid.identity import MODES
from annt.io import atomic_write_json, atomic_write_text
from annt.runs import Run, environment

USES = ("grid",)  # the config sections this task reads
SECTION = {
    "base": Key("dict", {}, "The task config every cell starts from (task attack, infer, transfer, diagnose or train, "
                "with its sections); paths relative to this file. Merged over base_file when both are given."),
    "base_file": Key("path", None, "A task file to start from instead of (or under) `base`; its paths are relative "
                     "to itself.", nullable=True, must_exist=True),
    "axes": Key("dict", {}, "Axis -> list of values, expanded as a product (first axis outermost): `model` (model "
                "folders or globs), `attack` (names or {name, preset, params}; a list in params is an axis too), "
                "`eps`, `seed`, or any key path of the base config (e.g. attack.samples, model.bits)."),
    "transfer": Key("any", None, "Attack grids with a model axis: `all-pairs` (every model's adversarial set on every "
                    "grid model, one transfer cell per setting of the other axes) or {sources, targets, batch_size} "
                    "(model lists or globs; sources among the grid's models).", nullable=True),
    "executor": Key("choice", "local", "local (worker processes), ray (a Ray cluster, or a local Ray instance), or "
                    "inline (this process, one cell at a time: debugging).", choices=EXECUTORS),
    "jobs": Key("int", 1, "Cells run at the same time (`--jobs N`).", min=1, max=4096),
    "threads": Key("int", None, "CPU threads per cell (TensorFlow's pools, OpenMP); null = cores // jobs, at least 1.",
                   nullable=True, min=1),
    "ray": {
        "address": Key("str", None, "Ray cluster to join (HOST:PORT, ray://HOST:PORT or auto); null = start a local "
                       "Ray instance for this run.", nullable=True),
        "num_cpus": Key("int", None, "CPUs of the local Ray instance; null = this machine's cores.", nullable=True, min=1),
    },
    "quick": Key("bool", False, "Apply quick_set to every cell (a run-in-minutes variant, in its own folder "
                 "grid-<name>-quick)."),
    "quick_set": Key("dict", {}, "Key path -> value applied to every cell when quick is true, e.g. {attack.samples: 20}."),
    "identity": Key("choice", "version", "What 'code version' means in a cell's hash: version (annt's and TensorFlow's, "
                    "Keras', ART's and numpy's versions) or commit (also the git commit: every commit recomputes "
                    "every cell).", choices=MODES),
    "paper": Key("path", None, "CSV of a paper's numbers printed beside ours in tables.md: metric columns such as "
                 "adversarial_accuracy (each optionally with <metric>_pm, the paper's ±) and key columns matched against "
                 "the cells' (attack, bits, model: the folder name, a -seed<N> suffix ignored, an axis such as eps); see "
                 "wiki/Grids.md.", nullable=True, must_exist=True),
    "run": Key("bool", True, "false: run nothing, only rewrite the tables from the cells already done."),
}


def check(ctx, cfg) -> None:
    """Expand the grid and validate every cell with the loader (TF-free); one line on the first fault."""
    from annt.grid.expand import expand, resolve_axes, resolve_base, resolve_transfer

    g = cfg["grid"]
    if g["ray"] is None:
        g["ray"] = walk(ctx, SECTION["ray"], {}, "grid.ray.")
    if g["executor"] != "ray":
        for k, v in g["ray"].items():
            if v is not None:
                raise ctx.fail(f"grid.ray.{k}", v, "only used with grid.executor: ray")
    if g["executor"] == "inline" and g["jobs"] > 1:
        raise ctx.fail("grid.jobs", g["jobs"], "the inline executor runs one cell at a time; use executor local")
    for k in g["quick_set"]:
        if not isinstance(k, str) or not all(k.split(".")):
            raise ctx.fail(f"grid.quick_set.{k}", k, "keys are key paths such as attack.samples")
    g["base"] = resolve_base(ctx, g, cfg["seed"])
    task = g["base"]["task"]
    g["axes"] = resolve_axes(ctx, g["axes"], task)
    g["transfer"] = resolve_transfer(ctx, g["transfer"], task, g["axes"])
    expand(cfg, ctx, Path(cfg["output_dir"]) / "grid-check" / "cells")


def grid_folder(cfg: dict) -> Path:
    """``<output_dir>/grid-<name>`` (``-quick`` appended with ``grid.quick``): the same every time."""
    return Path(cfg["output_dir"]) / f"grid-{cfg['name']}{'-quick' if cfg['grid']['quick'] else ''}"


def cells_of(cfg: dict):
    from annt.grid.expand import expand

    folder = grid_folder(cfg)
    return expand(cfg, Context(str(folder / "config.resolved.yaml")), folder / "cells")


def preflight(cfg: dict) -> None:
    """Before the grid folder exists: the executor can start (Ray installed, its address answers) and
    every dataset the cells read is there."""
    import json

    from annt.grid.executors import check_ray
    from annt.tasks import preflight as task_preflight

    g = cfg["grid"]
    if g["executor"] == "ray" and g["run"]:
        check_ray(g["ray"]["address"])
    seen = set()
    for c in cells_of(cfg):
        if c.config is None:
            continue
        key = (c.task, json.dumps(c.config.get("data"), sort_keys=True))
        if key not in seen:
            seen.add(key)
            task_preflight(c.task, c.config)


def describe(cfg: dict) -> str:
    """``--check``: every cell, whether it is done, and its folder."""
    from annt.grid.schedule import describe as describe_cells

    return describe_cells(cells_of(cfg), grid_folder(cfg))


_LOCKS: dict[str, object] = {}


def run_folder(cfg: dict, config_text: str | None) -> Run:
    """The grid folder, made or reopened, locked against a second grid process using it at once."""
    path = grid_folder(cfg)
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise AnntError(f"output_dir {path.parent}: cannot create ({e.strerror})") from None
    lock = open(path / ".lock", "a+")
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        lock.seek(0)
        who = lock.read().strip()
        lock.close()
        raise AnntError(f"grid folder {path} is in use by another annt process ({who or 'pid unknown'}); "
                        "wait for it or stop it first") from None
    lock.seek(0)
    lock.truncate()
    lock.write(f"pid {os.getpid()}\n")
    lock.flush()
    _LOCKS[str(path)] = lock
    resumed = (path / "config.resolved.yaml").is_file()
    if config_text is not None:
        atomic_write_text(path / "config.yaml", config_text)
    atomic_write_text(path / "config.resolved.yaml", yaml.safe_dump(cfg, sort_keys=False))
    atomic_write_json(path / "environment.json", environment())
    return Run(path, cfg, resumed=resumed)


def _release(path: Path) -> None:
    lock = _LOCKS.pop(str(path), None)
    if lock is not None:
        fcntl.flock(lock, fcntl.LOCK_UN)
        lock.close()


class CellsFailed(AnntError):
    """Some cells failed (the others are done): exit status 1, not 2 (the config was fine)."""

    exit_code = 1


def run_grid(cfg: dict, run: Run) -> dict:
    from annt.grid.aggregate import aggregate
    from annt.grid.cells import cell_state
    from annt.grid.executors import make_executor
    from annt.grid.schedule import run_cells
    from tqdm.contrib.logging import logging_redirect_tqdm

    t0 = time.time()
    g = cfg["grid"]
    try:
        cells = cells_of(cfg)
        before = {c.label: cell_state(c.folder) for c in cells}
        done_before = sum(1 for s in before.values() if s.status == "done")
        executor = make_executor(g)
        run.log.info("grid %s: %d cells, %d done before, %d to run; executor %s, %d job(s), %s thread(s) per cell",
                     run.path, len(cells), done_before, len(cells) - done_before, g["executor"], g["jobs"],
                     getattr(executor, "threads", None) or "all")
        outcomes: dict[str, dict] = {}
        try:
            if g["run"]:
                with logging_redirect_tqdm(loggers=[run.log]):
                    outcomes = run_cells(cells, executor, log=run.log.info)
        except KeyboardInterrupt:
            _fill_from_disk(cells, outcomes)
            aggregate(cells, outcomes, run.path, paper=g["paper"], title=cfg["name"], wall_s=time.time() - t0)
            done = sum(1 for o in outcomes.values() if o["status"] == "done")
            run.log.warning("grid interrupted: %d of %d cells done; tables written for those", done, len(cells))
            raise Interrupted(run.path, resumable=False,
                              hint=f"{done} of {len(cells)} cells done and kept; run the same command again to "
                                   "continue (unfinished attack and train cells resume)") from None
        _fill_from_disk(cells, outcomes)
        wall = time.time() - t0
        summary = aggregate(cells, outcomes, run.path, paper=g["paper"], title=cfg["name"], wall_s=wall)
        ran = [c.label for c in cells if outcomes[c.label]["status"] == "done" and not outcomes[c.label].get("reused")]
        failed = [c for c in cells if outcomes[c.label]["status"] in ("failed", "skipped")]
        run.log.info("grid: %d of %d cells done (%d reused, %d run now), %d failed; %.1f s; tables in %s",
                     summary["done"], len(cells), summary["done"] - len(ran), len(ran), len(failed), wall,
                     run.path / "tables.md")
        if failed:
            listed = "; ".join(f"{c.label} ({outcomes[c.label].get('run_dir') or c.folder})" for c in failed)
            raise CellsFailed(f"{len(failed)} of {len(cells)} cells failed: {listed}; the other cells are done and "
                              "the tables show them; fix the cause and run the same command again")
        return {"grid_dir": str(run.path), "cells": len(cells), "done": summary["done"], "reused": summary["done"] - len(ran),
                "ran": len(ran), "wall_s": round(wall, 2), "seconds_by_attack": summary["seconds_by_attack"],
                "tables": summary["tables"], "outputs": summary["outputs"],
                "elapsed_s": round(wall, 2)}
    finally:
        _release(run.path)


def _fill_from_disk(cells, outcomes: dict) -> None:
    """Cells the scheduler did not report (not run now, or interrupted): their state on disk."""
    from annt.grid.cells import cell_state

    for c in cells:
        if c.label in outcomes:
            continue
        st = cell_state(c.folder)
        outcomes[c.label] = {"status": st.status if st.status != "new" else "not run",
                             "run_dir": str(st.run_dir) if st.run_dir else None, "reused": True}
