"""The ``train`` task: data -> build -> fit (select on validation) -> test -> model folder + card."""
from __future__ import annotations

import shutil
import sys
from pathlib import Path

import numpy as np

from annt.data import DATASETS, load_split, require_data
from annt.errors import AnntError
from annt.runs import Run
from annt.training.settings import resolve_train_settings
from annt.config.schema import REQUIRED, Key
from annt.config.sections import check_data, check_model
from annt.training.settings import (ADVERSARIAL_EPS, ADVERSARIAL_METHODS, EPS_DISTRIBUTIONS, LR_SCHEDULES, OPTIMIZERS,
                                   PGD_STEPS)

MODEL_SUBDIR = "model"

USES = ("data", "model", "train")  # the config sections this task reads
#: ``train.adversarial`` (null or absent = plain training); annt/training/adversarial.py has the formulas.
ADVERSARIAL = {
    "method": Key("choice", REQUIRED, "Adversarial training (train.adversarial; null = plain training): fgsm "
                  "(x + eps·sign ∇), rfgsm (Tramèr et al.: a random step ±alpha, then an FGSM step of eps − alpha), "
                  "pgd (Madry et al.: steps of step_size, projected onto the eps-ball). Inputs on [0, 1]; every "
                  "adversarial x' stays in [0, 1] and within eps of x (L∞).", choices=ADVERSARIAL_METHODS),
    "eps": Key("float", ADVERSARIAL_EPS, "L∞ budget on the [0, 1] pixel scale (0.3 = Galloway et al. and Panda et al. on MNIST); "
               "with eps_distribution truncated_normal it is eps_max.", min=0.0, min_open=True, max=1.0),
    "eps_distribution": Key("choice", "fixed", "fgsm only: fixed (every example gets eps) or truncated_normal "
                            "(Kurakin et al. 2017, Galloway's '+' models: per example |t|, t ~ N(0, σ²) truncated to "
                            "±2σ, σ = ceil(eps·255/2)/255, so eps lies in [0, 2σ]).", choices=EPS_DISTRIBUTIONS),
    "alpha": Key("float", None, "rfgsm only: size of the random sign step, below eps; null = eps/2 (Tramèr et al.).",
                 nullable=True, min=0.0, min_open=True, max=1.0),
    "steps": Key("int", None, f"pgd only: iterations; null = {PGD_STEPS} (Madry et al. on MNIST; Galloway's '+*' "
                 "used 20 or 40).", nullable=True, min=1, max=1000),
    "step_size": Key("float", None, "pgd only: L∞ step per iteration; null = 2.5·eps/steps.", nullable=True,
                     min=0.0, min_open=True, max=1.0),
    "random_start": Key("bool", None, "pgd only: start from a uniform random point of the eps-ball; null = true "
                        "(Madry et al.).", nullable=True),
    "last_epochs": Key("int", None, "Train adversarially in the last N epochs only (the others plain; Galloway's '+' "
                       "models: 5 of 15); null = every epoch.", nullable=True, min=1, max=10000),
    "own_labels": Key("bool", None, "Craft against the model's own prediction on the clean image instead of the "
                      "true label (no label leaking, Kurakin et al.); null = true for fgsm/rfgsm (Galloway et al.), "
                      "false for pgd (Madry et al.).", nullable=True),
    "clean_weight": Key("float", None, "Loss = clean_weight·CE(clean batch) + (1 − clean_weight)·CE(adversarial "
                        "batch), both on every example; null = 0.5 for fgsm/rfgsm (CleverHans 2.0 as used by "
                        "Galloway et al.; Kurakin's and Tramèr's half-adversarial batches), 0 for pgd (Madry et al.: "
                        "adversarial only).", nullable=True, min=0.0, max=1.0, max_open=True),
}
SECTION = {
    # null = the architecture's default (its registry entry; wiki/Models.md lists them)
    "epochs": Key("int", None, "Training epochs; null = architecture default.", nullable=True, min=1, max=10000),
    "batch_size": Key("int", None, "Mini-batch size; null = architecture default.", nullable=True, min=1, max=65536),
    "optimizer": Key("choice", None, f"{', '.join(OPTIMIZERS)} (sgd and rmsprop with `momentum`); null = architecture "
                     "default.", choices=OPTIMIZERS, nullable=True),
    "learning_rate": Key("float", None, "Initial learning rate; null = architecture default.", nullable=True,
                         min=0.0, min_open=True),
    "lr_schedule": Key("choice", None, f"{', '.join(LR_SCHEDULES)}; null = architecture default.",
                       choices=LR_SCHEDULES, nullable=True),
    "lr_decay_epochs": Key("list", None, "Epochs at which a step schedule multiplies the rate by lr_decay_factor; "
                           "null = architecture default.", item="int", nullable=True),
    "lr_decay_factor": Key("float", None, "Step-schedule multiplier; null = architecture default.", nullable=True,
                           min=0.0, max=1.0),
    "momentum": Key("float", None, "SGD/RMSprop momentum; null = architecture default.", nullable=True, min=0.0, max=0.999),
    "weight_decay": Key("float", None, "Decoupled weight decay on kernels, w ← w − lr·weight_decay·w each step (the "
                        "optimizer's own; AdamW for adam); null = architecture default.", nullable=True, min=0.0),
    "l2_dense": Key("float", None, "L2 penalty l2_dense·Σw²/2 over the latent kernels of the dense (fully connected) "
                    "layers, added to the loss: tensorpack's regularize_cost('fc.*/W', l2_regularizer(l2_dense)), "
                    "1e-5 in ANNT's recipe. Unlike weight_decay it passes through Adam's scaling. null = "
                    "architecture default (0).", nullable=True, min=0.0),
    "augment": Key("bool", None, "CIFAR-10: random crop (4 px padding) + horizontal flip; MNIST/Fashion-MNIST: random "
                   "shifts of up to 2 px, no flip. null = architecture default (on for the CIFAR ResNets only).",
                   nullable=True),
    "resume": Key("path", None, "Unfinished train run folder to continue.", nullable=True, must_exist=True),
    "export_to": Key("path", None, "Also copy the trained model folder here (e.g. models/mnist_a-4bit); must not exist.", nullable=True),
    "adversarial": ADVERSARIAL,
}


