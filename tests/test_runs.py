"""Run folders and atomic writes."""
import datetime as dt
import json
import os
from pathlib import Path

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


@pytest.mark.parametrize("umask, mode", [(0o022, 0o644), (0o077, 0o600), (0o002, 0o664)])
def test_atomic_writes_respect_the_umask(tmp_path, umask, mode):
    from annt.io import atomic_path, current_umask

    old = os.umask(umask)
    try:
        assert current_umask() == umask
        written = [atomic_write_text(tmp_path / "a.txt", "x"), atomic_write_json(tmp_path / "b.json", {}),
                   atomic_save_npz(tmp_path / "c.npz", x=np.zeros(2))]
        with atomic_path(tmp_path / "d.keras", suffix=".keras") as tmp:
            tmp.write_bytes(b"model")
        written.append(tmp_path / "d.keras")
        run = create_run(cfg(tmp_path), "task: infer\n")
        run.write_results({"ok": 1})
        run.close()
        written += [run.path / n for n in ("config.yaml", "config.resolved.yaml", "environment.json",
                                           "results.json", "log.txt")]
    finally:
        os.umask(old)
    assert {str(p.relative_to(tmp_path)): oct(p.stat().st_mode & 0o777) for p in written} == \
        {str(p.relative_to(tmp_path)): oct(mode) for p in written}
    assert oct(run.path.stat().st_mode & 0o777) == oct(0o777 & ~umask)  # the run folder too
    assert sorted(f.name for f in tmp_path.iterdir()) == ["a.txt", "b.json", "c.npz", "d.keras", "runs"]


def test_atomic_path_removes_its_temp_file_on_failure(tmp_path):
    from annt.io import atomic_path

    (tmp_path / "m.keras").write_bytes(b"old")
    with pytest.raises(KeyboardInterrupt):
        with atomic_path(tmp_path / "m.keras") as tmp:
            tmp.write_bytes(b"half")
            raise KeyboardInterrupt
    assert [f.name for f in tmp_path.iterdir()] == ["m.keras"] and (tmp_path / "m.keras").read_bytes() == b"old"


def test_umask_is_read_without_changing_it():
    from annt import io

    before = os.umask(0o027)
    try:
        assert io.current_umask() == 0o027 and io._umask_by_setting() == 0o027
        assert io.current_umask() == 0o027  # reading did not change it
    finally:
        os.umask(before)


def test_two_runs_log_only_into_their_own_files(tmp_path, capsys):
    a = create_run(cfg(tmp_path), "task: infer\n")
    b = create_run(cfg(tmp_path), "task: infer\n")
    a.log.info("a1")
    b.log.info("b1")
    a.log.info("a2")
    a.close()  # closing one run must not silence the other
    b.log.info("b2")
    b.close()
    lines = {r: [ln.split()[-1] for ln in (r.path / "log.txt").read_text().splitlines()] for r in (a, b)}
    assert lines[a] == ["a1", "a2"] and lines[b] == ["b1", "b2"]
    assert capsys.readouterr().out.split() == ["a1", "b1", "a2", "b2"]
    assert a.log is not b.log and not a.log.handlers and not b.log.handlers


def test_runs_in_threads_keep_their_logs_apart(tmp_path):
    import threading

    runs = [create_run(cfg(tmp_path), None) for _ in range(4)]
    barrier = threading.Barrier(len(runs))

    def work(i, run):
        barrier.wait()
        for k in range(50):
            run.log.info("run%d-%d", i, k)

    threads = [threading.Thread(target=work, args=(i, r)) for i, r in enumerate(runs)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for i, run in enumerate(runs):
        run.close()
        assert [ln.split()[-1] for ln in (run.path / "log.txt").read_text().splitlines()] == \
            [f"run{i}-{k}" for k in range(50)]


def test_versions_is_importable_without_tensorflow():
    import subprocess
    import sys

    code = ("import sys; from annt.runs import versions; v = versions(); "
            "assert 'tensorflow' not in sys.modules, 'imported TF'; print(v['annt'], v['numpy'])")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60,
                       cwd=Path(__file__).resolve().parent.parent)
    assert r.returncode == 0, r.stderr
    import annt
    assert r.stdout.split() == [annt.__version__, np.__version__]


def test_git_commit_only_for_the_checkout_root(monkeypatch):
    import annt.runs as runs

    root = Path(runs.__file__).resolve().parent.parent
    if not (root / ".git").exists():
        pytest.skip("not a git checkout")
    assert len(runs.git_commit().split("-")[0]) == 40
    # an installed copy inside the checkout (site-packages of a .venv there) is not the checkout
    monkeypatch.setattr(runs, "__file__", str(root / "annt" / "models" / "runs.py"))
    assert runs.git_commit() is None
