"""The papers' binary families (SPEC §13): Galloway et al.'s CNN (``galloway``) and Panda et al.'s
fully connected nets (``fcn1``, ``fcn2``), each with a full-precision and a binary version.

Binary layers use the ``sign`` quantizer (:func:`annt.models.quantizers.binary_sign`: ±1 forward,
hard-tanh straight-through gradient) for weights and activations, ``stochastic_sign`` for the
weights of Galloway's type S. No DoReFa here: the family's options choose the graph and imply its
bit widths (1 for a binary version, fp otherwise; :attr:`annt.models.registry.ArchSpec.implied_bits`),
so ``spec`` contributes only ``batchnorm`` (BatchNorm for the full-precision versions, at the places
where the binary ones have it). Binary versions always have BatchNorm before each sign activation.
"""
from __future__ import annotations

import keras
from keras import layers

from annt.models.architectures import BN_MOMENTUM, BuildSpec
from annt.models.layers import ClipWeights, LearnedScale, QuantActivation, QuantConv2D, QuantDense

SIGN = "sign"
STOCHASTIC_SIGN = "stochastic_sign"
#: Galloway et al.: "Convolution kernels were initialized from a truncated normal distribution with σ=0.2"
#: (truncated at 2σ, as ``tf.truncated_normal`` in their code).
BINARY_KERNEL_STDDEV = 0.2
#: Their ``SReLU`` scalar's initial value (the paper says "e.g. 1e-2").
SCALE_INIT = 0.05
#: tf.contrib.layers.batch_norm's epsilon in their code.
GALLOWAY_BN_EPSILON = 1e-5


def galloway(inputs, spec: BuildSpec, num_classes: int, quantize_last_hidden: bool, *, type: str = "A",
             filters: int = 64):
    """Logits of Galloway et al.'s CNN (the CleverHans tutorial net of their code,
    AngusG/cleverhans-attacking-bnns ``tutorial_models.py``), K = ``filters``:

        conv1 K@8x8 stride 2 same → ReLU
        → [BN → sign] → conv2 2K@6x6 stride 2 valid → ReLU [→ ×α]
        → [BN → sign] → conv3 2K@5x5 stride 1 valid → ReLU [→ ×α]
        → flatten → dense 10, no bias → logits

    * ``type`` A: full precision, no BatchNorm (with ``spec.batchnorm``: BN where B has it, no sign).
    * B: the bracketed BN (no scale γ, as ``tf.contrib.layers.batch_norm``'s default) and sign
      activation binarize the inputs of conv2 and conv3, whose kernels are sign(W) (init truncated
      normal σ = 0.2); not scaled.
    * C: B plus a learned scalar α (:class:`~annt.models.layers.LearnedScale`, init 0.05) after the
      ReLU of conv2 and of conv3, where their code puts it (``SReLU``). α after conv2 feeds a
      BatchNorm, which undoes any scale, so only conv3's α changes the function (the logits' scale).
    * S: C with conv3's kernel ``stochastic_sign(W)``, drawn anew on every forward pass, training and
      inference (the layer reports ``annt_stochastic``).

    Decided from their code: conv1 stays full precision and reads the image; **the final dense layer is
    full precision** (their ``Linear``: a float matrix, no bias, never binarized) and so are the
    logits; no layer has a bias. Full-precision kernels start from ``he_normal`` (annt's default;
    their code uses a unit-norm truncated normal), BatchNorm momentum is annt's 0.9 (theirs 0.999).
    """
    binary = type != "A"
    x = QuantConv2D(filters, 8, strides=2, padding="same", use_bias=False, name="conv1")(inputs)
    x = layers.Activation("relu", name="conv1_relu")(x)
    for prev, name, kernel, stride in (("conv1", "conv2", 6, 2), ("conv2", "conv3", 5, 1)):
        if binary or spec.batchnorm:
            x = layers.BatchNormalization(momentum=BN_MOMENTUM, epsilon=GALLOWAY_BN_EPSILON, scale=False,
                                          name=f"{prev}_bn")(x)
        quantizer, init = None, "he_normal"
        if binary:
            x = QuantActivation(SIGN, name=f"{prev}_qa")(x)
            quantizer = STOCHASTIC_SIGN if (type == "S" and name == "conv3") else SIGN
            init = keras.initializers.TruncatedNormal(stddev=BINARY_KERNEL_STDDEV)
        x = QuantConv2D(2 * filters, kernel, strides=stride, padding="valid", use_bias=False,
                        kernel_quantizer=quantizer, kernel_initializer=init, name=name)(x)
        x = layers.Activation("relu", name=f"{name}_relu")(x)
        if type in ("C", "S"):
            x = LearnedScale(SCALE_INIT, name=f"{name}_scale")(x)
    x = layers.Flatten(name="flatten")(x)
    return QuantDense(num_classes, use_bias=False, name="logits")(x)


def fcn(inputs, spec: BuildSpec, num_classes: int, quantize_last_hidden: bool, *, width: int, depth: int = 4,
        binary: bool = False):
    """Logits of Panda et al.'s fully connected net 784-``width``(×``depth``)-10 (FCN1: 6144, FCN2: 600).

    * Full precision: ``fc<i>`` dense ``width`` with bias → ReLU, four times, → ``linear`` dense 10 with
      bias. No BatchNorm (``spec.batchnorm`` adds one before each ReLU, where the BNN has it) and no
      dropout: the paper names neither, and SPEC §4 keeps graphs free of extras not asked for.
    * ``binary`` (BinaryNet, Hubara et al. 2016, as the paper's imported models): every kernel is
      sign(W) (``fc1`` included: it reads the image unbinarized), weights clipped to [−1, 1] after
      each update (:class:`~annt.models.layers.ClipWeights`) and started from Glorot uniform; each
      hidden layer is dense (no bias: the BatchNorm's β replaces it) → BatchNorm → sign; the last
      layer ``linear`` has binary weights too (SPEC: "binary weights in every layer") and a BatchNorm
      ``linear_bn`` on its output as in BinaryNet's MNIST net, whose output is the logits (full
      precision, not binarized: ±1 weights on ±1 inputs give logits of order ±width that the BN
      rescales).
    """
    x = layers.Flatten(name="flatten")(inputs)

    def dense(x, units, name):
        if not binary:
            return QuantDense(units, name=name)(x)
        return QuantDense(units, use_bias=False, kernel_quantizer=SIGN, kernel_initializer="glorot_uniform",
                          kernel_constraint=ClipWeights(1.0), name=name)(x)

    for i in range(1, depth + 1):
        x = dense(x, width, f"fc{i}")
        if binary or spec.batchnorm:
            x = layers.BatchNormalization(momentum=BN_MOMENTUM, name=f"fc{i}_bn")(x)
        x = QuantActivation(SIGN, name=f"fc{i}_qa")(x) if binary else layers.Activation("relu", name=f"fc{i}_relu")(x)
    x = dense(x, num_classes, "linear")
    if binary:
        x = layers.BatchNormalization(momentum=BN_MOMENTUM, name="linear_bn")(x)
    return x
