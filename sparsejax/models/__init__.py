"""Flax models by name, ported from PyTorch weights (SPEC §4)."""

from sparsejax.models.registry import (
    MODELS,
    Model,
    ModelSpec,
    create,
    get_spec,
    load,
    model_names,
)

__all__ = ["MODELS", "Model", "ModelSpec", "create", "get_spec", "load", "model_names"]