def check(ctx, cfg) -> None:
    """Checks across keys, run after every key has been validated (TF-free)."""
    check_data(ctx, cfg)
    check_model(ctx, cfg, need_checkpoint=False)
    if cfg["model"]["checkpoint"] is not None:
        raise ctx.fail("model.checkpoint", cfg["model"]["checkpoint"],
                       "not used by task train (the model is written into the run folder; use train.export_to)")
    t = cfg["train"]
    if t["export_to"] and Path(t["export_to"]).exists() and not t["resume"]:
        raise ctx.fail("train.export_to", t["export_to"], "already exists; model folders are never overwritten")
    if cfg["data"]["split"] != "test":
        raise ctx.fail("data.split", cfg["data"]["split"], "task train always trains on train and selects on val; "
                       "leave data.split at test (it is used for the final test accuracy)")
    if cfg["data"]["source"] == "sample":
        raise ctx.fail("data.source", "sample", "the shipped sample is a test sample; training needs the full dataset")
    if t["adversarial"] is not None:
        check_adversarial(ctx, t["adversarial"], resolved_train_settings(cfg)["epochs"])


def check_adversarial(ctx, adv: dict, epochs: int) -> None:
    """Keys that do not apply to the method, alpha below eps, last_epochs within the epochs."""
    method, path = adv["method"], "train.adversarial."
    only = {"alpha": "rfgsm", "steps": "pgd", "step_size": "pgd", "random_start": "pgd"}
    for key, owner in only.items():
        if adv[key] is not None and method != owner:
            raise ctx.fail(path + key, adv[key], f"only used by method {owner} (method is {method})")
    if adv["eps_distribution"] != "fixed" and method != "fgsm":
        raise ctx.fail(path + "eps_distribution", adv["eps_distribution"], f"only fgsm draws eps per example "
                       f"(method is {method}); use fixed")
    if method == "rfgsm" and adv["alpha"] is not None and adv["alpha"] >= adv["eps"]:
        raise ctx.fail(path + "alpha", adv["alpha"], f"must be below eps ({adv['eps']:g}): the FGSM step is eps − alpha")
    if adv["last_epochs"] is not None and adv["last_epochs"] > epochs:
        raise ctx.fail(path + "last_epochs", adv["last_epochs"], f"at most train.epochs ({epochs})")


