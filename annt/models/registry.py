"""The architecture registry: every fact about an architecture, in one entry (SPEC §4, §13).

An :class:`ArchSpec` names the builder (``"module:function"`` plus keyword arguments, imported
only when a model is built), the datasets it is made for (and so its input shape), its ANNT
graph defaults, its training defaults and the accuracy the shipped zoo is held to. Config
validation, the ``train`` task, the docs and the model builder all read :data:`ARCHITECTURES`;
adding an architecture is one entry here plus its builder. Pure Python: no TensorFlow.

A family may declare its own **options** (``model.options`` in a config, ``options=`` of
``build_model``): name -> :class:`~annt.config.schema.Key`, checked by the one validation engine
and passed to the builder as keyword arguments (``galloway``: ``type``, ``filters``; ``fcn1``/``fcn2``:
``binary``). The binary families place their own quantizers (``implied_bits``): their bit widths
follow from the options (1 for a binary type, fp otherwise), never from ``model.bits``.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

from annt import bits as bitwidths
from annt.config.schema import Context, Key, check, did_you_mean

#: Training recipe of the MNIST-sized families: Adam 1e-3, cosine decay to 0 over 15 epochs, batch 128,
#: no weight decay, no augmentation: reaches ~99% on MNIST at fp.
MNIST_TRAINING: Mapping[str, Any] = {
    "epochs": 15, "batch_size": 128, "optimizer": "adam", "learning_rate": 1e-3,
    "lr_schedule": "cosine", "lr_decay_epochs": [], "lr_decay_factor": 0.1,
    "weight_decay": 0.0, "l2_dense": 0.0, "momentum": 0.9, "augment": False,
}
#: He et al. (2016) CIFAR ResNet recipe shortened from 182 to 160 epochs: SGD momentum 0.9, lr 0.1 divided
#: by 10 at epochs 80 and 120, weight decay 1e-4 on kernels, batch 128, crop + flip augmentation.
RESNET_TRAINING: Mapping[str, Any] = {
    "epochs": 160, "batch_size": 128, "optimizer": "sgd", "learning_rate": 0.1,
    "lr_schedule": "step", "lr_decay_epochs": [80, 120], "lr_decay_factor": 0.1,
    "weight_decay": 1e-4, "l2_dense": 0.0, "momentum": 0.9, "augment": True,
}
#: Galloway et al. (2018) §3 / Table 6: Adam 1e-3, batch 128, 15 epochs, constant rate (SPEC §13).
GALLOWAY_TRAINING: Mapping[str, Any] = {**MNIST_TRAINING, "lr_schedule": "constant"}
#: Panda et al. (2019): 20 epochs on MNIST, BinaryNet's MNIST hyperparameters (Courbariaux, Hubara et al.
#: 2016, Theano code): Adam from 3e-3, batch 100, decayed (their exponential decay -> annt's cosine).
FCN_TRAINING: Mapping[str, Any] = {**MNIST_TRAINING, "epochs": 20, "batch_size": 100, "learning_rate": 3e-3}
MNIST_LIKE = ("mnist", "fashion_mnist")


@dataclass(frozen=True)
class ArchSpec:
    """One architecture.

    :ivar builder: ``"module:function"`` building the logits tensor (see :mod:`annt.models.architectures`).
    :ivar builder_kwargs: fixed keyword arguments of the builder (e.g. ``capacity=16``).
    :ivar datasets: datasets it is built for; the first fixes nothing, the input shape comes from the dataset.
    :ivar training: default ``train:`` settings (every null in a config's ``train:`` takes these).
    :ivar targets: test-accuracy targets of the shipped zoo by bit tag (``"fp"``, ``"1bit"``, ``"other"``).
    :ivar always_batchnorm: the graph has BatchNorm whatever ``model.batchnorm`` says (ResNets).
    :ivar options: the family's own options, name -> :class:`~annt.config.schema.Key` (``model.options``).
    :ivar implied_bits: for a family that places its own (binary) quantizers: resolved options -> the
        bit width of weights and activations (1 or fp). ``model.bits`` may then only repeat it, and
        ``quantize_first_last`` / ``quantize_last_hidden`` do not apply; binary graphs have BatchNorm
        before every sign activation (recorded as ``batchnorm: true``).
    """

    name: str
    doc: str
    builder: str
    datasets: tuple[str, ...]
    training: Mapping[str, Any]
    builder_kwargs: Mapping[str, Any] = field(default_factory=dict)
    targets: Mapping[str, float] = field(default_factory=dict)
    quantize_last_hidden: bool = False
    always_batchnorm: bool = False
    options: Mapping[str, Key] = field(default_factory=dict)
    implied_bits: Callable[[Mapping[str, Any]], int] | None = None

    def resolve_options(self, given: Mapping[str, Any] | None, ctx: Context | None = None,
                        path: str = "model.options") -> dict[str, Any]:
        """Every option of this arch: ``given`` checked against :attr:`options`, defaults filled in.
        ``ConfigError`` (one line, naming ``path.<option>``) for an unknown option or a bad value."""
        ctx = ctx or Context()
        given = {} if given is None else given
        if not isinstance(given, Mapping):
            raise ctx.fail(path, given, f"must be a mapping of {self.name}'s options ({self.options_text()})")
        for name, value in given.items():
            if name not in self.options:
                owners = [a.name for a in ARCHITECTURES.values() if name in a.options]
                elsewhere = f"; {name} is an option of {' and '.join(owners)}" if owners else did_you_mean(name, self.options)
                raise ctx.fail(f"{path}.{name}", value, f"not an option of {self.name} ({self.options_text()}){elsewhere}")
        return {name: check(ctx, f"{path}.{name}", key, given[name] if name in given else key.default)
                for name, key in self.options.items()}

    def options_text(self) -> str:
        """``"allowed: type, filters"`` or ``"it takes none"``."""
        return f"allowed: {', '.join(self.options)}" if self.options else "it takes no options"

    def bits_for(self, options: Mapping[str, Any]) -> int | None:
        """The bit width the resolved ``options`` imply, or None when ``model.bits`` decides."""
        return None if self.implied_bits is None else bitwidths.check(self.implied_bits(options))

    def target_for(self, bits_tag: str) -> float | None:
        """The zoo's accuracy target for a model of this arch at ``bits_tag`` (``"4bit"``), or None."""
        return self.targets.get(bits_tag, self.targets.get("other"))


def _mnist_cnn(name: str, capacity: int, targets: Mapping[str, float] | None = None) -> ArchSpec:
    return ArchSpec(name, f"ANNT's Mnist {name[-1].upper()}: four 3x3 convs with {capacity} filters, fc 512, dropout 0.5",
                    "annt.models.mnist_cnn:mnist_cnn", MNIST_LIKE, MNIST_TRAINING, {"capacity": capacity},
                    targets or {})


def _resnet(depth: int, n: int) -> ArchSpec:
    return ArchSpec(f"resnet{depth}", f"CIFAR ResNet-{depth} (He et al. 2016, n = {n}, option-A shortcuts)",
                    "annt.models.resnet:resnet", ("cifar10",), RESNET_TRAINING, {"n": n},
                    always_batchnorm=True)


def _galloway_bits(options: Mapping[str, Any]) -> int:
    return bitwidths.FP if options["type"] == "A" else 1


def _fcn_bits(options: Mapping[str, Any]) -> int:
    return 1 if options["binary"] else bitwidths.FP


GALLOWAY_OPTIONS: Mapping[str, Key] = {
    "type": Key("choice", "A", "Galloway et al.'s model type: A full precision; B binary conv2/conv3 (BatchNorm, sign "
                "activation, ±1 weights), not scaled; C = B with a learned scalar (init 0.05) after each binary "
                "layer's ReLU; S = C with the third conv's weights sampled at every pass (random at inference).",
                choices=("A", "B", "C", "S")),
    "filters": Key("int", 64, "K, filters of the first conv (conv2 and conv3 have 2K); the paper's K is 64, 128 "
                   "or 256 (32 in Table 3).", min=1),
}
FCN_OPTIONS: Mapping[str, Key] = {
    "binary": Key("bool", False, "BinaryNet version (Hubara et al.): ±1 weights in every layer, BatchNorm then sign "
                  "activation on hidden layers, the first layer reads the image unbinarized, full-precision "
                  "logits (after a BatchNorm)."),
}


def _fcn(name: str, width: int) -> ArchSpec:
    return ArchSpec(name, f"Panda et al.'s {name.upper()}: 784-{width}(x4)-10 fully connected, ReLU; "
                    "`options: {binary: true}` = BinaryNet (binary weights everywhere, sign activations after BatchNorm)",
                    "annt.models.binary:fcn", MNIST_LIKE, FCN_TRAINING, {"width": width},
                    options=FCN_OPTIONS, implied_bits=_fcn_bits)


ARCHITECTURES: dict[str, ArchSpec] = {spec.name: spec for spec in (
    ArchSpec("lenet5", "ANNT's LeNet-5: conv 6@5x5 tanh, avgpool, conv 16@5x5 tanh, avgpool, fc 120, fc 84, linear",
             "annt.models.lenet:lenet5", MNIST_LIKE, MNIST_TRAINING,
             targets={"fp": 0.989, "1bit": 0.975, "other": 0.985}),
    _mnist_cnn("mnist_a", 16, {"fp": 0.992, "1bit": 0.985, "other": 0.990}),
    _mnist_cnn("mnist_b", 32),
    _mnist_cnn("mnist_c", 64),
    _resnet(20, 3),
    _resnet(32, 5),
    _resnet(44, 7),
    ArchSpec("galloway", "Galloway et al.'s binary CNN (CleverHans tutorial net): conv K@8x8/2 same, ReLU; conv "
             "2K@6x6/2 valid; conv 2K@5x5 valid; dense 10 without bias; `options: {type: A|B|C|S, filters: K}`",
             "annt.models.binary:galloway", MNIST_LIKE, GALLOWAY_TRAINING,
             options=GALLOWAY_OPTIONS, implied_bits=_galloway_bits),
    _fcn("fcn1", 6144),
    _fcn("fcn2", 600),
)}


def arch_spec(name: str) -> ArchSpec:
    """The registry entry of ``name``; ``ValueError`` naming the known architectures otherwise."""
    if name not in ARCHITECTURES:
        raise ValueError(f"unknown architecture {name!r}; choose one of {', '.join(ARCHITECTURES)}")
    return ARCHITECTURES[name]
