"""Config validation: every bad input gives ONE line naming file, key path, value and what is allowed."""
import textwrap

import pytest
import yaml

from annt import cli
from annt.config import describe_schema, load_config, parse_override
from annt.errors import ConfigError

GOOD = """
task: attack
name: t
output_dir: out
data: {dataset: mnist, split: test, source: sample}
model: {arch: mnist_a, bits: 4, checkpoint: models/mnist_a-4bit}
attack: {name: fgsm, params: {eps: 0.1}, samples: 5}
"""


def write(tmp_path, text, name="c.yaml"):
    p = tmp_path / name
    p.write_text(textwrap.dedent(text))
    return p


def test_good_config_resolves_defaults_and_paths(tmp_path, fake_model_dir):
    cfg = load_config(write(tmp_path, GOOD))
    assert cfg["model"]["bits"] == {"weights": 4, "activations": 4}
    assert cfg["model"]["checkpoint"] == str(fake_model_dir)  # relative to the config file
    assert cfg["output_dir"] == str(tmp_path / "out")
    assert cfg["attack"]["select"] == "random" and cfg["attack"]["only_correct"] is True
    assert cfg["attack"]["params"]["eps"] == 0.1
    assert cfg["seed"] == 0 and cfg["data"]["val_size"] == 5000
    assert cfg["train"] is None  # sections a task does not use stay empty


TRAIN = """
task: train
output_dir: out
data: {dataset: mnist}
model: {arch: lenet5, bits: {weights: 2, activations: fp}}
"""


def test_bits_mapping_and_train_defaults(tmp_path):
    cfg = load_config(write(tmp_path, TRAIN))
    assert cfg["model"]["bits"] == {"weights": 2, "activations": 32}
    assert cfg["name"] == "c" and cfg["train"]["batch_size"] is None and cfg["train"]["epochs"] is None  # arch defaults
    with pytest.raises(ConfigError, match=r"train.learning_rate = \.nan \(from --set\): must be a number in \(0, inf\)"):
        load_config(write(tmp_path, TRAIN), ["train.learning_rate=.nan"])
    assert load_config(write(tmp_path, TRAIN), ["train.learning_rate=1e-3"])["train"]["learning_rate"] == 0.001
    cfg = load_config(write(tmp_path, TRAIN), ["model.bits=null"])
    assert cfg["model"]["bits"] == {"weights": 32, "activations": 32}  # train: null bits = fp
    with pytest.raises(ConfigError, match=r"model.arch = 'resnet20' \(from --set\): is built for cifar10"):
        load_config(write(tmp_path, TRAIN), ["model.arch=resnet20"])


def test_arch_and_bits_come_from_the_card(tmp_path, fake_model_dir):
    cfg = load_config(write(tmp_path, GOOD), ["model.arch=null", "model.bits=null"])
    assert cfg["model"]["arch"] == "mnist_a" and cfg["model"]["bits"] == {"weights": 4, "activations": 4}


def test_set_override_changes_value_and_is_validated(tmp_path, fake_model_dir):
    cfg = load_config(write(tmp_path, GOOD), ["attack.samples=20", "seed=7"])
    assert cfg["attack"]["samples"] == 20 and cfg["seed"] == 7
    with pytest.raises(ConfigError, match=r"attack\.samples = -1 \(from --set\): must be an integer in \[1, inf\)$"):
        load_config(write(tmp_path, GOOD), ["attack.samples=-1"])
    with pytest.raises(ConfigError, match="expected KEY.PATH=VALUE"):
        load_config(write(tmp_path, GOOD), ["attack.samples"])


def test_parse_override_types():
    assert parse_override("a.b=3") == (["a", "b"], 3)
    assert parse_override("a=fp") == (["a"], "fp")
    assert parse_override("a=[1, 2]") == (["a"], [1, 2])
    assert parse_override("a=null") == (["a"], None)
    assert parse_override('a=["m/a-[0-9]*bit", m/b]') == (["a"], ["m/a-[0-9]*bit", "m/b"])
    assert parse_override("a=b:c[1") == (["a"], "b:c[1")  # not YAML, not meant as a list: kept as a string
    with pytest.raises(ConfigError, match=r"does not parse as a YAML list or mapping \(expected ',' or '\]', but got '\['\); "
                                          r"quote items that hold brackets"):
        parse_override("a=[m/a-[0-9]*bit]")  # an unquoted glob with brackets inside a flow list


