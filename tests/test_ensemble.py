"""Worst-case robust accuracy over an attack ensemble: per-sample semantics, threat-model checks, the task's outputs."""
import json
import textwrap
from pathlib import Path

import numpy as np
import pytest

from annt import cli
from annt.attacks.ensemble import distance, summarize_members
from annt.attacks.registry import validate_attack_params
from annt.attacks.runner import generate
from annt.errors import ConfigError

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def one_bit():
    import annt

    model, _ = annt.load_model(ROOT / "models" / "mnist_a-1bit")
    ds = annt.load_sample()
    return model, ds.x[:24], ds.y[:24]


MEMBERS = [{"name": "fgsm"}, {"name": "pgd", "params": {"max_iter": 10, "eps_step": 0.02}}]


def test_worst_case_is_per_sample_over_members(one_bit):
    model, x, y = one_bit
    out = generate(model, x, y, "ensemble", params={"eps": 0.15, "attacks": MEMBERS}, seed=1)
    m = out.members
    assert m["names"] == ["fgsm", "pgd(max_iter=10, eps_step=0.02)"] and m["evaded"].shape == (2, len(x))
    broken = m["evaded"].any(axis=0)
    np.testing.assert_array_equal(m["broken_by"] >= 0, broken)
    # the first member (in order) that broke a sample is the one recorded, and its adversarial is kept
    first = np.where(broken, np.argmax(m["evaded"], axis=0), -1)
    np.testing.assert_array_equal(m["broken_by"], first)
    np.testing.assert_array_equal(out.evaded, broken)
    assert np.all(distance(x, out.x_adv, "inf") <= 0.15 + 1e-5)
    np.testing.assert_array_equal(out.x_adv[~broken], x[~broken])  # robust samples keep the clean image
    s = summarize_members(m)
    assert s["worst_case_accuracy"] == pytest.approx(1 - broken.mean())
    assert s["worst_case_accuracy"] <= min(a["adversarial_accuracy"] for a in s["members"])
    assert sum(s["broken_first_by"].values()) == broken.sum()
    assert 0 < broken.sum() < len(x)  # eps 0.15 on the 1-bit model: some but not all break


def test_minimum_norm_member_counts_only_within_eps(one_bit):
    import annt

    model, _ = annt.load_model(ROOT / "models" / "mnist_a-fp")
    x, y = one_bit[1][:8], one_bit[2][:8]
    cw = {"max_iter": 10, "binary_search_steps": 2, "initial_const": 1.0, "learning_rate": 0.1}
    out = generate(model, x, y, "ensemble", params={"eps": 0.5, "norm": 2, "attacks": [{"name": "cw_l2", "params": cw}]})
    alone = generate(model, x, y, "cw_l2", params=cw)
    far = alone.evaded & (distance(x, alone.x_adv, 2) > 0.5 + 1e-5)
    assert far.any()  # C&W succeeds on these, but beyond the ensemble's eps
    assert not out.members["evaded"][0][far].any()


@pytest.mark.parametrize("params, message", [
    ({"eps": 0.1, "attacks": [{"name": "cw_l2"}]},
     "attack.params.attacks[0].name = 'cw_l2': attacks in the 2 norm, outside the ensemble's threat model (norm inf)"),
    ({"eps": 0.1, "norm": 2, "attacks": [{"name": "fgsm", "params": {"norm": "inf"}}]},
     "attack.params.attacks[0].name = 'fgsm': attacks in the inf norm, outside the ensemble's threat model (norm 2)"),
    ({"eps": 0.1, "attacks": [{"name": "pgd", "params": {"eps": 0.2}}]},
     "attack.params.attacks[0].params.eps = 0.2: must not exceed the ensemble's eps 0.1"),
    ({"eps": 0.1, "attacks": [{"name": "fgm"}]}, "attack.params.attacks[0].name = 'fgm': allowed: "),
    ({"eps": 0.1, "attacks": [{"name": "ensemble"}]}, "an ensemble cannot contain an ensemble"),
    ({"eps": 0.1, "attacks": [{"nam": "fgsm"}]}, "a member is {name: ATTACK, params: {...}}"),
    ({"eps": 0.1, "attacks": []}, "an ensemble needs at least one member"),
    ({"attacks": MEMBERS}, "attack.params.eps = <missing>: required"),
])
def test_members_outside_the_threat_model_are_refused(params, message):
    with pytest.raises(ConfigError) as err:
        validate_attack_params("ensemble", params)
    assert message in str(err.value) and "\n" not in str(err.value)


def test_robust_preset_is_the_default_ensemble():
    p = validate_attack_params("ensemble", {"eps": 0.1})
    assert [(m["name"], m["params"].get("loss")) for m in p["attacks"]] == [("apgd", "ce"), ("apgd", "dlr"), ("square", None)]
    assert all(m["params"]["eps"] == 0.1 and m["params"]["norm"] == "inf" for m in p["attacks"])


def _cfg(tmp_path, attack):
    p = tmp_path / "ens.yaml"
    p.write_text(textwrap.dedent(f"""
        task: attack
        output_dir: {tmp_path / 'runs'}
        data: {{dataset: mnist, source: sample}}
        model: {{checkpoint: {ROOT / 'models' / 'mnist_a-1bit'}}}
        attack: {attack}
        """))
    return p


def test_ensemble_task_records_members_worst_case_and_first_breaker(tmp_path):
    attack = "{name: ensemble, params: {eps: 0.15, attacks: " + json.dumps(MEMBERS) + "}, samples: 12, batch_size: 6, grid_samples: 0}"
    assert cli.main([str(_cfg(tmp_path, attack))]) == 0
    run = next((tmp_path / "runs").glob("*-attack-*"))
    res = json.loads((run / "results.json").read_text())["runs"][0]
    e = res["ensemble"]
    assert [m["name"] for m in e["members"]] == ["fgsm", "pgd(max_iter=10, eps_step=0.02)"]
    assert e["worst_case_accuracy"] == pytest.approx(res["adversarial_accuracy"])
    rows = (run / "samples_run0.csv").read_text().splitlines()
    assert rows[0].endswith(",broken_by") and len(rows) == 13
    broken = [r.rsplit(",", 1)[1] for r in rows[1:]]
    assert sum(b != "" for b in broken) == sum(e["broken_first_by"].values())
    meta = json.loads(str(np.load(run / "adversarial_run0.npz")["metadata"]))
    assert meta["ensemble"]["names"] == [m["name"] for m in e["members"]]


def test_l2_member_in_linf_ensemble_exits_2_without_a_run_folder(tmp_path, capsys):
    attack = "{name: ensemble, params: {eps: 0.1, attacks: [{name: cw_l2}]}, samples: 4}"
    assert cli.main([str(_cfg(tmp_path, attack))]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "outside the ensemble's threat model" in err[0]
    assert not (tmp_path / "runs").exists()
