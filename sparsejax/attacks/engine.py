"""The one engine under every attack (SPEC §2).

An attack is an :class:`Algorithm`: pure functions written for *one* example,

    init(f, p, c)        -> (state, Passes)   the state before the first step
    step(f, p, c, s)     -> (state, Passes)   one iteration
    done(f, p, c, s)     -> bool              stop early (success found, nothing left to do)
    finish(f, p, c, s, steps) -> Outcome      the image to return and what the attack claims

with ``f`` the :class:`Classifier` (the model), ``p`` the :class:`Problem` (one example:
image, label, target, bounds, key, extra inputs) and ``c`` the attack's config. ``Passes``
says how many forward and backward (VJP row) passes of the model the call spent.

The engine owns everything around that, once for all attacks:

- the iteration cap (``Algorithm.max_steps(config)``, static);
- which examples are attacked: not the masked-out ones (SKIPPED), not those whose clean
  logits are not finite (NONFINITE) or that are already misclassified (ALREADY_MISCLASSIFIED),
  not a targeted item whose target is its label (SKIPPED);
- the schedule across the batch (:class:`Schedule`): a lockstep ``vmap`` of the
  one-example loop (optionally in chunks, for memory), or a refill queue in which a lane
  that finishes takes the next example at once, so no example waits for a slower one;
- the output guarantees: x_adv inside [lower, upper] bit for bit and finite (a non-finite
  image is replaced by x and marked NONFINITE); success re-verified by one more forward pass
  on the returned image, and never claimed for non-finite logits;
- the status of every example (:class:`Status`, one message per code) and the accounting
  (the clean pass, every init and step pass, the re-verification; lanes that only wait in
  lockstep are not charged);
- sweeps: the config's traced leaves are per-item arrays inside the engine, so
  (value, example) pairs of a sweep share one schedule (:func:`sweep`).

Nothing here jits: the caller does (``jax.jit(sparsejax.attacks.sparsefool)``).
"""

from __future__ import annotations

import dataclasses
import enum
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Literal, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.custom_batching import custom_vmap

from sparsejax import metrics
from sparsejax.attacks import _config
from sparsejax.attacks.losses import is_adversarial
from sparsejax.errors import SparsejaxError

HIGHEST = jax.lax.Precision.HIGHEST


class Status(enum.IntEnum):
    """Why an attack stopped on an example. ``Status(code).message`` explains a code."""

    SUCCESS = 0
    MAX_ITER = 1
    ALREADY_MISCLASSIFIED = 2
    NOT_ADVERSARIAL = 3
    SKIPPED = 4
    NONFINITE = 5
    DEGENERATE = 6

    @property
    def message(self) -> str:
        return _MESSAGES[self]


_MESSAGES = {
    Status.SUCCESS: "the returned x_adv is adversarial (re-verified by a forward pass)",
    Status.MAX_ITER: "the iteration budget ran out before the attack found an adversarial",
    Status.ALREADY_MISCLASSIFIED: "the clean input is already misclassified; returned unchanged",
    Status.NOT_ADVERSARIAL: "the attack claimed success but the re-verification on x_adv disagreed",
    Status.SKIPPED: "not attacked: masked out by the caller (e.g. batch padding), or a "
    "targeted item whose target is its label",
    Status.NONFINITE: "a NaN or Inf appeared (in the logits, a gradient or the iterate) and "
    "was contained; x_adv is finite and in bounds but not adversarial",
    Status.DEGENERATE: "no progress was possible (zero gradient or normal, nothing to move)",
}


class AttackResult(NamedTuple):
    """Batched result of every attack (leading axis: examples; a sweep adds one in front).

    Attributes:
      x_adv: float32[N, H, W, C], inside [lower, upper] bit for bit, finite.
      success: bool[N], re-verified on x_adv by a separate forward pass.
      l0_pixels: int32[N], (h, w) positions with any channel changed.
      l0_elements: int32[N], changed channel values.
      iterations: int32[N], the attack's iterations (its docstring says what one is).
      status: int32[N], a :class:`Status` code.
      model_evals: int32[N], forwards + backwards spent on the example.
      forwards: int32[N], forward passes (the clean one and the re-verification included).
      backwards: int32[N], backward passes, one per VJP cotangent row.
      clean_pred: int32[N], the model's prediction on the clean input.
      adv_pred: int32[N], the model's prediction on x_adv.
      stats: the attack's own per-example diagnostics (a NamedTuple, documented per attack).
    """

    x_adv: jax.Array
    success: jax.Array
    l0_pixels: jax.Array
    l0_elements: jax.Array
    iterations: jax.Array
    status: jax.Array
    model_evals: jax.Array
    forwards: jax.Array
    backwards: jax.Array
    clean_pred: jax.Array
    adv_pred: jax.Array
    stats: Any


