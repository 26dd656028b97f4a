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


def train_or_reuse(
    model_name: str,
    dataset: str,
    out,
    epochs: int = 30,
    seed: int = 0,
    force: bool = False,
    progress: bool = True,
):
    """Trains ``model_name`` on ``dataset``'s train split and saves a Flax checkpoint at
    ``out`` (with ``out.train.json``), or reuses ``out`` when it holds the same model,
    data and training config. Returns the loaded :class:`~sparsejax.models.Model`."""
    import json
    from pathlib import Path

    from sparsejax import data, io
    from sparsejax.models import checkpoint

    out = Path(out)
    config = TrainConfig(epochs=epochs, seed=seed)
    meta = {
        "trained_on": dataset,
        "train_config": json.dumps(dataclasses.asdict(config), sort_keys=True),
    }
    if out.is_file() and not force:
        name, _, old_meta = checkpoint.read(out)
        if (
            name == model_name
            and old_meta.get("train_config") == meta["train_config"]
            and old_meta.get("trained_on") == dataset
        ):
            print(f"reusing {out} (same model, data and training config; --force to retrain)")
            return models.load(model_name, out)
    train_ds = data.load_dataset(dataset, split="train")
    model, report = train_classifier(model_name, train_ds, config, progress=progress)
    meta.update(train_accuracy=report.train_accuracy, train_seconds=report.seconds)
    checkpoint.save(out, model_name, model.variables, meta)
    io.write_json(
        out.with_suffix(".train.json"),
        {
            "model": model_name,
            "dataset": dataset,
            "config": dataclasses.asdict(config),
            "train_accuracy": report.train_accuracy,
            "epoch_losses": list(report.losses),
            "seconds": report.seconds,
            "versions": io.versions(),
        },
    )
    print(
        f"trained {model_name} on {len(train_ds)} {dataset}/train images in "
        f"{report.seconds:.1f} s (train accuracy {report.train_accuracy:.4f}) -> {out}"
    )
    return models.load(model_name, out)
