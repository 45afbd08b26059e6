"""Attack task, direct inference, transfer and report end to end through main.py's entry point,
on two small real lenet5 models and the shipped MNIST sample."""
import csv
import json
import textwrap
from pathlib import Path

import numpy as np
import pytest

from annt import cli
from annt.evaluation.advset import load_adversarial_set
from annt.evaluation.predict import predict_labels, select_samples
from annt.errors import AnntError


def write_cfg(tmp_path, name, text):
    p = tmp_path / f"{name}.yaml"
    p.write_text(textwrap.dedent(text))
    return p


def attack_cfg(tmp_path, model_dir, name="atk", extra=""):
    return write_cfg(tmp_path, name, f"""
        task: attack
        name: {name}
        seed: 3
        output_dir: {tmp_path / 'runs'}
        data: {{dataset: mnist, source: sample}}
        model: {{checkpoint: {model_dir}}}
        attack: {{name: fgsm, params: {{eps: 0.2}}, samples: 24, batch_size: 10, runs: 2, grid_samples: 4{extra}}}
        """)


def infer_cfg(tmp_path, model_dir, adversarial, name="inf"):
    return write_cfg(tmp_path, name, f"""
        task: infer
        output_dir: {tmp_path / 'runs'}
        data: {{dataset: mnist, source: sample}}
        model: {{checkpoint: {model_dir}}}
        infer: {{adversarial: {adversarial}}}
        """)


def run_main(args):
    rc = cli.main([str(a) for a in args])
    return rc


def only_run(tmp_path, kind):
    dirs = sorted((tmp_path / "runs").glob(f"*-{kind}-*"))
    assert len(dirs) == 1, dirs
    return dirs[0]


# --------------------------------------------------------------------------- selection
def test_select_samples_modes():
    y = np.array([0, 1, 2, 3, 4, 5, 6, 7, 8, 9])
    pred = np.array([0, 1, 9, 3, 9, 5, 6, 9, 8, 9])  # 2, 4, 7 misclassified
    first = select_samples(y, pred, samples=3, select="first", only_correct=True, runs=2)
    assert [f.tolist() for f in first] == [[0, 1, 3], [5, 6, 8]]
    allf = select_samples(y, pred, samples=5, select="first", only_correct=False, runs=2)
    assert [f.tolist() for f in allf] == [[0, 1, 2, 3, 4], [5, 6, 7, 8, 9]]
    rnd = select_samples(y, pred, samples=3, select="random", only_correct=True, runs=2, seed=1)
    assert not set(rnd[0]) & set(rnd[1]) and all(pred[p] == y[p] for r in rnd for p in r)
    assert [r.tolist() for r in rnd] == [r.tolist() for r in select_samples(y, pred, samples=3, runs=2, seed=1)]
    assert [r.tolist() for r in rnd] != [r.tolist() for r in select_samples(y, pred, samples=3, runs=2, seed=2)]
    with pytest.raises(AnntError, match="only 7 correctly classified images"):
        select_samples(y, pred, samples=4, runs=2)