class Passes(NamedTuple):
    """Model passes spent by one call of ``init`` or ``step`` on one example (int32)."""

    forwards: jax.Array | int = 0
    backwards: jax.Array | int = 0

    def __add__(self, other: Passes) -> Passes:  # type: ignore[override]
        return Passes(self.forwards + other.forwards, self.backwards + other.backwards)


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class Problem:
    """One example, as every algorithm function sees it.

    Attributes:
      x: float32[H, W, C] the clean image, in [lower, upper].
      label: int32 true label.
      target: int32 target class (-1 when untargeted).
      lower, upper: float32[H, W, C] the box.
      key: a typed PRNG key of its own (for the attacks that draw random numbers).
      extras: dict of per-example inputs an attack declares (SAPF-GS segments, ...).
      targeted: static; whether ``target`` is used.
    """

    x: jax.Array
    label: jax.Array
    target: jax.Array
    lower: jax.Array
    upper: jax.Array
    key: jax.Array
    extras: dict
    targeted: bool = dataclasses.field(default=False, metadata=dict(static=True))

    @property
    def target_or_none(self):
        return self.target if self.targeted else None

    def is_adversarial(self, pred):
        """pred != label (untargeted) or pred == target (targeted)."""
        return is_adversarial(pred, self.label, self.target_or_none)

    def fooled_by(self, logits):
        """Whether logits [K] are finite and their argmax adversarial (NaN logits, whose
        argmax is 0, never count)."""
        return jnp.all(jnp.isfinite(logits)) & self.is_adversarial(jnp.argmax(logits))


@jax.jit
def _apply(logits_fn, x):
    return logits_fn(x)


def _traced_once(logits_fn: Callable) -> Callable:
    """``logits_fn`` behind a ``jax.jit`` boundary. An attack calls the model several times
    per step (forward, VJP, checks), and the engine traces a step several times (vmap,
    queue refills, a branch per lane_cond); inside an outer trace a jitted function is
    traced once per input shape and reused, so the model's Python code runs once instead of
    once per call site. XLA inlines the inner call: nothing changes at run time."""
    if isinstance(logits_fn, jax.tree_util.Partial):  # a pytree: its weights stay arguments
        return jax.tree_util.Partial(_apply, logits_fn)
    return jax.jit(logits_fn)


class Classifier:
    """The model as the algorithms see it: one example in, logits out.

    ``logits(x)``: float32[H, W, C] -> float32[K] (one forward pass). ``num_classes`` comes
    from the output shape at trace time, never from a constant.
    """

    def __init__(self, logits_fn: Callable, example_shape: Sequence[int], dtype=jnp.float32):
        self.logits_fn = _traced_once(logits_fn)
        self.example_shape = tuple(example_shape)
        one = jax.ShapeDtypeStruct((1, *self.example_shape), dtype)
        out = jax.eval_shape(self.logits_fn, one)
        if len(out.shape) != 2 or out.shape[0] != 1:
            raise SparsejaxError(
                f"logits_fn must map [B, H, W, C] to [B, K]; got output shape {out.shape} "
                f"for input (1, {', '.join(map(str, self.example_shape))})"
            )
        self.num_classes = int(out.shape[-1])

    def logits(self, x):
        """float32[K] logits of one example (1 forward pass); batches again under vmap."""
        return self.logits_fn(x[None])[0]

    def logits_and_rows(self, x, choose_rows):
        """One forward pass and one VJP per cotangent row chosen from the logits.

        Args:
          x: float32[H, W, C] the point.
          choose_rows: ``logits [K] -> cotangents [R, K]``; rows may depend on the logits.

        Returns:
          (logits [K], cotangents [R, K], gradients [R, H, W, C]) with gradients[r] =
          ∇_x <cotangents[r], logits(x)>. Cost: 1 forward + R backward passes.
        """
        logits, vjp = jax.vjp(self.logits, x)
        cot = choose_rows(jax.lax.stop_gradient(logits))
        (grads,) = jax.vmap(vjp)(cot.astype(logits.dtype))
        return logits, cot, grads


class Outcome(NamedTuple):
    """What ``finish`` returns for one example.

    Attributes:
      x_adv: float32[H, W, C] the image to return (the engine clips it to the box and
        replaces it by x if it is not finite).
      claimed: bool, the attack believes x_adv is adversarial (the engine re-checks).
      degenerate: bool, no progress was possible (status DEGENERATE unless successful).
      nonfinite: bool, a NaN/Inf appeared and was contained (status NONFINITE unless
        successful).
      iterations: int32, the attack's own count (its docstring says of what).
      stats: a NamedTuple of per-example diagnostics.
    """

    x_adv: jax.Array
    claimed: jax.Array
    degenerate: jax.Array
    nonfinite: jax.Array
    iterations: jax.Array
    stats: Any


@dataclasses.dataclass(frozen=True)
class Algorithm:
    """An attack's per-example algorithm (see the module docstring for the contract).

    Attributes:
      name: the attack's command-line name.
      config_cls: its config class.
      init, step, done, finish: the per-example functions.
      max_steps: ``config -> int``, the engine's cap on ``step`` calls (static).
      early_stop: whether examples stop at different times; the default schedule is then
        a refill queue, else a lockstep vmap.
      targeted: "no", "optional" or "required".
      needs_key: whether the attack draws random numbers (then ``key`` is required).
      extras: names of the per-example inputs it accepts (e.g. ``("segments",)``).
      prepare_extras: ``(x [N, H, W, C], config, given: dict) -> dict`` completes the
        extras for a batch (computing the missing ones, or raising).
      check_shape: ``(config, example_shape) -> None`` raises for a config that cannot fit
        the images (SAPF's k larger than the number of elements, say).
    """

    name: str
    config_cls: type
    init: Callable
    step: Callable
    done: Callable
    finish: Callable
    max_steps: Callable[[Any], int]
    early_stop: bool = True
    targeted: Literal["no", "optional", "required"] = "optional"
    needs_key: bool = False
    extras: tuple[str, ...] = ()
    prepare_extras: Callable | None = None
    check_shape: Callable | None = None


