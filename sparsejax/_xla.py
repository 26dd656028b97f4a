"""The XLA:CPU setting sparsejax applies when it is imported, before JAX starts a backend.

XLA:CPU (jaxlib 0.10) hands convolutions to YNNPACK fusions by default. For the models
here, YNNPACK's convolutions, and above all the input-gradient convolutions every white-box
attack runs at each step, are slower than XLA's own (Eigen) ones: a ResNet-20 forward and
input-gradient pass costs 1.4-1.8x more with them, a SmallCNN one up to 2.7x (measured in
benchmarks/README.md, "XLA:CPU's convolutions"). So sparsejax removes convolutions from the
YNNPACK fusion list (``--xla_cpu_experimental_ynn_fusion_type=-individual_convolution``);
matrix products and elementwise fusions stay with YNNPACK. Accelerators ignore the flag.

The flag is added to ``XLA_FLAGS`` only when all of these hold:
  - ``SPARSEJAX_KEEP_XLA_FLAGS`` is not set to 1 (the way to opt out);
  - ``XLA_FLAGS`` does not already set that flag (the user's choice wins);
  - the installed jaxlib is one this was measured on (an unknown XLA flag aborts the
    process, so a jaxlib that might not know it is left alone);
  - no JAX backend has started yet (after that, XLA_FLAGS is no longer read).
"""

from __future__ import annotations

import os
import sys
from importlib import metadata

FLAG_NAME = "xla_cpu_experimental_ynn_fusion_type"
FLAG = f"--{FLAG_NAME}=-individual_convolution"
_MEASURED_JAXLIB = ("0.10.",)


def _backend_started() -> bool:
    if "jax" not in sys.modules:
        return False
    from jax._src import xla_bridge

    return xla_bridge.backends_are_initialized()


def apply(environ=os.environ) -> bool:
    """Adds :data:`FLAG` to ``environ["XLA_FLAGS"]`` under the rules above; True if added."""
    if environ.get("SPARSEJAX_KEEP_XLA_FLAGS") == "1":
        return False
    flags = environ.get("XLA_FLAGS", "")
    if FLAG_NAME in flags:
        return False
    try:
        version = metadata.version("jaxlib")
    except metadata.PackageNotFoundError:
        return False
    if not version.startswith(_MEASURED_JAXLIB) or _backend_started():
        return False
    environ["XLA_FLAGS"] = f"{flags} {FLAG}".strip()
    return True
