"""Shipped configs, docs and models stay valid; the quickstart runs end to end."""
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from annt.config import load_config
from annt.errors import ConfigError
from annt.tasks.train import resolved_train_settings
from annt.training.settings import card_train_settings

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
#: The zoo's names: <arch>-<bits> is the ANNT-faithful graph, <arch>-bn-<bits> the batchnorm: true family and
#: <arch>-annt-<bits> the ANNT-faithful graph trained with ANNT's recipe (an L2 penalty on the dense kernels).
ZOO_NAME = re.compile(r"(?P<arch>[a-z][a-z0-9_]*?)(?:-(?P<family>bn|annt))?-(?P<tag>fp|\d+bit)")
#: The paper packs' names, as their ship_models.sh write them: galloway-<type><K>[-plus]-seed<N> (Galloway et
#: al.; "-plus": FGSM training) and fcn<1|2>-<bnn|fp>-in<input bits>b[-rfgsm]-seed<N> (Panda et al.).
PACK_NAME = re.compile(r"(?:(?P<galloway>galloway)-(?P<type>[ABCS])(?P<filters>\d+)(?P<plus>-plus)?"
                       r"|(?P<fcn>fcn[12])-(?P<kind>bnn|fp)-in(?P<input_bits>\d)b(?P<rfgsm>-rfgsm)?)-seed(?P<seed>\d+)")
ZOO = [p for p in SHIPPED if ZOO_NAME.fullmatch(p.name)]
PACK = [p for p in SHIPPED if PACK_NAME.fullmatch(p.name)]


def _card(folder):
    return json.loads((folder / "card.json").read_text())


def _ids(folders):
    return [p.name for p in folders]


@pytest.mark.parametrize("folder", SHIPPED, ids=_ids(SHIPPED))
def test_shipped_model_folder_name_is_a_zoo_or_a_pack_name(folder):
    rules = [rule.pattern for rule in (ZOO_NAME, PACK_NAME) if rule.fullmatch(folder.name)]
    assert len(rules) == 1, f"{folder.name} must match exactly one of the zoo's and the packs' name rules, matches {rules}"


def test_name_rules_tell_zoo_and_pack_names_apart():
    zoo = ["lenet5-fp", "mnist_a-bn-4bit", "mnist_a-16bit", "resnet20-4bit", "mnist_a-annt-1bit"]
    pack = ["galloway-S64-seed0", "galloway-C128-plus-seed1", "fcn2-bnn-in2b-seed0", "fcn2-fp-in8b-rfgsm-seed1"]
    neither = ["lenet5", "mnist_a-4", "mnist_a-bn-4bits", "mnist_a-l2-4bit", "galloway-D64-seed0", "galloway-A64-seed",
               "galloway-A-seed0", "fcn2-bnn-in2b", "fcn3-fp-in2b-seed0", "fcn2-fp-in2b-pgd-seed0", "galloway-A64-rfgsm-seed0"]
    assert [n for n in zoo if ZOO_NAME.fullmatch(n) and not PACK_NAME.fullmatch(n)] == zoo
    assert [n for n in pack if PACK_NAME.fullmatch(n) and not ZOO_NAME.fullmatch(n)] == pack
    assert [n for n in neither if ZOO_NAME.fullmatch(n) or PACK_NAME.fullmatch(n)] == []


@pytest.mark.parametrize("folder", ZOO, ids=_ids(ZOO))
def test_shipped_model_card_matches_its_folder_name(folder):
    card = _card(folder)
    name = ZOO_NAME.fullmatch(folder.name)
    arch, batchnorm = name["arch"], name["family"] == "bn"
    assert card["arch"] == arch and card["bits"]["label"] == name["tag"] and card["dataset"] == "mnist"
    assert card["batchnorm"] is batchnorm
    assert not card.get("options") and card.get("input_bits") is None and not card.get("stochastic")
    assert card["test_accuracy"] is not None and card["val_accuracy"] is not None
    config = ROOT / "configs" / "train" / f"{folder.name}.yaml"
    cfg = load_config(config)  # the config that reproduces it builds the same graph
    assert cfg["model"]["arch"] == arch and cfg["model"]["batchnorm"] is batchnorm
    # ... with the same seed and recipe: epochs, optimizer, learning rate, schedule, batch, augmentation
    assert cfg["seed"] == card["seed"] and resolved_train_settings(cfg) == card_train_settings(card)
    assert (card_train_settings(card)["l2_dense"] > 0) is (name["family"] == "annt")  # ANNT's recipe, and only there