@dataclasses.dataclass(frozen=True)
class Schedule:
    """How the examples of a batch share the device (a static choice).

    Attributes:
      kind: ``"lockstep"``: a ``vmap`` of the one-example loop, every lane running until
        the slowest example of its chunk is done (what fixed-length attacks want);
        ``"queue"``: ``width`` lanes side by side, a lane that finishes takes the next
        example at once (what early-stopping attacks want).
      width: lockstep: examples per chunk, run one chunk after another to bound memory
        (None: all at once); queue: the number of lanes (None: per backend).
    """

    kind: Literal["lockstep", "queue"] = "queue"
    width: int | None = None

    def __post_init__(self):
        if self.kind not in ("lockstep", "queue"):
            raise SparsejaxError(f"schedule kind must be lockstep or queue, got {self.kind!r}")
        if self.width is not None and (not isinstance(self.width, int) or self.width < 1):
            raise SparsejaxError(f"schedule width must be a whole number >= 1, got {self.width}")


# No array leaves: a Schedule passes through jax.jit as static structure.
jax.tree_util.register_dataclass(Schedule, data_fields=[], meta_fields=["kind", "width"])


def default_queue_width(items: int) -> int:
    """Lanes of the default refill queue for ``items`` (value, example) items.

    Accelerators: 64. CPU: 8 from 16 items on, 1 below. A step costs less per example at
    more lanes there too (LeNet-5's dense layer reads its weights once per pass whatever
    the batch; ResNet-20's convolutions run faster on larger batches), but a queue of
    several lanes compiles its step twice (S lanes and the one-lane drain), which a small
    batch does not earn back (benchmarks/README.md, "The refill queue's width").

    The width is part of the float path: the model sees batches of another shape, and an
    item that ends in the drain runs at one lane. float32 rounding then differs in the last
    bits, and a long attack (C&W-ℓ0's hundreds of Adam steps) can carry that into its
    values and, rarely, its support; in float64 every width computes the same attack
    (tests/test_conformance.py). At one lane an example's float32 result does not depend on
    the other examples of its batch at all.
    """
    if jax.default_backend() != "cpu":
        return 64
    return 8 if items >= 16 else 1


def default_schedule(algorithm: Algorithm, items: int) -> Schedule:
    """Lockstep for fixed-length attacks; for early-stopping ones a refill queue of
    :func:`default_queue_width` lanes for ``items`` (value, example) items."""
    if not algorithm.early_stop:
        return Schedule("lockstep")
    return Schedule("queue", default_queue_width(items))


def lane_cond(pred, true_fn: Callable, false_fn: Callable, *operands):
    """``lax.cond`` that stays a branch under ``vmap``.

    A batched ``lax.cond`` computes both branches for every lane and selects. Here the
    batched form computes each branch only when some lane takes it (then for all lanes,
    selecting per lane): the expensive, rarely taken branch (SparseFool's LinearSolver after
    a DeepFool call ends, the next stage of sAA's cascade) costs nothing on the ticks where
    no lane takes it, and a tick where every lane agrees costs one branch. Unbatched, it is
    ``lax.cond``.

    Values the branches read must be operands, not closed over, unless they are floating
    point (``jax.closure_convert`` hoists only those): a batched label or key closed over
    is an error.
    """

    # Values the branches close over (model weights, say) become explicit operands, so
    # that the rule below sees their batching too.
    true_fn, true_consts = jax.closure_convert(true_fn, *operands)
    false_fn, false_consts = jax.closure_convert(false_fn, *operands)
    on_true = lambda ops, tc: true_fn(*ops, *tc)
    on_false = lambda ops, fc: false_fn(*ops, *fc)

    @custom_vmap
    def branch(pred, operands, tc, fc):
        return jax.lax.cond(pred, lambda: on_true(operands, tc), lambda: on_false(operands, fc))

    @branch.def_vmap
    def _rule(axis_size, in_batched, pred, operands, tc, fc):
        pred_batched, ops_b, tc_b, fc_b = in_batched
        # Unbatched operands (the weights, above all) stay unbatched: broadcasting them would
        # turn every convolution into a per-lane one.
        axes = lambda batched: jax.tree.map(lambda b: 0 if b else None, batched)
        yes_fn = jax.vmap(on_true, in_axes=(axes(ops_b), axes(tc_b)), axis_size=axis_size)
        no_fn = jax.vmap(on_false, in_axes=(axes(ops_b), axes(fc_b)), axis_size=axis_size)
        pred = pred if pred_batched else jnp.broadcast_to(pred, (axis_size,))

        shapes = jax.eval_shape(lambda: no_fn(operands, fc))
        nothing = lambda: jax.tree.map(lambda a: jnp.zeros(a.shape, a.dtype), shapes)
        yes = jax.lax.cond(jnp.any(pred), lambda: yes_fn(operands, tc), nothing)
        no = jax.lax.cond(jnp.all(pred), nothing, lambda: no_fn(operands, fc))
        out = jax.tree.map(lambda a, b: jnp.where(_lanes(pred, a), a, b), yes, no)
        return out, jax.tree.map(lambda _: True, out)

    return branch(pred, operands, tuple(true_consts), tuple(false_consts))