def resolved_train_settings(cfg: dict) -> dict:
    """The ``train:`` section with every null replaced by the architecture's default."""
    return resolve_train_settings(cfg["model"]["arch"], cfg["train"])


def preflight(cfg: dict) -> None:
    """The dataset must be loadable before the run folder is made."""
    require_data(cfg["data"])


def run_train(cfg: dict, run: Run) -> dict:
    from annt.models.architectures import build_model
    from annt.models.folder import save_model_folder
    from annt.training.fit import fit

    d, m = cfg["data"], cfg["model"]
    train, val, test = (load_split(cfg, split) for split in ("train", "val", "test"))
    if len(val) == 0:
        raise AnntError(f"data.val_size = {d['val_size']}: training needs a validation split (> 0) to select checkpoints")
    run.log.info("data: %s from %s (train %d, val %d, test %d)", d["dataset"], train.source, len(train), len(val), len(test))

    settings = resolved_train_settings(cfg)
    bits = m["bits"]
    model = build_model(m["arch"], input_shape=DATASETS[d["dataset"]]["shape"], num_classes=DATASETS[d["dataset"]]["classes"],
                        weight_bits=bits["weights"], act_bits=bits["activations"],
                        quantize_first_last=m["quantize_first_last"], batchnorm=m["batchnorm"],
                        quantize_last_hidden=m["quantize_last_hidden"], input_bits=m.get("input_bits"),
                        options=m.get("options"))
    run.log.info("model: %s W%s/A%s, %d parameters; train settings %s", m["arch"], bits["weights"], bits["activations"],
                 model.count_params(), settings)
    import keras

    def log_epoch(epoch, logs):
        run.log.info("epoch %d/%d: %s", epoch + 1, settings["epochs"],
                     ", ".join(f"{k} {v:.4f}" for k, v in sorted((logs or {}).items()) if isinstance(v, float)))

    # A live progress bar on a terminal; in files and CI one log line per epoch is enough.
    history = fit(model, train.x, train.y, val.x, val.y, checkpoint_dir=run.file("checkpoints"),
                  log_dir=run.file("tensorboard"), seed=cfg["seed"], verbose=1 if sys.stdout.isatty() else 0,
                  callbacks=[keras.callbacks.LambdaCallback(on_epoch_end=log_epoch)], **settings)

    test_logits = model.predict(test.x, batch_size=512, verbose=0)
    test_acc = float(np.mean(np.argmax(test_logits, 1) == test.y))
    val_acc = float(history["best_val_accuracy"])
    run.log.info("best epoch %d: val accuracy %.4f, test accuracy %.4f", history["best_epoch"], val_acc, test_acc)
    card = {"dataset": d["dataset"], "val_accuracy": val_acc, "test_accuracy": test_acc,
            "epochs": settings["epochs"], "best_epoch": history["best_epoch"], "seed": cfg["seed"],
            "data_hash": train.sha256, "data_source": train.source, "val_size": d["val_size"], "split_seed": d["split_seed"],
            "train_size": len(train), "test_size": len(test), "train_settings": settings}
    folder = save_model_folder(model, run.file(MODEL_SUBDIR), card)
    exported = None
    if cfg["train"]["export_to"]:
        dest = Path(cfg["train"]["export_to"])
        if dest.exists():
            raise AnntError(f"train.export_to {dest}: already exists; model folders are never overwritten "
                            f"(the trained model is in {folder})")
        tmp = dest.with_name(f".{dest.name}.tmp")
        shutil.rmtree(tmp, ignore_errors=True)
        shutil.copytree(folder, tmp)
        tmp.rename(dest)
        exported = str(dest)
        run.log.info("exported model folder to %s", dest)
    return {"model_dir": str(folder), "exported_to": exported, "arch": m["arch"], "bits": bits,
            "val_accuracy": val_acc, "test_accuracy": test_acc, "best_epoch": history["best_epoch"],
            "epochs": settings["epochs"], "history": history["history"], "train_settings": settings}
