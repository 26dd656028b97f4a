"""Losses and adversarial criteria shared by the attacks, on the logits of one example.

Every function takes ``logits: float32[K]`` (one example; ``vmap`` for more) and integer
classes. Cross-entropy is optax's; the rest are the few lines every sparse attack needs and
that used to be written once per attack.
"""

from __future__ import annotations

import jax.numpy as jnp
import optax


def cross_entropy(logits, label):
    """-log softmax(logits)[label] (optax.softmax_cross_entropy_with_integer_labels)."""
    return optax.softmax_cross_entropy_with_integer_labels(logits, jnp.asarray(label, jnp.int32))


def strongest_other(logits, cls):
    """argmax_{j != cls} logits_j: the strongest class other than ``cls`` (int32)."""
    others = jnp.where(jnp.arange(logits.shape[-1]) == cls, -jnp.inf, logits)
    return jnp.argmax(others).astype(jnp.int32)


def logit_margin(logits, cls):
    """Z_cls - max_{j != cls} Z_j: positive while ``cls`` wins (the difference of logits of
    σ-zero, FMN and Sparse-RS; negate it for the side an attack ascends)."""
    others = jnp.max(jnp.where(jnp.arange(logits.shape[-1]) == cls, -jnp.inf, logits))
    return logits[cls] - others


def cw_margin(logits, target, confidence=0.0):
    """Carlini-Wagner's targeted margin max(max_{j != t} Z_j - Z_t + κ, 0) on logits Z."""
    other = jnp.max(jnp.where(jnp.arange(logits.shape[-1]) == target, -jnp.inf, logits))
    return jnp.maximum(other - logits[target] + confidence, 0.0)


def is_adversarial(pred, label, target=None):
    """The adversarial criterion (SPEC §1): pred != label, or pred == target when targeted
    (``target`` is None for an untargeted attack)."""
    if target is None:
        return pred != label
    return pred == target
