"""The one-pixel attack (Su, Vargas, Sakurai, "One Pixel Attack for Fooling Deep Neural
Networks", IEEE TEVC 2019), the baseline "1-PA" of SparseFool's Table 1: differential
evolution over k pixels, each a candidate (row, column, value per channel); score-based
(the model's probabilities only, never a gradient).

For one example, as the paper's §3 describes it:

  init: a population of P candidates, coordinates uniform over the image and values drawn
        from N(128, 127) (on [0, 255]: N(128/255, 127/255) here), clipped to the box
        (P forwards);
  step: one generation (P forwards): for every member i, the mutant
        z_r1 + F·(z_r2 − z_r3) with r1, r2, r3 distinct and ≠ i (DE/rand/1, F = 0.5, no
        crossover), clipped to the image and the box; it replaces member i if its fitness
        is better: the probability of the true class lower (untargeted), of the target
        higher (targeted);
  stop: the best member is adversarial (the argmax criterion: the paper's early stop is a
        threshold on the probability, 5% for the true class, 50% for the target), or G
        generations have run.

SparseFool ran 1-PA with k = 1 first and k + 1 whenever a run fails: ``max_pixels`` > k
does that here, a fresh population (P more forwards) for each k, up to ``max_pixels``.
A candidate's pixel is (⌊row⌋, ⌊column⌋) with all its channels set; two of its k pixels
may fall on one position (the later one wins), as in the reference implementations.

``iterations`` counts generations over every k; ``stats.pixels`` is the k of the returned
point, ``stats.generations`` the generations of its round.
"""

from __future__ import annotations

from typing import ClassVar, NamedTuple

import jax
import jax.numpy as jnp

from sparsejax.attacks import _config, engine
from sparsejax.attacks._config import param
from sparsejax.attacks.engine import Classifier, Outcome, Passes, Problem
from sparsejax.errors import SparsejaxError


@_config.config
class OnePixelConfig:
    """One-pixel attack settings (the paper's). ``mutation`` and the initial distribution
    are traced; the sizes static."""

    attack_name: ClassVar[str] = "one-pixel"

    pixels: int = param(1, static=True, doc="pixels changed (k), first round", unit="pixels")
    max_pixels: int = param(
        1, static=True, doc="grow k by one after each failed round, up to this (SparseFool's "
        "protocol; = pixels: one round)", unit="pixels",
    )  # fmt: skip
    population: int = param(400, static=True, doc="candidates per generation", paper="400")
    generations: int = param(100, static=True, doc="generations per round", paper="100")
    mutation: float = param(0.5, doc="DE/rand/1 scale factor", paper="F")
    init_mean: float = param(128 / 255, doc="mean of the initial values", paper="μ = 128")
    init_std: float = param(127 / 255, doc="deviation of the initial values", paper="σ = 127")

    def validate(self) -> None:
        _config.check_count(self, "pixels", lo=1, hi=10_000)
        _config.check_count(self, "max_pixels", lo=1, hi=10_000)
        _config.check_count(self, "population", lo=4, hi=100_000)
        _config.check_count(self, "generations", lo=1, hi=1_000_000)
        if self.max_pixels < self.pixels:
            raise SparsejaxError(
                f"OnePixelConfig max_pixels ({self.max_pixels}) must be >= pixels ({self.pixels})"
            )
        _config.check_number(self, "mutation", lo=0.0, lo_open=True)
        _config.check_number(self, "init_std", lo=0.0)


class OnePixelStats(NamedTuple):
    """Per-example diagnostics in ``AttackResult.stats``."""

    pixels: jax.Array  # int32 k of the returned point
    generations: jax.Array  # int32 generations of its round
    fitness: jax.Array  # float32 the best fitness (probability of the true class / target)


