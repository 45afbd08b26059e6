"""annt: adversarial robustness of DoReFa-quantized neural networks.

The pipeline, one module each: ``data`` -> ``quantize``/``layers``/``architectures`` ->
``training`` -> ``attacks`` (+ ``estimator``) -> ``evaluate`` -> ``report``/``plots``.
Everything the CLI does is a function here; TensorFlow is imported only when first needed.

>>> import annt
>>> model, card = annt.load_model("models/mnist_a-4bit")
>>> ds = annt.load_sample()
>>> res = annt.attack(model, ds.x[:20], ds.y[:20], "fgsm", eps=0.1)
>>> res.summary["adversarial_accuracy"]
"""
from __future__ import annotations

import importlib
import warnings

# ART warns on import that PyTorch-only certification tools are unavailable; annt never uses them.
warnings.filterwarnings("ignore", message="PyTorch not found", category=UserWarning)

__version__ = "0.1.0"

from .errors import AnntError, ConfigError, DataError, ModelError  # noqa: E402
from .api import load_config, run_config  # noqa: E402
from .data import load_dataset, load_sample  # noqa: E402
from .advset import AdversarialSet, load_adversarial_set  # noqa: E402

# name -> "module:attribute", imported on first use (keeps `import annt` and --check fast)
_LAZY = {
    "build_model": "annt.architectures:build_model",
    "ARCHITECTURES": "annt.architectures:ARCHITECTURES",
    "quantize_k": "annt.quantize:quantize_k",
    "quantize_weights": "annt.quantize:quantize_weights",
    "quantize_activations": "annt.quantize:quantize_activations",
    "fit": "annt.training:fit",
    "load_model": "annt.modelio:load_model_folder",
    "save_model": "annt.modelio:save_model_folder",
    "import_tensorpack_lenet5": "annt.modelio:import_tensorpack_lenet5",
    "make_classifier": "annt.estimator:make_classifier",
    "FastTensorFlowV2Classifier": "annt.estimator:FastTensorFlowV2Classifier",
    "ATTACKS": "annt.attacks:ATTACKS",
    "attack": "annt.attack_task:attack",
    "select_samples": "annt.attack_task:select_samples",
    "evaluate": "annt.evaluation:evaluate",
    "transfer": "annt.evaluation:transfer",
    "perturbation_norms": "annt.metrics:perturbation_norms",
    "summarize": "annt.metrics:summarize",
    "image_grid": "annt.plots:image_grid",
    "transfer_heatmap": "annt.plots:transfer_heatmap",
    "accuracy_vs_bits": "annt.plots:accuracy_vs_bits",
}

__all__ = ["AnntError", "ConfigError", "DataError", "ModelError", "load_config", "run_config", "load_dataset",
           "load_sample", "AdversarialSet", "load_adversarial_set", "__version__", *_LAZY]


def __getattr__(name: str):
    if name in _LAZY:
        module, attr = _LAZY[name].split(":")
        value = getattr(importlib.import_module(module), attr)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'annt' has no attribute {name!r}")
