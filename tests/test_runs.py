"""Run folders and atomic writes."""
import datetime as dt
import json
import os

import numpy as np
import pytest

from annt.io import atomic_save_npz, atomic_write_json, atomic_write_text
from annt.runs import create_run


def cfg(tmp_path):
    return {"task": "infer", "name": "x", "output_dir": str(tmp_path / "runs"), "seed": 0}


def test_run_folder_contents_and_uniqueness(tmp_path):
    now = dt.datetime(2026, 1, 2, 3, 4, 5)
    a = create_run(cfg(tmp_path), "task: infer\n", now=now)
    b = create_run(cfg(tmp_path), "task: infer\n", now=now)
    a.close(), b.close()
    assert a.path.name == "20260102-030405-infer-x" and b.path.name == "20260102-030405-infer-x-2"
    assert (a.path / "config.yaml").read_text() == "task: infer\n"
    env = json.loads((a.path / "environment.json").read_text())
    assert env["versions"]["numpy"] == np.__version__ and "git_commit" in env and env["cpu_count"] >= 1
    assert (a.path / "config.resolved.yaml").is_file() and (a.path / "log.txt").is_file()


def test_atomic_write_leaves_old_file_on_failure(tmp_path, monkeypatch):
    p = tmp_path / "r.json"
    atomic_write_json(p, {"a": 1})

    def boom(*a, **k):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", boom)
    with pytest.raises(OSError):
        atomic_write_text(p, "half")
    assert json.loads(p.read_text()) == {"a": 1}
    assert [f.name for f in tmp_path.iterdir()] == ["r.json"]  # temp file cleaned up


def test_atomic_json_handles_numpy_and_nan(tmp_path):
    p = atomic_write_json(tmp_path / "x.json", {"a": np.float32(0.5), "b": np.arange(3), "c": float("nan")})
    assert json.loads(p.read_text()) == {"a": 0.5, "b": [0, 1, 2], "c": None}


def test_atomic_npz_roundtrip_without_pickle(tmp_path):
    p = atomic_save_npz(tmp_path / "a.npz", x=np.ones((2, 3), np.float32), meta=np.array('{"k": 1}'))
    with np.load(p, allow_pickle=False) as f:
        assert f["x"].shape == (2, 3) and json.loads(str(f["meta"])) == {"k": 1}