@pytest.mark.parametrize("folder", PACK, ids=_ids(PACK))
def test_pack_model_card_matches_its_folder_name(folder):
    card, name = _card(folder), PACK_NAME.fullmatch(folder.name)
    adversarial = (card["train_settings"].get("adversarial") or {}).get("method")
    if name["galloway"]:
        kind = name["type"]
        assert card["arch"] == "galloway" and card["options"] == {"type": kind, "filters": int(name["filters"])}
        assert card.get("input_bits") is None and adversarial == ("fgsm" if name["plus"] else None)
        binary, stochastic = kind != "A", kind == "S"
    else:
        binary, stochastic = name["kind"] == "bnn", False
        assert card["arch"] == name["fcn"] and card["options"] == {"binary": binary}
        assert card["input_bits"] == int(name["input_bits"]) and adversarial == ("rfgsm" if name["rfgsm"] else None)
    assert card["seed"] == int(name["seed"]) and card["dataset"] == "mnist"
    bits = 1 if binary else 32
    assert card["bits"] == {"weights": bits, "activations": bits, "label": "1bit" if binary else "fp"}
    assert card["batchnorm"] is binary and card.get("stochastic", False) is stochastic
    assert card["test_accuracy"] is not None and card["val_accuracy"] is not None


@pytest.fixture(scope="module")
def ship_commands(tmp_path_factory):
    """Every ``annt`` command of the packs' ship_models.sh, by the model folder it exports (``models/<name>``):
    ``(config, [--set overrides])``. Each script runs for real in a scratch tree holding only a copy of it, with
    ``annt`` a stub that records its arguments (no model folder exists there, so the script skips none)."""
    from annt.docs import PACK_SCRIPTS

    scratch = tmp_path_factory.mktemp("ship")
    (scratch / "bin").mkdir()
    stub, log = scratch / "bin" / "annt", scratch / "commands.tsv"
    stub.write_text('#!/bin/sh\nfor a in "$@"; do printf \'%s\\t\' "$a"; done >> "$ANNT_STUB_LOG"\necho >> "$ANNT_STUB_LOG"\n')
    stub.chmod(0o755)
    env = {k: v for k, v in os.environ.items() if k != "ANNT_THREADS"}
    env.update(PATH=f"{scratch / 'bin'}{os.pathsep}{env.get('PATH', '')}", ANNT_STUB_LOG=str(log))
    for script in sorted(set(PACK_SCRIPTS.values())):
        copy = scratch / script
        copy.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(ROOT / script, copy)
        r = subprocess.run(["bash", str(copy)], env=env, capture_output=True, text=True, timeout=60)
        assert r.returncode == 0, r.stderr
    commands = {}
    for line in log.read_text().splitlines():
        config, *rest = line.split("\t")[:-1]
        assert rest[::2] == ["--set"] * (len(rest) // 2) and len(rest) % 2 == 0, line  # nothing but --set key=value
        overrides = rest[1::2]
        (dest,) = [o.split("=", 1)[1] for o in overrides if o.startswith("train.export_to=")]
        assert dest not in commands, f"{dest} is trained twice"
        commands[dest] = (config, [o for o in overrides if not o.startswith("train.export_to=")])
    return commands


@pytest.mark.parametrize("folder", PACK, ids=_ids(PACK))
def test_pack_model_card_matches_its_ship_models_command(folder, ship_commands):
    # The command its pack's ship_models.sh runs to train it (export_to left out: the folder exists) resolves,
    # as the train task resolves it, to the card's graph, seed, data split and recipe (epochs, optimizer, rate,
    # schedule, batch, adversarial training).
    from annt.docs import PACK_SCRIPTS

    card = _card(folder)
    assert f"models/{folder.name}" in ship_commands, f"{PACK_SCRIPTS[card['arch']]} does not train {folder.name}"
    config, overrides = ship_commands[f"models/{folder.name}"]
    assert Path(config).parent == Path(PACK_SCRIPTS[card["arch"]]).parent  # one of its own pack's configs
    cfg = load_config(ROOT / config, overrides=overrides)
    m = cfg["model"]
    assert (m["arch"], m["options"], m["input_bits"]) == (card["arch"], card["options"], card.get("input_bits"))
    assert m["bits"] == {"weights": card["bits"]["weights"], "activations": card["bits"]["activations"]}
    assert cfg["seed"] == card["seed"] and cfg["name"] == folder.name
    assert (cfg["data"]["dataset"], cfg["data"]["val_size"], cfg["data"]["split_seed"]) == \
        (card["dataset"], card["val_size"], card["split_seed"])
    assert resolved_train_settings(cfg) == card_train_settings(card) and card["epochs"] == card["train_settings"]["epochs"]


def test_ship_commands_cover_the_packs_models_and_galloways_s_trains_longer(ship_commands):
    # 18 Panda models (12 plain + 6 R-FGSM), 14 Galloway models (A B C S, A+ B+ C+, seeds 0 and 1): every name
    # follows the pack name rule, and S gets 45 epochs (3x, paper §3), the others the config's.
    assert len(ship_commands) == 32 and all(PACK_NAME.fullmatch(Path(d).name) for d in ship_commands)
    config, overrides = ship_commands["models/galloway-S64-seed1"]
    assert config.endswith("train_galloway.yaml") and "train.epochs=45" in overrides and "seed=1" in overrides
    assert not any(o.startswith("train.epochs") for o in ship_commands["models/galloway-C64-plus-seed0"][1])


@pytest.mark.parametrize("folder", ZOO, ids=_ids(ZOO))
def test_shipped_model_graph_matches_its_card(folder):
    # Read the Keras archive's config.json (no TensorFlow needed): the saved graph must be the one the card
    # describes, e.g. a "-bn-" model really has BatchNorm and a 2-bit model really quantizes at 2 bits.
    card = _card(folder)
    layers = _shipped_layers(folder)
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


def _pack_quantizers(card):
    """What a pack model's family options imply: (kernel layer -> quantizer name, None = float kernel;
    activation quantizer layer -> quantizer name). Binary layers are ±1 (``sign``; ``stochastic_sign`` for
    galloway S's conv3); conv1 and the logits of galloway, and every layer of a full-precision model, are float."""
    options = card["options"]
    if card["arch"] == "galloway":
        binary = options["type"] != "A"
        conv3 = "stochastic_sign" if options["type"] == "S" else "sign"
        return ({"conv1": None, "conv2": "sign" if binary else None, "conv3": conv3 if binary else None, "logits": None},
                {"conv1_qa": "sign", "conv2_qa": "sign"} if binary else {})
    binary = options["binary"]
    return ({name: "sign" if binary else None for name in ("fc1", "fc2", "fc3", "fc4", "linear")},
            {f"fc{i}_qa": "sign" for i in range(1, 5)} if binary else {})


@pytest.mark.parametrize("folder", PACK, ids=_ids(PACK))
def test_pack_model_graph_matches_its_card(folder):
    card = _card(folder)
    layers = _shipped_layers(folder)
    kernels, activations = _pack_quantizers(card)

    def quantizer(spec):
        assert spec is None or spec["params"] == {}, spec  # sign and stochastic_sign take no parameters
        return None if spec is None else spec["name"]

    assert {l["name"]: quantizer(l["config"]["kernel_quantizer"]) for l in layers
            if l["class_name"] in ("QuantConv2D", "QuantDense")} == kernels
    assert {l["name"]: quantizer(l["config"]["quantizer"]) for l in layers if l["class_name"] == "QuantActivation"} == activations
    assert [l["config"]["bits"] for l in layers if l["class_name"] == "InputDiscretization"] == \
        ([] if card.get("input_bits") is None else [card["input_bits"]])
    kinds = [l["class_name"] for l in layers]
    assert ("BatchNormalization" in kinds) is card["batchnorm"]
    assert ("LearnedScale" in kinds) is (card["options"].get("type") in ("C", "S"))


def _shipped_layers(folder):
    import zipfile

    with zipfile.ZipFile(folder / "model.keras") as z:
        return json.loads(z.read("config.json"))["config"]["layers"]


def _build_from_card(card):
    from annt.models.architectures import build_model

    return build_model(card["arch"], tuple(card["input_shape"]), card["num_classes"], card["bits"]["weights"],
                       card["bits"]["activations"], card["quantize_first_last"], card["batchnorm"],
                       card["quantize_last_hidden"], input_bits=card.get("input_bits"), options=card.get("options"))


@pytest.mark.parametrize("folder", ZOO, ids=_ids(ZOO))
def test_shipped_model_file_is_what_build_model_builds_today(folder):
    # The stored graph (layer classes, names, quantizer specs, modules) is the one the current code
    # builds from the card, so the shipped files are not an older format that only loads by accident.
    from keras.saving import serialize_keras_object

    built = json.loads(json.dumps(serialize_keras_object(_build_from_card(_card(folder)))))["config"]["layers"]

    def summary(layers):
        return [(l["class_name"], l["name"], l.get("module"), l["config"].get("kernel_quantizer"),
                 l["config"].get("quantizer"), sorted(l["config"])) for l in layers]

    assert summary(_shipped_layers(folder)) == summary(built)


def _without_object_ids(value):
    """A serialized Keras config without ``shared_object_id`` (a memory address, different in every process)."""
    if isinstance(value, dict):
        return {k: _without_object_ids(v) for k, v in value.items() if k != "shared_object_id"}
    if isinstance(value, list):
        return [_without_object_ids(v) for v in value]
    return value


@pytest.mark.parametrize("folder", PACK, ids=_ids(PACK))
def test_pack_model_file_is_what_build_model_builds_today(folder):
    # Stricter than the zoo's (whose files predate some config keys): every layer's whole config, connections
    # included (sizes, strides, initializers, constraints, BatchNorm settings, input bits, quantizers), is
    # what build_model(card's arch, options, input_bits, ...) gives today.
    from keras.saving import serialize_keras_object

    card = _card(folder)
    model = _build_from_card(card)
    built = json.loads(json.dumps(serialize_keras_object(model)))["config"]["layers"]
    assert _without_object_ids(_shipped_layers(folder)) == _without_object_ids(built)
    assert model.annt_options.get("stochastic", False) is card.get("stochastic", False)


#: Logits of every shipped model on the first 64 images of the shipped MNIST sample, float32, one array per
#: folder name: the zoo's computed with the code before quantizers became layer arguments (commit ebb43b1), the
#: packs' when they were added (tests/data/make_shipped_logits.py adds missing ones, changes none).
REFERENCE_LOGITS = ROOT / "tests" / "data" / "shipped_logits.npz"


def _logits_script():
    import importlib.util

    spec = importlib.util.spec_from_file_location("make_shipped_logits", ROOT / "tests" / "data" / "make_shipped_logits.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_every_shipped_model_has_reference_logits():
    with np.load(REFERENCE_LOGITS) as ref:
        missing = sorted(set(_ids(SHIPPED)) - set(ref.files))
        assert not missing, f"run: python tests/data/make_shipped_logits.py (missing: {', '.join(missing)})"
        assert sorted(k for k in ref.files if k != "image_index") == _ids(SHIPPED)


@pytest.mark.parametrize("folder", SHIPPED, ids=_ids(SHIPPED))
def test_shipped_model_gives_its_reference_logits_on_real_mnist(folder):
    # A stochastic model (galloway S) is compared on one seeded pass (reference_pass), which repeats exactly.
    from annt.data import load_sample
    from annt.models.folder import load_model_folder

    with np.load(REFERENCE_LOGITS) as ref:
        want, index = ref[folder.name], ref["image_index"]
    ds = load_sample()
    np.testing.assert_array_equal(ds.index[:len(index)], index)  # the same real test images
    model, _ = load_model_folder(folder)
    got = _logits_script().reference_pass(model, ds.x[:len(index)])
    np.testing.assert_array_equal(got.argmax(1), want.argmax(1))
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-5)


def test_reference_pass_repeats_a_stochastic_models_draw_exactly():
    # Two seeded passes of a tiny galloway S give the same logits, whatever was drawn in between; an unseeded
    # pass draws conv3's kernel anew (different logits).
    import keras

    from annt.models.architectures import build_model

    reference_pass = _logits_script().reference_pass
    keras.utils.set_random_seed(5)
    model = build_model("galloway", options={"type": "S", "filters": 2})
    x = np.random.default_rng(0).random((4, 28, 28, 1), dtype=np.float32)
    first = reference_pass(model, x)
    unseeded = np.asarray(model(x, training=False))
    np.testing.assert_array_equal(reference_pass(model, x), first)
    assert not np.array_equal(unseeded, first)


def test_models_readme_table_is_generated_from_the_cards():
    from annt.docs import models_table

    readme = (ROOT / "models" / "README.md").read_text()
    assert models_table() in readme, "run: python -m annt.docs models, and paste into models/README.md"


def test_models_table_marks_targets_met_and_missed(tmp_path):
    from annt.docs import models_table

    def card(name, arch, label, test_acc, batchnorm, **more):
        (tmp_path / name).mkdir()
        (tmp_path / name / "card.json").write_text(json.dumps(
            {"arch": arch, "bits": {"label": label}, "val_accuracy": 0.5, "test_accuracy": test_acc,
             "batchnorm": batchnorm, "best_epoch": 3, "epochs": 4, **more}))

    card("mnist_a-2bit", "mnist_a", "2bit", 0.9899, False)    # target 0.990: missed
    card("mnist_a-bn-2bit", "mnist_a", "2bit", 0.9900, True)  # met exactly
    card("mnist_a-annt-2bit", "mnist_a", "2bit", 0.9901, False, train_settings={"l2_dense": 1e-5})  # ANNT's recipe
    card("lenet5-1bit", "lenet5", "1bit", 0.975, False)       # 1-bit target 0.975: met
    card("galloway-S64-seed0", "galloway", "1bit", 0.9, True, options={"type": "S", "filters": 64}, stochastic=True,
         seed=0, train_settings={"epochs": 45})
    card("galloway-A64-plus-seed1", "galloway", "fp", 0.9, False, options={"type": "A", "filters": 64}, seed=1,
         train_settings={"adversarial": {"method": "fgsm", "eps": 0.3, "eps_distribution": "truncated_normal",
                                         "last_epochs": 5}})
    card("fcn2-bnn-in2b-rfgsm-seed0", "fcn2", "1bit", 0.9, True, options={"binary": True}, input_bits=2, seed=0,
         train_settings={"adversarial": {"method": "rfgsm", "eps": 0.3, "eps_distribution": "fixed", "last_epochs": None}})
    rows = [r.split(" | ") for r in models_table(tmp_path).splitlines()[2:]]
    assert [r[0] for r in rows] == ["| `models/lenet5-1bit`", "| `models/mnist_a-2bit`", "| `models/mnist_a-annt-2bit`",
                                    "| `models/mnist_a-bn-2bit`", "| `models/fcn2-bnn-in2b-rfgsm-seed0`",
                                    "| `models/galloway-A64-plus-seed1`", "| `models/galloway-S64-seed0`"]
    assert rows[0][3:5] == ["–", "plain"] and rows[0][7:9] == ["≥ 0.975", "yes"]
    assert rows[1][1] == "ANNT (no BN)" and rows[1][7:10] == ["≥ 0.990", "**no**", "3 / 4"]
    assert rows[2][1] == "ANNT (no BN)" and rows[2][4] == "plain; L2 1e-05 on dense kernels" and rows[2][8] == "yes"
    assert rows[3][1] == "BatchNorm" and rows[3][6:9] == ["0.9900", "≥ 0.990", "yes"]
    assert rows[3][10] == "`configs/train/mnist_a-bn-2bit.yaml` |"
    # pack models: family options, input bits, adversarial training; no target (the registry has none); their script
    assert rows[4][1:5] == ["BNN (BinaryNet)", "1bit", "2-bit", "rfgsm ε 0.3"] and rows[4][7:9] == ["", "n/a"]
    assert rows[4][10] == "`configs/papers/panda2019/ship_models.sh` |"
    assert rows[5][1:5] == ["type A, K = 64", "fp", "–", "fgsm ε 0.3 (truncated normal), last 5 epochs"]
    assert rows[6][1] == "type S, K = 64; stochastic (accuracies: one random pass)" and rows[6][4] == "plain"
    assert rows[6][10] == "`configs/papers/galloway2018/ship_models.sh` |"


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