def _lanes(flags, like):
    """bool[S] reshaped to broadcast against ``like`` [S, ...]."""
    return flags.reshape(flags.shape + (1,) * (jnp.ndim(like) - 1))


def _select(flags, new, old):
    return jax.tree.map(lambda a, b: jnp.where(_lanes(flags, a), a, b), new, old)


def _take(tree, idx):
    return jax.tree.map(lambda a: a[idx], tree)


# --------------------------------------------------------------------------- schedules


def _solve_one(algorithm, f, p, c, attack):
    """The one-example loop: init, then step while not done and under the cap."""
    cap = algorithm.max_steps(c)
    state, passes = algorithm.init(f, p, c)

    def cond(carry):
        s, _, steps = carry
        return attack & (steps < cap) & ~algorithm.done(f, p, c, s)

    def body(carry):
        s, spent, steps = carry
        s, more = algorithm.step(f, p, c, s)
        return s, _as_passes(spent + more), steps + 1

    init = (state, _as_passes(passes), jnp.int32(0))
    state, passes, steps = jax.lax.while_loop(cond, body, init)
    return algorithm.finish(f, p, c, state, steps), passes, steps


def _as_passes(p: Passes) -> Passes:
    return Passes(jnp.asarray(p.forwards, jnp.int32), jnp.asarray(p.backwards, jnp.int32))


def _lockstep(algorithm, f, problems, configs, attack, width):
    m = attack.shape[0]
    one = lambda args: _solve_one(algorithm, f, *args)
    if width is None or width >= m:
        return jax.vmap(lambda p, c, a: one((p, c, a)))(problems, configs, attack)
    return jax.lax.map(one, (problems, configs, attack), batch_size=width)


class _Lanes(NamedTuple):
    index: jax.Array  # int32[S] item in the lane, -1 when empty
    problem: Problem  # [S, ...]
    config: Any  # [S, ...] per-item config leaves
    state: Any  # [S, ...]
    passes: Passes  # [S]
    steps: jax.Array  # int32[S]
    next: jax.Array  # int32, position in the queue of the next item to load
    out: tuple  # (Outcome, Passes, steps) [M, ...], written when an item finishes


def _lanes_one_at_a_time() -> bool:
    """Whether the refill queue runs per-lane work one lane after another where it can: on
    CPU, where a pass over idle lanes costs about what it costs over busy ones, so that work
    for lanes that need none is pure waste. That covers the inits of new items and the items
    still running once every item is loaded (:func:`_queue`)."""
    return jax.default_backend() == "cpu"