class _State(NamedTuple):
    population: jax.Array  # float32[P, K_max, 2 + C]
    fitness: jax.Array  # float32[P], lower is better
    fooled: jax.Array  # bool[P]
    k: jax.Array  # int32 pixels of this round
    g: jax.Array  # int32 generations of this round
    t: jax.Array  # int32 generations over every round
    varied: jax.Array  # bool: some fitness differed from the first
    nonfinite: jax.Array  # bool


def _apply(p: Problem, k, candidate):
    """The image of one candidate [K_max, 2 + C]: its first k pixels set."""
    h, w, _ = p.x.shape
    rows = jnp.clip(jnp.floor(candidate[:, 0]), 0, h - 1).astype(jnp.int32)
    cols = jnp.clip(jnp.floor(candidate[:, 1]), 0, w - 1).astype(jnp.int32)

    def put(z, j):
        value = jnp.clip(candidate[j, 2:], p.lower[rows[j], cols[j]], p.upper[rows[j], cols[j]])
        return jnp.where(j < k, z.at[rows[j], cols[j]].set(value), z), None

    return jax.lax.scan(put, p.x, jnp.arange(candidate.shape[0]))[0]


def _evaluate(f: Classifier, p: Problem, k, population):
    """(fitness, adversarial) of every candidate (P forwards, one batch)."""
    images = jax.vmap(lambda cand: _apply(p, k, cand))(population)
    logits = f.logits_fn(images)  # [P, classes]: the population is one batch of the model
    probs = jax.nn.softmax(logits, axis=-1)
    fitness = -probs[:, p.target] if p.targeted else probs[:, p.label]
    finite = jnp.all(jnp.isfinite(logits), axis=-1)
    fooled = jax.vmap(p.fooled_by)(logits)
    return jnp.where(finite, fitness, jnp.inf), fooled & finite, ~jnp.all(finite)


def _clip(p: Problem, population):
    h, w, _ = p.x.shape
    top = jnp.asarray([h, w], jnp.float32) - 1e-3
    coords = jnp.clip(population[..., :2], 0.0, top[None, None])
    return jnp.concatenate([coords, population[..., 2:]], axis=-1)


def _random_population(key, p: Problem, c: OnePixelConfig):
    h, w, ch = p.x.shape
    key_pos, key_value = jax.random.split(key)
    shape = (c.population, c.max_pixels)
    size = jnp.asarray([h, w], jnp.float32)
    pos = jax.random.uniform(key_pos, (*shape, 2)) * size[None, None]
    values = c.init_mean + c.init_std * jax.random.normal(key_value, (*shape, ch))
    return jnp.concatenate([pos, values], axis=-1)


def _round(f: Classifier, p: Problem, c: OnePixelConfig, k, key):
    population = _random_population(key, p, c)
    fitness, fooled, nonfinite = _evaluate(f, p, k, population)
    return population, fitness, fooled, nonfinite


def _init(f: Classifier, p: Problem, c: OnePixelConfig):
    k = jnp.int32(c.pixels)
    population, fitness, fooled, nonfinite = _round(f, p, c, k, jax.random.fold_in(p.key, 0))
    state = _State(
        population=population, fitness=fitness, fooled=fooled, k=k, g=jnp.int32(0),
        t=jnp.int32(0), varied=jnp.bool_(False), nonfinite=nonfinite,
    )  # fmt: skip
    return state, Passes(c.population, 0)


def donors(key, n: int):
    """int32[n, 3]: for every member i, three distinct members r1, r2, r3, none of them i."""
    keys = jax.random.split(key, n)
    others = jax.vmap(lambda k: jax.random.choice(k, n - 1, (3,), replace=False))(keys)
    return others + (others >= jnp.arange(n)[:, None])  # skip i itself


def _mutants(key, c: OnePixelConfig, population):
    """DE/rand/1: z_r1 + F (z_r2 - z_r3) for every member."""
    r = donors(key, c.population)
    return population[r[:, 0]] + c.mutation * (population[r[:, 1]] - population[r[:, 2]])


