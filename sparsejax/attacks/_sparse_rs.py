"""Sparse-RS (Croce, Andriushchenko, Singh, Flammarion, Hein, "Sparse-RS: a Versatile
Framework for Query-Efficient Sparse Black-Box Adversarial Attacks", AAAI 2022), fixed k
pixels (or elements), score-based: the model's logits only, never a gradient.

For one example, as the official code (fra31/sparse-rs, ``rs_attacks.py``, norm ``L0``):

  init: k units (``_units``) drawn uniformly; each of their values set to a corner of the
        box, lower or upper, with probability 1/2 (the reference's {0, 1}) (1 query);
  step i = 1 … queries-1 (1 query each):
        1. n_i = max(⌊α(i) · k⌋, 1) with α the piecewise-constant schedule of the
           reference's ``p_selection`` (α_init halved after 50 of 10,000 queries, … , /20
           after 8,000; the query index rescaled to a budget of 10,000);
        2. the candidate: the best point with n_i of its k units put back to x and n_i
           units outside the set set to random corners (when n_i = 1, a corner other than
           the value it replaces);
        3. it replaces the best point if its loss is lower, or if it is misclassified
           (margin < -1e-6); the example stops once the best margin is ≤ 0.

Loss and margin (the reference's ``margin_and_loss``): untargeted, the margin
Z_y - max_{j≠y} Z_j and the loss that margin (``loss="margin"``) or -CE(y) (``"ce"``);
targeted, the margin max_{j≠t} Z_j - Z_t and the loss CE(t) (the reference forces it).
Budgets and α_init are the README's: 10,000 queries and α_init 0.3 untargeted, 100,000 and
0.1 targeted. One restart. Random numbers come from ``key`` per example (the reference
draws the positions to swap once per batch).

``iterations`` is the number of candidates tried after the initial point (queries - 1);
``stats.queries`` the model queries.
"""

from __future__ import annotations

from typing import ClassVar, Literal, NamedTuple

import jax
import jax.numpy as jnp

from sparsejax.attacks import _config, _units, engine
from sparsejax.attacks._config import param
from sparsejax.attacks.engine import Classifier, Outcome, Passes, Problem
from sparsejax.attacks.losses import cross_entropy, logit_margin


@_config.config
class SparseRSConfig:
    """Sparse-RS settings (the README's ℓ0 runs). Numbers are traced; budgets, ``unit`` and
    the modes static."""

    attack_name: ClassVar[str] = "sparse-rs"

    k: float = param(20.0, doc="units changed at most (the budget)", unit="`unit`", paper="k")
    unit: _units.Unit = param(
        "pixels", static=True, doc="what k counts: (h, w) positions or channel values",
        paper="--use_feature_space for elements",
    )  # fmt: skip
    queries: int = param(
        10_000, static=True, doc="model queries per example, untargeted", unit="queries",
        paper="n_queries",
    )  # fmt: skip
    queries_targeted: int = param(
        100_000, static=True, doc="model queries per example, targeted", unit="queries",
        paper="n_queries (targeted)",
    )  # fmt: skip
    p_init: float = param(0.3, doc="α_init of the schedule, untargeted", paper="alpha_init")
    p_init_targeted: float = param(
        0.1, doc="α_init of the schedule, targeted", paper="alpha_init (targeted)"
    )
    loss: Literal["margin", "ce"] = param(
        "margin", static=True, doc="untargeted loss (targeted is always CE)", paper="loss"
    )
    constant_schedule: bool = param(
        False, static=True, doc="α = α_init / 2 throughout", paper="constant_schedule"
    )

    def validate(self) -> None:
        _config.check_count(self, "queries", lo=1, hi=10_000_000)
        _config.check_count(self, "queries_targeted", lo=1, hi=10_000_000)
        _config.check_number(self, "k", lo=1.0, integer=True)
        _config.check_number(self, "p_init", lo=0.0, hi=1.0, lo_open=True)
        _config.check_number(self, "p_init_targeted", lo=0.0, hi=1.0, lo_open=True)


class SparseRSStats(NamedTuple):
    """Per-example diagnostics in ``AttackResult.stats``."""

    queries: jax.Array  # int32 model queries made
    accepted: jax.Array  # int32 candidates that replaced the best point


class _State(NamedTuple):
    best: jax.Array  # float32[H, W, C]
    chosen: jax.Array  # bool[U] the k units of the best point
    margin: jax.Array  # float32 best margin
    loss: jax.Array  # float32 best loss
    first_loss: jax.Array  # float32 the loss of the initial point
    t: jax.Array  # int32 candidates tried
    accepted: jax.Array  # int32
    varied: jax.Array  # bool: some query's loss differed from the first (else degenerate)
    nonfinite: jax.Array  # bool


def _budget(c: SparseRSConfig, p: Problem) -> int:
    return c.queries_targeted if p.targeted else c.queries


def _alpha(c: SparseRSConfig, p: Problem, i):
    """The reference's ``p_selection`` for ℓ0 (query index rescaled to 10,000)."""
    p_init = c.p_init_targeted if p.targeted else c.p_init
    if c.constant_schedule:
        return p_init / 2
    it = (i * 10_000) // _budget(c, p)
    edges = jnp.asarray([0, 50, 200, 500, 1000, 2000, 4000, 6000, 8000])
    divisors = jnp.asarray([1.0, 2, 4, 5, 6, 8, 10, 12, 15, 20])
    return p_init / divisors[jnp.sum(it > edges)]


