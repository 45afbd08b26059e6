"""The command line: interruption (Ctrl-C, SIGTERM) and resume, and the installable package."""
import os
import signal
import subprocess
import sys
import textwrap
import time
import tomllib
import zipfile
from pathlib import Path

import pytest

from annt import api, cli
from annt.errors import Interrupted

ROOT = Path(__file__).resolve().parent.parent
SHIPPED_MODEL = ROOT / "models" / "mnist_a-4bit"


def write_cfg(tmp_path, text, name="cfg"):
    p = tmp_path / f"{name}.yaml"
    p.write_text(textwrap.dedent(text))
    return p


def attack_cfg(tmp_path, model_dir, attack="{name: fgsm, params: {eps: 0.1}}", name="atk"):
    return write_cfg(tmp_path, f"""
        task: attack
        name: {name}
        output_dir: {tmp_path / 'runs'}
        data: {{dataset: mnist, source: sample}}
        model: {{checkpoint: {model_dir}}}
        attack: {attack}
        """, name)


def run_dirs(tmp_path):
    return sorted((tmp_path / "runs").iterdir()) if (tmp_path / "runs").is_dir() else []


# --------------------------------------------------------------------------- SIGTERM handler
@pytest.fixture
def sentinel_sigterm():
    """A harmless SIGTERM handler for the test's duration, so a missing annt handler fails the test
    instead of killing pytest."""
    caught = []

    def sentinel(signum, frame):
        caught.append(signum)

    old = signal.signal(signal.SIGTERM, sentinel)
    yield sentinel, caught
    signal.signal(signal.SIGTERM, old)


def test_sigterm_raises_keyboard_interrupt_and_the_old_handler_comes_back(sentinel_sigterm):
    sentinel, caught = sentinel_sigterm
    with pytest.raises(KeyboardInterrupt):
        with cli.sigterm_as_interrupt() as received:
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(5)  # the handler interrupts this
    assert received["signal"] == signal.SIGTERM and caught == []
    assert signal.getsignal(signal.SIGTERM) is sentinel
    os.kill(os.getpid(), signal.SIGTERM)  # outside a run, SIGTERM is the program's business again
    time.sleep(0.1)
    assert caught == [signal.SIGTERM]


# --------------------------------------------------------------------------- interrupted runs, in process
def _fake_task(effect):
    def task(cfg, run):
        effect()
        return {}

    return lambda task_name: task


def _ctrl_c():
    raise KeyboardInterrupt


def _sigterm():
    os.kill(os.getpid(), signal.SIGTERM)
    time.sleep(5)


@pytest.mark.parametrize("effect, code, what", [(_ctrl_c, 130, "interrupted"), (_sigterm, 143, "terminated (SIGTERM)")])
def test_interrupted_attack_prints_its_own_resume_command(tmp_path, fake_model_dir, monkeypatch, capsys,
                                                          sentinel_sigterm, effect, code, what):
    monkeypatch.setattr(cli, "prepare_tensorflow", lambda threads=None: None)
    monkeypatch.setattr(api, "task_function", _fake_task(effect))
    cfg = attack_cfg(tmp_path, fake_model_dir)
    seen = []
    for _ in range(2):  # each interruption names its own run folder, not the first one's
        assert cli.main([str(cfg)]) == code
        run = run_dirs(tmp_path)[-1]
        assert run not in seen
        seen.append(run)
        err = capsys.readouterr().err.strip().splitlines()
        assert err == [f"annt: {what}; finished work is kept; resume with: annt {cfg} --resume {run}"]
        assert not (run / "results.json").exists()  # not marked failed: it can be resumed
        assert "interrupted" in (run / "log.txt").read_text()
    assert sentinel_sigterm[1] == [] and signal.getsignal(signal.SIGTERM) is sentinel_sigterm[0]


def test_interrupted_infer_is_not_offered_a_resume(tmp_path, fake_model_dir, monkeypatch, capsys):
    monkeypatch.setattr(cli, "prepare_tensorflow", lambda threads=None: None)
    monkeypatch.setattr(api, "task_function", _fake_task(_ctrl_c))
    cfg = write_cfg(tmp_path, f"""
        task: infer
        output_dir: {tmp_path / 'runs'}
        data: {{dataset: mnist, source: sample}}
        model: {{checkpoint: {fake_model_dir}}}
        """)
    assert cli.main([str(cfg)]) == 130
    [run] = run_dirs(tmp_path)
    assert capsys.readouterr().err.strip() == f"annt: interrupted; run folder {run} is incomplete"


def test_interrupt_before_the_run_folder_exists(tmp_path, fake_model_dir, monkeypatch, capsys):
    monkeypatch.setattr(cli, "prepare_tensorflow", lambda threads=None: _ctrl_c())  # Ctrl-C while TF loads
    assert cli.main([str(attack_cfg(tmp_path, fake_model_dir))]) == 130
    assert capsys.readouterr().err.strip() == "annt: interrupted" and run_dirs(tmp_path) == []


def test_run_config_raises_interrupted_with_its_run_folder(tmp_path, fake_model_dir, monkeypatch):
    monkeypatch.setattr(api, "task_function", _fake_task(_ctrl_c))
    with pytest.raises(Interrupted) as e:
        api.run_config(attack_cfg(tmp_path, fake_model_dir))
    [run] = run_dirs(tmp_path)
    assert isinstance(e.value, KeyboardInterrupt) and e.value.run_dir == run and e.value.resumable
    assert not hasattr(api, "_last_run_dir")


