"""Faults that can be known before work starts stop the CLI with one line, exit 2 and no run folder;
a model folder with a card for a user's own architecture works in attack and infer."""
import json
import shutil
import textwrap
from pathlib import Path

import pytest

from annt import cli

ROOT = Path(__file__).resolve().parent.parent


def write(tmp_path, text, name="t"):
    p = tmp_path / f"{name}.yaml"
    p.write_text(textwrap.dedent(text))
    return p


def one_error_line(capsys):
    err = capsys.readouterr().err.strip().splitlines()
    err = [line for line in err if line.startswith("annt:")]
    assert len(err) == 1, err
    return err[0]


def attack_yaml(tmp_path, checkpoint, data="{dataset: mnist, source: sample}"):
    return write(tmp_path, f"""
        task: attack
        output_dir: {tmp_path / 'runs'}
        data: {data}
        model: {{checkpoint: {checkpoint}}}
        attack: {{name: fgsm, params: {{eps: 0.1}}, samples: 4, batch_size: 4, grid_samples: 0}}
        """)


def test_missing_dataset_stops_before_the_run_folder(tmp_path, capsys):
    empty = tmp_path / "no-data"
    empty.mkdir()
    cfg = attack_yaml(tmp_path, ROOT / "models" / "mnist_a-4bit", f"{{dataset: mnist, source: local, data_dir: {empty}}}")
    assert cli.main([str(cfg)]) == 2
    line = one_error_line(capsys)
    assert "dataset 'mnist' not found" in line and f"local: no mnist.npz and no train-images-idx3-ubyte[.gz] in {empty}" in line
    assert not (tmp_path / "runs").exists()


@pytest.mark.parametrize("damage, message", [
    (lambda f: f.write_bytes(f.read_bytes()[: len(f.read_bytes()) // 2]), "is not a complete Keras archive"),
    (lambda f: f.write_bytes(b""), "is not a complete Keras archive (0 bytes"),
])
def test_truncated_model_names_the_real_fault_before_the_run_folder(tmp_path, capsys, damage, message):
    model = tmp_path / "mnist_a-4bit"
    shutil.copytree(ROOT / "models" / "mnist_a-4bit", model)
    damage(model / "model.keras")
    assert cli.main([str(attack_yaml(tmp_path, model))]) == 2
    line = one_error_line(capsys)
    assert message in line and "File not found" not in line
    assert not (tmp_path / "runs").exists()


def test_missing_cifar_checkpoint_says_how_to_train_one(capsys):
    assert cli.main([str(ROOT / "configs" / "attack" / "fgsm_cifar10.yaml"), "--check"]) == 2
    line = one_error_line(capsys)
    assert "no such model folder" in line and "train it first: annt configs/train/resnet20-4bit.yaml" in line
    assert "cifar-10-batches-py" in line


@pytest.fixture(scope="module")
def custom_model(tmp_path_factory):
    """A user's own Keras model (not an annt architecture), saved with annt.save_model and a card."""
    import keras

    import annt

    keras.utils.set_random_seed(0)
    inputs = keras.Input((28, 28, 1))
    x = keras.layers.Flatten()(inputs)
    x = keras.layers.Dense(32, activation="relu")(x)
    model = keras.Model(inputs, keras.layers.Dense(10)(x), name="my_mlp")
    model.compile(optimizer="adam", loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    ds = annt.load_sample()
    model.fit(ds.x, ds.y, epochs=3, verbose=0)
    folder = tmp_path_factory.mktemp("zoo") / "my_mlp"
    annt.save_model(model, folder, {"arch": "my_mlp", "weight_bits": 32, "act_bits": 32, "dataset": "mnist"})
    return folder


def test_custom_architecture_folder_works_in_attack_and_infer(tmp_path, custom_model, capsys):
    card = json.loads((custom_model / "card.json").read_text())
    assert card["arch"] == "my_mlp" and card["bits"]["label"] == "fp" and card["input_shape"] == [28, 28, 1]
    assert cli.main([str(attack_yaml(tmp_path, custom_model))]) == 0
    run = next((tmp_path / "runs").glob("*-attack-*"))
    res = json.loads((run / "results.json").read_text())
    assert res["complete"] and res["source_model"]["arch"] == "my_mlp" and res["runs"][0]["n"] == 4
    infer = write(tmp_path, f"""
        task: infer
        output_dir: {tmp_path / 'runs'}
        data: {{dataset: mnist, source: sample}}
        model: {{checkpoint: {custom_model}}}
        infer: {{adversarial: {run}}}
        """, "infer")
    assert cli.main([str(infer)]) == 0
    inf = json.loads(next((tmp_path / "runs").glob("*-infer-*")).joinpath("results.json").read_text())
    assert inf["direct"] is True
    assert inf["runs"][0]["adversarial_accuracy"] == pytest.approx(res["runs"][0]["adversarial_accuracy"])


def test_training_an_unknown_architecture_is_refused(tmp_path, capsys):
    cfg = write(tmp_path, f"""
        task: train
        output_dir: {tmp_path / 'runs'}
        model: {{arch: mnist_aa, bits: 4}}
        """)
    assert cli.main([str(cfg), "--check"]) == 2
    line = one_error_line(capsys)
    assert "model.arch = 'mnist_aa': allowed: lenet5, mnist_a" in line and line.endswith("(did you mean 'mnist_a'?)")
