import json
import os
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


@pytest.fixture
def fake_model_dir(tmp_path):
    """A folder that passes the config validator's model-folder check (card + model file)."""
    d = tmp_path / "models" / "mnist_a-4bit"
    d.mkdir(parents=True)
    (d / "model.keras").write_bytes(b"not a real model")
    (d / "card.json").write_text(json.dumps({"arch": "mnist_a", "bits": {"weights": 4, "activations": 4}}))
    return d