def _queue(algorithm, f, problems, configs, attack, width, one_lane_at_a_time):
    """Runs every attacked item on ``width`` lanes, refilling a lane as soon as its item
    finishes. Each item's computation is that of :func:`_solve_one`.

    ``one_lane_at_a_time``: new items are initialised lane by lane, and once the queue is
    empty the lanes still running finish one after another, at one lane each (side by
    side, every tick would cost ``width`` lanes for fewer and fewer items). Otherwise every
    lane is initialised at each refill and the lanes run side by side to the end."""
    m = attack.shape[0]
    slots = max(1, min(width, m))
    queue = jnp.argsort(~attack, stable=True).astype(jnp.int32)  # attacked items first
    n_attack = jnp.sum(attack, dtype=jnp.int32)
    cap = lambda c: algorithm.max_steps(c)
    v_init = jax.vmap(lambda p, c: algorithm.init(f, p, c))
    v_step = jax.vmap(lambda p, c, s: algorithm.step(f, p, c, s))
    v_done = jax.vmap(lambda p, c, s: algorithm.done(f, p, c, s))
    v_finish = jax.vmap(lambda p, c, s, k: algorithm.finish(f, p, c, s, k))

    def load(index):
        p, c = _take(problems, jnp.maximum(index, 0)), _take(configs, jnp.maximum(index, 0))
        s, passes = v_init(p, c)
        return p, c, s, jax.tree.map(lambda v: jnp.broadcast_to(v, index.shape), passes)

    first = jnp.arange(slots, dtype=jnp.int32)
    index = jnp.where(first < n_attack, queue[jnp.minimum(first, m - 1)], -1)
    p0, c0, s0, passes0 = load(index)
    # The output buffer: shapes from an abstract evaluation, contents written at finish.
    abstract = jax.eval_shape(v_finish, p0, c0, s0, jnp.zeros((slots,), jnp.int32))
    out0 = (
        jax.tree.map(lambda a: jnp.zeros((m, *a.shape[1:]), a.dtype), abstract),
        Passes(jnp.zeros((m,), jnp.int32), jnp.zeros((m,), jnp.int32)),
        jnp.zeros((m,), jnp.int32),
    )
    lanes = _Lanes(
        index,
        p0,
        c0,
        s0,
        _as_passes(passes0),
        jnp.zeros((slots,), jnp.int32),
        jnp.minimum(n_attack, slots),
        out0,
    )

    def refill(finished, index, problem, config, state, passes):
        """The finished lanes' new items (``index``), initialised: on CPU one lane after
        another (an init costs passes, and initialising the other lanes would cost about as
        much again per lane), on accelerators every lane at once (a pass there costs about
        the same for one lane or S)."""
        if not one_lane_at_a_time:
            p, c, s, fp = load(index)
            return (
                _select(finished, p, problem),
                _select(finished, c, config),
                _select(finished, s, state),
                _select(finished, _as_passes(fp), passes),
            )
        loading = finished & (index >= 0)
        lanes_to_load = jnp.argsort(~loading, stable=True)

        def load_lane(j, carry):
            lane = lanes_to_load[j]
            put = lambda whole, one: whole.at[lane].set(one[0])
            return jax.tree.map(put, carry, load(index[lane][None]))

        count = jnp.sum(loading, dtype=jnp.int32)
        carry = (problem, config, state, passes)
        return jax.lax.fori_loop(0, count, load_lane, carry)

    drain = one_lane_at_a_time and slots > 1

    def cond(ln: _Lanes):
        busy = jnp.any(ln.index >= 0)
        return busy & (ln.next < n_attack) if drain else busy

    def body(ln: _Lanes) -> _Lanes:
        occupied = ln.index >= 0
        running = occupied & (ln.steps < cap(ln.config)) & ~v_done(ln.problem, ln.config, ln.state)
        new_state, more = v_step(ln.problem, ln.config, ln.state)
        state = _select(running, new_state, ln.state)
        passes = _as_passes(
            Passes(
                ln.passes.forwards + jnp.where(running, more.forwards, 0),
                ln.passes.backwards + jnp.where(running, more.backwards, 0),
            )
        )
        steps = ln.steps + running.astype(jnp.int32)
        finished = occupied & ((steps >= cap(ln.config)) | v_done(ln.problem, ln.config, state))

        def retire_and_refill(args):
            state, passes, steps, out, index, nxt = args
            outcome = v_finish(ln.problem, ln.config, state, steps)
            dest = jnp.where(finished, index, m)  # m is out of range: dropped
            out = jax.tree.map(
                lambda o, r: o.at[dest].set(r, mode="drop"), out, (outcome, passes, steps)
            )
            # The j-th finished lane takes queue[next + j] while the queue lasts.
            pos = nxt + jnp.cumsum(finished) - 1
            new_index = jnp.where(pos < n_attack, queue[jnp.clip(pos, 0, m - 1)], -1)
            index = jnp.where(finished, new_index, index)
            problem, config, state, passes = refill(
                finished, index, ln.problem, ln.config, state, passes
            )
            passes = _as_passes(passes)
            steps = jnp.where(finished, 0, steps)
            nxt = nxt + jnp.sum(finished, dtype=jnp.int32)
            return problem, config, state, passes, steps, out, index, nxt

        def keep(args):
            state, passes, steps, out, index, nxt = args
            return ln.problem, ln.config, state, passes, steps, out, index, nxt

        problem, config, state, passes, steps, out, index, nxt = jax.lax.cond(
            jnp.any(finished),
            retire_and_refill,
            keep,
            (state, passes, steps, ln.out, ln.index, ln.next),
        )
        return _Lanes(index, problem, config, state, passes, steps, nxt, out)

    ln = jax.lax.while_loop(cond, body, lanes)
    if not drain:
        return ln.out

    def drain_lane(lane, out):
        """Lane ``lane``'s item (if any) run to its end alone, and written out."""
        one = lambda tree: jax.tree.map(lambda a: a[lane][None], tree)
        p, c = one(ln.problem), one(ln.config)
        busy = ln.index[lane] >= 0

        def more(carry):
            s, _, steps = carry
            return busy & jnp.all((steps < cap(c)) & ~v_done(p, c, s))

        def step(carry):
            s, spent, steps = carry
            s, extra = v_step(p, c, s)
            return s, _as_passes(spent + extra), steps + 1

        carry = (one(ln.state), one(ln.passes), one(ln.steps))
        state, passes, steps = jax.lax.while_loop(more, step, carry)
        outcome = v_finish(p, c, state, steps)
        dest = jnp.where(busy, ln.index[lane], m)[None]  # m is out of range: dropped
        return jax.tree.map(
            lambda o, r: o.at[dest].set(r, mode="drop"), out, (outcome, passes, steps)
        )

    return jax.lax.fori_loop(0, slots, drain_lane, ln.out)


# --------------------------------------------------------------------------- entry points


def _broadcast_config(config, m: int, n: int, axes=None):
    """Every traced leaf as a per-item array [m, ...]. A swept leaf (axis 0 in ``axes``)
    holds V values; item j·n + i (example i) gets value j."""
    full = lambda v: jnp.broadcast_to(jnp.asarray(v), (m, *jnp.shape(v)))
    if axes is None:
        return jax.tree.map(full, config)
    return jax.tree.map(
        lambda v, a: jnp.repeat(jnp.asarray(v), n, axis=0) if a == 0 else full(v), config, axes
    )


