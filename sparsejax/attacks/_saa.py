"""sparse-AutoAttack (sAA; Zhong, Huang, Liu, ICML 2024, CityU-MLO/sPGD ``autoattack/saa.py``),
fixed k pixels (or elements): a cascade of three attacks on the same budget k,

  stage 0: sPGD with the projected gradient rule, ``spgd_steps`` iterations;
  stage 1: sPGD with the unprojected rule, ``spgd_steps`` iterations, only if stage 0 failed;
  stage 2: Sparse-RS (cross-entropy loss, α_init 0.8), ``rs_queries`` queries, only if both
           failed.

An example is robust only if it survives every stage; it stops at its first success. The
budget split is the reference's: 10,000 iterations for each sPGD stage (README) and 10,000
queries for Sparse-RS, so at most 2·(10,000 + 1) forward and backward passes plus 2 clean
forwards and 10,000 queries per example. Untargeted, as the reference (its targeted stages
are commented out).

The cascade is one per-example algorithm: every engine step is one step of the current
stage, or the start of the next one (its ``init``), so stages run on the survivors only and
the engine's queue refills a lane as soon as its example ends in any stage.
``iterations`` counts those engine steps; ``stats.stage`` is the stage the example ended in.
"""

from __future__ import annotations

import dataclasses
from typing import ClassVar, NamedTuple

import jax
import jax.numpy as jnp

from sparsejax.attacks import _config, _sparse_rs, _spgd, _units, engine
from sparsejax.attacks._config import param
from sparsejax.attacks.engine import Classifier, Outcome, Passes, Problem


@_config.config
class SAAConfig:
    """sAA settings (the reference's evaluation). Numbers are traced; budgets and ``unit``
    static."""

    attack_name: ClassVar[str] = "saa"

    k: float = param(20.0, doc="units changed at most (the budget)", unit="`unit`", paper="k")
    unit: _units.Unit = param(
        "pixels", static=True, doc="what k counts: (h, w) positions or channel values"
    )
    spgd_steps: int = param(
        10_000, static=True, doc="iterations of each sPGD stage", unit="steps",
        paper="n_iters (README: 10,000)",
    )  # fmt: skip
    rs_queries: int = param(
        10_000, static=True, doc="queries of the Sparse-RS stage", unit="queries",
        paper="black_iters",
    )  # fmt: skip
    epsilon: float = param(1.0, doc="sPGD's ℓ∞ bound of p", unit="[0, 1] pixel units", paper="ε")
    alpha: float = param(0.25, doc="sPGD's magnitude step, times ε", paper="α")
    beta: float = param(0.25, doc="sPGD's mask step, times √U", paper="β")
    patience: int = param(3, doc="sPGD's unchanged steps before a redraw", unit="steps")
    rs_p_init: float = param(0.8, doc="Sparse-RS's α_init", paper="p_init")

    def validate(self) -> None:
        _config.validate(self._spgd())
        _config.validate(self._rs())

    def _spgd(self) -> _spgd.SPGDConfig:
        return _spgd.SPGDConfig(
            k=self.k, unit=self.unit, steps=self.spgd_steps, epsilon=self.epsilon,
            alpha=self.alpha, beta=self.beta, patience=self.patience,
        )  # fmt: skip

    def _rs(self) -> _sparse_rs.SparseRSConfig:
        return _sparse_rs.SparseRSConfig(
            k=self.k, unit=self.unit, queries=self.rs_queries, p_init=self.rs_p_init,
            loss="ce",
        )  # fmt: skip


class SAAStats(NamedTuple):
    """Per-example diagnostics in ``AttackResult.stats``."""

    stage: jax.Array  # int32 the stage the example ended in (0, 1: sPGD; 2: Sparse-RS)
    spgd_steps: jax.Array  # int32 sPGD iterations over both stages
    rs_queries: jax.Array  # int32 Sparse-RS queries (0 if it did not run)


class _State(NamedTuple):
    stage: jax.Array  # int32 0, 1, 2
    started: jax.Array  # bool: the current stage's init has run
    spgd: _spgd.State  # the sPGD stage's state (stage 0, then stage 1's)
    rs: NamedTuple  # Sparse-RS's state (zeros until stage 2 starts)
    spgd_steps: jax.Array  # int32
    nonfinite: jax.Array  # bool: an earlier stage met a non-finite value


def _stage_problem(p: Problem, stage):
    return dataclasses.replace(p, key=jax.random.fold_in(p.key, 1000 + stage))


def _zeros_like_shapes(tree):
    return jax.tree.map(lambda a: jnp.zeros(a.shape, a.dtype), tree)


