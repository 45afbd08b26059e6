"""How a model's layers tell adaptive attacks what they are: stochastic (EOT) or non-differentiable (BPDA).

A Keras layer declares itself with a class (or instance) attribute; nothing else is needed:

* ``annt_stochastic = True``: the layer samples in ``call()`` on every forward pass, inference
  (``training=False``) included (stochastic weights, random input transforms, dropout kept at test
  time). Attacks then average gradients over ``eot_samples`` passes (expectation over
  transformation, Athalye et al. 2018): ``∇ ≈ (1/n) Σ_t ∇ L(f_t(x))``, each pass a fresh draw.
* ``annt_bpda = True``: the layer is a non-differentiable step whose output has its input's shape
  (rounding, input discretization). With ``bpda: true`` the attack differentiates it as the
  identity (backward-pass differentiable approximation, same paper): inside the estimator's
  gradient graphs the layer's ``call`` is wrapped by :func:`identity_backward`, so the forward
  value is exactly the layer's output and the backward pass hands the incoming gradient through
  unchanged. With ``bpda: false`` the layer's own (usually zero) gradient stays: the masked view.

Predictions never use the wrapper (the estimator traces its prediction graph without it), so they
are identical with and without BPDA.
"""
from __future__ import annotations

import contextlib
import functools
from typing import Iterator

__all__ = ["NON_DIFFERENTIABLE", "STOCHASTIC", "identity_backward", "marked_layers"]

#: Attribute of a layer that samples on every forward pass, inference included.
STOCHASTIC = "annt_stochastic"
#: Attribute of a shape-preserving, non-differentiable layer that BPDA treats as the identity.
NON_DIFFERENTIABLE = "annt_bpda"


def marked_layers(model, attribute: str) -> list:
    """The layers of ``model`` (nested models included) whose ``attribute`` is true."""
    layers = model._flatten_layers(include_self=False, recursive=True) if hasattr(model, "_flatten_layers") else []
    return [layer for layer in layers if getattr(layer, attribute, False) is True]


def _with_identity_gradient(call):
    import tensorflow as tf

    @functools.wraps(call)
    def wrapped(inputs, *args, **kwargs):
        @tf.custom_gradient
        def step(x):
            y = call(x, *args, **kwargs)
            if y.shape.rank != x.shape.rank or any(a is not None and b is not None and a != b
                                                   for a, b in zip(y.shape.as_list(), x.shape.as_list())):
                raise ValueError(f"BPDA needs a shape-preserving layer; {call.__qualname__} maps {x.shape} to {y.shape}")

            def grad(dy, variables=None):
                if variables is None:
                    return dy
                return dy, [tf.zeros_like(v) for v in variables]  # the attack never needs weight gradients

            return y, grad

        return step(inputs)

    return wrapped


@contextlib.contextmanager
def identity_backward(model) -> Iterator[list]:
    """While active, every ``annt_bpda`` layer of ``model`` computes its usual output but passes
    gradients through unchanged. Meant for *tracing* a gradient graph (``tf.function``): the
    substitution is baked into that graph and the layers are restored on exit."""
    layers = marked_layers(model, NON_DIFFERENTIABLE)
    patched = []
    try:
        for layer in layers:
            # an instance attribute shadows the class's call; Keras' __call__ looks up self.call
            patched.append((layer, layer.__dict__.get("call")))
            object.__setattr__(layer, "call", _with_identity_gradient(layer.call))
        yield layers
    finally:
        for layer, own in patched:
            if own is None:
                object.__delattr__(layer, "call")
            else:
                object.__setattr__(layer, "call", own)
