"""Hyperparameter sweeps as one compiled call: ``jax.vmap`` over traced config fields."""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp

from sparsejax.errors import SparsejaxError


def sweep_config(config, **values):
    """A config whose swept fields hold 1-D arrays, and the matching ``in_axes`` pytree.

    Args:
      config: a frozen, pytree-registered attack config.
      **values: field name -> sequence of values (all the same length). Only traced
        (numeric) fields can be swept; static fields change shapes or code and need one
        compilation each.

    Returns:
      (swept_config, in_axes) for ``jax.vmap(fn, in_axes=(..., in_axes, ...))``.
    """
    if not values:
        raise SparsejaxError("sweep: give at least one field to sweep")
    static = {f.name for f in dataclasses.fields(config) if f.metadata.get("static")}
    names = {f.name for f in dataclasses.fields(config)}
    lengths = set()
    arrays = {}
    for k, v in values.items():
        if k not in names:
            raise SparsejaxError(f"sweep: {type(config).__name__} has no field {k!r}")
        if k in static:
            raise SparsejaxError(
                f"sweep: {k!r} is static (it changes shapes or code); "
                "run one call per value instead"
            )
        arr = jnp.asarray(v, jnp.float32)
        if arr.ndim != 1 or arr.shape[0] == 0:
            raise SparsejaxError(f"sweep: {k} needs a non-empty 1-D sequence of values")
        lengths.add(arr.shape[0])
        arrays[k] = arr
    if len(lengths) != 1:
        raise SparsejaxError(f"sweep: swept fields have different lengths {sorted(lengths)}")
    swept = dataclasses.replace(config, **arrays)
    axes = jax.tree.map(lambda _: None, config)
    axes = dataclasses.replace(axes, **{k: 0 for k in arrays})
    return swept, axes


def sweep(batch_fn, logits_fn, x, labels, config, *, jit: bool = True, targets=None, **values):
    """Runs ``batch_fn(logits_fn, x, labels, config_i)`` for every swept value in one call.

    ``targets`` (int32[N], optional) is passed on unchanged to every value, for targeted
    attacks (``batch_fn(..., targets=targets)``).

    Example:
      >>> res = sweep(sparsefool_batch, model.logits_fn, x, y, SparseFoolConfig(),
      ...             lambda_=[1.0, 2.0, 3.0])   # doctest: +SKIP
      >>> res.success.shape                        # doctest: +SKIP
      (3, N)

    Returns the attack result with a leading sweep axis on every field.
    """
    cfg, axes = sweep_config(config, **values)
    if targets is None:
        fn = jax.vmap(batch_fn, in_axes=(None, None, None, axes))
    else:
        fn = jax.vmap(
            lambda f, x_, y_, c, t: batch_fn(f, x_, y_, c, targets=t),
            in_axes=(None, None, None, axes, None),
        )
    if jit:
        fn = jax.jit(fn)
    return (
        fn(logits_fn, x, labels, cfg) if targets is None else fn(logits_fn, x, labels, cfg, targets)
    )