def _init(f: Classifier, p: Problem, c: SAAConfig):
    spgd_state, passes = _spgd.init_with_rule(f, _stage_problem(p, 0), c._spgd(), True)
    rs_shapes = jax.eval_shape(lambda: _sparse_rs.ALGORITHM.init(f, p, c._rs())[0])
    state = _State(
        stage=jnp.int32(0), started=jnp.bool_(True), spgd=spgd_state,
        rs=_zeros_like_shapes(rs_shapes), spgd_steps=jnp.int32(0), nonfinite=jnp.bool_(False),
    )  # fmt: skip
    return state, passes


def _as_passes(passes):
    return Passes(jnp.asarray(passes.forwards, jnp.int32), jnp.asarray(passes.backwards, jnp.int32))


# Every value a branch reads is an operand of lane_cond: it hoists only the floating-point
# values a branch closes over, and a batched integer one (a label, a key) may not be closed.


def _spgd_branch(f, p, c: SAAConfig, s: _State):
    """Stage 0 or 1: a step, or, at the first step of stage 1, a fresh sPGD init."""

    def start(p, c, s):
        new, passes = _spgd.init_with_rule(f, _stage_problem(p, 1), c._spgd(), False)
        return s._replace(spgd=new, started=True), _as_passes(passes)

    def step(p, c, s):
        cfg = c._spgd()
        new, passes = _spgd.step_with_rule(f, _stage_problem(p, s.stage), cfg, s.spgd, s.stage == 0)
        over = (new.t >= cfg.steps) & ~new.fooled  # this stage failed: the next one starts
        s = s._replace(
            spgd=new,
            spgd_steps=s.spgd_steps + 1,
            stage=jnp.where(over, s.stage + 1, s.stage),
            started=~over,
            nonfinite=s.nonfinite | (over & new.nonfinite),
        )
        return s, _as_passes(passes)

    return engine.lane_cond(s.started, step, start, p, c, s)


def _rs_branch(f, p, c: SAAConfig, s: _State):
    """Stage 2: Sparse-RS's init, then its steps."""

    def start(p, c, s):
        new, passes = _sparse_rs.ALGORITHM.init(f, _stage_problem(p, 2), c._rs())
        return s._replace(rs=new, started=True), _as_passes(passes)

    def step(p, c, s):
        new, passes = _sparse_rs.ALGORITHM.step(f, _stage_problem(p, 2), c._rs(), s.rs)
        return s._replace(rs=new), _as_passes(passes)

    return engine.lane_cond(s.started, step, start, p, c, s)


def _step(f: Classifier, p: Problem, c: SAAConfig, s: _State):
    rs = lambda p, c, s: _rs_branch(f, p, c, s)
    spgd = lambda p, c, s: _spgd_branch(f, p, c, s)
    return engine.lane_cond(s.stage == 2, rs, spgd, p, c, s)


def _done(f, p: Problem, c: SAAConfig, s: _State):
    in_spgd = (s.stage < 2) & s.spgd.fooled
    in_rs = (s.stage == 2) & s.started & _sparse_rs.ALGORITHM.done(f, p, c._rs(), s.rs)
    return in_spgd | in_rs


def _finish(f, p: Problem, c: SAAConfig, s: _State, steps):
    rs = _sparse_rs.ALGORITHM.finish(f, p, c._rs(), s.rs, steps)
    spgd = _spgd.ALGORITHM.finish(f, p, c._spgd(), s.spgd, steps)
    in_rs = s.stage == 2
    pick = lambda a, b: jnp.where(in_rs, a, b)
    return Outcome(
        x_adv=pick(rs.x_adv, spgd.x_adv),
        claimed=pick(rs.claimed, spgd.claimed),
        # Degenerate only if the last stage found no signal (then neither did sPGD's).
        degenerate=pick(rs.degenerate, spgd.degenerate),
        nonfinite=s.nonfinite | pick(rs.nonfinite, spgd.nonfinite),
        iterations=steps,
        stats=SAAStats(
            stage=s.stage,
            spgd_steps=s.spgd_steps,
            rs_queries=jnp.where(in_rs, rs.stats.queries, 0),
        ),
    )


ALGORITHM = engine.Algorithm(
    name="saa",
    config_cls=SAAConfig,
    init=_init,
    step=_step,
    done=_done,
    finish=_finish,
    # Two sPGD stages, the start of stage 1 and of Sparse-RS, and its queries after the first.
    max_steps=lambda c: 2 * c.spgd_steps + 2 + c.rs_queries - 1,
    targeted="no",
    needs_key=True,
    check_shape=_units.check_k,
)

saa = engine.attack_function(
    ALGORITHM,
    """sparse-AutoAttack (Zhong et al., ICML 2024) on a batch: sPGD (projected), then sPGD
    (unprojected), then Sparse-RS, each on the examples that survived the previous stages,
    all within k changed pixels (or elements, ``config.unit``). Untargeted; ``key`` is
    required.

    ``iterations`` counts engine steps over all stages; ``stats`` is an :class:`SAAStats`.
    """,
)