# (description, config edit as --set overrides or replacement text, expected fragment of the message)
BAD = [
    ("bits 3", ["model.bits=3"], "model.bits = 3 (from --set): allowed: fp, 1, 2, 4, 8, 12, 16"),
    ("negative samples", ["attack.samples=-1"], "attack.samples = -1"),
    ("zero runs", ["attack.runs=0"], "attack.runs = 0"),
    ("samples wrong type", ["attack.samples=ten"], "attack.samples = 'ten' (from --set): must be an integer"),
    ("unknown top key", ["sead=1"], "sead: unknown key in top level (did you mean 'seed'?)"),
    ("unknown nested key", ["attack.sample=3"], "attack.sample: unknown key in attack (did you mean 'samples'?)"),
    ("unknown dataset", ["data.dataset=mnsit"], "data.dataset = 'mnsit' (from --set): allowed: mnist, fashion_mnist, cifar10 (did you mean 'mnist'?)"),
    ("unknown arch", ["model.arch=resnet21"], "model.arch = 'resnet21'"),
    ("unknown attack", ["attack.name=fgms"], "attack.name = 'fgms'"),
    ("unknown task", ["task=atack"], "task = 'atack' (from --set): allowed: train, attack, infer, transfer, report, diagnose, grid (did you mean 'attack'?)"),
    ("bool wrong type", ["attack.only_correct=maybe"], "attack.only_correct = 'maybe' (from --set): must be true or false"),
    ("select choice", ["attack.select=best"], "attack.select = 'best'"),
    ("missing checkpoint file", ["model.checkpoint=nowhere/model"], "model.checkpoint = 'nowhere/model' (from --set): no such model folder: "),
    ("missing data_dir", ["data.data_dir=/no/such/dir"], "data.data_dir = '/no/such/dir'"),
    ("arch vs card", ["model.arch=lenet5"], "model.arch = 'lenet5' (from --set): does not match the checkpoint's card (arch 'mnist_a'"),
    ("bits vs card", ["model.bits=2"], "does not match the checkpoint's card (bits {'weights': 4, 'activations': 4}"),
    ("sample source on cifar", ["data.dataset=cifar10", "model.arch=resnet20"], "data.source = 'sample': the shipped sample is mnist/test only"),
    ("section not used", ["train.epochs=3"], "train: section not used by task 'attack'"),
    ("targeted without target", ["attack.targeted=true"], "attack.target = null: required when attack.targeted is true"),
    ("bad target", ["attack.targeted=true", "attack.target=prev"], "attack.target = 'prev'"),
    ("bad name chars", ["name=a/b"], "name = 'a/b' (from --set): use letters"),
    ("section not mapping", ["attack=5"], "attack = 5"),
    ("bits mapping bad key", ["model.bits={weight: 2, activations: 2}"], "a bits mapping needs exactly the keys weights and activations"),
    ("val_size range", ["data.val_size=-5"], "data.val_size = -5"),
    ("unknown attack param", ["attack.params={epz: 0.1}"], "attack.params.epz"),
    ("attack param range", ["attack.params={eps: -0.5}"], "attack.params.eps"),
    ("local source without dir", ["data.source=local"], "data.data_dir = null: required when data.source is local"),
    ("uap targeted", ["attack.name=uap", "attack.params={}", "attack.targeted=true", "attack.target=next"],
     "attack.targeted = true (from --set): uap has no targeted variant"),
    ("seed too big", ["seed=5000000000"], "seed = 5000000000 (from --set): must be an integer in [0, 4.29497e+09]"),
    ("more samples than the split", ["attack.samples=600", "attack.runs=2"],
     "samples x runs = 1200 but mnist/test (sample) has 1000 images"),
    ("model option vs card", ["model.batchnorm=true"], "model.batchnorm = true (from --set): does not match the checkpoint's card"),
    ("nan attack param", ["attack.params={eps: .nan}"], "attack.params.eps"),
]


@pytest.mark.parametrize("desc,overrides,fragment", BAD, ids=[b[0] for b in BAD])
def test_bad_config_one_line_exit_2_no_run_folder(tmp_path, fake_model_dir, capsys, desc, overrides, fragment):
    path = write(tmp_path, GOOD)
    rc = cli.main([str(path), *sum((["--set", o] for o in overrides), [])])
    err = capsys.readouterr().err
    assert rc == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert str(path) in lines[0]
    assert fragment in lines[0], lines[0]
    assert not (tmp_path / "out").exists()