def _keys(key, n: int, needs_key: bool, name: str):
    if key is None:
        if needs_key:
            raise SparsejaxError(
                f"{name} draws random numbers: pass key=jax.random.key(seed) (SPEC §1)"
            )
        key = jax.random.key(0)  # unused by a deterministic attack
    if not jax.dtypes.issubdtype(key.dtype, jax.dtypes.prng_key):
        key = jax.random.wrap_key_data(jnp.asarray(key, jnp.uint32))
    if key.shape == ():
        return jax.random.split(key, n)
    if key.shape != (n,):
        raise SparsejaxError(
            f"{name}: key must be one key or one per example ({n},), got shape {key.shape}"
        )
    return key


def _check_inputs(algorithm, x, y, targets, mask, lower, upper):
    name = algorithm.name
    if not hasattr(x, "shape") or len(x.shape) != 4:
        raise SparsejaxError(
            f"{name}: x must be a batch float32[N, H, W, C], got shape "
            f"{getattr(x, 'shape', type(x).__name__)}"
        )
    n = x.shape[0]
    if jnp.dtype(x.dtype) not in (jnp.float32, jnp.float64):  # float64: reference tests
        raise SparsejaxError(f"{name}: x must be float32 in pixel space, got {x.dtype}")
    for what, v in (("y", y), ("targets", targets), ("mask", mask)):
        if v is not None and tuple(jnp.shape(v)) != (n,):
            raise SparsejaxError(f"{name}: {what} must have shape ({n},), got {jnp.shape(v)}")
    if algorithm.targeted == "required" and targets is None:
        raise SparsejaxError(f"{name} is a targeted attack: pass targets=")
    if algorithm.targeted == "no" and targets is not None:
        raise SparsejaxError(f"{name} has no targeted variant: do not pass targets")
    for what, b in (("lower", lower), ("upper", upper)):
        try:
            jnp.broadcast_shapes(jnp.shape(b), x.shape)
        except ValueError:
            raise SparsejaxError(
                f"{name}: {what} of shape {jnp.shape(b)} does not broadcast to x {x.shape}"
            ) from None
    if _config.is_concrete(x, lower, upper):  # values, when they are known (not under jit)
        xs, lo, hi = (np.asarray(v, np.float32) for v in (x, lower, upper))
        bad = ~(np.isfinite(xs) & (xs >= lo) & (xs <= hi))
        if bad.any():
            i = tuple(int(v) for v in np.argwhere(bad)[0])
            lo_i = float(np.broadcast_to(lo, xs.shape)[i])
            hi_i = float(np.broadcast_to(hi, xs.shape)[i])
            raise SparsejaxError(
                f"{name}: x{list(i)} = {float(xs[i]):g} lies outside its bounds "
                f"[{lo_i:g}, {hi_i:g}] (or is not finite)"
            )


def run(
    algorithm: Algorithm,
    logits_fn: Callable,
    x,
    y,
    config=None,
    *,
    targets=None,
    lower=0.0,
    upper=1.0,
    key=None,
    mask=None,
    schedule: Schedule | None = None,
    extras: Mapping[str, Any] | None = None,
    sweep_values: Mapping[str, Any] | None = None,
) -> AttackResult:
    """Runs ``algorithm`` on a batch: the common body of every public attack function.

    ``sweep_values`` ({dotted field path: values [V]}) runs every value on every example in
    one schedule and returns results with a leading axis V (see :func:`sweep`).
    """
    name = algorithm.name
    config = algorithm.config_cls() if config is None else config
    if not isinstance(config, algorithm.config_cls):
        raise SparsejaxError(
            f"{name} takes a {algorithm.config_cls.__name__}, got {type(config).__name__}"
        )
    _check_inputs(algorithm, x, y, targets, mask, lower, upper)
    extras = dict(extras or {})
    unknown = sorted(set(extras) - set(algorithm.extras))
    if unknown:
        accepted = ", ".join(algorithm.extras) or "none"
        raise SparsejaxError(f"{name} takes no input {unknown[0]!r} (accepted: {accepted})")
    n = x.shape[0]
    values = 1
    axes = None
    if sweep_values:
        config, axes, values = sweep_config(config, sweep_values)
    _config.validate(config)
    if algorithm.check_shape is not None:
        algorithm.check_shape(config, x.shape[1:])
    schedule = default_schedule(algorithm, values * n) if schedule is None else schedule
    f = Classifier(logits_fn, x.shape[1:], x.dtype)
    for what, v in (("y", y), ("targets", targets)):
        if v is not None and _config.is_concrete(v):
            v = np.asarray(v)
            if not np.issubdtype(v.dtype, np.integer):
                raise SparsejaxError(f"{name}: {what} must be integers, got {v.dtype}")
            if v.size and (v.min() < 0 or v.max() >= f.num_classes):
                raise SparsejaxError(
                    f"{name}: {what} must lie in [0, {f.num_classes - 1}] for a "
                    f"{f.num_classes}-class model, got [{v.min()}, {v.max()}]"
                )
    if algorithm.prepare_extras is not None:
        extras = algorithm.prepare_extras(x, config, extras)

    targeted = targets is not None
    labels = jnp.asarray(y, jnp.int32)
    tgt = jnp.asarray(targets, jnp.int32) if targeted else jnp.full((n,), -1, jnp.int32)
    lo = jnp.broadcast_to(jnp.asarray(lower, x.dtype), x.shape)
    hi = jnp.broadcast_to(jnp.asarray(upper, x.dtype), x.shape)
    keys = _keys(key, n, algorithm.needs_key, name)
    mask = jnp.ones((n,), bool) if mask is None else jnp.asarray(mask, bool)

    clean_logits = logits_fn(x)  # [N, K]: one forward pass per example
    clean_finite = jnp.all(jnp.isfinite(clean_logits), axis=-1)
    clean_pred = jnp.argmax(clean_logits, axis=-1).astype(jnp.int32)
    attack = mask & clean_finite & (clean_pred == labels)
    if targeted:
        attack = attack & (tgt != labels)

    m = values * n
    tile = lambda a: jnp.tile(a, (values,) + (1,) * (a.ndim - 1)) if values > 1 else a
    problems = Problem(
        x=tile(x),
        label=tile(labels),
        target=tile(tgt),
        lower=tile(lo),
        upper=tile(hi),
        key=jax.tree.map(tile, keys),
        extras={k: tile(jnp.asarray(v)) for k, v in extras.items()},
        targeted=targeted,
    )
    configs = _broadcast_config(config, m, n, axes)
    attack_m = tile(attack)
    if schedule.kind == "lockstep":
        outcome, passes, steps = _lockstep(
            algorithm, f, problems, configs, attack_m, schedule.width
        )
    else:
        width = schedule.width or default_queue_width(values * n)
        one_by_one = _lanes_one_at_a_time()
        outcome, passes, steps = _queue(
            algorithm, f, problems, configs, attack_m, width, one_by_one
        )

    result = _finalize(
        f, problems, attack_m, outcome, passes, tile(mask), tile(clean_finite), tile(clean_pred)
    )
    if values > 1 or sweep_values:
        result = jax.tree.map(lambda a: a.reshape((values, n) + a.shape[1:]), result)
    return result


