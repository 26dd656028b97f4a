"""The random-subset baseline (SparseFool §4.1): exactly k_c elements per channel at box
corners, uniform positions and corners, the first fooling draw kept, the draws counted, the
budget checked before compilation. The generic properties are in test_conformance.py."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from sparsejax.attacks import RandomSubsetConfig, Status, random_subset
from sparsejax.errors import SparsejaxError

SHAPE = (4, 4, 3)


def _model(fooled_when_moved, x):
    """3 classes: class 0 always, or class 1 as soon as any element leaves 0.5."""
    moved = fooled_when_moved * jnp.any(x != 0.5, axis=(1, 2, 3)).astype(jnp.float32)
    return jnp.stack([1.0 - moved, moved, jnp.zeros_like(moved)], axis=1)


_never = jax.tree_util.Partial(_model, jnp.float32(0.0))
_moved = jax.tree_util.Partial(_model, jnp.float32(1.0))  # the same trace as _never


_attack = jax.jit(random_subset)


def test_exactly_k_per_channel_at_the_box_corners():
    x = jnp.full((64, *SHAPE), 0.5)
    y = jnp.zeros((64,), jnp.int32)
    lower, upper = jnp.full_like(x, 0.1), jnp.full_like(x, 0.9)
    for cfg, want in [
        (RandomSubsetConfig(k=4.0), (4, 4, 4)),
        (RandomSubsetConfig(channel_k=(3, 5, 0)), (3, 5, 0)),
    ]:
        r = _attack(_never, x, y, cfg, lower=lower, upper=upper, key=jax.random.key(0))
        changed = np.asarray(r.x_adv != x)
        np.testing.assert_array_equal(changed.sum(axis=(1, 2)), np.broadcast_to(want, (64, 3)))
        values = np.asarray(r.x_adv)[changed]
        assert set(values.tolist()) <= {np.float32(0.1).item(), np.float32(0.9).item()}
        assert 0.4 < np.mean(values == np.float32(0.9)) < 0.6  # each corner half the time


def test_positions_are_uniform_and_the_key_decides_them():
    x = jnp.full((2000, *SHAPE), 0.5)
    y = jnp.zeros((2000,), jnp.int32)
    r = _attack(_never, x, y, RandomSubsetConfig(k=1.0), key=jax.random.key(1))
    hits = np.asarray(r.x_adv != x).sum(0)  # [4, 4, 3]: 2000 draws over 16 positions each
    assert hits.min() > 2000 / 16 * 0.7 and hits.max() < 2000 / 16 * 1.3
    again = _attack(_never, x, y, RandomSubsetConfig(k=1.0), key=jax.random.key(1))
    np.testing.assert_array_equal(again.x_adv, r.x_adv)
    other = _attack(_never, x, y, RandomSubsetConfig(k=1.0), key=jax.random.key(2))
    assert np.any(np.asarray(other.x_adv) != np.asarray(r.x_adv))


def test_the_first_fooling_draw_is_kept_and_every_draw_counted():
    x = jnp.full((4, *SHAPE), 0.5)
    y = jnp.zeros((4,), jnp.int32)
    cfg = RandomSubsetConfig(k=2.0, draws=5)
    never = _attack(_never, x, y, cfg, key=jax.random.key(0))
    np.testing.assert_array_equal(never.stats.draws, 5)
    np.testing.assert_array_equal(never.forwards, 1 + 5 + 1)  # clean, draws, re-verification
    # Every draw scored the same: no signal (a one-draw run could not tell).
    assert set(np.asarray(never.status)) == {Status.DEGENERATE}
    moved = _attack(_moved, x, y, cfg, key=jax.random.key(0))
    np.testing.assert_array_equal(moved.stats.draws, 1)
    assert bool(moved.success.all())
    np.testing.assert_array_equal(np.asarray(moved.x_adv != x).sum(axis=(1, 2)), 2)


def test_bad_budgets_fail_before_compilation():
    x = jnp.full((1, *SHAPE), 0.5)
    y = jnp.zeros((1,), jnp.int32)
    with pytest.raises(SparsejaxError, match="3 channels"):
        random_subset(_never, x, y, RandomSubsetConfig(channel_k=(1, 2)), key=jax.random.key(0))
    with pytest.raises(SparsejaxError, match="must be <= 16"):
        random_subset(_never, x, y, RandomSubsetConfig(k=17.0), key=jax.random.key(0))
    with pytest.raises(SparsejaxError, match="channel_k"):
        RandomSubsetConfig(channel_k=(1.5,)).validate()
