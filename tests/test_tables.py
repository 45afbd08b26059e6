"""annt.tables: mean ± std, the one ± format, CSV and JSON without binary noise (checked in real files)."""
import csv
import json
import math

import numpy as np
import pytest

from annt.io import atomic_write_json, atomic_write_text
from annt.tables import clean, clean_float, fmt, markdown, mean_std, pm, to_csv


# --------------------------------------------------------------------------- mean ± std
def test_mean_std_is_population_std_and_skips_missing():
    s = mean_std([0.2, None, 0.4, float("nan"), np.float32(0.6)])
    assert s["n"] == 3
    assert s["mean"] == pytest.approx(0.4)
    assert s["std"] == pytest.approx(math.sqrt(((0.2 - 0.4) ** 2 + 0 + (0.6 - 0.4) ** 2) / 3))  # ddof=0


def test_mean_std_without_values_is_nan_with_n_zero():
    s = mean_std([None, float("nan")])
    assert s["n"] == 0 and math.isnan(s["mean"]) and math.isnan(s["std"])
    assert pm(s) == "n/a"


def test_mean_std_has_no_binary_noise():
    assert np.mean([0.1, 0.2]) != 0.15  # numpy's answer is 0.15000000000000002 ...
    assert mean_std([0.1, 0.2]) == {"mean": 0.15, "std": 0.05, "n": 2}  # ... ours is not


def test_pm_shows_std_only_for_more_than_one_run():
    assert pm(mean_std([0.25])) == "0.2500"  # one run: no "± 0.0000"
    assert pm({"mean": 0.25, "std": 0.0, "n": 1}) == "0.2500"
    assert pm(mean_std([0.2, 0.3])) == "0.2500 ± 0.0500"
    assert pm(mean_std([0.2, 0.3]), digits=2) == "0.25 ± 0.05"
    assert pm({"mean": 0.5, "std": None, "n": 3}) == "0.5000"
    assert pm({"mean": None, "std": 0.1, "n": 3}) == "n/a"


def test_fmt():
    assert fmt(0.123456) == "0.1235" and fmt(1, digits=1) == "1.0"
    assert fmt(None) == fmt(float("nan")) == fmt(np.float64("nan")) == "n/a"


# --------------------------------------------------------------------------- cleaning
@pytest.mark.parametrize("noisy, tidy", [(0.1 + 0.2, 0.3), (-(0.1 + 0.2), -0.3), (float(np.std([0.1, 0.3])), 0.1),
                                         (float(np.mean([0.1, 0.2, 0.3])), 0.2), (1.1 * 3, 3.3), (0.7 + 0.1, 0.8)])
def test_clean_float_drops_binary_noise(noisy, tidy):
    assert noisy != tidy and clean_float(noisy) == tidy


@pytest.mark.parametrize("value", [5 / 6, 1 / 3, float(np.float32(0.9912)), 2 ** -40, 123456789.123456789, 0.0,
                                   1e300, 0.25])
def test_clean_float_keeps_genuine_values_exactly(value):
    assert clean_float(value) == value  # e.g. a float32 accuracy read back from JSON compares equal


def test_clean_float_passes_nan_and_inf():
    assert math.isnan(clean_float(float("nan"))) and clean_float(float("inf")) == float("inf")


def test_clean_walks_nested_containers_and_numpy_types():
    out = clean({"a": [0.1 + 0.2, (np.float32(0.5), np.int64(3))], "b": {"c": np.bool_(True)},
                 "d": np.array([0.1 + 0.2, 1.0]), "e": "0.30000000000000004"})
    assert out == {"a": [0.3, [0.5, 3]], "b": {"c": True}, "d": [0.3, 1.0], "e": "0.30000000000000004"}
    assert type(out["a"][1][1]) is int and type(out["b"]["c"]) is bool and type(out["a"][1][0]) is float


# --------------------------------------------------------------------------- CSV and JSON files
def test_csv_file_has_clean_floats_empty_missing_and_given_columns(tmp_path):
    rows = [{"name": "a", "acc": 0.1 + 0.2, "l2": float("nan"), "extra": 1},
            {"name": "b|c", "acc": np.float64(5 / 6), "l2": None},
            {"name": "d", "acc": np.float32(0.5)}]  # no "l2" at all
    path = atomic_write_text(tmp_path / "t.csv", to_csv(rows, ["name", "acc", "l2"]))
    text = path.read_text()
    assert "0.30000000000000004" not in text
    assert text.splitlines() == ["name,acc,l2", "a,0.3,", "b|c,0.8333333333333334,", "d,0.5,"]
    back = list(csv.DictReader(open(path, newline="")))
    assert [r["acc"] for r in back] == ["0.3", "0.8333333333333334", "0.5"]
    assert float(back[1]["acc"]) == 5 / 6  # genuine digits survive


def test_csv_columns_default_to_first_row_and_empty_rows():
    assert to_csv([{"x": 1, "y": 2}, {"y": 3, "z": 4}]) == "x,y\n1,2\n,3\n"
    assert to_csv([], ["x"]) == "x\n"


def test_json_file_has_clean_floats_null_for_nan_and_is_stable(tmp_path):
    obj = {"mean": 0.1 + 0.2, "std": float(np.std([0.1, 0.3])), "frac": 5 / 6, "nan": float("nan"),
           "arr": np.array([0.1 + 0.2]), "n": np.int64(2), "f32": np.float32(0.9912)}
    path = atomic_write_json(tmp_path / "r.json", obj)
    text = path.read_text()
    assert "0.30000000000000004" not in text and "0.09999999999999999" not in text
    back = json.loads(text)
    assert back == {"mean": 0.3, "std": 0.1, "frac": 5 / 6, "nan": None, "arr": [0.3], "n": 2,
                    "f32": float(np.float32(0.9912))}
    again = atomic_write_json(tmp_path / "r2.json", back).read_text()
    assert again == text  # read, write again: the same bytes


# --------------------------------------------------------------------------- Markdown
def test_markdown_table_and_pipe_escaping():
    md = markdown(["source \\ target", "FP", "4"], [["FP", "0.1", pm(mean_std([0.2]))], ["a|b", 1, None]])
    assert md.splitlines() == ["| source \\ target | FP | 4 |", "|---|---|---|", "| FP | 0.1 | 0.2000 |",
                               "| a\\|b | 1 | None |"]
