"""Models: quantizers, layers, one module per architecture family, model folders and cards.

* ``registry``     every fact about an architecture (builder, datasets, defaults, targets); no TensorFlow
* ``quantizers``   DoReFa's formulas and the quantizer registry layers take specs from
* ``layers``       QuantConv2D / QuantDense (``kernel_quantizer=``), QuantActivation, ChannelPad
* ``architectures`` ``build_model`` and the spec that places quantizers and BatchNorm
* ``lenet``, ``mnist_cnn``, ``resnet``  one builder per family
* ``card``         the model card (``card.json``); no TensorFlow
* ``folder``       save / load a model folder (``model.keras`` + ``card.json``) in Keras safe mode
* ``tensorpack``   import an ANNT/tensorpack LeNet-5 checkpoint

Importing this package imports no TensorFlow (config validation reads ``registry`` and ``card``);
the names below load their module on first use.
"""
from __future__ import annotations

import importlib

_LAZY = {
    "ARCHITECTURES": "annt.models.registry:ARCHITECTURES",
    "arch_spec": "annt.models.registry:arch_spec",
    "build_model": "annt.models.architectures:build_model",
    "load_model_folder": "annt.models.folder:load_model_folder",
    "save_model_folder": "annt.models.folder:save_model_folder",
    "get_quantizer": "annt.models.quantizers:get_quantizer",
    "register_quantizer": "annt.models.quantizers:register_quantizer",
}

__all__ = list(_LAZY)


def __getattr__(name: str):
    if name in _LAZY:
        module, attr = _LAZY[name].split(":")
        return getattr(importlib.import_module(module), attr)
    raise AttributeError(f"module 'annt.models' has no attribute {name!r}")
