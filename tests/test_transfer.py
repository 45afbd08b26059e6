"""Transfer-matrix labels and order from card.json and set metadata only (no TensorFlow), the
refusal of sources or targets that would share a label, cells and the Markdown matrix, and the
shipped 7 x 7 config."""
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

from annt.evaluation.transfer import (Axis, LabelCollision, cells, check_unique_labels, markdown_matrix, matrix,
                                      source_facts)

ROOT = Path(__file__).resolve().parent.parent
ORDER = ["FP", "1", "2", "4", "8", "12", "16"]
TAGS = {32: "fp", 1: "1bit", 2: "2bit", 4: "4bit", 8: "8bit", 12: "12bit", 16: "16bit"}


def model(root: Path, name: str, bits, arch="mnist_a", batchnorm=False) -> Path:
    """A model folder with only a card (labels need nothing else)."""
    w, a = (bits, bits) if isinstance(bits, int) else bits
    tag = TAGS[w] if w == a else f"w{w}a{a}"
    d = root / name
    d.mkdir(parents=True)
    (d / "card.json").write_text(json.dumps({
        "arch": arch, "bits": {"weights": w, "activations": a, "label": tag}, "dataset": "mnist",
        "batchnorm": batchnorm, "quantize_first_last": False, "quantize_last_hidden": False}))
    return d


def source(root: Path, name: str, on: Path | None, run_folder=True) -> Path:
    """An attack run folder (or a bare .npz) whose set was made on model folder ``on``;
    ``on=None`` gives an ANNT 3-key set without metadata."""
    arrays = {"images": np.zeros((2, 28, 28, 1), np.float32), "labels": np.zeros(2, np.int64),
              "image_index": np.arange(2)}
    if on is not None:
        card = json.loads((on / "card.json").read_text())
        arrays["metadata"] = np.array(json.dumps({"attack": "fgsm", "dataset": "mnist", "source_model": {
            "arch": card["arch"], "bits": card["bits"], "checkpoint": str(on)}}))
    if run_folder:
        (root / name).mkdir(parents=True)
        path = root / name / "adversarial_run0.npz"
    else:
        root.mkdir(parents=True, exist_ok=True)
        path = root / name
    np.savez(path, **arrays)
    return path.parent if run_folder else path


@pytest.fixture
def zoo(tmp_path):
    """mnist_a-<bits> and mnist_a-bn-<bits> for every width, created in folder-name order (fp last)."""
    plain, bn = {}, {}
    for k in sorted(TAGS, key=lambda k: TAGS[k]):
        plain[k] = model(tmp_path / "models", f"mnist_a-{TAGS[k]}", k)
        bn[k] = model(tmp_path / "models", f"mnist_a-bn-{TAGS[k]}", k, batchnorm=True)
    return plain, bn


# --------------------------------------------------------------------------- labels and order
def test_bit_labels_when_unique_ordered_fp_first(tmp_path, zoo):
    plain, _ = zoo
    targets = [str(p) for p in plain.values()]  # 12bit, 16bit, 1bit, 2bit, 4bit, 8bit, fp
    sources = [str(source(tmp_path / "runs", f"20260101-000000-attack-m-{TAGS[k]}", plain[k])) for k in plain]
    rows, cols = check_unique_labels(sources, targets)
    assert list(rows.labels) == list(cols.labels) == ORDER
    assert rows.by == cols.by == "bits"
    assert [Path(p).name for p in cols.paths] == [f"mnist_a-{TAGS[k]}" for k in (32, 1, 2, 4, 8, 12, 16)]
    assert [Path(p).name for p in rows.paths] == [f"20260101-000000-attack-m-{TAGS[k]}" for k in (32, 1, 2, 4, 8, 12, 16)]
    assert (rows.title("source"), cols.title("target")) == ("source model bits", "target model bits")


