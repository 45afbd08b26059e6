"""The report task on hand-made attack run folders (results.json only): models that share arch and
bits told apart, several run folders for one point (newest plotted, and said so), no "± 0.0000"
for one run, CSV without binary noise."""
import csv
import json
import textwrap

import pytest

from annt import cli
from annt.tasks.report import choose_plotted, collect, label_models, markdown_table, series_for

TAGS = {32: "fp", 1: "1bit", 2: "2bit", 4: "4bit", 8: "8bit", 12: "12bit", 16: "16bit"}


def attack_run(root, name, checkpoint, bits, accs, arch="mnist_a", attack="fgsm", eps=0.2):
    """A finished attack run folder: results.json as the attack task writes it (the parts report reads)."""
    d = root / name
    d.mkdir(parents=True)
    n = len(accs)
    mean = sum(accs) / n
    std = (sum((a - mean) ** 2 for a in accs) / n) ** 0.5

    def stat(v, s=0.0):
        return {"mean": v, "std": s, "n": n}

    res = {"task": "attack", "complete": True, "attack": attack, "params": {"eps": eps}, "targeted": False,
           "dataset": "mnist", "source_model": {"arch": arch, "bits": {"weights": bits, "activations": bits,
                                                                      "label": TAGS[bits]},
                                                "checkpoint": str(checkpoint)},
           "runs": [{"n": 10, "adversarial_accuracy": a} for a in accs],
           "aggregate": {"adversarial_accuracy": stat(mean, std), "success_rate": stat(1 - mean),
                         "l2_successful_mean": stat(1.5), "linf_successful_mean": stat(0.2),
                         "l0_successful_mean": stat(30.0)}}
    (d / "results.json").write_text(json.dumps(res))
    return d


@pytest.fixture
def runs(tmp_path):
    m = tmp_path / "models"
    r = tmp_path / "runs"
    return {
        "a4": attack_run(r, "20260101-100000-attack-a4", m / "mnist_a-4bit", 4, [0.25]),
        "bn4": attack_run(r, "20260101-100100-attack-bn4", m / "mnist_a-bn-4bit", 4, [0.5, 0.7]),
        "afp": attack_run(r, "20260101-100200-attack-afp", m / "mnist_a-fp", 32, [0.1 + 0.2]),
        "bnfp_old": attack_run(r, "20260101-090000-attack-bnfp", m / "mnist_a-bn-fp", 32, [0.9]),
        "bnfp_new": attack_run(r, "20260102-090000-attack-bnfp", m / "mnist_a-bn-fp", 32, [0.8]),
        "lenet": attack_run(r, "20260101-100300-attack-lenet", m / "lenet5-4bit", 4, [0.4], arch="lenet5"),
    }


def test_models_sharing_arch_and_bits_are_told_apart(runs):
    rows = collect(runs.values())
    label_models(rows)
    by_run = {r["run"]: r for r in rows}
    assert by_run[runs["a4"].name]["model"] == "mnist_a-4bit"
    assert by_run[runs["bn4"].name]["model"] == "mnist_a-bn-4bit"
    assert by_run[runs["afp"].name]["model"] == "mnist_a-fp"
    assert by_run[runs["lenet"].name]["model"] == "lenet5"  # nothing else shares lenet5 at 4 bits
    assert {r["run"]: r["family"] for r in rows} == {
        runs["a4"].name: "mnist_a", runs["afp"].name: "mnist_a", runs["bn4"].name: "mnist_a-bn",
        runs["bnfp_old"].name: "mnist_a-bn", runs["bnfp_new"].name: "mnist_a-bn", runs["lenet"].name: "lenet5"}


def test_every_model_of_an_ambiguous_arch_is_named_by_folder(runs):
    rows = collect([runs["a4"], runs["bn4"], runs["bnfp_new"]])  # only the bn model at fp
    label_models(rows)
    assert [r["model"] for r in rows] == ["mnist_a-4bit", "mnist_a-bn-4bit", "mnist_a-bn-fp"]  # not "mnist_a"


