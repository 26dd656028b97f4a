"""JSMA, the Jacobian-based saliency map attack (Papernot, McDaniel, Jha, Fredrikson, Celik,
Swami, "The Limitations of Deep Learning in Adversarial Settings", EuroS&P 2016), as the
baseline of SparseFool's Table 1; elements (every channel value is a feature).

For one example x, towards a target t, as CleverHans 3.1's ``jsma_symbolic`` (the
implementation most runs of the paper's attack use; the paper's Algorithm 3 on logits):

  init: Γ = the features that can still move (x_i < upper_i when θ > 0, x_i > lower_i when
        θ < 0); the logits Z at x and two gradients, α = ∇Z_t and β = ∇Σ_{j≠t} Z_j
        (1 forward + 2 backward; the reference takes all K rows of the Jacobian and sums
        them, the same two vectors);
  step: the pair (p, q) of distinct features of Γ maximising the saliency (Eq. (11) of the
        paper, with sums of pairs):

            S(p, q) = -(α_p + α_q)(β_p + β_q)   if  α_p + α_q > 0  and  β_p + β_q < 0

        (both inequalities reversed when θ < 0); x_p, x_q ← clip(x + θ) to the box; both
        leave Γ; the logits and the two gradients again at the new point (1 forward +
        2 backward);
  stop: the prediction is adversarial, or ⌊d·γ/2⌋ pairs have been changed (d = H·W·C: at
        most a fraction γ of the features), or fewer than 2 features are left in Γ, or no
        pair satisfies both inequalities.

Targeted towards ``targets`` when they are given (success: the prediction is t). Without
targets this is SparseFool's "untargeted" JSMA (§4.1): the target is drawn uniformly among
the other classes from ``key`` (the reference rolls the one-hot label by a random 1 … K-1),
and success is any prediction other than the label.

Departures. For θ < 0 the reference updates x − θ (moving the features *up*, against its
own search domain and the paper's decreasing variant): here x + θ, the paper's. When no
pair passes the test, the example stops (status DEGENERATE): the reference's argmax of an
all-zero score matrix then picks the "pair" (0, 0), moves feature 0 by 2θ and goes on.
Features outside Γ are excluded from the search directly (the reference pushes their
gradients by ∓2·max|·|, which excludes the same pairs). The d² pair scores are formed in
blocks of rows (memory O(B·d), not O(d²)); the pair is the reference's, the first maximum
in row-major order.

``iterations`` is the number of pairs changed; ``stats.target`` the class aimed at.
"""

from __future__ import annotations

from typing import ClassVar, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from sparsejax.attacks import _config, engine
from sparsejax.attacks._config import param
from sparsejax.attacks.engine import Classifier, Outcome, Passes, Problem
from sparsejax.errors import SparsejaxError

_BLOCK = 128  # rows of the pair-score matrix formed at once


@_config.config
class JSMAConfig:
    """JSMA settings (CleverHans' defaults, θ = 1 and γ = 1). Numbers are traced."""

    attack_name: ClassVar[str] = "jsma"

    theta: float = param(
        1.0,
        doc="change of each chosen feature (> 0 increases, < 0 decreases; clipped to the box)",
        paper="θ",
    )
    gamma: float = param(
        1.0, doc="largest fraction of the features changed (⌊d·γ/2⌋ pairs)", paper="γ"
    )

    def validate(self) -> None:
        _config.check_number(self, "gamma", lo=0.0, hi=1.0, lo_open=True)
        _config.check_number(self, "theta")
        if _config.is_concrete(self.theta) and np.any(np.asarray(self.theta) == 0):
            raise SparsejaxError(f"JSMAConfig theta must be nonzero, got {self.theta}")


class JSMAStats(NamedTuple):
    """Per-example diagnostics in ``AttackResult.stats``."""

    target: jax.Array  # int32 the class aimed at (drawn when untargeted)
    no_pair: jax.Array  # bool: stopped because no pair passed the saliency test


class _State(NamedTuple):
    x: jax.Array  # float32[H, W, C] the current point
    domain: jax.Array  # bool[d] Γ, the features that may still be chosen
    pair: jax.Array  # int32[2] the best pair at x
    found: jax.Array  # bool: that pair passes the saliency test
    fooled: jax.Array  # bool: x is adversarial
    t: jax.Array  # int32 pairs changed
    nonfinite: jax.Array  # bool


def _target(p: Problem, num_classes: int):
    if p.targeted:
        return p.target
    shift = jax.random.randint(jax.random.fold_in(p.key, 0), (), 1, num_classes)
    return (p.label + shift) % num_classes