# --------------------------------------------------------------------------- attack task
def test_attack_run_artifacts_are_consistent(tmp_path, tiny_models, mnist_sample):
    assert run_main([attack_cfg(tmp_path, tiny_models["fp"])]) == 0
    run = only_run(tmp_path, "attack")
    res = json.loads((run / "results.json").read_text())
    assert res["complete"] and len(res["runs"]) == 2 and res["attack"] == "fgsm"
    ds = mnist_sample
    pos = {int(i): p for p, i in enumerate(ds.index)}
    seen = set()
    for r in range(2):
        s = load_adversarial_set(run / f"adversarial_run{r}.npz")  # allow_pickle=False inside
        assert len(s) == 24 and s.images.dtype == np.float32
        # the saved index points at the saved clean image and label
        sel = [pos[int(i)] for i in s.image_index]
        assert np.array_equal(ds.x[sel], s.clean_images) and np.array_equal(ds.y[sel], s.labels)
        assert np.all(s.clean_pred == s.labels)  # only_correct
        assert np.max(np.abs(s.images - s.clean_images)) <= 0.2 + 1e-6
        assert not seen & set(s.image_index.tolist())  # fresh samples per run
        seen |= set(s.image_index.tolist())
        summary = res["runs"][r]
        assert summary["n"] == 24
        assert summary["adversarial_accuracy"] == pytest.approx(np.mean(s.adv_pred == s.labels))
        rows = list(csv.DictReader(open(run / f"samples_run{r}.csv")))
        assert [int(x["index"]) for x in rows] == s.image_index.tolist()
        assert [x["success"] == "True" for x in rows] == (s.adv_pred != s.labels).tolist()
        l2 = np.sqrt(((s.images - s.clean_images).astype(np.float64) ** 2).reshape(24, -1).sum(1))
        assert np.allclose([float(x["l2"]) for x in rows], l2)
        assert s.metadata["attack"] == "fgsm" and s.metadata["params"]["eps"] == 0.2 and s.metadata["run"] == r
        assert (run / f"grid_run{r}.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert not (run / "partial").exists()
    assert {"config.yaml", "config.resolved.yaml", "environment.json", "log.txt"} <= {p.name for p in run.iterdir()}


@pytest.mark.parametrize("select,only_correct", [("first", False), ("random", False), ("first", True), ("random", True)])
def test_index_matches_image_in_every_mode(tmp_path, tiny_models, mnist_sample, select, only_correct):
    extra = f", select: {select}, only_correct: {str(only_correct).lower()}"
    assert run_main([attack_cfg(tmp_path, tiny_models["2bit"], extra=extra), "--set", "attack.runs=1"]) == 0
    s = load_adversarial_set(only_run(tmp_path, "attack"))
    ds = mnist_sample
    pos = {int(i): p for p, i in enumerate(ds.index)}
    sel = [pos[int(i)] for i in s.image_index]
    assert np.array_equal(ds.x[sel], s.clean_images) and np.array_equal(ds.y[sel], s.labels)
    from annt.models.folder import load_model_folder

    pred = predict_labels(load_model_folder(tiny_models["2bit"])[0], ds.x)
    correct = ds.index[pred == ds.y]
    assert correct[:24].tolist() != ds.index[:24].tolist()  # the model misses one of the first 24: modes differ
    first = (correct if only_correct else ds.index)[:24].tolist()
    if select == "first":  # the split's order, skipping misclassified images when only_correct
        assert s.image_index.tolist() == first
    else:  # the seeded permutation (seed 3), not the split's order
        assert s.image_index.tolist() != first
        chosen = select_samples(ds.y, pred, samples=24, select="random", only_correct=only_correct, runs=1, seed=3)[0]
        assert s.image_index.tolist() == ds.index[chosen].tolist()
    if only_correct:
        assert set(s.image_index.tolist()) <= set(correct.tolist()) and np.all(s.clean_pred == s.labels)


def test_same_seed_same_bytes_and_resume_after_interrupt(tmp_path, tiny_models, monkeypatch):
    cfg = attack_cfg(tmp_path, tiny_models["fp"], extra="", name="pgd")
    over = ["--set", "attack.name=pgd", "--set", "attack.params={eps: 0.2, eps_step: 0.05, max_iter: 5, restarts: 2}"]
    assert run_main([cfg, *over]) == 0
    ref = only_run(tmp_path, "attack")
    import annt.attacks.runner as attacks

    real, calls = attacks.generate, []

    def flaky(*a, **k):
        calls.append(1)
        if len(calls) == 4:  # run 0 has 3 batches; die in the first batch of run 1
            raise KeyboardInterrupt
        return real(*a, **k)

    monkeypatch.setattr(attacks, "generate", flaky)
    (tmp_path / "runs2").mkdir()
    assert run_main([cfg, *over, "--set", f"output_dir={tmp_path / 'runs2'}"]) == 130
    run = next((tmp_path / "runs2").iterdir())
    assert (run / "adversarial_run0.npz").is_file() and not (run / "adversarial_run1.npz").exists()
    assert not (run / "results.json").exists()
    calls.clear()
    assert run_main([cfg, *over, "--resume", run]) == 0
    assert len(calls) == 3  # only run 1's batches were computed again
    for r in range(2):
        a = np.load(ref / f"adversarial_run{r}.npz")["images"]
        b = np.load(run / f"adversarial_run{r}.npz")["images"]
        assert a.tobytes() == b.tobytes()
    assert json.loads((run / "results.json").read_text())["complete"]


def test_partial_batches_survive_interruption_within_a_run(tmp_path, tiny_models, monkeypatch):
    cfg = attack_cfg(tmp_path, tiny_models["fp"], name="part")
    import annt.attacks.runner as attacks

    real, calls = attacks.generate, []

    def flaky(*a, **k):
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return real(*a, **k)

    monkeypatch.setattr(attacks, "generate", flaky)
    assert run_main([cfg]) == 130
    run = only_run(tmp_path, "attack")
    assert sorted(p.name for p in (run / "partial").iterdir()) == ["run0_batch0000.npz", "run0_batch0001.npz"]
    calls.clear()
    monkeypatch.setattr(attacks, "generate", lambda *a, **k: (calls.append(1), real(*a, **k))[1])
    assert run_main([cfg, "--resume", run]) == 0
    assert len(calls) == 1 + 3  # the last batch of run 0, then run 1's three batches


# --------------------------------------------------------------------------- infer
def test_direct_inference_reproduces_attack_time_numbers(tmp_path, tiny_models):
    assert run_main([attack_cfg(tmp_path, tiny_models["2bit"])]) == 0
    atk = only_run(tmp_path, "attack")
    cfg = infer_cfg(tmp_path, tiny_models["2bit"], atk)
    assert run_main([cfg]) == 0
    inf = json.loads((only_run(tmp_path, "infer") / "results.json").read_text())
    agg = inf["aggregate"]["adversarial_accuracy"]
    assert agg["n"] == 2
    log = (only_run(tmp_path, "infer") / "log.txt").read_text()
    assert f"adversarial accuracy over 2 run(s): {agg['mean']:.4f}" in log
    at = json.loads((atk / "results.json").read_text())
    assert inf["direct"] is True
    for a, b in zip(at["runs"], inf["runs"]):
        for key in ("n", "adversarial_accuracy", "success_rate", "n_success"):
            assert a[key] == b[key]
        for d in ("l0", "l2", "linf"):
            assert a[d] == b[d]


def test_clean_inference(tmp_path, tiny_models):
    cfg = write_cfg(tmp_path, "clean", f"""
        task: infer
        output_dir: {tmp_path / 'runs'}
        data: {{dataset: mnist, source: sample}}
        model: {{checkpoint: {tiny_models['fp']}}}
        """)
    assert run_main([cfg]) == 0
    run = only_run(tmp_path, "infer")
    res = json.loads((run / "results.json").read_text())
    rows = list(csv.DictReader(open(run / "predictions.csv")))
    assert res["n"] == 1000 == len(rows)
    assert res["clean_accuracy"] == pytest.approx(np.mean([r["pred"] == r["true_label"] for r in rows]))
    card = json.loads((Path(tiny_models["fp"]) / "card.json").read_text())
    assert res["clean_accuracy"] == pytest.approx(card["test_accuracy"])  # the card was computed on this sample


# --------------------------------------------------------------------------- transfer + report
def test_two_by_two_transfer_and_report(tmp_path, tiny_models):
    for tag in ("fp", "2bit"):
        assert run_main([attack_cfg(tmp_path, tiny_models[tag], name=f"src{tag}")]) == 0
    cfg = write_cfg(tmp_path, "tr", f"""
        task: transfer
        output_dir: {tmp_path / 'runs'}
        data: {{dataset: mnist, source: sample}}
        transfer:
          sources: ["{tmp_path / 'runs'}/*-attack-src*"]
          targets: [{tiny_models['fp']}, {tiny_models['2bit']}]
        """)
    assert run_main([cfg]) == 0
    run = only_run(tmp_path, "transfer")
    rows = list(csv.DictReader(open(run / "transfer_long.csv")))
    assert len(rows) == 2 * 2 * 2  # sources x targets x runs
    from annt.evaluation.evaluate import evaluate
    from annt.models.folder import load_model_folder

    model, _ = load_model_folder(tiny_models["2bit"])
    src = sorted((tmp_path / "runs").glob("*-attack-srcfp"))[0]
    s = load_adversarial_set(src / "adversarial_run1.npz")
    res = evaluate(model, s)
    row = next(r for r in rows if r["source"] == str(src) and r["target"] == str(tiny_models["2bit"]) and r["run"] == "1")
    assert int(row["n_used"]) == res.summary["n"] == int(np.sum(res.clean_pred == s.labels))
    assert float(row["adversarial_accuracy"]) == pytest.approx(res.summary["adversarial_accuracy"])
    samples = list(csv.DictReader(open(run / "transfer_samples.csv")))
    assert len(samples) == 2 * 2 * 2 * 24  # every sample of every source x target x run
    mine = [x for x in samples if x["source"] == str(src) and x["target"] == str(tiny_models["2bit"]) and x["run"] == "1"]
    assert [x["counted"] == "True" for x in mine] == res.counted.tolist()
    md = (run / "transfer.md").read_text()
    assert "| source \\ target | FP | 2 |" in md
    res = json.loads((run / "results.json").read_text())
    assert res["row_labels"] == res["col_labels"] == ["FP", "2"]
    cell_csv = list(csv.DictReader(open(run / "transfer_cells.csv")))
    assert {(c["source_label"], c["target_label"]) for c in cell_csv} == {("FP", "FP"), ("FP", "2"), ("2", "FP"), ("2", "2")}
    for png in ("heatmap_adversarial_accuracy.png", "heatmap_transfer_rate.png"):
        assert (run / png).read_bytes()[:4] == b"\x89PNG"
    res = json.loads((run / "results.json").read_text())
    assert len(res["cells"]) == 4 and all(c["runs"] == 2 for c in res["cells"])

    rep = write_cfg(tmp_path, "rep", f"""
        task: report
        output_dir: {tmp_path / 'runs'}
        report: {{runs: ["{tmp_path / 'runs'}/*-attack-*"]}}
        """)
    assert run_main([rep]) == 0
    rrun = only_run(tmp_path, "report")
    assert (rrun / "accuracy_vs_bits.png").is_file() and (rrun / "l2_vs_bits.png").is_file()
    table = (rrun / "report.md").read_text()
    assert table.count("| fgsm | eps=0.2 | lenet5 |") == 2


def test_transfer_refuses_other_dataset_and_wrong_shape(tmp_path, tiny_models, capsys):
    bad = tmp_path / "fashion.npz"
    x = np.zeros((2, 28, 28, 1), np.float32)
    np.savez(bad, images=x, labels=np.zeros(2, np.int64), image_index=np.arange(2), clean_images=x,
             metadata=np.array(json.dumps({"dataset": "fashion_mnist"})))
    cfg = write_cfg(tmp_path, "tr", f"""
        task: transfer
        output_dir: {tmp_path / 'runs'}
        transfer: {{sources: [{bad}], targets: [{tiny_models['fp']}]}}
        """)
    assert run_main([cfg]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "set was made on fashion_mnist but data.dataset is mnist" in err[0]
    assert run_main([cfg, "--set", "data.dataset=fashion_mnist"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "set was made on fashion_mnist but model" in err[0] and "trained on mnist" in err[0]
    cifar = tmp_path / "cifar.npz"
    x3 = np.zeros((2, 32, 32, 3), np.float32)
    np.savez(cifar, images=x3, labels=np.zeros(2, np.int64), image_index=np.arange(2), clean_images=x3,
             metadata=np.array(json.dumps({})))
    assert run_main([cfg, "--set", f"transfer.sources=[{cifar}]"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "images are (32, 32, 3) but model" in err[0] and "takes (28, 28, 1)" in err[0]
    assert not (tmp_path / "runs").exists()


def test_transfer_refuses_targets_that_would_share_a_label(tmp_path, tiny_models, capsys):
    import shutil

    targets = [tmp_path / side / "lenet5-fp" for side in ("a", "b")]  # same folder name, same bits
    for t in targets:
        shutil.copytree(tiny_models["fp"], t)
    src = tmp_path / "set.npz"
    x = np.zeros((2, 28, 28, 1), np.float32)
    np.savez(src, images=x, labels=np.zeros(2, np.int64), image_index=np.arange(2), clean_images=x,
             metadata=np.array(json.dumps({"dataset": "mnist"})))
    cfg = write_cfg(tmp_path, "tr", f"""
        task: transfer
        output_dir: {tmp_path / 'runs'}
        transfer: {{sources: [{src}], targets: [{targets[0]}, {targets[1]}]}}
        """)
    assert run_main([cfg]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "transfer.targets" in err[0] and "both would be labelled 'lenet5-fp'" in err[0]
    assert not (tmp_path / "runs").exists()  # refused by the config check, before any run folder


def test_annt_three_key_set_loads_and_transfers(tmp_path, tiny_models, mnist_sample):
    ds = mnist_sample
    idx = ds.index[:10]
    x = ds.x[:10, :, :, 0] + 0.0  # ANNT's (N, 28, 28)
    old = tmp_path / "annt_fgsm.npz"
    np.savez(old, images=x, labels=ds.y[:10], image_index=idx)
    s = load_adversarial_set(old)
    assert s.images.shape == (10, 28, 28, 1) and s.clean_images is None and not s.prefiltered
    cfg = write_cfg(tmp_path, "tr", f"""
        task: transfer
        output_dir: {tmp_path / 'runs'}
        data: {{dataset: mnist, split: test, source: sample}}
        transfer: {{sources: [{old}], targets: [{tiny_models['fp']}]}}
        """)
    assert run_main([cfg]) == 0
    rows = list(csv.DictReader(open(only_run(tmp_path, "transfer") / "transfer_long.csv")))
    # the "adversarial" images are the clean ones, so every counted sample is still correct
    assert len(rows) == 1 and float(rows[0]["adversarial_accuracy"]) == 1.0 and float(rows[0]["l2_successful_mean"] or 0) == 0


@pytest.mark.parametrize("passes", [None, 3])
def test_transfer_judges_a_target_random_at_inference_over_stochastic_passes(tmp_path, mnist_sample, passes):
    ds = mnist_sample
    src = tmp_path / "clean.npz"
    np.savez(src, images=ds.x[:10, :, :, 0], labels=ds.y[:10], image_index=ds.index[:10])
    target = Path(__file__).resolve().parents[1] / "models" / "galloway-S64-seed0"
    key = "" if passes is None else f", stochastic_passes: {passes}"
    cfg = write_cfg(tmp_path, "tr", f"""
        task: transfer
        output_dir: {tmp_path / 'runs'}
        data: {{dataset: mnist, split: test, source: sample}}
        transfer: {{sources: [{src}], targets: [{target}]{key}}}
        """)
    assert run_main([cfg]) == 0
    [row] = list(csv.DictReader(open(only_run(tmp_path, "transfer") / "transfer_long.csv")))
    assert int(row["passes"]) == (passes or 10)  # model.stochastic_passes's default when the key is left out


def test_failed_run_is_marked_and_skipped_by_globs(tmp_path, tiny_models, monkeypatch):
    import annt.attacks.runner as attacks

    def broken(*a, **k):
        raise AnntError("simulated failure inside the attack")

    monkeypatch.setattr(attacks, "generate", broken)
    assert run_main([attack_cfg(tmp_path, tiny_models["fp"], name="broken")]) == 2
    run = only_run(tmp_path, "attack")
    res = json.loads((run / "results.json").read_text())
    assert res["complete"] is False and "simulated failure" in res["error"]
    cfg = write_cfg(tmp_path, "tr", f"""
        task: transfer
        output_dir: {tmp_path / 'runs'}
        transfer: {{sources: ["{tmp_path / 'runs'}/*-attack-*"], targets: [{tiny_models['fp']}]}}
        """)
    from annt.config import load_config
    from annt.errors import ConfigError

    with pytest.raises(ConfigError, match=r"pattern matches nothing \(unfinished run folders are skipped\)"):
        load_config(cfg)


def test_uap_task_saves_one_perturbation_and_fooling_rate(tmp_path, tiny_models):
    cfg = attack_cfg(tmp_path, tiny_models["fp"], name="uap")
    over = ["--set", "attack.name=uap", "--set", "attack.params={attacker_params: {eps: 0.1}, eps: 0.3, max_iter: 2}",
            "--set", "attack.runs=1"]
    assert run_main([cfg, *over]) == 0
    run = only_run(tmp_path, "attack")
    res = json.loads((run / "results.json").read_text())["runs"][0]
    delta = np.load(run / "perturbation_run0.npy")
    s = load_adversarial_set(run)
    assert delta.shape == (1, 28, 28, 1) and np.max(np.abs(delta)) <= 0.3 + 1e-6
    assert np.allclose(s.images, np.clip(s.clean_images + delta, 0, 1), atol=1e-6)  # one delta for every image
    assert 0.0 <= res["fooling_rate"] <= 1.0 and s.metadata["fooling_rate"] == res["fooling_rate"]


def test_targeted_next_class_task(tmp_path, tiny_models):
    cfg = attack_cfg(tmp_path, tiny_models["fp"], name="tgt")
    over = ["--set", "attack.name=pgd", "--set", "attack.params={eps: 0.3, eps_step: 0.05, max_iter: 20}",
            "--set", "attack.targeted=true", "--set", "attack.target=next", "--set", "attack.runs=1"]
    assert run_main([cfg, *over]) == 0
    run = only_run(tmp_path, "attack")
    s = load_adversarial_set(run)
    res = json.loads((run / "results.json").read_text())["runs"][0]
    assert np.array_equal(s.target, (s.labels + 1) % 10)
    assert res["targeted_success_rate"] == pytest.approx(np.mean(s.adv_pred == s.target)) and res["targeted_success_rate"] > 0
    rows = list(csv.DictReader(open(run / "samples_run0.csv")))
    assert [int(r["target"]) for r in rows] == s.target.tolist()