def _step(f: Classifier, p: Problem, c: OnePixelConfig, s: _State):
    """One generation (P forwards), and a new round with k + 1 pixels when this one ends
    without success (P more)."""
    key = jax.random.fold_in(p.key, s.t + 1)
    key_mutate, key_round = jax.random.split(key)
    children = _clip(p, _mutants(key_mutate, c, s.population))
    fitness, fooled, nonfinite = _evaluate(f, p, s.k, children)
    better = fitness < s.fitness  # False for NaN / inf
    population = jnp.where(better[:, None, None], children, s.population)
    s = s._replace(
        population=population,
        fitness=jnp.where(better, fitness, s.fitness),
        fooled=jnp.where(better, fooled, s.fooled),
        g=s.g + 1,
        t=s.t + 1,
        varied=s.varied | jnp.any(jnp.isfinite(fitness) & (fitness != s.fitness[0])),
        nonfinite=s.nonfinite | nonfinite,
    )
    grow = ~jnp.any(s.fooled) & (s.g >= c.generations) & (s.k < c.max_pixels)
    # The problem and the key go in as operands: lane_cond's branches may close over
    # floating-point values only.
    s = engine.lane_cond(grow, _next_round(f, c), lambda s, p, key: s, s, p, key_round)
    return s, Passes(c.population * (1 + grow.astype(jnp.int32)), 0)


def _next_round(f: Classifier, c: OnePixelConfig):
    """A fresh population with one pixel more (P forwards)."""

    def next_round(s: _State, p: Problem, key):
        k = s.k + 1
        population, fitness, fooled, nonfinite = _round(f, p, c, k, key)
        return s._replace(
            population=population, fitness=fitness, fooled=fooled, k=k, g=jnp.int32(0),
            nonfinite=s.nonfinite | nonfinite,
        )  # fmt: skip

    return next_round


def _done(f, p, c: OnePixelConfig, s: _State):
    return jnp.any(s.fooled) | ((s.g >= c.generations) & (s.k >= c.max_pixels))


def _finish(f, p: Problem, c: OnePixelConfig, s: _State, steps):
    # The best member: an adversarial one if any (the fittest among them), else the fittest.
    score = jnp.where(s.fooled, s.fitness - 1e9, s.fitness)
    best = jnp.argmin(score)
    x_adv = _apply(p, s.k, s.population[best])
    return Outcome(
        x_adv=x_adv,
        claimed=s.fooled[best],
        degenerate=~s.fooled[best] & ~s.varied,  # every candidate scored the same
        nonfinite=s.nonfinite,
        iterations=s.t,
        stats=OnePixelStats(
            pixels=s.k,
            generations=s.g,
            fitness=jnp.abs(jnp.where(jnp.isfinite(s.fitness[best]), s.fitness[best], 0.0)),
        ),
    )


def _check_shape(c: OnePixelConfig, example_shape) -> None:
    h, w, _ = example_shape
    if c.max_pixels > h * w:
        raise SparsejaxError(f"OnePixelConfig max_pixels must be <= {h * w}, got {c.max_pixels}")


ALGORITHM = engine.Algorithm(
    name="one-pixel",
    config_cls=OnePixelConfig,
    init=_init,
    step=_step,
    done=_done,
    finish=_finish,
    max_steps=lambda c: c.generations * (c.max_pixels - c.pixels + 1),
    needs_key=True,
    check_shape=_check_shape,
)

one_pixel = engine.attack_function(
    ALGORITHM,
    """The one-pixel attack (Su et al., IEEE TEVC 2019) on a batch: differential evolution
    (DE/rand/1, no crossover) over k pixels from the model's probabilities alone; with
    ``max_pixels`` > ``pixels``, k grows by one after each failed round (SparseFool's
    protocol). Targeted (towards ``targets``) when they are given; ``key`` is required.

    ``iterations`` counts generations; ``stats`` is a :class:`OnePixelStats`.
    """,
)
