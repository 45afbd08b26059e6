"""Import an ANNT/tensorpack LeNet-5 checkpoint (TF1 format) into annt's full-precision ``lenet5``."""
from __future__ import annotations

import os

import keras
import numpy as np
import tensorflow as tf

from annt.errors import ModelError
from annt.models.architectures import build_model


#: tensorpack variable → (Keras layer, index into layer.get_weights()) for ANNT's LeNet-5.
_TENSORPACK_LENET5 = {
    f"{layer}/{var}": (layer, i)
    for layer in ("conv0", "conv1", "fc0", "fc1", "linear")
    for i, var in enumerate(("W", "b"))
}


def import_tensorpack_lenet5(checkpoint_path: str | os.PathLike) -> keras.Model:
    """Build the fp ``lenet5`` and load an ANNT/tensorpack TF1 checkpoint into it.

    Reads ``conv0/W, conv0/b, conv1/W, conv1/b, fc0/W, fc0/b, fc1/W, fc1/b, linear/W, linear/b``
    with ``tf.train.load_checkpoint`` (a checkpoint prefix or its directory). Layouts match
    Keras exactly: conv kernels are (kh, kw, c_in, c_out), dense kernels (in, out), and
    tensorpack's FullyConnected flattens NHWC in row-major order, the same as ``Flatten`` with
    channels_last, so ``fc0/W`` (400, 120) copies without permutation. Optimizer slots and other
    variables in the checkpoint are ignored.

    Input convention: ANNT fed images of shape (N, 28, 28) in [0, 1] and expanded them to
    (N, 28, 28, 1) inside the graph; the returned model takes (N, 28, 28, 1) in [0, 1].
    Raises ``ModelError`` naming missing variables or shape mismatches.
    """
    try:
        reader = tf.train.load_checkpoint(str(checkpoint_path))
    except Exception as err:
        msg = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise ModelError(f"cannot read tensorpack checkpoint {checkpoint_path}: {msg}") from None
    shapes = reader.get_variable_to_shape_map()
    missing = [name for name in _TENSORPACK_LENET5 if name not in shapes]
    if missing:
        raise ModelError(f"checkpoint {checkpoint_path} lacks LeNet-5 variables: {', '.join(missing)}")

    model = build_model("lenet5", (28, 28, 1), 10)
    weights = {layer.name: layer.get_weights() for layer in model.layers if layer.weights}
    bad = []
    for name, (layer, i) in _TENSORPACK_LENET5.items():
        value = reader.get_tensor(name)
        expected = weights[layer][i].shape
        if tuple(value.shape) != tuple(expected):
            bad.append(f"{name} {tuple(value.shape)} != {tuple(expected)}")
        else:
            weights[layer][i] = np.asarray(value, dtype=np.float32)
    if bad:
        raise ModelError(f"checkpoint {checkpoint_path} does not fit lenet5: {'; '.join(bad)}")
    for layer, values in weights.items():
        model.get_layer(layer).set_weights(values)
    return model