def best_pair(alpha, beta, domain, increase):
    """(pair int32[2], found bool): the first maximum, in row-major order over (p, q), of
    S(p, q) = -(α_p + α_q)(β_p + β_q) over distinct p, q in ``domain`` passing the sign
    test (α_p + α_q > 0 > β_p + β_q, reversed when not ``increase``), and whether any does.
    Rows are formed ``_BLOCK`` at a time."""
    d = alpha.size
    sign = jnp.where(increase, 1.0, -1.0)
    a, b = sign * alpha, sign * beta  # the test is then always a > 0 > b
    blocks = -(-d // _BLOCK)
    pad = blocks * _BLOCK - d
    a_rows = jnp.pad(a, (0, pad)).reshape(blocks, _BLOCK)
    b_rows = jnp.pad(b, (0, pad)).reshape(blocks, _BLOCK)
    ok_rows = jnp.pad(domain, (0, pad)).reshape(blocks, _BLOCK)
    first = jnp.arange(blocks) * _BLOCK

    def block(args):
        a_r, b_r, ok_r, start = args
        s_a = a_r[:, None] + a[None, :]
        s_b = b_r[:, None] + b[None, :]
        rows = start + jnp.arange(_BLOCK)
        valid = ok_r[:, None] & domain[None, :] & (rows[:, None] != jnp.arange(d)[None, :])
        valid &= (s_a > 0) & (s_b < 0)
        score = jnp.where(valid, -s_a * s_b, -jnp.inf)
        flat = jnp.argmax(score)  # the first maximum of the block
        return score.ravel()[flat], start * d + flat

    scores, flats = jax.lax.map(block, (a_rows, b_rows, ok_rows, first))
    at = jnp.argmax(scores)  # the first block holding the maximum: row-major overall
    flat = flats[at]
    return jnp.stack([flat // d, flat % d]).astype(jnp.int32), scores[at] > -jnp.inf


def _look(f: Classifier, p: Problem, c: JSMAConfig, x, target, domain):
    """Logits, the two gradients and the best pair at x (1 forward + 2 backward)."""
    num_classes = f.num_classes
    rows = lambda logits: jnp.stack(
        [jax.nn.one_hot(target, num_classes), 1.0 - jax.nn.one_hot(target, num_classes)]
    )
    logits, _, grads = f.logits_and_rows(x, rows)
    alpha, beta = grads[0].ravel(), grads[1].ravel()
    finite = jnp.all(jnp.isfinite(logits)) & jnp.all(jnp.isfinite(grads))
    alpha, beta = jnp.where(finite, alpha, 0.0), jnp.where(finite, beta, 0.0)
    pair, found = best_pair(alpha, beta, domain, c.theta > 0)
    pred = jnp.argmax(logits)
    hit = (pred == target) if p.targeted else (pred != p.label)
    fooled = jnp.all(jnp.isfinite(logits)) & hit
    return pair, found & finite, fooled, finite


def _init(f: Classifier, p: Problem, c: JSMAConfig):
    target = _target(p, f.num_classes)
    domain = jnp.where(c.theta > 0, p.x < p.upper, p.x > p.lower).ravel()
    pair, found, fooled, finite = _look(f, p, c, p.x, target, domain)
    state = _State(
        x=p.x, domain=domain, pair=pair, found=found, fooled=fooled, t=jnp.int32(0),
        nonfinite=~finite,
    )  # fmt: skip
    return state, Passes(1, 2)


def _step(f: Classifier, p: Problem, c: JSMAConfig, s: _State):
    """Changes the pair, then looks again: 1 forward + 2 backward."""
    target = _target(p, f.num_classes)
    chosen = jnp.zeros(s.domain.shape, bool).at[s.pair].set(True)
    x = jnp.clip(jnp.where(chosen.reshape(p.x.shape), s.x + c.theta, s.x), p.lower, p.upper)
    domain = s.domain & ~chosen
    pair, found, fooled, finite = _look(f, p, c, x, target, domain)
    s = _State(
        x=x, domain=domain, pair=pair, found=found, fooled=fooled, t=s.t + 1,
        nonfinite=s.nonfinite | ~finite,
    )  # fmt: skip
    return s, Passes(1, 2)


def _max_pairs(p: Problem, c: JSMAConfig):
    return jnp.floor(p.x.size * c.gamma / 2)


def _done(f, p: Problem, c: JSMAConfig, s: _State):
    left = jnp.sum(s.domain)
    return s.fooled | (s.t >= _max_pairs(p, c)) | (left < 2) | ~s.found


def _finish(f, p: Problem, c: JSMAConfig, s: _State, steps):
    return Outcome(
        x_adv=s.x,
        claimed=s.fooled,
        degenerate=~s.fooled & ~s.found & (s.t < _max_pairs(p, c)),
        nonfinite=s.nonfinite,
        iterations=s.t,
        stats=JSMAStats(target=_target(p, f.num_classes), no_pair=~s.fooled & ~s.found),
    )


ALGORITHM = engine.Algorithm(
    name="jsma",
    config_cls=JSMAConfig,
    init=_init,
    step=_step,
    done=_done,
    finish=_finish,
    # The engine's cap; the attack's own, ⌊d·γ/2⌋ pairs, needs d and is in ``_done``.
    max_steps=lambda c: 2**30,
    needs_key=True,  # the random target of the untargeted variant
)

jsma = engine.attack_function(
    ALGORITHM,
    """JSMA (Papernot et al., EuroS&P 2016; CleverHans' ``jsma_symbolic``) on a batch: pairs
    of elements chosen by the saliency map, each moved by θ, until the prediction is
    adversarial or a fraction γ of the elements has changed. Targeted (towards ``targets``)
    when they are given, else SparseFool's variant (a random target from ``key``, success
    on any other class); ``key`` is required.

    ``iterations`` is the number of pairs changed; ``stats`` is a :class:`JSMAStats`.
    """,
)