def _finalize(f, p: Problem, attack, outcome: Outcome, passes, mask, clean_finite, clean_pred):
    """Output guarantees, re-verification, status and accounting for every item [M]."""
    x = p.x
    finite_image = jnp.all(jnp.isfinite(outcome.x_adv), axis=(1, 2, 3))
    usable = attack & finite_image
    x_adv = jnp.where(_lanes(usable, x), jnp.clip(outcome.x_adv, p.lower, p.upper), x)
    adv_logits = f.logits_fn(x_adv)  # the re-verification: one forward pass per item
    adv_finite = jnp.all(jnp.isfinite(adv_logits), axis=-1)
    adv_pred = jnp.argmax(adv_logits, axis=-1).astype(jnp.int32)
    target = p.target if p.targeted else None
    success = attack & adv_finite & is_adversarial(adv_pred, p.label, target)
    claimed = outcome.claimed.astype(bool)
    status = jnp.select(
        [
            ~mask,
            ~clean_finite,
            clean_pred != p.label,
            ~attack,  # a targeted item whose target is its label
            success,
            ~adv_finite | ~finite_image,
            claimed,
            outcome.nonfinite.astype(bool),
            outcome.degenerate.astype(bool),
        ],
        [
            Status.SKIPPED,
            Status.NONFINITE,
            Status.ALREADY_MISCLASSIFIED,
            Status.SKIPPED,
            Status.SUCCESS,
            Status.NONFINITE,
            Status.NOT_ADVERSARIAL,
            Status.NONFINITE,
            Status.DEGENERATE,
        ],
        Status.MAX_ITER,
    ).astype(jnp.int32)
    zero_unless_attacked = lambda a: jnp.where(_lanes(attack, a), a, jnp.zeros_like(a))
    forwards = 2 + jnp.where(attack, passes.forwards, 0)  # + the clean pass, re-verification
    backwards = jnp.where(attack, passes.backwards, 0)
    return AttackResult(
        x_adv=x_adv,
        success=success,
        l0_pixels=metrics.l0_pixels(x_adv, x),
        l0_elements=metrics.l0_elements(x_adv, x),
        iterations=jnp.where(attack, outcome.iterations, 0).astype(jnp.int32),
        status=status,
        model_evals=(forwards + backwards).astype(jnp.int32),
        forwards=forwards.astype(jnp.int32),
        backwards=backwards.astype(jnp.int32),
        clean_pred=clean_pred,
        adv_pred=adv_pred,
        stats=jax.tree.map(zero_unless_attacked, outcome.stats),
    )


# --------------------------------------------------------------------------- sweeps


def sweep_config(config, values: Mapping[str, Any]):
    """``config`` with each swept leaf (a dotted path: ``"deepfool.overshoot"``) holding
    its values [V], the matching ``in_axes``-style tree (0 on swept leaves) and V."""
    if not values:
        raise SparsejaxError("sweep: give at least one field to sweep in values={path: [...]}")
    lengths = set()
    swept, axes = config, jax.tree.map(lambda _: None, config)
    for path, v in values.items():
        arr = jnp.asarray(v)
        if arr.ndim != 1 or arr.shape[0] == 0:
            raise SparsejaxError(f"sweep: {path} needs a non-empty 1-D sequence of values")
        lengths.add(arr.shape[0])
        swept = _replace_path(swept, path.split("."), arr, path)
        axes = _replace_path(axes, path.split("."), 0, path)
    if len(lengths) != 1:
        raise SparsejaxError(f"sweep: swept fields have different lengths {sorted(lengths)}")
    return swept, axes, lengths.pop()


