"""SPEC §7 metric definitions on hand-made arrays with known answers."""
import csv
import math

import numpy as np
import pytest

from annt.evaluation.metrics import (DISTANCES, RECORD_FIELDS, aggregate, perturbation_norms, records_csv,
                                     sample_records, summarize)
from annt.io import atomic_write_text
from annt.tables import pm


def _pair():
    """Two 2x2x1 images. Sample 0: δ = [0.3, -0.4, 0, 0] -> L0 2, L2 0.5, L∞ 0.4.
    Sample 1: δ = [0, 0, 0, 5e-7] -> below the 1e-6 L0 threshold, L2 = L∞ = 5e-7."""
    x = np.full((2, 2, 2, 1), 0.5)
    x_adv = x.copy()
    x_adv[0, 0, 0, 0] += 0.3
    x_adv[0, 0, 1, 0] -= 0.4
    x_adv[1, 1, 1, 0] += 5e-7
    return x, x_adv


def test_perturbation_norms_known_delta():
    x, x_adv = _pair()
    d = perturbation_norms(x, x_adv)
    np.testing.assert_array_equal(d["l0"], [2, 0])
    np.testing.assert_allclose(d["l0_fraction"], [0.5, 0.0])
    np.testing.assert_allclose(d["l2"], [0.5, 5e-7], rtol=1e-9)
    np.testing.assert_allclose(d["linf"], [0.4, 5e-7], rtol=1e-9)


def test_perturbation_norms_count_channels_separately():
    x = np.zeros((1, 1, 1, 3), np.float32)
    x_adv = np.array([[[[0.1, 0.0, -0.2]]]], np.float32)
    d = perturbation_norms(x, x_adv)
    assert d["l0"][0] == 2 and d["l0_fraction"][0] == pytest.approx(2 / 3)
    assert d["l2"][0] == pytest.approx(math.sqrt(0.05), rel=1e-6)


def test_perturbation_norms_rejects_shape_mismatch():
    with pytest.raises(ValueError):
        perturbation_norms(np.zeros((2, 4)), np.zeros((2, 5)))


def test_sample_records_fields_and_success():
    x, x_adv = _pair()
    recs = sample_records([10, 42], [3, 7], [3, 7], [5, 7], x, x_adv)
    assert recs[0] == {
        "index": 10, "true_label": 3, "clean_pred": 3, "adv_pred": 5, "success": True,
        "l0": 2, "l0_fraction": 0.5, "l2": pytest.approx(0.5), "linf": pytest.approx(0.4),
    }
    assert recs[1]["success"] is False and recs[1]["index"] == 42
    assert all(type(v) in (int, float, bool) for v in recs[0].values())


def test_summarize_accuracy_and_distance_stats():
    # 4 samples: labels 0..3; clean correct on 3 of 4; adversarial correct on 1 (sample 3).
    x = np.zeros((4, 1, 1, 4))
    x_adv = x.copy()
    x_adv[0, 0, 0, :1] = 0.1   # L0 1, L2 0.1
    x_adv[1, 0, 0, :2] = 0.2   # L0 2, L2 0.2*sqrt(2)
    x_adv[2, 0, 0, :4] = 0.3   # L0 4, L2 0.6
    x_adv[3, 0, 0, :1] = 0.05  # not successful
    recs = sample_records(np.arange(4), [0, 1, 2, 3], [0, 1, 2, 0], [9, 9, 9, 3], x, x_adv)
    s = summarize(recs)
    assert s["n"] == 4 and s["n_success"] == 3
    assert s["clean_accuracy"] == 0.75
    assert s["adversarial_accuracy"] == 0.25
    assert s["success_rate"] == 0.75
    assert s["l0"]["successful"] == {"mean": pytest.approx(7 / 3), "median": 2.0}
    assert s["l0"]["all"] == {"mean": 2.0, "median": 1.5}
    assert s["l0_fraction"]["successful"]["median"] == 0.5
    assert s["linf"]["successful"]["mean"] == pytest.approx(0.2)
    assert s["linf"]["all"]["median"] == pytest.approx(0.15)
    assert s["l2"]["successful"]["median"] == pytest.approx(0.2 * math.sqrt(2))


def test_summarize_without_successes_gives_nan_stats():
    x = np.zeros((2, 1, 1, 1))
    s = summarize(sample_records([0, 1], [1, 2], [1, 2], [1, 2], x, x))
    assert s["adversarial_accuracy"] == 1.0 and s["success_rate"] == 0.0
    assert math.isnan(s["l2"]["successful"]["mean"]) and math.isnan(s["l2"]["successful"]["median"])
    assert s["l2"]["all"] == {"mean": 0.0, "median": 0.0}


def test_summarize_empty():
    s = summarize([])
    assert s["n"] == 0 and math.isnan(s["adversarial_accuracy"])


# --------------------------------------------------------------------------- over runs, CSV
def _run(acc, l2):
    return {"clean_accuracy": 1.0, "adversarial_accuracy": acc, "success_rate": 1 - acc,
            **{d: {"successful": {"mean": l2, "median": l2}, "all": {"mean": l2, "median": l2}} for d in DISTANCES}}


def test_aggregate_mean_population_std_and_count():
    agg = aggregate([_run(0.1, 1.0), _run(0.2, float("nan")), _run(0.3, 2.0)])
    assert agg["adversarial_accuracy"] == {"mean": 0.2, "std": pytest.approx(math.sqrt(2 / 3) / 10), "n": 3}
    assert agg["success_rate"]["mean"] == 0.8  # not 0.7999999999999999
    assert agg["l2_successful_mean"] == {"mean": 1.5, "std": 0.5, "n": 2}  # a run without successes is skipped
    assert "fooling_rate" not in agg
    assert aggregate([{**_run(0.5, 1.0), "fooling_rate": 0.25}])["fooling_rate"] == {"mean": 0.25, "std": 0.0, "n": 1}


def test_aggregate_of_one_run_prints_without_std():
    agg = aggregate([_run(0.25, 1.0)])
    assert agg["adversarial_accuracy"]["n"] == 1 and pm(agg["adversarial_accuracy"]) == "0.2500"


def test_records_csv_file(tmp_path):
    x, x_adv = _pair()
    recs = sample_records([10, 42], [3, 7], [3, 7], [5, 7], x, x_adv)
    recs[0]["target"], recs[1]["target"] = 5, ""
    recs[1]["l2"] = 0.1 + 0.2  # 0.30000000000000004
    path = atomic_write_text(tmp_path / "s.csv", records_csv(recs))
    rows = list(csv.DictReader(open(path, newline="")))
    assert list(rows[0]) == list(RECORD_FIELDS)
    assert rows[0]["index"] == "10" and rows[0]["success"] == "True" and rows[0]["target"] == "5"
    assert rows[1]["target"] == "" and rows[1]["success"] == "False"
    assert rows[0]["l2"] == "0.5" and rows[0]["linf"] == "0.4" and rows[0]["l0"] == "2"
    assert rows[1]["l2"] == "0.3"  # written without binary noise
    recs[0]["counted"], recs[1]["counted"] = True, False
    rows = list(csv.DictReader(records_csv(recs).splitlines()))
    assert list(rows[0])[-1] == "counted" and [r["counted"] for r in rows] == ["True", "False"]