def test_newest_of_several_runs_for_one_point_is_plotted(runs):
    rows = collect(runs.values())
    label_models(rows)
    several = choose_plotted(rows)
    assert several == [{"point": "fgsm eps=0.2 mnist_a-bn-fp FP", "plotted": runs["bnfp_new"].name,
                        "others": [runs["bnfp_old"].name]}]
    assert [r["run"] for r in rows if not r["plotted"]] == [runs["bnfp_old"].name]
    acc = series_for(rows, "adversarial_accuracy")
    assert acc == {"fgsm eps=0.2 (mnist_a)": {(4, 4): 0.25, (32, 32): 0.1 + 0.2},  # as results.json has it
                   "fgsm eps=0.2 (mnist_a-bn)": {(4, 4): 0.6, (32, 32): 0.8},  # 0.8: the newer bn-fp run
                   "fgsm eps=0.2 (lenet5)": {(4, 4): 0.4}}


def test_markdown_row_has_std_only_for_several_runs(runs):
    rows = collect([runs["a4"], runs["bn4"]])
    label_models(rows)
    choose_plotted(rows)
    lines = markdown_table(rows).splitlines()
    assert lines[0].startswith("| attack | setting | model | bits | runs | samples | adversarial accuracy |")
    a4 = next(x for x in lines if "mnist_a-4bit" in x)
    bn4 = next(x for x in lines if "mnist_a-bn-4bit" in x)
    assert "| 1 | 10 | 0.2500 | 0.7500 |" in a4 and "±" not in a4  # one run: no "± 0.0000"
    assert "| 2 | 20 | 0.6000 ± 0.1000 |" in bn4
    assert a4.endswith(f"| yes | {runs['a4'].name} |")


def test_report_task_writes_labelled_table_csv_and_says_what_is_plotted(tmp_path, runs):
    cfg = tmp_path / "rep.yaml"
    cfg.write_text(textwrap.dedent(f"""
        task: report
        output_dir: {tmp_path / 'out'}
        report: {{runs: ["{tmp_path / 'runs'}/*-attack-*"]}}
        """))
    assert cli.main([str(cfg)]) == 0
    (run,) = (tmp_path / "out").iterdir()
    md = (run / "report.md").read_text()
    assert "the plots show the newest" in md  # the rule, in the header
    assert "## Several run folders for one point" in md
    assert f"- fgsm eps=0.2 mnist_a-bn-fp FP: plotted `{runs['bnfp_new'].name}`; not plotted: `{runs['bnfp_old'].name}`" in md
    assert "± 0.0000" not in md
    table = [x for x in md.splitlines() if x.startswith("| fgsm")]
    assert [x.split(" | ")[2:4] for x in table] == [  # lenet5, then mnist_a, then mnist_a-bn; FP first in each
        ["lenet5", "4bit"], ["mnist_a-fp", "fp"], ["mnist_a-4bit", "4bit"], ["mnist_a-bn-fp", "fp"],
        ["mnist_a-bn-fp", "fp"], ["mnist_a-bn-4bit", "4bit"]]
    rows = list(csv.DictReader(open(run / "report.csv", newline="")))
    afp = next(r for r in rows if r["model"] == "mnist_a-fp")
    assert afp["adversarial_accuracy"] == "0.3" and afp["success_rate"] == "0.7"  # not 0.30000000000000004
    assert [r["plotted"] for r in rows if r["model"] == "mnist_a-bn-fp"] == ["False", "True"]
    log = (run / "log.txt").read_text()
    assert f"2 run folders for fgsm eps=0.2 mnist_a-bn-fp FP: plotting the newest, {runs['bnfp_new'].name}" in log
    res = json.loads((run / "results.json").read_text())
    assert res["plots"] == {"adversarial_accuracy": "accuracy_vs_bits.png", "l2_successful_mean": "l2_vs_bits.png"}
    assert (run / "accuracy_vs_bits.png").read_bytes()[:4] == b"\x89PNG"
