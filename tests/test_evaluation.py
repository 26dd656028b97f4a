"""``sparsejax evaluate`` (SPEC §6): the metrics against hand-computed values, and an
evaluation of the digits LeNet-5 end to end (one min-norm and one fixed-k attack)."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from sparsejax import data, evaluation, metrics
from sparsejax.errors import SparsejaxError
from sparsejax.evaluation import curves

INF = np.inf


# --------------------------------------------------------------------------- the metrics


def test_distances_robust_accuracy_and_medians_by_hand():
    d = curves.distances(
        l0=np.array([5, 3, 9, 2, 7]),
        success=np.array([False, True, False, True, True]),
        clean_correct=np.array([False, True, True, True, True]),
    )
    np.testing.assert_array_equal(d, [0, 3, INF, 2, 7])
    np.testing.assert_allclose(curves.robust_accuracy(d, [0, 2, 3, 10]), [0.8, 0.6, 0.4, 0.2])
    np.testing.assert_allclose(curves.attack_success_rate(d, [2, 7]), [0.4, 0.8])
    assert curves.median_l0(d) == 3.0  # of 0, 2, 3, 7, inf
    assert curves.median_l0(np.array([0, 2, INF, INF])) == INF
    assert curves.median_l0_successes(d) == 3.0  # of 2, 3, 7
    assert curves.median_l0_successes(np.array([0.0, INF])) is None
    np.testing.assert_array_equal(
        curves.ensemble([np.array([0, 3, INF, 2]), np.array([0, 1, 4, INF])]), [0, 1, 4, 2]
    )


def test_optimality_by_hand():
    # Ensemble d* = 0, 1, 2, 4: clean_acc 0.75, d_max 4. The step curve's area is the mean
    # of the distances clipped at d_max: A* = (0 + 1 + 2 + 4) / 4 = 1.75.
    star = np.array([0.0, 1, 2, 4])
    assert curves.optimality(star, star) == pytest.approx(1.0)
    # d = 0, 2, inf, 4: A = (0 + 2 + 4 + 4) / 4 = 2.5; 1 - (2.5 - 1.75) / (0.75 · 4 - 1.75).
    d = np.array([0.0, 2, INF, 4])
    assert curves.optimality(d, star) == pytest.approx(1 - 0.75 / 1.25)
    # Nothing broken: the curve stays at the clean accuracy, A = 3: optimality 0.
    assert curves.optimality(np.array([0.0, INF, INF, INF]), star) == pytest.approx(0.0)
    # AttackBench's trapezoid through RA at the distinct distances: for d*, RA = 0.75, 0.5,
    # 0.25, 0 at 0, 1, 2, 4, A* = 0.625 + 0.375 + 0.25 = 1.25; for d, RA = 0.75, 0.5, 0 at
    # 0, 2, 4 (the clipped sample counts at 4), A = 1.25 + 0.5 = 1.75.
    trap = lambda d: curves.optimality(d, star, area="trapezoid")  # noqa: E731
    assert trap(d) == pytest.approx(1 - 0.5 / 1.75)
    assert trap(np.array([0.0, INF, INF, INF])) == pytest.approx(1 - 0.25 / 1.75)  # not 0
    assert trap(star) == pytest.approx(1.0)
    # The ensemble's own failures are clipped at the largest finite d* (d_max = 2 here):
    # A* = (0 + 1 + 2 + 2) / 4 = 1.25 against clean_acc · d_max = 1.5.
    star = np.array([0.0, 1, 2, INF])
    assert curves.optimality(star, star) == pytest.approx(1.0)
    assert curves.optimality(np.array([0.0, 2, 2, INF]), star) == pytest.approx(0.0)
    # No area to compare: nothing broken below d_max, or nothing broken at all.
    assert curves.optimality(np.array([0.0, 1, INF]), np.array([0.0, 1, INF])) is None
    assert curves.optimality(np.array([0.0, INF]), np.array([0.0, INF])) is None
    with pytest.raises(ValueError):
        curves.optimality(np.zeros(3), np.zeros(4))


# --------------------------------------------------------------------------- end to end

ATTACKS = ("sparsefool", "spgd", "random-subset")
BUDGETS = (1, 2, 4, 8)
OVERRIDES = {
    "spgd": ["steps=30"],
    "sparsefool": ["lambda_=1.0", "max_iter=10"],
    "random-subset": ["budgets=4,8", "draws=20"],
}


def _evaluate(model, ds, out, **kw):
    return evaluation.evaluate(
        model, ds, ATTACKS, BUDGETS, "pixels", out, overrides=OVERRIDES, batch_size=8,
        progress=False, **kw,
    )  # fmt: skip


@pytest.fixture(scope="module")
def evaluated(digits_model, tmp_path_factory):
    ds = data.load_dataset("digits", n=20)
    out = tmp_path_factory.mktemp("evaluate")
    return _evaluate(digits_model, ds, out), ds, out


def test_curves_start_at_clean_accuracy_and_never_rise(evaluated, digits_model):
    ev, ds, _ = evaluated
    clean = float(np.mean(digits_model.predict(ds.x).argmax(1) == ds.y))
    assert ev.clean_accuracy == clean
    for a in (*ev.attacks.values(), ev.ensemble):
        for ra in (a.robust_accuracy, a.robust_accuracy_other_unit):
            assert ra[0] == clean
            assert np.all(np.diff(ra) <= 0)


def test_the_ensemble_is_the_per_sample_best(evaluated):
    ev, _, _ = evaluated
    for unit in ("pixels", "elements"):
        star = ev.distances("ensemble", unit)
        stacked = np.stack([ev.distances(a, unit) for a in ev.attacks])
        np.testing.assert_array_equal(star, stacked.min(0))
    assert ev.ensemble.optimality == pytest.approx(1.0)
    for a in ev.attacks.values():
        assert 0.0 <= a.optimality <= 1.0
    # The attacks disagree somewhere, or the ensemble would test nothing.
    assert not np.array_equal(ev.distances("sparsefool"), ev.distances("spgd"))


def test_distances_are_recounted_from_the_stored_adversarials(evaluated, digits_model):
    ev, ds, out = evaluated
    for name in ATTACKS:
        stored = np.load(out / name / "adversarials.npz")
        np.testing.assert_array_equal(stored["index"], ds.indices)
        x_adv = stored["x_adv"]
        pred = digits_model.predict(x_adv).argmax(1)
        clean_ok = digits_model.predict(ds.x).argmax(1) == ds.y
        for unit, count in (("pixels", metrics.l0_pixels), ("elements", metrics.l0_elements)):
            d = ev.distances(name, unit)
            broken = np.isfinite(d) & (d > 0)
            np.testing.assert_array_equal(d[broken], np.asarray(count(x_adv, ds.x))[broken])
            np.testing.assert_array_equal(d == 0, ~clean_ok)
            assert np.all(pred[broken] != ds.y[broken])  # re-verified on the stored images
        if name == "spgd":  # fixed-k: never beyond the largest budget
            assert np.all(ev.distances(name)[np.isfinite(ev.distances(name))] <= BUDGETS[-1])


def test_evaluation_json_is_valid_and_complete(evaluated):
    ev, ds, out = evaluated
    doc = json.loads((out / "evaluation.json").read_text())  # strict JSON: no NaN or inf
    assert doc["indices"] == [int(i) for i in ds.indices]
    assert doc["unit"] == "pixels" and doc["budgets"] == list(BUDGETS)
    assert doc["complete"] is True
    for block in (*doc["attacks"].values(), doc["ensemble"]):
        assert block["robust_accuracy"]["k"] == [0, *BUDGETS]
        assert len(block["distances_pixels"]) == len(ds)
        for key in ("asr_k", "median_l0", "q", "s", "optimality", "robust_accuracy_elements"):
            assert key in block
    sf = doc["attacks"]["sparsefool"]
    failed = [i for i, v in enumerate(sf["distances_pixels"]) if v is None]
    assert failed == list(np.flatnonzero(~np.isfinite(ev.distances("sparsefool"))))
    assert doc["attacks"]["spgd"]["q"] > 0 and doc["ensemble"]["q"] == pytest.approx(
        sum(a["q"] for a in doc["attacks"].values())
    )
    for block in (*doc["attacks"].values(), doc["ensemble"]):
        assert block["q"] == block["q_forwards"] + block["q_backwards"]
    assert doc["attacks"]["sparsefool"]["q_backwards"] > 0  # a gradient attack
    assert doc["attacks"]["random-subset"]["q_backwards"] == 0  # draws, forwards only
    # `budgets=4,8`: the random subset ran at those two budgets only.
    assert doc["configs"]["random-subset"]["k"] == [4, 8]
    assert sorted(p.name for p in (out / "random-subset").glob("k*")) == ["k4", "k8"]
    assert sorted(p.name for p in (out / "spgd").glob("k*")) == [f"k{k}" for k in (1, 2, 4, 8)]
    for f in ("robust_accuracy.png", "examples.png", "report.md"):
        assert (out / f).stat().st_size > 0
    assert "ensemble" in (out / "report.md").read_text()


def test_a_killed_run_resumes_to_the_same_evaluation(evaluated, digits_model, tmp_path):
    ev, ds, out = evaluated
    copy = tmp_path / "copy"
    shutil.copytree(out, copy)
    # As if killed during the second batch of sPGD at k = 4: that batch and the files
    # rewritten at the end are missing.
    run = copy / "spgd" / "k4"
    (run / "batches" / "batch_00001.npz").unlink()
    (run / "results.json").unlink()
    (copy / "evaluation.json").unlink()
    again = _evaluate(digits_model, ds, copy)
    a = json.loads((out / "evaluation.json").read_text())
    b = json.loads((copy / "evaluation.json").read_text())
    for doc in (a, b):  # wall time differs between sessions; nothing else may
        for block in (*doc["attacks"].values(), doc["ensemble"]):
            block.pop("s")
    assert a == b
    assert again.complete


def test_bad_requests_fail_before_any_work():
    check = evaluation.check_evaluation_request
    shape = (8, 8, 1)
    with pytest.raises(SparsejaxError, match="unknown attack"):
        check(["sparsfool"], [1], "pixels", model_shape=shape)
    with pytest.raises(SparsejaxError, match="increasing"):
        check(["spgd"], [5, 2], "pixels", model_shape=shape)
    with pytest.raises(SparsejaxError, match="pixels or elements"):
        check(["spgd"], [1], "px", model_shape=shape)
    with pytest.raises(SparsejaxError, match="targeted only"):
        check(["sapf"], [1], "elements", model_shape=shape)
    with pytest.raises(SparsejaxError, match="counts its budget in elements"):
        check(["random-subset"], [3], "pixels", model_shape=(32, 32, 3))
    with pytest.raises(SparsejaxError, match="not a budget in elements"):  # k per channel
        check(["random-subset"], [2], "elements", model_shape=(32, 32, 3))
    with pytest.raises(SparsejaxError, match="min-norm, it runs once"):
        check(["sparsefool"], [1], "pixels", {"sparsefool": ["budgets=1"]}, model_shape=shape)
    for bad in ("1,3", "2,1", "", "a"):
        with pytest.raises(SparsejaxError, match="budgets"):
            check(["spgd"], [1, 2], "pixels", {"spgd": [f"budgets={bad}"]}, model_shape=shape)
    with pytest.raises(SparsejaxError, match="not among --attacks"):
        check(["spgd"], [1], "pixels", {"sparsefool": ["lambda_=2"]}, model_shape=shape)
    with pytest.raises(SparsejaxError, match="twice"):
        check(["spgd", "spgd"], [1], "pixels", model_shape=shape)
    runs = check(["sparsefool", "spgd"], [1, 3], "elements", model_shape=shape)
    assert [k for k, _ in runs["sparsefool"]] == [None]
    assert [(k, c.k, c.unit) for k, c in runs["spgd"]] == [
        (1, 1.0, "elements"),
        (3, 3.0, "elements"),
    ]
    # The one-pixel attack's budget is its pixels (one round: max_pixels too); on one
    # channel the random subset's elements are pixels; `budgets=` picks a subset.
    runs = check(
        ["one-pixel", "random-subset", "spgd"], [1, 2, 5], "pixels",
        {"one-pixel": ["budgets=1,5", "generations=3"], "spgd": ["steps=7"]}, model_shape=shape,
    )  # fmt: skip
    assert [(k, c.pixels, c.max_pixels, c.generations) for k, c in runs["one-pixel"]] == [
        (1, 1, 1, 3),
        (5, 5, 5, 3),
    ]
    assert [(k, c.k) for k, c in runs["random-subset"]] == [(1, 1.0), (2, 2.0), (5, 5.0)]
    assert [c.steps for _, c in runs["spgd"]] == [7, 7, 7]


# --------------------------------------------------------------------------- transfer


def test_transfer_matrix_from_a_run_to_two_models(digits_model, tmp_path, capsys):
    from sparsejax import cli, train
    from sparsejax.models import checkpoint

    other, _ = train.train_classifier(
        "lenet5-digits", data.load_dataset("digits", split="train"),
        train.TrainConfig(epochs=8, seed=1), progress=False,
    )  # fmt: skip
    ckpt = {}
    for tag, m in (("a", digits_model), ("b", other)):
        ckpt[tag] = tmp_path / f"{tag}.msgpack"
        checkpoint.save(ckpt[tag], m.name, m.variables)
    run = tmp_path / "run"
    argv = ["attack", "--attack", "sparsefool", "--model", "lenet5-digits"]
    argv += ["--weights", str(ckpt["a"]), "--dataset", "digits", "--n", "24", "--out", str(run)]
    assert cli.main(argv) == 0
    out = tmp_path / "transfer"
    argv = ["transfer", "--adversarials", str(run), "--out", str(out)]
    for tag in ("a", "b"):
        argv += ["--model", "lenet5-digits", "--weights", str(ckpt[tag])]
    assert cli.main(argv) == 0
    assert "| source \\ target |" in capsys.readouterr().out
    doc = json.loads((out / "transfer.json").read_text())
    assert doc["targets"] == ["lenet5-digits:a", "lenet5-digits:b"]
    assert (out / "transfer.png").stat().st_size > 0
    # Recomputed here: the source's successes, the targets' predictions.
    ds = data.load_dataset("digits", n=24)
    adv = np.load(run / "adversarials.npz")["x_adv"]
    res = json.loads((run / "results.json").read_text())
    success = np.array([e["success"] for e in res["examples"]])
    for j, m in enumerate((digits_model, other)):
        use = success & (m.predict(ds.x).argmax(1) == ds.y)
        fooled = use & (m.predict(adv).argmax(1) != ds.y)
        assert doc["eligible"][0][j] == use.sum() and doc["fooled"][0][j] == fooled.sum()
    assert doc["fooling_rate"][0][0] == 1.0  # the source's own model: its success re-checked
    assert 0.0 <= doc["fooling_rate"][0][1] <= 1.0


def test_transfer_refuses_bad_requests_before_any_work(tmp_path, capsys):
    from sparsejax import cli

    rc = cli.main(["transfer", "--adversarials", str(tmp_path), "--model", "lenet5-digits",
                   "--weights", "w.msgpack", "--out", str(tmp_path / "o")])  # fmt: skip
    assert rc == 2 and "not an attack run folder" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


# --------------------------------------------------------------------------- interpretability


def test_obscuring_and_leading_pixels_on_an_affine_model():
    """z = W · x: the saliency of class c is |W_c| (closed form), so the categories follow
    from W alone."""
    import jax.numpy as jnp

    from sparsejax.evaluation import interpret

    w = np.zeros((2, 4, 4, 1), np.float32)
    w[0, 0, 0] = 5.0  # class 0's evidence: pixels (0, 0) and (0, 1)
    w[0, 0, 1] = 4.0
    w[1, 0, 1] = -6.0  # class 1's: (0, 1) and (3, 3)
    w[1, 3, 3] = 7.0
    w[:, 2, 2] = 0.1  # a little everywhere else would tie; one weak pixel is enough
    logits_fn = lambda x: jnp.einsum("nhwc,khwc->nk", x, jnp.asarray(w))  # noqa: E731
    np.testing.assert_allclose(
        interpret.saliency(logits_fn, np.ones((1, 4, 4, 1), np.float32), np.array([1]))[0],
        np.abs(w[1, ..., 0]),
    )
    x = np.zeros((1, 4, 4, 1), np.float32)
    x[0, 0, 0] = 1.0  # clean: class 0 (z = 5 against 0)
    x_adv = x.copy()
    x_adv[0, 0, 0] = 0.0  # obscuring only: class 0's top pixel, not class 1's
    x_adv[0, 0, 1] = 0.0  # unperturbed (the same value)
    x_adv[0, 3, 3] = 1.0  # leading only: class 1's top pixel
    x_adv[0, 1, 1] = 0.5  # neither
    # z = (0, 7): class 1. top = 2/16: the 2 largest of each map.
    noise = interpret.classify_noise(logits_fn, x, x_adv, np.array([0]), top=2 / 16)
    assert int(noise["adv_class"][0]) == 1
    assert {k: int(v[0]) for k, v in noise["counts"].items()} == {
        "obscuring": 1, "leading": 1, "both": 0, "neither": 1,
    }  # fmt: skip
    assert noise["fractions"]["obscuring"] == pytest.approx(1 / 3)
    # Chance: the categories' shares of all 16 pixels ((0, 0); (3, 3); (0, 1); the rest).
    assert noise["chance"] == pytest.approx(
        {"obscuring": 1 / 16, "leading": 1 / 16, "both": 1 / 16, "neither": 13 / 16}
    )
    # (0, 1) is in both maps' top 2: perturbed, it is "both".
    x_adv[0, 0, 1] = -0.5
    noise = interpret.classify_noise(logits_fn, x, x_adv, np.array([0]), top=2 / 16)
    assert int(noise["counts"]["both"][0]) == 1
    assert noise["category"][0, 0, 1] == 2 and noise["category"][0, 2, 3] == -1