def _query(f: Classifier, p: Problem, c: SparseRSConfig, z):
    """(margin, loss) of one candidate (1 forward)."""
    logits = f.logits(z)
    if p.targeted:
        return -logit_margin(logits, p.target), cross_entropy(logits, p.target)
    margin = logit_margin(logits, p.label)
    return margin, (margin if c.loss == "margin" else -cross_entropy(logits, p.label))


def _corners(bits, p: Problem, c: SparseRSConfig, avoid=None):
    """[U, V] a random corner of the box for every unit from ``bits`` (uint32[U], uniform):
    each value lower or upper, as one code in [0, 2^V) per unit (its low V bits). With
    ``avoid`` [U, V], a code other than that value's where it is itself a corner (uniform
    over the 2^V - 1 others, from the remaining bits)."""
    lo, hi = _units.as_units(p.lower, c.unit), _units.as_units(p.upper, c.unit)
    n, v = lo.shape
    code = bits & (2**v - 1)
    if avoid is not None:
        at_hi, at_lo = avoid == hi, avoid == lo
        is_corner = jnp.all(at_hi | at_lo, axis=1)
        old = jnp.sum(jnp.where(at_hi & ~at_lo, 1, 0) << jnp.arange(v)[None], axis=1)
        other = (old + 1 + ((bits >> v) % (2**v - 1)).astype(jnp.int32)) % 2**v
        code = jnp.where(is_corner & (code == old), other, code)
    on = (code[:, None] >> jnp.arange(v)[None]) & 1
    return jnp.where(on == 1, hi, lo)


def _init(f: Classifier, p: Problem, c: SparseRSConfig):
    x_u = _units.as_units(p.x, c.unit)
    draws = jax.random.bits(jax.random.fold_in(p.key, 0), (2, x_u.shape[0]), jnp.uint32)
    chosen = _units.random_ranks(draws[0]) < c.k
    values = _corners(draws[1], p, c)
    best = jnp.where(chosen[:, None], values, x_u).reshape(p.x.shape)
    margin, loss = _query(f, p, c, best)
    # A non-finite start is worse than any finite candidate (and no NaN reaches the stats).
    margin, loss = (jnp.where(jnp.isfinite(loss), v, jnp.inf) for v in (margin, loss))
    state = _State(
        best=best, chosen=chosen, margin=margin, loss=loss, first_loss=loss, t=jnp.int32(0),
        accepted=jnp.int32(0), varied=jnp.bool_(False), nonfinite=jnp.isinf(loss),
    )  # fmt: skip
    return state, Passes(1, 0)


def _step(f: Classifier, p: Problem, c: SparseRSConfig, s: _State):
    """One candidate: 1 forward."""
    i = s.t + 1
    n = jnp.maximum(jnp.floor(_alpha(c, p, i) * c.k), 1.0)
    # All of a step's randomness in one draw (XLA:CPU runs each threefry call as a loop).
    draws = jax.random.bits(jax.random.fold_in(p.key, i), (2, s.chosen.size), jnp.uint32)
    # n units of the set back to x, n units outside it to new corners (uniform choices), from
    # one random order with the set's units first.
    rank = _units.random_ranks(draws[0], first=s.chosen)
    size = jnp.sum(s.chosen, dtype=jnp.int32)
    leave = s.chosen & (rank < n)
    enter = ~s.chosen & (rank < size + n)
    x_u, best_u = _units.as_units(p.x, c.unit), _units.as_units(s.best, c.unit)
    values = _corners(draws[1], p, c, avoid=jnp.where(n == 1, x_u, jnp.nan))
    cand = jnp.where(leave[:, None], x_u, jnp.where(enter[:, None], values, best_u))
    cand = cand.reshape(p.x.shape)
    margin, loss = _query(f, p, c, cand)
    improved = loss < s.loss  # False for NaN
    accept = improved | (margin < -1e-6)
    finite = jnp.isfinite(loss)
    s = s._replace(
        best=jnp.where(accept, cand, s.best),
        chosen=jnp.where(accept, (s.chosen & ~leave) | enter, s.chosen),
        margin=jnp.where(accept, margin, s.margin),
        loss=jnp.where(improved, loss, s.loss),
        t=i,
        accepted=s.accepted + accept,
        varied=s.varied | (finite & (loss != s.first_loss)),
        nonfinite=s.nonfinite | ~finite,
    )
    return s, Passes(1, 0)


def _done(f, p: Problem, c: SparseRSConfig, s: _State):
    return (s.margin <= 0) | (s.t >= _budget(c, p) - 1)


def _finish(f, p: Problem, c: SparseRSConfig, s: _State, steps):
    return Outcome(
        x_adv=s.best,
        claimed=s.margin <= 0,
        degenerate=(s.margin > 0) & ~s.varied,  # every query scored the same: no signal
        nonfinite=s.nonfinite,
        iterations=s.t,
        stats=SparseRSStats(queries=s.t + 1, accepted=s.accepted),
    )


ALGORITHM = engine.Algorithm(
    name="sparse-rs",
    config_cls=SparseRSConfig,
    init=_init,
    step=_step,
    done=_done,
    finish=_finish,
    max_steps=lambda c: max(c.queries, c.queries_targeted) - 1,
    needs_key=True,
    check_shape=_units.check_k,
)

sparse_rs = engine.attack_function(
    ALGORITHM,
    """Sparse-RS (Croce et al., AAAI 2022) on a batch: at most k changed pixels (or elements,
    ``config.unit``) by random search over their positions with values at the corners of
    the box, from the logits alone (no gradient). Targeted (towards ``targets``) when they
    are given; ``key`` is required.

    ``iterations`` is the number of candidates after the initial point; ``stats`` is a
    :class:`SparseRSStats`.
    """,
)
