"""Memory: the lanes of an attack capped so that its compiled program fits a budget
(SPEC §7, "large inputs cap the number of lanes ... rather than exhausting memory").

An attack's compiled program holds, per lane (an example in flight), the model's
activations for its passes (forward residuals and the cotangents of every VJP row in
flight: DeepFool's candidate rows, σ-zero's gradient), the attack's own state (Adam
moments, masks, the best point so far), all of the input's size or a small multiple of it;
on top of that a fixed part (the weights, the program's buffers). Rather than model each
attack's state by hand, the runner asks XLA: it compiles the same program at 1 and at 2
lanes on the run's own inputs and reads the peak of each from the compiled program's
memory analysis. The difference is one lane's cost; the budget over it, less the fixed part,
is the number of lanes that fit. No attack in the registry keeps anything larger than a
small multiple of the input per lane (nothing quadratic in the input dimension), so the
cost is linear in the lanes and two points give it.

The probe costs two small compilations, so it runs only where memory is at stake: an
example of at least :data:`LARGE_INPUT` elements (ImageNet: 150,528) or a budget the user
gave. The cap is the same for the same run, so a resumed run finds the same lanes.
"""

from __future__ import annotations

import dataclasses
import os

import jax
import numpy as np

from sparsejax.attacks.engine import Schedule
from sparsejax.errors import SparsejaxError

GIB = 2**30
DEFAULT_BUDGET = 8 * GIB  # overridden by $SPARSEJAX_MEMORY_BUDGET_GIB or --memory-budget
LARGE_INPUT = 2**16  # elements per example from which the default budget applies


def default_budget() -> int:
    value = os.environ.get("SPARSEJAX_MEMORY_BUDGET_GIB", "").strip()
    if not value:
        return DEFAULT_BUDGET
    try:
        return check_budget(float(value) * GIB, "SPARSEJAX_MEMORY_BUDGET_GIB")
    except ValueError:
        raise SparsejaxError(
            f"SPARSEJAX_MEMORY_BUDGET_GIB must be a number of GiB, got {value!r}"
        ) from None


def check_budget(budget: float, what: str = "--memory-budget") -> int:
    if not np.isfinite(budget) or budget < 1:
        raise SparsejaxError(f"{what} must be a positive number of GiB, got {budget / GIB:g}")
    return int(budget)


@dataclasses.dataclass(frozen=True)
class LaneCost:
    """Bytes of the compiled attack program: ``fixed + lanes · per_lane`` at its peak."""

    fixed: int
    per_lane: int

    def lanes_within(self, budget: int) -> int:
        return int((budget - self.fixed) // max(self.per_lane, 1))

    def describe(self, budget: int | None, schedule: Schedule) -> dict:
        """For results.json: the budget, the measured cost and the lanes run."""
        budget = default_budget() if budget is None else budget
        return {
            "budget_gib": budget / GIB,
            "fixed_gib": self.fixed / GIB,
            "per_lane_gib": self.per_lane / GIB,
            "lanes": schedule.width,
        }


def _peak(compiled) -> int:
    """What the program holds at once, at most: its arguments, its outputs and its
    temporary buffers (XLA:CPU allocates the temporaries as one block; its
    ``peak_memory_in_bytes`` leaves them out there, so it is not used)."""
    m = compiled.memory_analysis()
    return int(
        m.argument_size_in_bytes
        + m.output_size_in_bytes
        + m.temp_size_in_bytes
        - m.alias_size_in_bytes
    )


def lane_cost(plan) -> LaneCost:
    """The compiled cost of ``plan``'s attack at 1 and 2 lanes (its schedule's kind, one
    device), from XLA's memory analysis of the programs the run would compile."""
    from sparsejax.runner import execute

    peaks = []
    for lanes in (1, 2):
        probe = dataclasses.replace(
            plan, batch_size=lanes, schedule=Schedule(plan.schedule.kind, lanes), devices=1,
            positions=np.repeat(plan.positions[:1], lanes),
            targets=None if plan.targets is None else np.repeat(plan.targets[:1], lanes),
        )  # fmt: skip
        leaves, treedef = execute._flat_inputs(probe, probe.batch_inputs(0))
        peaks.append(_peak(jax.jit(execute._program(probe, treedef)).lower(*leaves).compile()))
    per_lane = max(peaks[1] - peaks[0], 1)
    return LaneCost(fixed=max(peaks[0] - per_lane, 0), per_lane=per_lane)


_COSTS: dict = {}  # (attack, model, schedule kind, targeted, config structure) -> LaneCost


def fit(plan, budget: int | None) -> tuple[Schedule, LaneCost | None]:
    """``plan``'s schedule with its lanes capped to fit ``budget`` bytes (None: the default
    budget, applied only to examples of :data:`LARGE_INPUT` elements or more), and the
    measured cost (None when not probed). Raises SparsejaxError when one lane does not fit."""
    elements = int(np.prod(plan.model.input_shape))
    if budget is None and elements < LARGE_INPUT:
        return plan.schedule, None
    budget = default_budget() if budget is None else budget
    # The cost depends on the program's shapes, not on the config's traced numbers.
    key = (plan.spec.name, plan.model.name, plan.schedule.kind, plan.targets is None,
           jax.tree.structure(plan.config))  # fmt: skip
    if key not in _COSTS:
        _COSTS[key] = lane_cost(plan)
    cost = _COSTS[key]
    cap = cost.lanes_within(budget)
    if cap < 1:
        raise SparsejaxError(
            f"{plan.spec.name} on {plan.model.name}: one example in flight needs "
            f"{(cost.fixed + cost.per_lane) / GIB:.2f} GiB, over the memory budget of "
            f"{budget / GIB:.2f} GiB; raise --memory-budget (or $SPARSEJAX_MEMORY_BUDGET_GIB)"
        )
    width = plan.schedule.width or plan.batch_size  # lockstep None: the whole batch at once
    if cap >= width:
        return plan.schedule, cost
    return Schedule(plan.schedule.kind, cap), cost
