import json
import os
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

# Importing ART runs logging.config.dictConfig, which closes every logging handler that exists. absl's
# handler (made when TensorFlow is first imported) then closes its stream if that is no longer the
# current sys.stderr: under pytest that is a capture file, and the whole session's capture breaks
# ("I/O operation on closed file") when the two imports happen in tests with different captures.
# Import both once, here, while sys.stderr is still the session's.
import tensorflow  # noqa: E402,F401
import art  # noqa: E402,F401


@pytest.fixture
def fake_model_dir(tmp_path):
    """A folder that passes the config validator's model-folder check (card + model file)."""
    d = tmp_path / "models" / "mnist_a-4bit"
    d.mkdir(parents=True)
    with zipfile.ZipFile(d / "model.keras", "w") as z:  # the archive layout config validation checks, no real weights
        z.writestr("config.json", "{}")
        z.writestr("model.weights.h5", b"")
    (d / "card.json").write_text(json.dumps({"arch": "mnist_a", "bits": {"weights": 4, "activations": 4}, "dataset": "mnist",
                                                 "batchnorm": False, "quantize_first_last": False,
                                                 "quantize_last_hidden": False}))
    return d


@pytest.fixture(scope="session")
def mnist_sample():
    """The shipped 1,000-image MNIST test sample, loaded once per test run (treat it as read-only)."""
    from annt.data import load_sample

    return load_sample()


@pytest.fixture(scope="session")
def tiny_models(tmp_path_factory):
    """Two small real model folders (lenet5 fp and 2-bit) trained briefly on the shipped MNIST sample."""
    import keras
    import numpy as np

    from annt.models.architectures import build_model
    from annt.data import load_sample
    from annt.models.folder import save_model_folder

    ds = load_sample()
    root = tmp_path_factory.mktemp("models")
    out = {}
    for bits in (32, 2):
        keras.utils.set_random_seed(0)
        m = build_model("lenet5", weight_bits=bits, act_bits=bits)
        m.compile(optimizer=keras.optimizers.Adam(3e-3), metrics=["accuracy"],
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
        m.fit(ds.x, ds.y, batch_size=64, epochs=4, verbose=0)
        acc = float(np.mean(np.argmax(m.predict(ds.x, verbose=0), 1) == ds.y))
        tag = "fp" if bits == 32 else f"{bits}bit"
        out[tag] = save_model_folder(m, root / f"lenet5-{tag}", {"dataset": "mnist", "test_accuracy": acc, "seed": 0})
    return out


@pytest.fixture
def interrupt_at():
    """A Keras callback class that simulates a crash right after epoch ``at`` (1-based) has been backed up."""
    import keras

    class Interrupt(keras.callbacks.Callback):
        def __init__(self, at):
            super().__init__()
            self.at = at

        def on_epoch_end(self, epoch, logs=None):
            if epoch + 1 == self.at:
                raise KeyboardInterrupt

    return Interrupt
