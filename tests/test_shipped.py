"""Shipped configs, docs and models stay valid; the quickstart runs end to end."""
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from annt.config import load_config
from annt.errors import ConfigError
from annt.tasks.train import resolved_train_settings

ROOT = Path(__file__).resolve().parent.parent
CONFIGS = sorted(ROOT.glob("configs/**/*.yaml"))
# Configs that need something a fresh clone may lack: a CIFAR-10 model, attack runs made beforehand, or a paper
# pack's models before they are trained (each pack's ship_models.sh trains them).
NEEDS = {"cifar10": "models/resnet20-4bit", "transfer/mnist_a_fgsm_7x7.yaml": "runs/*-attack-matrix-fgsm",
         "report/attacks.yaml": "runs/*-attack-*", "papers/galloway2018/": "models/galloway-*",
         "papers/panda2019/": "models/fcn2-*"}


@pytest.mark.parametrize("path", CONFIGS, ids=[str(p.relative_to(ROOT / "configs")) for p in CONFIGS])
def test_shipped_config_validates(path):
    rel = str(path.relative_to(ROOT / "configs"))
    need = next((v for k, v in NEEDS.items() if k in rel and "train/" not in rel), None)
    if need is None:
        cfg = load_config(path)
        assert cfg["task"] in ("train", "attack", "infer", "transfer", "report", "diagnose", "grid")
        return
    try:
        load_config(path)
    except ConfigError as e:  # fails only for the missing prerequisite, with a one-line message
        assert "\n" not in str(e)
        assert any(s in str(e) for s in ("no such file or folder", "pattern matches nothing", "no such model folder"))


def test_configuration_page_is_generated_from_the_schema():
    from annt.docs import configuration_page

    page = (ROOT / "wiki" / "Configuration.md").read_text()
    assert page == configuration_page(), "run: python -m annt.docs > wiki/Configuration.md"


SHIPPED = sorted(p.parent for p in ROOT.glob("models/*/card.json"))


@pytest.mark.parametrize("folder", SHIPPED, ids=[p.name for p in SHIPPED])
def test_shipped_model_card_matches_its_folder_name(folder):
    # <arch>-<bits> is the ANNT-faithful graph, <arch>-bn-<bits> the batchnorm: true family.
    card = json.loads((folder / "card.json").read_text())
    arch, tag = folder.name.rsplit("-", 1)
    batchnorm = arch.endswith("-bn")
    arch = arch.removesuffix("-bn")
    assert card["arch"] == arch and card["bits"]["label"] == tag and card["dataset"] == "mnist"
    assert card["batchnorm"] is batchnorm
    assert card["test_accuracy"] is not None and card["val_accuracy"] is not None
    config = ROOT / "configs" / "train" / f"{folder.name}.yaml"
    cfg = load_config(config)  # the config that reproduces it builds the same graph
    assert cfg["model"]["arch"] == arch and cfg["model"]["batchnorm"] is batchnorm
    # ... with the same seed and recipe: epochs, optimizer, learning rate, schedule, batch, augmentation
    assert cfg["seed"] == card["seed"] and resolved_train_settings(cfg) == card["train_settings"]


@pytest.mark.parametrize("folder", SHIPPED, ids=[p.name for p in SHIPPED])
def test_shipped_model_graph_matches_its_card(folder):
    # Read the Keras archive's config.json (no TensorFlow needed): the saved graph must be the one the card
    # describes, e.g. a "-bn-" model really has BatchNorm and a 2-bit model really quantizes at 2 bits.
    import zipfile

    card = json.loads((folder / "card.json").read_text())
    with zipfile.ZipFile(folder / "model.keras") as z:
        layers = json.loads(z.read("config.json"))["config"]["layers"]
    kinds = [layer["class_name"] for layer in layers]
    assert ("BatchNormalization" in kinds) is card["batchnorm"]

    def bits(spec, name):  # a DoReFa quantizer spec's width; None (identity) is full precision
        if spec is None:
            return 32
        assert spec["name"] == name
        return spec["params"]["bits"]

    hidden = [bits(layer["config"]["kernel_quantizer"], "dorefa_weights") for layer in layers
              if layer["class_name"] in ("QuantConv2D", "QuantDense") and layer["config"]["name"] not in ("conv0", "linear")]
    assert hidden and set(hidden) == {card["bits"]["weights"]}
    act = {bits(layer["config"]["quantizer"], "dorefa_activations") for layer in layers if layer["class_name"] == "QuantActivation"}
    assert act == (set() if card["bits"]["activations"] == 32 else {card["bits"]["activations"]})


def _shipped_layers(folder):
    import zipfile

    with zipfile.ZipFile(folder / "model.keras") as z:
        return json.loads(z.read("config.json"))["config"]["layers"]


@pytest.mark.parametrize("folder", SHIPPED, ids=[p.name for p in SHIPPED])
def test_shipped_model_file_is_what_build_model_builds_today(folder):
    # The stored graph (layer classes, names, quantizer specs, modules) is the one the current code
    # builds from the card, so the shipped files are not an older format that only loads by accident.
    from keras.saving import serialize_keras_object

    from annt.models.architectures import build_model

    card = json.loads((folder / "card.json").read_text())
    model = build_model(card["arch"], tuple(card["input_shape"]), card["num_classes"], card["bits"]["weights"],
                        card["bits"]["activations"], card["quantize_first_last"], card["batchnorm"],
                        card["quantize_last_hidden"])
    built = json.loads(json.dumps(serialize_keras_object(model)))["config"]["layers"]

    def summary(layers):
        return [(l["class_name"], l["name"], l.get("module"), l["config"].get("kernel_quantizer"),
                 l["config"].get("quantizer"), sorted(l["config"])) for l in layers]

    assert summary(_shipped_layers(folder)) == summary(built)


