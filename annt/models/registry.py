"""The architecture registry: every fact about an architecture, in one entry (SPEC §4, §13).

An :class:`ArchSpec` names the builder (``"module:function"`` plus keyword arguments, imported
only when a model is built), the datasets it is made for (and so its input shape), its ANNT
graph defaults, its training defaults and the accuracy the shipped zoo is held to. Config
validation, the ``train`` task, the docs and the model builder all read :data:`ARCHITECTURES`;
adding an architecture is one entry here plus its builder. Pure Python: no TensorFlow.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping

#: Training recipe of the MNIST-sized families: Adam 1e-3, cosine decay to 0 over 15 epochs, batch 128,
#: no weight decay, no augmentation: reaches ~99% on MNIST at fp.
MNIST_TRAINING: Mapping[str, Any] = {
    "epochs": 15, "batch_size": 128, "optimizer": "adam", "learning_rate": 1e-3,
    "lr_schedule": "cosine", "lr_decay_epochs": [], "lr_decay_factor": 0.1,
    "weight_decay": 0.0, "momentum": 0.9, "augment": False,
}
#: He et al. (2016) CIFAR ResNet recipe shortened from 182 to 160 epochs: SGD momentum 0.9, lr 0.1 divided
#: by 10 at epochs 80 and 120, weight decay 1e-4 on kernels, batch 128, crop + flip augmentation.
RESNET_TRAINING: Mapping[str, Any] = {
    "epochs": 160, "batch_size": 128, "optimizer": "sgd", "learning_rate": 0.1,
    "lr_schedule": "step", "lr_decay_epochs": [80, 120], "lr_decay_factor": 0.1,
    "weight_decay": 1e-4, "momentum": 0.9, "augment": True,
}
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
)}


def arch_spec(name: str) -> ArchSpec:
    """The registry entry of ``name``; ``ValueError`` naming the known architectures otherwise."""
    if name not in ARCHITECTURES:
        raise ValueError(f"unknown architecture {name!r}; choose one of {', '.join(ARCHITECTURES)}")
    return ARCHITECTURES[name]
