"""Shared fixtures. Real assets come from $SPARSEJAX_ASSETS or ../shared/assets."""

from __future__ import annotations

import os
import tempfile

# The suite compiles far more than it runs (small models, many programs): LLVM's cheapest
# optimisation level cuts its compile time by about a quarter. Set before JAX starts, so
# the notebook kernels and command-line subprocesses inherit it. Users, benchmarks and
# experiments keep XLA's default, and so do the tests that follow another implementation's
# float path step by step (``tests.helpers.XLA_DEFAULT``); SPARSEJAX_TEST_XLA_DEFAULT=1
# keeps the default everywhere.
if os.environ.get("SPARSEJAX_TEST_XLA_DEFAULT") != "1":
    os.environ["XLA_FLAGS"] = (
        os.environ.get("XLA_FLAGS", "") + " --xla_backend_optimization_level=0"
    ).strip()

import jax  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

from sparsejax.data import assets_dir  # noqa: E402

# Silent broadcasting between a [B] mask and [B, H, W, C] images is a classic attack bug.
jax.config.update("jax_numpy_rank_promotion", "raise")

# The command line turns on the persistent compilation cache: keep the tests' entries in a
# folder of their own, not in the user's cache.
os.environ.setdefault("SPARSEJAX_CACHE_DIR", tempfile.mkdtemp(prefix="sparsejax-test-cache-"))

SHARED_REASON = (
    "needs the shared real data and weights (../shared/assets or $SPARSEJAX_ASSETS), "
    "absent on this machine"
)


@pytest.fixture(scope="session")
def assets():
    d = assets_dir()
    if d is None:
        pytest.skip(SHARED_REASON)
    return d


@pytest.fixture
def rng():
    return np.random.default_rng(0)


def pytest_report_header(config):
    d = assets_dir()
    return f"sparsejax assets: {d if d else 'absent (shared tests will skip)'}; " + (
        f"OPENBLAS/threads={os.environ.get('OMP_NUM_THREADS', 'default')}"
    )


@pytest.fixture(scope="session")
def digits_model():
    """A LeNet-5 trained for a few epochs on the real 8x8 digits (about 97% test accuracy)."""
    from sparsejax import data, train

    tr = data.load_dataset("digits", split="train")
    model, _ = train.train_classifier(
        "lenet5-digits", tr, train.TrainConfig(epochs=8, seed=0), progress=False
    )
    return model


@pytest.fixture(scope="session")
def digits_test():
    from sparsejax import data

    return data.load_dataset("digits")


@pytest.fixture
def x64():
    """float64 for the tests against NumPy references."""
    jax.config.update("jax_enable_x64", True)
    yield
    jax.config.update("jax_enable_x64", False)