#: Logits of every shipped model on the first 64 images of the shipped MNIST sample, computed with the
#: code before quantizers became layer arguments (commit ebb43b1); float32, one array per folder name.
REFERENCE_LOGITS = ROOT / "tests" / "data" / "shipped_logits.npz"


def test_every_shipped_model_has_reference_logits():
    with np.load(REFERENCE_LOGITS) as ref:
        assert sorted(k for k in ref.files if k != "image_index") == [p.name for p in SHIPPED]


@pytest.mark.parametrize("folder", SHIPPED, ids=[p.name for p in SHIPPED])
def test_shipped_model_gives_its_reference_logits_on_real_mnist(folder):
    from annt.data import load_sample
    from annt.models.folder import load_model_folder

    with np.load(REFERENCE_LOGITS) as ref:
        want, index = ref[folder.name], ref["image_index"]
    ds = load_sample()
    np.testing.assert_array_equal(ds.index[:len(index)], index)  # the same real test images
    model, _ = load_model_folder(folder)
    got = model(ds.x[:len(index)], training=False).numpy()
    np.testing.assert_array_equal(got.argmax(1), want.argmax(1))
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-5)


def test_models_readme_table_is_generated_from_the_cards():
    from annt.docs import models_table

    readme = (ROOT / "models" / "README.md").read_text()
    assert models_table() in readme, "run: python -m annt.docs models, and paste into models/README.md"


def test_models_table_marks_targets_met_and_missed(tmp_path):
    from annt.docs import models_table

    def card(name, arch, label, test_acc, batchnorm):
        (tmp_path / name).mkdir()
        (tmp_path / name / "card.json").write_text(json.dumps(
            {"arch": arch, "bits": {"label": label}, "val_accuracy": 0.5, "test_accuracy": test_acc,
             "batchnorm": batchnorm, "best_epoch": 3, "epochs": 4}))

    card("mnist_a-2bit", "mnist_a", "2bit", 0.9899, False)    # target 0.990: missed
    card("mnist_a-bn-2bit", "mnist_a", "2bit", 0.9900, True)  # met exactly
    card("lenet5-1bit", "lenet5", "1bit", 0.975, False)       # 1-bit target 0.975: met
    rows = models_table(tmp_path).splitlines()[2:]
    assert [r.split(" | ")[0] for r in rows] == ["| `models/lenet5-1bit`", "| `models/mnist_a-2bit`", "| `models/mnist_a-bn-2bit`"]
    assert rows[0].split(" | ")[5:7] == ["≥ 0.975", "yes"]
    assert rows[1].split(" | ")[1] == "ANNT (no BN)" and rows[1].split(" | ")[5:8] == ["≥ 0.990", "**no**", "3 / 4"]
    assert rows[2].split(" | ")[1] == "BatchNorm" and rows[2].split(" | ")[4:7] == ["0.9900", "≥ 0.990", "yes"]


@pytest.mark.skipif(not (ROOT / "models" / "mnist_a-4bit").is_dir(), reason="shipped model missing")
def test_quickstart_end_to_end(tmp_path):
    r = subprocess.run([sys.executable, str(ROOT / "main.py"), str(ROOT / "configs" / "quickstart.yaml"),
                        "--set", f"output_dir={tmp_path}", "--set", "attack.samples=20"],
                       capture_output=True, text=True, cwd=tmp_path, timeout=600)
    assert r.returncode == 0, r.stderr[-2000:]
    assert "adversarial accuracy" in r.stdout and "L2" in r.stdout
    run = next(tmp_path.glob("*-attack-quickstart-pgd-mnist_a-4bit"))
    res = json.loads((run / "results.json").read_text())
    assert res["runs"][0]["n"] == 20 and res["source_model"]["arch"] == "mnist_a"
    assert res["runs"][0]["linf"]["all"]["mean"] <= 0.1 + 1e-6


def test_bad_config_subprocess_prints_one_line_and_no_traceback(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("task: attack\nattack: {name: fgsm, samples: -1}\n")
    r = subprocess.run([sys.executable, "-m", "annt", str(bad)], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert r.returncode == 2
    assert r.stderr.strip().count("\n") == 0 and "Traceback" not in r.stderr
    assert "attack.samples = -1" in r.stderr
    assert not (tmp_path / "runs").exists() and not list(tmp_path.glob("*/"))


@pytest.mark.parametrize("value", ["0", "-2", "two", "1.5"])
def test_threads_option_rejects_bad_values_in_one_line(value):
    r = subprocess.run([sys.executable, str(ROOT / "main.py"), str(ROOT / "configs" / "quickstart.yaml"), "--threads", value],
                       capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert r.stderr.strip().count("\n") == 0 and "--threads must be a whole number >= 1" in r.stderr


def test_threads_option_limits_tensorflow_before_its_first_op():
    code = ("import tensorflow as tf; from annt.cli import prepare_tensorflow; prepare_tensorflow(1); "
            "print(tf.config.threading.get_intra_op_parallelism_threads(), tf.config.threading.get_inter_op_parallelism_threads(), "
            "float(tf.constant(2.0) * 3))")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    assert r.stdout.split() == ["1", "1", "6.0"]