def test_batchnorm_and_plain_models_sharing_bits_are_labelled_by_folder(zoo):
    """What models/mnist_a-* gave: 14 columns, two of each width; now told apart, FP first."""
    plain, bn = zoo
    _, cols = check_unique_labels([], [str(p) for p in (*plain.values(), *bn.values())])
    assert cols.by == "model folder" and cols.title("target") == "target model"
    assert list(cols.labels) == [name for k in (32, 1, 2, 4, 8, 12, 16)
                                 for name in (f"mnist_a-{TAGS[k]}", f"mnist_a-bn-{TAGS[k]}")]
    assert [Path(p).name for p in cols.paths] == list(cols.labels)


def test_unique_bits_of_different_families_are_labelled_by_folder(tmp_path, zoo):
    plain, bn = zoo
    lenet = model(tmp_path / "models", "lenet5-2bit", 2, arch="lenet5")
    _, cols = check_unique_labels([], [str(plain[32]), str(bn[4]), str(lenet)])
    assert list(cols.labels) == ["mnist_a-fp", "lenet5-2bit", "mnist_a-bn-4bit"]  # still in bit order


def test_sources_made_on_models_sharing_bits_are_labelled_by_model_folder(tmp_path, zoo):
    plain, bn = zoo
    a = source(tmp_path / "runs", "20260101-000000-attack-matrix-fgsm-mnist_a-4bit", plain[4])
    b = source(tmp_path / "runs", "20260101-000100-attack-matrix-fgsm-mnist_a-4bit", bn[4])  # the same run name
    rows, _ = check_unique_labels([str(a), str(b)], [])
    assert rows.by == "model folder" and list(rows.labels) == ["mnist_a-4bit", "mnist_a-bn-4bit"]
    assert rows.label(str(b)) == "mnist_a-bn-4bit"


def test_two_runs_on_one_model_are_labelled_by_run_folder(tmp_path, zoo):
    plain, _ = zoo
    b = source(tmp_path / "runs", "20260102-000000-attack-pgd", plain[4])
    a = source(tmp_path / "runs", "20260101-000000-attack-fgsm", plain[4])
    fp = source(tmp_path / "runs", "20260103-000000-attack-fgsm", plain[32])
    rows, _ = check_unique_labels([str(b), str(a), str(fp)], [])
    assert rows.by == "run folder" and rows.title("source") == "source set"
    assert list(rows.labels) == ["20260103-000000-attack-fgsm", "20260101-000000-attack-fgsm",
                                 "20260102-000000-attack-pgd"]  # FP first, then by name


def test_annt_sets_without_metadata_are_labelled_by_file_name(tmp_path):
    a = source(tmp_path / "sets", "annt_fgsm_4bit.npz", None, run_folder=False)
    b = source(tmp_path / "sets", "annt_fgsm_2bit.npz", None, run_folder=False)
    assert source_facts(a)["bits"] is None
    rows, _ = check_unique_labels([str(a), str(b)], [])
    assert list(rows.labels) == ["annt_fgsm_2bit.npz", "annt_fgsm_4bit.npz"]


# --------------------------------------------------------------------------- refusal
def test_same_folder_name_twice_is_refused_in_one_line(tmp_path):
    a = model(tmp_path / "a", "mnist_a-4bit", 4)
    b = model(tmp_path / "b", "mnist_a-4bit", 4)
    with pytest.raises(LabelCollision) as err:
        check_unique_labels([], [str(a), str(b)])
    e = err.value
    assert isinstance(e, ValueError) and "\n" not in str(e)
    assert e.key == "transfer.targets" and e.value == [str(a), str(b)]
    assert str(e).startswith(f"transfer.targets: {a} and {b}: ") and "'mnist_a-4bit'" in e.reason


def test_sources_sharing_a_file_name_are_refused(tmp_path, zoo):
    plain, _ = zoo
    a = source(tmp_path / "x", "adv.npz", plain[4], run_folder=False)
    b = source(tmp_path / "y", "adv.npz", plain[4], run_folder=False)
    with pytest.raises(LabelCollision, match=r"^transfer\.sources: .*both would be labelled 'adv\.npz'") as err:
        check_unique_labels([str(a), str(b)], [str(plain[4])])
    assert err.value.key == "transfer.sources"


