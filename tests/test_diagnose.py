"""The gradient-masking report: exact gradient statistics on hand-made models, the task end to end, bad input."""
import json
import textwrap
from pathlib import Path

import keras
import numpy as np
import pytest
import tensorflow as tf

from annt import cli
from annt.attacks.estimator import make_classifier
from annt.evaluation.diagnose import gradient_statistics

ROOT = Path(__file__).resolve().parent.parent


def linear_model(w, b, zero_gradient=False):
    """logits = flatten(x) @ w + b; with zero_gradient the input reaches the Dense layer through a
    gradient-blocking identity (forward unchanged, gradient exactly 0)."""
    inputs = keras.Input((2, 2, 1))
    x = keras.layers.Flatten()(inputs)
    if zero_gradient:
        x = keras.layers.Lambda(lambda t: 0.0 * t + tf.stop_gradient(t))(x)
    dense = keras.layers.Dense(w.shape[1])
    model = keras.Model(inputs, dense(x))
    dense.set_weights([w.astype(np.float32), b.astype(np.float32)])
    return model


W = np.array([[1.0, 0.5, -1.0], [0.0, 2.0, 1.0], [-1.0, 0.0, 0.5], [2.0, -1.0, 0.0]])
B = np.array([0.1, -0.2, 0.0])
X = np.random.default_rng(0).random((6, 2, 2, 1)).astype(np.float32)


def softmax(z):
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def test_gradient_statistics_of_a_linear_model_are_exact():
    model = linear_model(W, B)
    z = X.reshape(6, -1) @ W + B
    y = np.argmax(z, axis=1)
    s = gradient_statistics(make_classifier(model, nb_classes=3), X, y, batch_size=4)
    assert s["mean_singular_value"] == pytest.approx(np.linalg.svd(W, compute_uv=False).mean(), rel=1e-5)
    p = softmax(z)
    assert s["mean_psi_norm"] == pytest.approx(np.mean(np.linalg.norm(p - np.eye(3)[y], axis=1)), rel=1e-5)
    top = np.sort(z, axis=1)
    assert s["mean_logit_gap"] == pytest.approx(np.mean(top[:, -1] - top[:, -2]), rel=1e-5)
    assert s["mean_max_probability"] == pytest.approx(p.max(axis=1).mean(), rel=1e-5)
    assert s["zero_gradient_fraction"] == 0 and s["saturated_fraction"] == 0
    # dCE/dx = W (p - onehot): zero exactly where a column of W is zero and p - onehot weights it
    expected_nonzero = np.mean(np.abs((p - np.eye(3)[y]) @ W.T) > 0)
    assert s["nonzero_pixel_fraction"] == pytest.approx(expected_nonzero)


def test_blocked_gradients_and_saturated_softmax_are_counted():
    y = np.zeros(6, dtype=np.int64)
    blocked = gradient_statistics(make_classifier(linear_model(W, B, zero_gradient=True), nb_classes=3), X, y)
    assert blocked["zero_gradient_fraction"] == 1.0 and blocked["vanishing_gradient_fraction"] == 1.0
    assert blocked["nonzero_pixel_fraction"] == 0.0 and blocked["mean_singular_value"] == 0.0
    huge = linear_model(W * 1e4, B)
    y = np.argmax(X.reshape(6, -1) @ W, axis=1)
    assert gradient_statistics(make_classifier(huge, nb_classes=3), X, y)["saturated_fraction"] == 1.0


def _cfg(tmp_path, body):
    p = tmp_path / "diag.yaml"
    p.write_text(textwrap.dedent(f"""
        task: diagnose
        output_dir: {tmp_path / 'runs'}
        data: {{dataset: mnist, source: sample}}
        diagnose:
        """) + textwrap.indent(textwrap.dedent(body), "  "))
    return p


def test_diagnose_task_reports_checks_verdicts_and_worst_case(tmp_path):
    cfg = _cfg(tmp_path, f"""
        models: [{ROOT / 'models' / 'mnist_a-1bit'}]
        samples: 12
        eps: 0.1
        iterations: [5, 10]
        eps_curve: [0.1, 1.0]
        apgd_iterations: 5
        square_queries: 20
        batch_size: 12
        """)
    assert cli.main([str(cfg)]) == 0
    run = next((tmp_path / "runs").glob("*-diagnose-*"))
    res = json.loads((run / "results.json").read_text())["models"]["mnist_a-1bit"]
    checks = {c["name"]: c for c in res["checks"]}
    assert list(checks) == ["gradients", "iterations", "final_vs_best", "eps", "attack_types", "worst_case"]
    assert all(isinstance(c["verdict"], str) and c["verdict"] and "\n" not in c["verdict"] for c in checks.values())
    assert res["twin"] == str(ROOT / "models" / "mnist_a-fp") and "transfer" in checks["attack_types"]
    acc = res["accuracy_at_eps"]
    assert res["worst_case_accuracy"] <= min(acc.values())
    assert checks["worst_case"]["pgd20"] == acc["pgd-20"]
    assert set(checks["eps"]["accuracy"]) == {"0.1", "1"}
    report = (run / "report.md").read_text()
    assert "## mnist_a-1bit (mnist_a, 1bit)" in report and "**worst case**" in report
    assert (run / "accuracy_vs_iterations.png").stat().st_size > 0 and (run / "accuracy_vs_eps.png").stat().st_size > 0


@pytest.mark.parametrize("body, message", [
    ("models: [nowhere/*]", "/nowhere/*': pattern matches nothing"),
    (f"models: [{ROOT / 'models' / 'mnist_a-1bit'}]\niterations: [0, 10]", "diagnose.iterations[0] = 0: must be"),
    (f"models: [{ROOT / 'models' / 'mnist_a-1bit'}]\nnorm: 1", "diagnose.norm = 1: allowed: inf, 2"),
    (f"models: [{ROOT / 'models' / 'mnist_a-1bit'}]\ntwin: {ROOT / 'configs'}", "diagnose.twin = "),
])
def test_bad_diagnose_config_exits_2_without_a_run_folder(tmp_path, capsys, body, message):
    assert cli.main([str(_cfg(tmp_path, body))]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0]
    assert not (tmp_path / "runs").exists()


def test_twin_is_found_by_name_and_a_model_is_never_its_own_twin():
    from annt.tasks.diagnose import twin_folder
    models = ROOT / "models"
    assert twin_folder(str(models / "mnist_a-1bit"), "auto") == models / "mnist_a-fp"
    assert twin_folder(str(models / "mnist_a-fp"), "auto") is None
    assert twin_folder(str(models / "mnist_a-1bit"), "none") is None
    given = str(models / "mnist_a-fp")
    assert twin_folder(str(models / "mnist_a-2bit"), given) == Path(given)
    assert twin_folder(str(models / "mnist_a-fp"), str(models / "." / "mnist_a-fp")) is None