BAD_FILES = [
    ("yaml syntax", "task: attack\nmodel: {arch: [\n", "YAML syntax error"),
    ("empty file", "", "config file is empty"),
    ("top level list", "- a\n- b\n", "top level must be a mapping"),
    ("missing task", "name: x\n", "task = <missing>: required"),
    ("transfer missing sources", "task: transfer\ntransfer: {targets: [models/mnist_a-4bit]}\n", "transfer.sources = <missing>: required"),
    ("transfer glob matches nothing", "task: transfer\ntransfer: {sources: [runs/*.npz], targets: [models/mnist_a-4bit]}\n",
     "runs/*.npz': pattern matches nothing"),
]


@pytest.mark.parametrize("desc,text,fragment", BAD_FILES, ids=[b[0] for b in BAD_FILES])
def test_bad_files(tmp_path, fake_model_dir, capsys, desc, text, fragment):
    path = write(tmp_path, text)
    assert cli.main([str(path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and fragment in err[0], err


def test_missing_config_file(tmp_path, capsys):
    assert cli.main([str(tmp_path / "nope.yaml")]) == 2
    assert "config file not found" in capsys.readouterr().err


def test_check_prints_resolved_config_and_creates_nothing(tmp_path, fake_model_dir, capsys):
    path = write(tmp_path, GOOD)
    assert cli.main([str(path), "--check", "--set", "attack.samples=3"]) == 0
    out = yaml.safe_load(capsys.readouterr().out)
    assert out["attack"]["samples"] == 3 and out["model"]["bits"]["weights"] == 4
    assert not (tmp_path / "out").exists()


def test_every_schema_key_is_documented():
    rows = describe_schema()
    assert len(rows) > 40
    for key, default, allowed, doc in rows:
        assert doc, f"{key} has no doc line"


def test_section_must_be_a_mapping_and_newlines_stay_on_one_line(tmp_path, fake_model_dir, capsys):
    p = write(tmp_path, GOOD.replace("output_dir: out", "output_dir: out\ninfer: [1, 2]"))
    with pytest.raises(ConfigError, match=r"infer = \[1, 2\]: must be a mapping of keys"):
        load_config(p)
    p = write(tmp_path, GOOD + '"bad\\nkey": 1\n')
    assert cli.main([str(p)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "bad\\nkey" in err


def test_set_paths_in_lists_resolve_from_the_working_directory(tmp_path, fake_model_dir, monkeypatch):
    src = tmp_path / "elsewhere" / "set.npz"
    src.parent.mkdir()
    import numpy as np

    x = np.zeros((1, 28, 28, 1), np.float32)
    np.savez(src, images=x, labels=np.zeros(1, np.int64), image_index=np.zeros(1, np.int64))
    cfgdir = tmp_path / "cfgs"
    cfgdir.mkdir()
    p = write(cfgdir, f"task: transfer\ntransfer: {{sources: [{src}], targets: [{fake_model_dir}]}}\n")
    monkeypatch.chdir(tmp_path)
    cfg = load_config(p, ["transfer.sources=[elsewhere/set.npz]"])
    assert cfg["transfer"]["sources"] == [str(src)]


def test_explicit_unfinished_run_folder_is_refused(tmp_path, fake_model_dir):
    run = tmp_path / "runs" / "20260101-000000-attack-x"
    run.mkdir(parents=True)
    (run / "config.resolved.yaml").write_text("task: attack\n")
    (run / "results.json").write_text('{"complete": false}')
    p = write(tmp_path, f"task: transfer\ntransfer: {{sources: [{run}], targets: [{fake_model_dir}]}}\n")
    with pytest.raises(ConfigError, match="that run folder did not finish"):
        load_config(p)


def test_resolved_config_revalidates_to_itself(tmp_path, fake_model_dir):
    """config.resolved.yaml in a run folder can be run again (sharing a run = sharing that file)."""
    cfg = load_config(write(tmp_path, GOOD))
    again = load_config(write(tmp_path, yaml.safe_dump(cfg), name="resolved.yaml"))
    assert again == cfg
