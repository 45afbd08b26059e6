"""Sweeps over eps and max_iter, and robust accuracy at eps thresholds for minimum-norm attacks (SPEC §12):
the curve formulas on hand-made numbers, the task's outputs against plain runs and the per-sample CSV,
resume inside a sweep, and the one-line refusals of bad lists."""
import csv
import json
import textwrap
from pathlib import Path

import numpy as np
import pytest

from annt import cli
from annt.config import load_config
from annt.evaluation.advset import load_adversarial_set
from annt.evaluation.metrics import aggregate_curve, robust_accuracy_at
from annt.tasks.attack import final_params, sweep_axes, sweep_points

ROOT = Path(__file__).resolve().parent.parent
FP = ROOT / "models" / "mnist_a-fp"
ONE_BIT = ROOT / "models" / "mnist_a-1bit"


def _cfg(tmp_path, attack, model=FP, name="sw", out="runs"):
    p = tmp_path / f"{name}.yaml"
    p.write_text(textwrap.dedent(f"""
        task: attack
        name: {name}
        seed: 5
        output_dir: {tmp_path / out}
        data: {{dataset: mnist, source: sample}}
        model: {{checkpoint: {model}}}
        attack: {attack}
        """))
    return p


def _run_dir(tmp_path, name, out="runs"):
    dirs = sorted((tmp_path / out).glob(f"*-attack-{name}"))
    assert len(dirs) == 1, dirs
    return dirs[0]


def _results(run):
    return json.loads((run / "results.json").read_text())


