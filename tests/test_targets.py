"""Target rule all_other (Galloway et al.'s Table 3): one adversarial per (image, other class), counted per pair
and per image; the set it makes reads back through infer."""
import csv
import json

import numpy as np
import pytest
from test_attacks import _synthetic, model  # noqa: F401  (the tiny trained model shared with test_attacks)
from test_pipeline import attack_cfg, infer_cfg, only_run, run_main

from annt.attacks.runner import attack, resolve_targets
from annt.evaluation.advset import AdversarialSet, all_other_summary, expand_all_other, load_adversarial_set


def test_expand_all_other_gives_each_image_and_other_class_once():
    x = np.arange(3 * 4, dtype=np.float32).reshape(3, 2, 2, 1)
    y = np.array([0, 3, 9])
    xe, ye, ie, te = expand_all_other(x, y, np.array([10, 20, 30]), 10)
    assert len(xe) == len(ye) == len(ie) == len(te) == 27
    assert np.all(te != ye)
    assert sorted(zip(ie.tolist(), te.tolist())) == sorted({(i, c) for i, l in zip((10, 20, 30), y) for c in range(10) if c != l})
    np.testing.assert_array_equal(ie, np.repeat([10, 20, 30], 9))  # image-major
    np.testing.assert_array_equal(te[:9], np.arange(1, 10))
    np.testing.assert_array_equal(te[9:18], [0, 1, 2, 4, 5, 6, 7, 8, 9])
    np.testing.assert_array_equal(xe[9:18], np.repeat(x[1:2], 9, axis=0))
    with pytest.raises(ValueError, match="expand_all_other"):
        resolve_targets(y, "all_other")


def test_all_other_summary_on_a_hand_made_set():
    # 2 images (index 5 and 8), 3 classes: 2 rows each; clean image all zeros, perturbations of known L2
    labels = np.array([0, 0, 2, 2])
    target = np.array([1, 2, 0, 1])
    adv_pred = np.array([1, 0, 2, 2])  # image 5: reaches target 1, keeps class 0 for target 2; image 8: robust
    clean = np.zeros((4, 2, 2, 1), np.float32)
    adv = clean.copy()
    adv[0, 0, 0, 0], adv[1, 0, 0, 0], adv[2, 0, 0, 0], adv[3, 0, 0, 0] = 0.3, 0.4, 0.5, 0.6
    adv[0, 1, 1, 0] = 0.4  # row 0: L2 0.5
    s = AdversarialSet(images=adv, labels=labels, image_index=np.array([5, 5, 8, 8]), clean_images=clean,
                       clean_pred=labels, adv_pred=adv_pred, target=target)
    out = all_other_summary(s)
    assert out["images"] == 2 and out["pairs"] == 4
    assert out["pair_accuracy"] == pytest.approx(3 / 4)
    assert out["pair_success_rate"] == pytest.approx(1 / 4)
    assert out["mean_l2"] == pytest.approx((0.5 + 0.4 + 0.5 + 0.6) / 4)
    assert out["mean_l2_success"] == pytest.approx(0.5)
    assert out["image_accuracy_any_target"] == pytest.approx(1 / 2)  # image 8: no target reached
    assert out["image_all_targets_reached"] == 0.0
    assert out["image_accuracy_worst"] == pytest.approx(1 / 2)


def test_library_attack_all_other(model):  # noqa: F811
    x, y = _synthetic(4, seed=2)
    res = attack(model, x, y, "fgsm", targeted=True, target="all_other", eps=0.3, batch_size=10)
    assert len(res.x_adv) == len(res.records) == 36
    np.testing.assert_array_equal(res.target, expand_all_other(x, y, np.arange(4))[3])
    assert [r["index"] for r in res.records] == np.repeat(np.arange(4), 9).tolist()
    assert all(r["target"] != r["true_label"] for r in res.records)


def test_task_all_other_set_and_infer_read_it(tmp_path, tiny_models):
    cfg = attack_cfg(tmp_path, tiny_models["fp"], name="cw")
    over = ["--set", "attack.name=cw_l2", "--set",
            "attack.params={max_iter: 20, binary_search_steps: 1, initial_const: 10.0, learning_rate: 0.1}",
            "--set", "attack.targeted=true", "--set", "attack.target=all_other", "--set", "attack.samples=3",
            "--set", "attack.runs=1"]
    assert run_main([cfg, *over]) == 0
    run = only_run(tmp_path, "attack")
    s = load_adversarial_set(run)
    assert len(s) == 27 and np.all(s.target != s.labels) and s.metadata["target_rule"] == "all_other"
    assert len(set(zip(s.image_index.tolist(), s.target.tolist()))) == 27 and len(set(s.image_index.tolist())) == 3
    res = json.loads((run / "results.json").read_text())["runs"][0]
    assert res["n"] == 27 and res["all_other"] == pytest.approx(all_other_summary(s))
    assert res["all_other"]["pair_success_rate"] > 0
    assert res["targeted_success_rate"] == pytest.approx(res["all_other"]["pair_success_rate"])
    rows = list(csv.DictReader(open(run / "samples_run0.csv")))
    assert [int(r["target"]) for r in rows] == s.target.tolist()
    inf = infer_cfg(tmp_path, tiny_models["fp"], run)
    assert run_main([inf]) == 0
    got = json.loads((only_run(tmp_path, "infer") / "results.json").read_text())["runs"][0]
    assert got["n_total"] == 27 and got["adversarial_accuracy"] == res["adversarial_accuracy"]


def test_task_refuses_unknown_target_rule(tmp_path, tiny_models, capsys):
    cfg = attack_cfg(tmp_path, tiny_models["fp"])
    rc = run_main([cfg, "--check", "--set", "attack.targeted=true", "--set", "attack.target=all_others"])
    assert rc == 2
    err = capsys.readouterr().err
    assert ("attack.target = 'all_others' (from --set): allowed: next, random, all_other, or a list of class ids "
            "(did you mean 'all_other'?)") in err
