"""annt: adversarial robustness of DoReFa-quantized neural networks.

The pipeline, one subpackage each: ``data`` -> ``models`` (quantizers, layers, architectures,
model folders and cards) -> ``training`` -> ``attacks`` (registry, estimator, runner) ->
``evaluation`` (metrics, adversarial sets, transfer) -> ``tasks`` (what a YAML file runs) and
``plots``/``tables``; ``config`` validates task files.
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

from annt.errors import AnntError, ConfigError, DataError, ModelError  # noqa: E402
from annt.api import load_config, run_config  # noqa: E402
from annt.data import load_dataset, load_sample  # noqa: E402
from annt.evaluation.advset import AdversarialSet, load_adversarial_set  # noqa: E402

# name -> "module:attribute", imported on first use (keeps `import annt` and --check fast)
_LAZY = {
    "build_model": "annt.models.architectures:build_model",
    "ARCHITECTURES": "annt.models.registry:ARCHITECTURES",
    "quantize_k": "annt.models.quantizers:quantize_k",
    "quantize_weights": "annt.models.quantizers:quantize_weights",
    "quantize_activations": "annt.models.quantizers:quantize_activations",
    "fit": "annt.training.fit:fit",
    "load_model": "annt.models.folder:load_model_folder",
    "save_model": "annt.models.folder:save_model_folder",
    "import_tensorpack_lenet5": "annt.models.tensorpack:import_tensorpack_lenet5",
    "make_classifier": "annt.attacks.estimator:make_classifier",
    "FastTensorFlowV2Classifier": "annt.attacks.estimator:FastTensorFlowV2Classifier",
    "ATTACKS": "annt.attacks.registry:ATTACKS",
    "attack": "annt.attacks.runner:attack",
    "select_samples": "annt.evaluation.predict:select_samples",
    "evaluate": "annt.evaluation.evaluate:evaluate",
    "transfer": "annt.evaluation.transfer:transfer",
    "perturbation_norms": "annt.evaluation.metrics:perturbation_norms",
    "summarize": "annt.evaluation.metrics:summarize",
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
