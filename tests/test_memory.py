"""Memory-bounded runs (runner/memory.py): the lanes are capped so that the compiled attack
program, as XLA measures it, fits the budget; the cap is the same as asking for that many
lanes; a budget below one lane is refused before the run's program is compiled."""

from __future__ import annotations

import dataclasses
import json

import jax
import numpy as np
import pytest

from sparsejax import attacks, runner
from sparsejax.attacks.engine import Schedule
from sparsejax.errors import SparsejaxError
from sparsejax.runner import execute, memory
from sparsejax.runner import plan as P

pytestmark = pytest.mark.xdist_group("digits")


def _probe(model, ds, name, batch=24, overrides=()):
    spec = attacks.get(name)
    config = runner.make_config(spec, list(overrides))
    schedule = P.schedule_for(spec, None, batch)
    return P.probe_plan(spec, config, model, ds, target_mode=None, seed=0, batch_size=batch,
                        schedule=schedule)  # fmt: skip


def _measured_peak(plan, lanes):
    """XLA's measure of the real program at ``lanes`` lanes on ``lanes`` items."""
    probe = dataclasses.replace(
        plan, batch_size=lanes, schedule=Schedule(plan.schedule.kind, lanes),
        positions=np.zeros(lanes, int),
    )  # fmt: skip
    leaves, treedef = execute._flat_inputs(probe, probe.batch_inputs(0))
    return memory._peak(jax.jit(execute._program(probe, treedef)).lower(*leaves).compile())


@pytest.mark.parametrize("name", ["sparsefool", "sigma-zero"])
def test_the_cost_is_linear_in_the_lanes_and_the_cap_fits(digits_model, digits_test, name):
    plan = _probe(digits_model, digits_test, name)
    cost = memory.lane_cost(plan)
    weights = sum(a.nbytes for a in jax.tree.leaves(digits_model.variables))
    assert cost.fixed >= weights and cost.per_lane > 4 * int(np.prod((8, 8, 1)))
    # Two points predict a third: the program at 6 lanes.
    predicted = cost.fixed + 6 * cost.per_lane
    assert abs(_measured_peak(plan, 6) - predicted) <= 0.1 * predicted
    budget = cost.fixed + int(3.5 * cost.per_lane)
    schedule, _ = memory.fit(plan, budget)
    assert schedule == Schedule(plan.schedule.kind, 3)
    assert _measured_peak(plan, 3) <= budget < _measured_peak(plan, 4)


def test_a_capped_run_is_the_run_at_that_many_lanes(digits_model, digits_test, tmp_path):
    spec = attacks.get("sparsefool")
    config = runner.make_config(spec, [])
    ds = dataclasses.replace(
        digits_test, x=digits_test.x[:24], y=digits_test.y[:24], indices=digits_test.indices[:24]
    )
    cost = memory.lane_cost(_probe(digits_model, ds, "sparsefool"))
    budget = cost.fixed + int(3.5 * cost.per_lane)
    capped = runner.run_attack(spec, config, digits_model, ds, tmp_path / "capped",
                               batch_size=24, memory_budget=budget, progress=False)  # fmt: skip
    three = runner.run_attack(spec, config, digits_model, ds, tmp_path / "three",
                              batch_size=24, slots=3, progress=False)  # fmt: skip
    assert capped["summary"]["memory"]["lanes"] == 3
    assert capped["summary"]["memory"]["budget_gib"] == budget / memory.GIB
    assert capped["schedule"] == three["schedule"] == {"kind": "queue", "width": 3}
    assert capped["examples"] == three["examples"]
    fp = json.loads((tmp_path / "capped" / "run.json").read_text())["fingerprint"]
    assert fp["lanes"] == 3


def test_a_budget_below_one_lane_is_refused_before_the_run(digits_model, digits_test, tmp_path):
    spec = attacks.get("sigma-zero")
    cost = memory.lane_cost(_probe(digits_model, digits_test, "sigma-zero", batch=8))
    budget = cost.fixed + cost.per_lane // 2
    with pytest.raises(SparsejaxError, match="one example in flight needs .* over the memory"):
        runner.run_attack(
            spec, runner.make_config(spec, []), digits_model, digits_test, tmp_path / "r",
            batch_size=8, memory_budget=budget, progress=False,
        )  # fmt: skip
    assert not (tmp_path / "r").exists()  # nothing written


def test_small_inputs_are_not_probed_without_a_budget(digits_model, digits_test):
    plan = _probe(digits_model, digits_test, "sparse-rs")
    assert memory.fit(plan, None) == (plan.schedule, None)
    with pytest.raises(SparsejaxError, match="positive number of GiB"):
        memory.check_budget(0.0)