# --------------------------------------------------------------------------- SIGTERM, for real
@pytest.mark.skipif(not (SHIPPED_MODEL / "model.keras").is_file(), reason="shipped model missing")
def test_sigterm_keeps_finished_batches_and_resume_completes(tmp_path):
    """``python main.py`` on a slow 4-batch PGD: SIGTERM after the first saved batch, then --resume."""
    cfg = attack_cfg(tmp_path, SHIPPED_MODEL, name="term", attack=(
        "{name: pgd, params: {eps: 0.1, eps_step: 0.01, max_iter: 200}, samples: 16, batch_size: 4, "
        "runs: 1, grid_samples: 0}"))
    env = {**os.environ, "PYTHONPATH": str(ROOT), "TF_CPP_MIN_LOG_LEVEL": "2"}
    cmd = [sys.executable, str(ROOT / "main.py"), str(cfg), "--threads", "1"]
    with open(tmp_path / "out.txt", "w") as out, open(tmp_path / "err.txt", "w") as err:  # files: no pipe to fill
        proc = subprocess.Popen(cmd, cwd=tmp_path, env=env, stdout=out, stderr=err)
    try:
        deadline = time.monotonic() + 60
        while not list(tmp_path.glob("runs/*/partial/run0_batch*.npz")):
            assert proc.poll() is None, f"exited early: {(tmp_path / 'err.txt').read_text()}"
            assert time.monotonic() < deadline, "no batch saved within 60 s"
            time.sleep(0.05)
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    out, err = (tmp_path / "out.txt").read_text(), (tmp_path / "err.txt").read_text()
    [run] = run_dirs(tmp_path)
    assert proc.returncode == 143, (out, err)
    assert f"annt: terminated (SIGTERM); finished work is kept; resume with: python {ROOT / 'main.py'} {cfg} " \
           f"--resume {run} --threads 1" in err.splitlines(), err
    kept = sorted(p.name for p in (run / "partial").iterdir())
    assert kept and kept[0] == "run0_batch0000.npz" and len(kept) < 4, kept
    assert not (run / "adversarial_run0.npz").exists() and not (run / "results.json").exists()

    done = subprocess.run([*cmd, "--resume", str(run)], cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr
    assert f"run folder: {run}" in done.stdout and run_dirs(tmp_path) == [run]
    assert (run / "adversarial_run0.npz").is_file() and not (run / "partial").exists()
    log = (run / "log.txt").read_text()
    assert "interrupted" in log and log.count("annt attack:") == 2


# --------------------------------------------------------------------------- the package
def test_pyproject_declares_the_console_command_deps_and_data():
    meta = tomllib.loads((ROOT / "pyproject.toml").read_text())
    module, func = meta["project"]["scripts"]["annt"].split(":")
    assert module == "annt.cli" and getattr(cli, func) is cli.main
    dyn = meta["tool"]["setuptools"]["dynamic"]
    assert dyn["dependencies"] == {"file": ["requirements.txt"]} and dyn["version"] == {"attr": "annt.__version__"}
    for pkg, globs in meta["tool"]["setuptools"]["package-data"].items():
        folder = ROOT.joinpath(*pkg.split("."))
        assert all(list(folder.glob(g)) for g in globs), (pkg, globs)
    assert meta["tool"]["setuptools"]["packages"]["find"]["include"] == ["annt*"]


def test_wheel_holds_every_module_the_sample_and_the_command(tmp_path):
    """Build the wheel from a copy of the package files (no build folders in the checkout)."""
    setuptools = pytest.importorskip("setuptools", minversion="64")  # --no-build-isolation: nothing downloaded
    if int(setuptools.__version__.split(".")[0]) < 70:
        pytest.importorskip("wheel")  # older setuptools build wheels through it
    src = tmp_path / "src"
    src.mkdir()
    for name in ("pyproject.toml", "README.md", *(p.name for p in ROOT.glob("requirements*.txt"))):
        (src / name).write_bytes((ROOT / name).read_bytes())
    wanted = set()
    for p in (ROOT / "annt").rglob("*"):
        if p.is_file() and "__pycache__" not in p.parts and p.suffix in (".py", ".npz"):
            rel = p.relative_to(ROOT)
            (src / rel).parent.mkdir(parents=True, exist_ok=True)
            (src / rel).write_bytes(p.read_bytes())
            wanted.add(rel.as_posix())
    r = subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", "--no-index",
                        "-w", str(tmp_path / "dist"), str(src)], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    [wheel] = (tmp_path / "dist").glob("annt-*.whl")
    with zipfile.ZipFile(wheel) as z:
        names = set(z.namelist())
        info = next(n for n in names if n.endswith(".dist-info/entry_points.txt"))
        entry_points = z.read(info).decode()
    assert "annt/data/mnist_test_sample.npz" in wanted
    assert wanted <= names, sorted(wanted - names)
    assert not any(n.startswith(("tests/", "benchmarks/")) for n in names)
    assert "annt = annt.cli:main" in entry_points