def _csv(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


# --------------------------------------------------------------------------- formulas
def test_robust_accuracy_counts_failed_or_farther_samples():
    # samples 0-2 broken at distances 0.5, 1, 2; samples 3-4 not broken (their distance does not matter)
    d = [0.5, 1.0, 2.0, 0.0, 3.0]
    evaded = [True, True, True, False, False]
    curve = robust_accuracy_at(d, evaded, [0.25, 0.5, 1.0, 1.5, 2.0, 10.0])
    # a distance exactly t is inside the threat model: at t = 0.5 sample 0 counts as broken
    assert curve == [{"eps": 0.25, "accuracy": 1.0}, {"eps": 0.5, "accuracy": 0.8}, {"eps": 1.0, "accuracy": 0.6},
                     {"eps": 1.5, "accuracy": 0.6}, {"eps": 2.0, "accuracy": 0.4}, {"eps": 10.0, "accuracy": 0.4}]
    assert np.isnan(robust_accuracy_at([], [], [1.0])[0]["accuracy"])
    with pytest.raises(ValueError, match="distances has 2 entries, evaded 3"):
        robust_accuracy_at([1.0, 2.0], [True, False, True], [1.0])


def test_aggregate_curve_is_mean_and_std_per_point():
    runs = [[{"eps": 0.5, "accuracy": 0.8}, {"eps": 1.0, "accuracy": 0.6}],
            [{"eps": 0.5, "accuracy": 0.6}, {"eps": 1.0, "accuracy": 0.2}]]
    assert aggregate_curve(runs, "eps", "accuracy") == [
        {"eps": 0.5, "accuracy": {"mean": 0.7, "std": 0.1, "n": 2}},
        {"eps": 1.0, "accuracy": {"mean": 0.4, "std": 0.2, "n": 2}}]
    with pytest.raises(ValueError, match="differ in their eps values"):
        aggregate_curve([runs[0], runs[1][:1]], "eps", "accuracy")


def test_sweep_points_vary_one_axis_at_the_others_last_value():
    axes = {"eps": [0.05, 0.1, 0.2], "max_iter": [10, 40]}
    assert sweep_points(axes) == [
        ("eps", 0, {"eps": 0.05, "max_iter": 40}), ("eps", 1, {"eps": 0.1, "max_iter": 40}),
        ("max_iter", 0, {"eps": 0.2, "max_iter": 10}), (None, -1, {"eps": 0.2, "max_iter": 40})]
    assert sweep_points({}) == [(None, -1, {})]
    params = {"eps": [0.05, 0.2], "eps_step": 0.01, "max_iter": 7}
    assert sweep_axes(params) == {"eps": [0.05, 0.2]}
    assert final_params(params) == {"eps": 0.2, "eps_step": 0.01, "max_iter": 7}


# --------------------------------------------------------------------------- the task
EPS = [0.05, 0.1, 0.2, 0.3]


def test_eps_sweep_final_point_is_the_plain_run_and_each_point_its_own_attack(tmp_path):
    from annt.attacks.runner import generate
    from annt.evaluation.predict import predict_labels
    from annt.models.folder import load_model_folder

    common = "samples: 12, batch_size: 6, grid_samples: 0"
    assert cli.main([str(_cfg(tmp_path, f"{{name: fgsm, params: {{eps: {EPS}}}, {common}}}"))]) == 0
    assert cli.main([str(_cfg(tmp_path, f"{{name: fgsm, params: {{eps: 0.3}}, {common}}}", name="plain"))]) == 0
    sw, plain = _run_dir(tmp_path, "sw"), _run_dir(tmp_path, "plain")
    res, ref = _results(sw), _results(plain)
    # headline numbers, params and the saved set are those of the last eps, as a plain run gives them
    assert res["params"] == ref["params"] and res["params"]["eps"] == 0.3
    assert res["runs"][0]["adversarial_accuracy"] == ref["runs"][0]["adversarial_accuracy"]
    a, b = load_adversarial_set(sw / "adversarial_run0.npz"), load_adversarial_set(plain / "adversarial_run0.npz")
    assert a.images.tobytes() == b.images.tobytes() and np.array_equal(a.image_index, b.image_index)
    assert np.array_equal(a.adv_pred, b.adv_pred) and a.metadata["params"] == b.metadata["params"]
    assert (sw / "samples_run0.csv").read_text() == (plain / "samples_run0.csv").read_text()

    curve = res["runs"][0]["sweep"]["eps"]
    assert [p["value"] for p in curve] == EPS and list(res["runs"][0]["sweep"]) == ["eps"]
    assert curve[-1]["adversarial_accuracy"] == res["runs"][0]["adversarial_accuracy"]
    # every earlier point is FGSM at that eps on the same samples, in the same batches
    model, _ = load_model_folder(FP)
    for p in curve[:-1]:
        x_adv = np.concatenate([generate(model, a.clean_images[i:i + 6], a.labels[i:i + 6], "fgsm",
                                         params={"eps": p["value"]}).x_adv for i in (0, 6)])
        assert p["adversarial_accuracy"] == np.mean(predict_labels(model, x_adv) == a.labels)
    acc = [p["adversarial_accuracy"] for p in curve]
    assert acc == sorted(acc, reverse=True) and acc[0] > acc[-1]  # on these samples FGSM weakens nothing by growing
    assert [p["adversarial_accuracy"]["mean"] for p in res["aggregate"]["sweep"]["eps"]] == acc
    rows = _csv(sw / "sweep_run0.csv")
    assert [(r["parameter"], float(r["value"]), float(r["eps"]), float(r["adversarial_accuracy"])) for r in rows] == \
        [("eps", e, e, v) for e, v in zip(EPS, acc)]
    assert (sw / "sweep_eps_run0.png").stat().st_size > 0 and not (sw / "sweep_max_iter_run0.png").exists()
    assert not (sw / "partial").exists()
    # the resolved config keeps the list: it repeats the sweep
    again = load_config(sw / "config.resolved.yaml")
    assert again["attack"]["params"]["eps"] == EPS


PGD = "{name: pgd, params: {eps: [0.05, 0.15], max_iter: [2, 6], eps_step: 0.05}, samples: 6, batch_size: 3, " \
      "runs: 2, grid_samples: 0}"


def test_pgd_sweep_final_point_is_the_plain_run_and_resume_inside_a_point_gives_identical_results(
        tmp_path, monkeypatch):
    import annt.attacks.runner as runner
    from annt.attacks.runner import batch_seed, generate
    from annt.evaluation.predict import predict_labels
    from annt.models.folder import load_model_folder

    real, seen = runner.generate, []

    def recording(*a, **k):
        out = real(*a, **k)
        seen.append((k["params"]["eps"], k["params"]["max_iter"], k["seed"], out.x_adv))
        return out

    monkeypatch.setattr(runner, "generate", recording)
    assert cli.main([str(_cfg(tmp_path, PGD, model=ONE_BIT))]) == 0
    monkeypatch.setattr(runner, "generate", real)
    ref = _run_dir(tmp_path, "sw")
    # per run: (0.05, 6), (0.15, 2), then the final (0.15, 6), each with the run's two batch seeds
    seeds = [batch_seed(5, r, b) for r in range(2) for b in range(2)]
    points = ((0.05, 6), (0.15, 2), (0.15, 6))
    assert [c[:3] for c in seen] == [(e, m, seeds[2 * r + b]) for r in range(2) for e, m in points for b in range(2)]
    want = _results(ref)
    sweep = want["runs"][0]["sweep"]
    assert [p["value"] for p in sweep["eps"]] == [0.05, 0.15] and [p["value"] for p in sweep["max_iter"]] == [2, 6]
    for r in want["runs"]:  # the shared final point is the headline
        assert r["sweep"]["eps"][-1]["adversarial_accuracy"] == r["sweep"]["max_iter"][-1]["adversarial_accuracy"] \
            == r["adversarial_accuracy"]
    assert {row["parameter"] for row in _csv(ref / "sweep_run1.csv")} == {"eps", "max_iter"}
    assert (ref / "sweep_max_iter_run1.png").is_file() and (ref / "sweep_eps_run1.png").is_file()
    # the final point is a plain PGD run (random starts included) with the last eps and max_iter
    plain = PGD.replace("eps: [0.05, 0.15], max_iter: [2, 6]", "eps: 0.15, max_iter: 6")
    assert cli.main([str(_cfg(tmp_path, plain, model=ONE_BIT, name="plain"))]) == 0
    other = _results(_run_dir(tmp_path, "plain"))
    assert other["params"] == want["params"] and other["aggregate"] == {k: v for k, v in want["aggregate"].items()
                                                                        if k != "sweep"}
    for r in range(2):
        a = load_adversarial_set(ref / f"adversarial_run{r}.npz")
        b = load_adversarial_set(_run_dir(tmp_path, "plain") / f"adversarial_run{r}.npz")
        assert a.images.tobytes() == b.images.tobytes() and np.array_equal(a.adv_pred, b.adv_pred)
    # an earlier point is PGD at its setting with the same batch seeds as the final one
    model, _ = load_model_folder(ONE_BIT)
    s0 = load_adversarial_set(ref / "adversarial_run0.npz")
    x_adv = np.concatenate([generate(model, s0.clean_images[i:i + 3], s0.labels[i:i + 3], "pgd",
                                     params={"eps": 0.15, "max_iter": 2, "eps_step": 0.05},
                                     seed=batch_seed(5, 0, b)).x_adv for b, i in enumerate((0, 3))])
    assert x_adv.tobytes() == np.concatenate([seen[2][3], seen[3][3]]).tobytes()
    assert sweep["max_iter"][0]["adversarial_accuracy"] == np.mean(predict_labels(model, x_adv) == s0.labels)

    calls = []

    def flaky(*a, **k):
        calls.append(k["params"]["eps"])
        if len(calls) == 10:  # per run 3 points x 2 batches: stop in run 1's second point, first batch
            raise KeyboardInterrupt
        return real(*a, **k)

    monkeypatch.setattr(runner, "generate", flaky)
    assert cli.main([str(_cfg(tmp_path, PGD, model=ONE_BIT, out="runs2"))]) == 130
    run = _run_dir(tmp_path, "sw", out="runs2")
    assert (run / "adversarial_run0.npz").is_file() and not (run / "adversarial_run1.npz").exists()
    assert sorted(p.name for p in (run / "partial").iterdir()) == [
        "run1_eps0_batch0000.npz", "run1_eps0_batch0001.npz", "run1_max_iter0_batch0000.npz"]
    calls.clear()
    assert cli.main([str(_cfg(tmp_path, PGD, model=ONE_BIT, out="runs2")), "--resume", str(run)]) == 0
    assert calls == [0.15, 0.15, 0.15]  # the rest of the max_iter point, then the final point's two batches
    got = _results(run)
    assert [r["sweep"] for r in got["runs"]] == [r["sweep"] for r in want["runs"]]  # run 0's from the set's metadata
    assert got["aggregate"]["sweep"] == want["aggregate"]["sweep"]
    for r in range(2):
        assert np.load(run / f"adversarial_run{r}.npz")["images"].tobytes() == \
            np.load(ref / f"adversarial_run{r}.npz")["images"].tobytes()
        assert (run / f"sweep_run{r}.csv").read_text() == (ref / f"sweep_run{r}.csv").read_text()

    # a run whose final set is gone is attacked again at every point, and gives the same sweep
    (run / "adversarial_run1.npz").unlink()
    (run / "results.json").unlink()
    calls.clear()
    assert cli.main([str(_cfg(tmp_path, PGD, model=ONE_BIT, out="runs2")), "--resume", str(run)]) == 0
    assert calls == [0.05, 0.05, 0.15, 0.15, 0.15, 0.15]
    assert [r["sweep"] for r in _results(run)["runs"]] == [r["sweep"] for r in want["runs"]]


CW = "{max_iter: 10, binary_search_steps: 2, initial_const: 1.0, learning_rate: 0.1}"
THRESHOLDS = [0.5, 1.0, 1.5, 2.0, 100.0]


def test_cw_thresholds_match_the_samples_csv_distances(tmp_path):
    attack = f"{{name: cw_l2, params: {CW}, samples: 8, grid_samples: 0, eps_thresholds: {THRESHOLDS}}}"
    assert cli.main([str(_cfg(tmp_path, attack))]) == 0
    run = _run_dir(tmp_path, "sw")
    res = _results(run)
    rows = _csv(run / "samples_run0.csv")
    broken = np.array([r["success"] == "True" for r in rows])
    l2 = np.array([float(r["l2"]) for r in rows])
    expected = [float(np.mean(~broken | (l2 > t))) for t in THRESHOLDS]
    curve = res["runs"][0]["robust_accuracy_at"]
    assert curve == [{"eps": t, "accuracy": e} for t, e in zip(THRESHOLDS, expected)]
    assert res["threat_norm"] == 2
    assert len(set(expected)) >= 3  # the thresholds cut through the distances: a curve, not one number
    assert expected[-1] == res["runs"][0]["adversarial_accuracy"]  # beyond every distance: the attack's accuracy
    assert [(float(r["eps"]), float(r["accuracy"])) for r in _csv(run / "robust_curve_run0.csv")] == \
        list(zip(THRESHOLDS, expected))
    assert [p["accuracy"]["mean"] for p in res["aggregate"]["robust_accuracy_at"]] == expected
    assert (run / "robust_curve_run0.png").stat().st_size > 0


# --------------------------------------------------------------------------- bad input
@pytest.mark.parametrize("attack, message", [
    ("{name: fgsm, params: {eps: [0.1, abc]}}", "attack.params.eps[1] = 'abc': must be a number in (0, inf)"),
    ("{name: fgsm, params: {eps: [0.1, true]}}", "attack.params.eps[1] = true: must be a number in (0, inf)"),
    ("{name: fgsm, params: {eps: [0.1, -0.2]}}", "attack.params.eps[1] = -0.2: must be a number in (0, inf)"),
    ("{name: fgsm, params: {eps: [0.2, 0.1]}}", "attack.params.eps[1] = 0.1: must exceed attack.params.eps[0] = 0.2"),
    ("{name: fgsm, params: {eps: [0.1, 0.1]}}", "attack.params.eps[1] = 0.1: must exceed attack.params.eps[0] = 0.1"),
    ("{name: fgsm, params: {eps: []}}", "attack.params.eps = []: a list needs at least one value"),
    ("{name: pgd, params: {max_iter: [10, 2.5]}}", "attack.params.max_iter[1] = 2.5: must be an integer in [1, inf)"),
    ("{name: pgd, params: {max_iter: [0, 5]}}", "attack.params.max_iter[0] = 0: must be an integer in [1, inf)"),
    ("{name: pgd, params: {eps_step: [0.01, 0.02]}}",
     "attack.params.eps_step = [0.01, 0.02]: takes one value; only eps and max_iter take a list (a sweep)"),
    ("{name: fgsm, params: {norm: [2, inf]}}", "attack.params.norm = [2, inf]: takes one value"),
    ("{name: cw_l2, params: {eps: [0.1, 0.2]}}", "attack.params.eps: unknown key in attack.params"),
    ("{name: fgsm, eps_thresholds: [0.5]}", "attack.eps_thresholds = [0.5]: only for minimum-norm attacks (cw_l2, "),
    ("{name: cw_l2, eps_thresholds: [1.0, 0.5]}",
     "attack.eps_thresholds[1] = 0.5: must exceed attack.eps_thresholds[0] = 1.0"),
    ("{name: cw_l2, eps_thresholds: [0, 1]}", "attack.eps_thresholds[0] = 0.0: must be a number > 0"),
    ("{name: cw_l2, eps_thresholds: [x]}", "attack.eps_thresholds[0] = 'x': must be a number"),
    ("{name: cw_l2, eps_thresholds: []}", "attack.eps_thresholds = []: a list needs at least one value"),
])
def test_bad_sweeps_and_thresholds_exit_2_in_one_line_without_a_run_folder(tmp_path, capsys, attack, message):
    assert cli.main([str(_cfg(tmp_path, attack))]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0], err
    assert not (tmp_path / "runs").exists()
