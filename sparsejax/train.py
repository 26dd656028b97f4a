"""Training a small classifier with optax: the project's embedded default model.

The default is ``lenet5-digits`` on scikit-learn's 8x8 digits: real, offline data, seconds
on two CPU cores, and bit-for-bit reproducible from the seed on a given machine (fixed
shuffles from a typed JAX key, no host randomness).
"""

from __future__ import annotations

import dataclasses
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax

from sparsejax import models
from sparsejax.data import Dataset


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """Hyperparameters of :func:`train_classifier` (Adam on softmax cross-entropy)."""

    epochs: int = 30
    batch_size: int = 64
    learning_rate: float = 1e-3
    seed: int = 0


@dataclasses.dataclass(frozen=True)
class TrainReport:
    train_accuracy: float
    losses: tuple[float, ...]  # mean training loss per epoch
    seconds: float


def train_classifier(
    model_name: str, train: Dataset, config: TrainConfig = TrainConfig(), progress: bool = True
) -> tuple[models.Model, TrainReport]:
    """Trains ``model_name`` from a seeded random init on ``train``.

    The last incomplete batch of each epoch is dropped (training only; evaluation never
    drops examples), so every step has the same shape and compiles once.
    """
    from tqdm.auto import tqdm

    spec = models.get_spec(model_name)
    key = jax.random.key(config.seed)
    init_key, shuffle_key = jax.random.split(key)
    params = spec.init(init_key)
    tx = optax.adam(config.learning_rate)
    opt_state = tx.init(params)
    x = jnp.asarray(train.x)
    y = jnp.asarray(train.y)
    n = x.shape[0]
    steps = n // config.batch_size

    def loss_fn(p, xb, yb):
        logits = spec.module.apply(p, xb)
        return optax.softmax_cross_entropy_with_integer_labels(logits, yb).mean()

    @jax.jit
    def epoch(carry, perm):
        def step(c, idx):
            p, s = c
            loss, g = jax.value_and_grad(loss_fn)(p, x[idx], y[idx])
            updates, s = tx.update(g, s, p)
            return (optax.apply_updates(p, updates), s), loss

        batches = perm[: steps * config.batch_size].reshape(steps, config.batch_size)
        carry, losses = jax.lax.scan(step, carry, batches)
        return carry, losses.mean()

    t0 = time.perf_counter()
    losses = []
    carry = (params, opt_state)
    bar = tqdm(range(config.epochs), desc=f"train {model_name}", unit="epoch", disable=not progress)
    for e in bar:
        perm = jax.random.permutation(jax.random.fold_in(shuffle_key, e), n)
        carry, loss = epoch(carry, perm)
        losses.append(float(loss))
        bar.set_postfix(loss=f"{losses[-1]:.4f}")
    params = carry[0]
    model = models.Model(spec, params, weights=f"trained(seed={config.seed})")
    acc = float((model.predict(np.asarray(train.x)).argmax(1) == train.y).mean())
    return model, TrainReport(acc, tuple(losses), time.perf_counter() - t0)