def _replace_path(cfg, path: list[str], value, full: str):
    fields = {f.name: f for f in dataclasses.fields(cfg)}
    head = path[0]
    if head not in fields:
        raise SparsejaxError(
            f"sweep: {type(cfg).__name__} has no field {head!r} (in {full!r}); "
            f"fields: {', '.join(sorted(fields))}"
        )
    current = getattr(cfg, head)
    if len(path) > 1:
        if not dataclasses.is_dataclass(current):
            raise SparsejaxError(f"sweep: {head!r} has no sub-fields (in {full!r})")
        return dataclasses.replace(cfg, **{head: _replace_path(current, path[1:], value, full)})
    if fields[head].metadata.get("static"):
        raise SparsejaxError(
            f"sweep: {full!r} is static (it changes shapes or code): run one call per value"
        )
    if dataclasses.is_dataclass(current):
        raise SparsejaxError(f"sweep: sweep the sub-fields of {full!r}, e.g. {full}.NAME")
    if isinstance(value, jax.Array | np.ndarray) and jnp.issubdtype(value.dtype, jnp.integer):
        value = value.astype(jnp.float32) if isinstance(current, float) else value
    return dataclasses.replace(cfg, **{head: value})


def sweep(attack: Callable, logits_fn, x, y, config=None, *, values: Mapping[str, Any], **kwargs):
    """Runs ``attack`` for every swept value on every example, in one call.

    Args:
      attack: a public attack function (``sparsejax.attacks.sparsefool``, ...).
      logits_fn, x, y, config: as for the attack (``config=None``: its defaults).
      values: ``{field path: sequence of V values}``; any traced field, nested ones with a
        dotted path (``"deepfool.overshoot"``); all sequences of the same length V.
      **kwargs: the attack's keyword arguments (``targets``, ``lower``, ``upper``, ``key``,
        ``mask``, ``schedule``, extras), the same for every value.

    Every (value, example) pair is one item of the same schedule: with a refill queue a fast
    value never waits for a slow one. Nothing is jitted here; jit the call:
    ``jax.jit(sparsejax.sweep, static_argnums=0)``.

    Returns:
      AttackResult whose fields have a leading axis of size V.
    """
    algorithm = getattr(attack, "algorithm", None)
    if algorithm is None:
        raise SparsejaxError(
            f"sweep: {getattr(attack, '__name__', attack)!r} is not a sparsejax attack "
            "(use sparsejax.attacks.NAME)"
        )
    return _run_public(algorithm, logits_fn, x, y, config, sweep_values=values, **kwargs)


def _run_public(algorithm, logits_fn, x, y, config, **kwargs):
    extras = {k: kwargs.pop(k) for k in list(kwargs) if k in algorithm.extras}
    allowed = {"targets", "lower", "upper", "key", "mask", "schedule", "sweep_values"}
    bad = sorted(set(kwargs) - allowed)
    if bad:
        raise SparsejaxError(f"{algorithm.name}: unexpected keyword argument {bad[0]!r}")
    return run(algorithm, logits_fn, x, y, config, extras=extras, **kwargs)


_SIGNATURE_DOC = """

    Args:
      logits_fn: ``float32[B, H, W, C] -> float32[B, K]``, pure, with the model's
        normalization inside (SPEC §1).
      x: float32[N, H, W, C] in [lower, upper]; y: int[N] true labels.
      config: {config}; None for its defaults.
      targets: int[N] target classes for the targeted variant{targets}.
      lower, upper: bounds broadcastable to x (default the pixel range [0, 1]).
      key: a ``jax.random.key`` (split per example) or one key per example{key}.
      mask: bool[N]; False: not attacked, returned unchanged with status SKIPPED.
      schedule: a static :class:`~sparsejax.attacks.engine.Schedule`; default: {schedule}.
{extras}
    Returns:
      :class:`~sparsejax.attacks.engine.AttackResult`.
    """


def attack_function(algorithm: Algorithm, doc: str):
    """The public function of an algorithm, with the one signature of SPEC §2."""

    def fn(
        logits_fn, x, y, config=None, *, targets=None, lower=0.0, upper=1.0, key=None,
        mask=None, schedule=None, **extras,
    ):  # fmt: skip
        return _run_public(
            algorithm, logits_fn, x, y, config, targets=targets, lower=lower, upper=upper,
            key=key, mask=mask, schedule=schedule, **extras,
        )  # fmt: skip

    targets = {"no": " (this attack has none)", "required": " (required)"}.get(
        algorithm.targeted, " (None: untargeted)"
    )
    extras = "".join(f"      {e}: see below.\n" for e in algorithm.extras)
    fn.__doc__ = doc.rstrip() + _SIGNATURE_DOC.format(
        config=algorithm.config_cls.__name__,
        targets=targets,
        key=" (required)" if algorithm.needs_key else " (unused: deterministic)",
        schedule="a refill queue" if algorithm.early_stop else "lockstep",
        extras=extras,
    )
    fn.__name__ = fn.__qualname__ = algorithm.name.replace("-", "_")
    fn.__module__ = "sparsejax.attacks"
    fn.algorithm = algorithm
    return fn
