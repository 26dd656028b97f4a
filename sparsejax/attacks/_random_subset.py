"""The random-subset baseline of SparseFool §4.1 (Modas, Moosavi-Dezfooli, Frossard, CVPR
2019): for every colour channel, as many elements as a given cardinality, chosen uniformly,
each set to a random corner of the box ({0, 255} in the paper, {lower, upper} here).

For one example, draw j = 0 … draws-1 (1 forward each): in channel c, k_c of the H·W
positions drawn uniformly without replacement (k_c = ``channel_k[c]``, or ``k`` for every
channel); each chosen element set to lower or upper with probability 1/2; stop at the
first draw that is adversarial. The paper sets k_c to SparseFool's per-channel median over
the dataset and draws once (``draws=1``, the default). Random numbers come from ``key``.

A fixed budget in elements: at most Σ_c k_c elements change (fewer where a drawn corner
equals the clean value). ``iterations`` is the number of draws after the first;
``stats.draws`` the draws made.
"""

from __future__ import annotations

from typing import ClassVar, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from sparsejax.attacks import _config, _units, engine
from sparsejax.attacks._config import param
from sparsejax.attacks.engine import Classifier, Outcome, Passes, Problem
from sparsejax.errors import SparsejaxError


@_config.config
class RandomSubsetConfig:
    """Random-subset settings. ``k`` is traced; ``channel_k`` and ``draws`` are static."""

    attack_name: ClassVar[str] = "random-subset"

    k: float = param(10.0, doc="elements changed in each channel", unit="elements", paper="median")
    channel_k: tuple = param(
        (), static=True, doc="one count per channel (overrides k when given)",
        unit="elements", paper="per-channel median",
    )  # fmt: skip
    draws: int = param(1, static=True, doc="random subsets tried per example", unit="forwards")

    def validate(self) -> None:
        _config.check_number(self, "k", lo=0.0, integer=True)
        _config.check_count(self, "draws", lo=1, hi=1_000_000)
        if not isinstance(self.channel_k, tuple) or not all(
            isinstance(v, (int, float, np.integer)) and v >= 0 and v == int(v)
            for v in self.channel_k
        ):
            raise SparsejaxError(
                f"RandomSubsetConfig channel_k must be a tuple of whole numbers >= 0, got "
                f"{self.channel_k!r}"
            )


class RandomSubsetStats(NamedTuple):
    """Per-example diagnostics in ``AttackResult.stats``."""

    draws: jax.Array  # int32 subsets tried


class _State(NamedTuple):
    z: jax.Array  # float32[H, W, C] the last draw
    fooled: jax.Array  # bool
    t: jax.Array  # int32 draws after the first
    first: jax.Array  # float32[K] the logits of the first draw
    varied: jax.Array  # bool: some draw's logits differed from the first's
    nonfinite: jax.Array  # bool


def _counts(c: RandomSubsetConfig, channels: int):
    if c.channel_k:
        return jnp.asarray(c.channel_k, jnp.float32)
    return jnp.broadcast_to(jnp.asarray(c.k, jnp.float32), (channels,))


def _draw(f: Classifier, p: Problem, c: RandomSubsetConfig, j):
    """Draw j and whether it fools the model (1 forward)."""
    h, w, ch = p.x.shape
    key_where, key_value = jax.random.split(jax.random.fold_in(p.key, j))
    scores = jax.random.uniform(key_where, (ch, h * w))
    chosen = jax.vmap(_units.top_k)(scores, _counts(c, ch)).T.reshape(p.x.shape)
    corner = jax.random.bernoulli(key_value, 0.5, p.x.shape)
    z = jnp.where(chosen, jnp.where(corner, p.upper, p.lower), p.x)
    logits = f.logits(z)
    return z, logits, p.fooled_by(logits), ~jnp.all(jnp.isfinite(logits))


def _init(f: Classifier, p: Problem, c: RandomSubsetConfig):
    z, logits, fooled, nonfinite = _draw(f, p, c, 0)
    state = _State(
        z=z, fooled=fooled, t=jnp.int32(0), first=jnp.where(nonfinite, 0.0, logits),
        varied=jnp.bool_(False), nonfinite=nonfinite,
    )  # fmt: skip
    return state, Passes(1, 0)


def _step(f: Classifier, p: Problem, c: RandomSubsetConfig, s: _State):
    """The next draw: 1 forward."""
    z, logits, fooled, nonfinite = _draw(f, p, c, s.t + 1)
    s = s._replace(
        z=z, fooled=fooled, t=s.t + 1, varied=s.varied | (~nonfinite & jnp.any(logits != s.first)),
        nonfinite=s.nonfinite | nonfinite,
    )  # fmt: skip
    return s, Passes(1, 0)


def _done(f, p, c: RandomSubsetConfig, s: _State):
    return s.fooled | (s.t >= c.draws - 1)


def _finish(f, p: Problem, c: RandomSubsetConfig, s: _State, steps):
    return Outcome(
        x_adv=s.z,
        claimed=s.fooled,
        # Nothing moved (k = 0, a flat box), or every draw scored the same (a flat model;
        # one draw alone cannot tell).
        degenerate=~s.fooled & (jnp.all(s.z == p.x) | ((s.t > 0) & ~s.varied)),
        nonfinite=s.nonfinite,
        iterations=s.t,
        stats=RandomSubsetStats(draws=s.t + 1),
    )


def _check_shape(c: RandomSubsetConfig, example_shape) -> None:
    h, w, ch = example_shape
    if c.channel_k and len(c.channel_k) != ch:
        raise SparsejaxError(
            f"RandomSubsetConfig channel_k has {len(c.channel_k)} counts for {ch} channels"
        )
    counts = c.channel_k or ((c.k,) if _config.is_concrete(c.k) else ())
    if any(np.any(np.asarray(v) > h * w) for v in counts):
        raise SparsejaxError(
            f"RandomSubsetConfig k must be <= {h * w}, the positions of one channel; got "
            f"{c.channel_k or c.k}"
        )


def budget(c: RandomSubsetConfig, example_shape) -> float:
    """The most elements one example may change: Σ_c k_c."""
    return float(sum(c.channel_k)) if c.channel_k else float(np.max(c.k)) * example_shape[-1]


ALGORITHM = engine.Algorithm(
    name="random-subset",
    config_cls=RandomSubsetConfig,
    init=_init,
    step=_step,
    done=_done,
    finish=_finish,
    max_steps=lambda c: c.draws - 1,
    needs_key=True,
    check_shape=_check_shape,
)

random_subset = engine.attack_function(
    ALGORITHM,
    """The random-subset baseline (SparseFool §4.1) on a batch: in every channel, k random
    elements set to random corners of the box, up to ``draws`` times; ``key`` is required.

    ``iterations`` is the number of draws after the first; ``stats`` is a
    :class:`RandomSubsetStats`.
    """,
)
