"""The registry of attacks: the one list that the command line, the runner and the
evaluation read (SPEC §2). A new attack is one entry here and one row in the conformance
table (``tests/test_conformance.py``)."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Literal

import numpy as np

from sparsejax.attacks import (
    _cw_l0,
    _fmn,
    _jsma,
    _one_pixel,
    _random_subset,
    _saa,
    _sapf,
    _sigma_zero,
    _sparse_l0,
    _sparse_rs,
    _sparsefool,
    _spgd,
)
from sparsejax.attacks.engine import Algorithm
from sparsejax.errors import UnknownNameError


@dataclasses.dataclass(frozen=True)
class AttackSpec:
    """What the tools need to know about an attack.

    Attributes:
      name: the command-line spelling (``sparsefool``, ``sparse-l0``, ...).
      fn: the public attack function (the one signature of SPEC §2).
      config_cls: its config class.
      paper: the paper it implements.
      description: one line.
      unit: the ℓ0 unit of its budget or objective: "pixels" or "elements".
      budget: "min-norm" (it minimises ℓ0) or "fixed-k" (it stays within a budget k).
      targeted: "no", "optional" or "required".
      needs_key: whether it draws random numbers (a key is required).
      max_changed: fixed-k only: ``(config, example_shape) -> float``, the most units (of
        ``config.unit``, else ``unit``) one example may change; ``config.k`` unless the
        attack says otherwise (the random subset's k counts per channel).
      at_budget: fixed-k only: ``(config, k) -> config`` with its budget set to k (in
        ``config.unit``, else ``unit``); replaces ``config.k`` unless the attack names its
        budget otherwise (the one-pixel attack's ``pixels`` and ``max_pixels``). None: the
        attack has no budget field (it cannot run at a given k).
    """

    name: str
    fn: Callable
    config_cls: type
    paper: str
    description: str
    unit: Literal["pixels", "elements"]
    budget: Literal["min-norm", "fixed-k"]
    targeted: Literal["no", "optional", "required"]
    needs_key: bool
    max_changed: Callable | None = None
    at_budget: Callable | None = None

    @property
    def algorithm(self) -> Algorithm:
        return self.fn.algorithm


def _set_k(config, k):
    return dataclasses.replace(config, k=float(k))


def _spec(fn, paper, description, unit, budget, max_changed=None, at_budget=None) -> AttackSpec:
    a: Algorithm = fn.algorithm
    if budget == "fixed-k" and max_changed is None:
        max_changed = lambda c, shape: float(np.max(np.asarray(c.k)))  # noqa: E731
    if budget == "fixed-k" and at_budget is None:
        has_k = "k" in {f.name for f in dataclasses.fields(a.config_cls)}
        at_budget = _set_k if has_k else None
    return AttackSpec(
        a.name,
        fn,
        a.config_cls,
        paper,
        description,
        unit,
        budget,
        a.targeted,
        a.needs_key,
        max_changed,
        at_budget,
    )


_SAPF_PAPER = "Fan et al., 'Sparse Adversarial Attack via Perturbation Factorization', ECCV 2020"
_SPECS = {
    s.name: s
    for s in (
        _spec(
            _sparsefool.sparsefool,
            "Modas, Moosavi-Dezfooli, Frossard, 'SparseFool: a few pixels make a big "
            "difference', CVPR 2019",
            "DeepFool linearization + box-constrained l1 LinearSolver",
            "pixels",  # the paper reports the fraction of pixels changed
            "min-norm",
        ),
        _spec(
            _sparse_l0.sparse_l0,
            "Lin, Lou, Wang, Jalaian, Yuan, 'Towards Interpretable Adversarial Examples via "
            "Sparse Adversarial Attack'",
            "I-FGSM start, shifted-ReLU weight mask, Heaviside with a Gaussian surrogate "
            "derivative, Omega box",
            "elements",
            "min-norm",
        ),
        _spec(
            _sigma_zero.sigma_zero,
            "Cinà, Villani, Pintor, Schönherr, Biggio, Pelillo, 'σ-zero: Gradient-based "
            "Optimization of l0-norm Adversarial Examples', ICLR 2025",
            "Adam on the clamped difference of logits + a smooth l0 term, adaptive threshold",
            "elements",
            "min-norm",
        ),
        _spec(
            _fmn.fmn_l0,
            "Pintor, Roli, Brendel, Biggio, 'Fast Minimum-norm Adversarial Attacks through "
            "Adaptive Norm Constraints', NeurIPS 2021",
            "normalised gradient steps on the difference of logits, projected on an adaptive "
            "l0 ball",
            "elements",
            "min-norm",
        ),
        _spec(
            _jsma.jsma,
            "Papernot, McDaniel, Jha, Fredrikson, Celik, Swami, 'The Limitations of Deep "
            "Learning in Adversarial Settings', EuroS&P 2016 (SparseFool Table 1's baseline)",
            "saliency-map pair search on the Jacobian, each chosen pair moved by theta",
            "elements",
            "min-norm",
        ),
        _spec(
            _cw_l0.cw_l0,
            "Carlini, Wagner, 'Towards Evaluating the Robustness of Neural Networks', IEEE "
            "S&P 2017 (Lin et al.'s baseline)",
            "the C&W l2 attack on a shrinking set of units, the least-changed fixed each round",
            "pixels",  # or elements, config.unit
            "min-norm",
        ),
        _spec(
            _spgd.spgd,
            "Zhong, Huang, Liu, 'Towards Efficient Training and Evaluation of Robust Models "
            "against l0 Bounded Adversarial Perturbations', ICML 2024",
            "PGD on a dense magnitude and a top-k mask score, projected or unprojected gradient",
            "pixels",  # or elements, config.unit
            "fixed-k",
        ),
        _spec(
            _sparse_rs.sparse_rs,
            "Croce, Andriushchenko, Singh, Flammarion, Hein, 'Sparse-RS: a Versatile "
            "Framework for Query-Efficient Sparse Black-Box Adversarial Attacks', AAAI 2022",
            "score-based random search over k positions with values at the box corners",
            "pixels",  # or elements, config.unit
            "fixed-k",
        ),
        _spec(
            _saa.saa,
            "Zhong, Huang, Liu, ICML 2024 (sparse-AutoAttack, CityU-MLO/sPGD)",
            "cascade: sPGD projected, sPGD unprojected, Sparse-RS, each on the survivors",
            "pixels",  # or elements, config.unit
            "fixed-k",
        ),
        _spec(
            _one_pixel.one_pixel,
            "Su, Vargas, Sakurai, 'One Pixel Attack for Fooling Deep Neural Networks', IEEE "
            "TEVC 2019 (SparseFool Table 1's 1-PA)",
            "differential evolution (DE/rand/1) over k pixels, from the probabilities only",
            "pixels",
            "fixed-k",
            lambda c, shape: float(c.max_pixels),
            lambda c, k: dataclasses.replace(c, pixels=int(k), max_pixels=int(k)),
        ),
        _spec(
            _random_subset.random_subset,
            "Modas, Moosavi-Dezfooli, Frossard, CVPR 2019, §4.1 (SparseFool's random baseline)",
            "k random elements per channel set to random corners of the box",
            "elements",
            "fixed-k",
            _random_subset.budget,
        ),
        _spec(
            _sapf.sapf,
            _SAPF_PAPER,
            "perturbation = magnitude x binary selection, cardinality k, lp-box ADMM",
            "elements",
            "fixed-k",
        ),
        _spec(
            _sapf.sapf_gs,
            _SAPF_PAPER,
            "SAPF with group sparsity over SLIC superpixels (Eq. 16)",
            "elements",
            "fixed-k",
        ),
        _spec(
            _sapf.sapf_vi,
            _SAPF_PAPER,
            "SAPF with visual-imperceptibility weights in the l2 term (Eq. 17)",
            "elements",
            "fixed-k",
        ),
    )
}


def names() -> list[str]:
    """The registered attack names, sorted."""
    return sorted(_SPECS)


def get(name: str) -> AttackSpec:
    """The :class:`AttackSpec` of ``name``; an unknown name is a one-line error."""
    if name not in _SPECS:
        raise UnknownNameError(f"unknown attack {name!r}; known: {', '.join(names())}")
    return _SPECS[name]