def test_the_same_path_twice_is_refused(zoo):
    plain, _ = zoo
    with pytest.raises(LabelCollision, match="the same set or model twice"):
        check_unique_labels([], [str(plain[4]), str(plain[4]) + "/"])


def test_labels_need_no_tensorflow(tmp_path, zoo):
    plain, bn = zoo
    src = source(tmp_path / "runs", "r", plain[4])
    code = ("import sys, json; from annt.evaluation.transfer import check_unique_labels; "
            f"r, c = check_unique_labels([{str(src)!r}], {json.dumps([str(p) for p in (*plain.values(), *bn.values())])}); "
            "assert len(c.labels) == 14 and r.labels == ('4',); "
            "sys.exit(any(m in sys.modules for m in ('tensorflow', 'keras', 'art')))")
    assert subprocess.run([sys.executable, "-c", code], cwd=ROOT).returncode == 0


# --------------------------------------------------------------------------- cells and matrix
def _long(source, target, run, acc):
    return {"source": source, "source_model": "m", "source_bits": None, "attack": "fgsm", "target": target,
            "target_model": "t", "target_bits": None, "run": run, "n_used": 10, "adversarial_accuracy": acc,
            "transfer_rate": None if acc is None else 1 - acc, "l2_successful_mean": 1.0,
            "l0_successful_mean": 2.0, "l0_fraction_successful_mean": 0.1, "linf_successful_mean": 0.2,
            "l2_successful_median": 1.0}


def test_cells_mean_std_over_runs_without_noise():
    rows = [_long("s", "t", 0, 0.1), _long("s", "t", 1, 0.2), _long("s", "u", 0, 0.5)]
    st, su = cells(rows)
    assert (st["runs"], st["adversarial_accuracy_mean"], st["adversarial_accuracy_std"]) == (2, 0.15, 0.05)
    assert st["transfer_rate_mean"] == 0.85 and st["l2_successful_mean"] == 1.0 and st["l2_successful_std"] == 0.0
    assert st["linf_successful_mean_mean"] == 0.2 and st["n_used_mean"] == 10
    assert (su["runs"], su["adversarial_accuracy_mean"]) == (1, 0.5)


def test_markdown_matrix_shows_std_only_for_several_runs():
    rows = [_long("s", "t", 0, 0.1), _long("s", "t", 1, 0.2), _long("s", "u", 0, 0.5)]
    axis = Axis(("s",), ("FP",), "bits")
    mat = matrix(cells(rows), rows=axis, cols=Axis(("t", "u", "v"), ("FP", "4", "8"), "bits"))
    assert mat.runs.tolist() == [[2, 1, 0]] and np.isnan(mat.std[0, 1])  # one run: no spread
    md = markdown_matrix(mat, "adversarial accuracy")
    assert md.splitlines() == ["### adversarial accuracy", "", "| source \\ target | FP | 4 | 8 |", "|---|---|---|---|",
                               "| FP | 0.150 ± 0.050 | 0.500 | n/a |"]


# --------------------------------------------------------------------------- the shipped 7 x 7 config
def test_shipped_7x7_config_names_each_width_once():
    path = ROOT / "configs" / "transfer" / "mnist_a_fgsm_7x7.yaml"
    t = yaml.safe_load(path.read_text())["transfer"]
    targets = [str((path.parent / p).resolve()) for p in t["targets"]]
    assert len(targets) == 7 and not any("*" in p or "-bn-" in p for p in targets)
    _, cols = check_unique_labels([], targets)  # the shipped model folders' cards
    assert list(cols.labels) == ORDER and cols.by == "bits"
    assert {json.loads((Path(p) / "card.json").read_text())["batchnorm"] for p in targets} == {False}
    tails = [p.rsplit("mnist_a-", 1)[1] for p in t["sources"]]
    assert len(t["sources"]) == 7 and tails == [TAGS[k] for k in (32, 1, 2, 4, 8, 12, 16)]
