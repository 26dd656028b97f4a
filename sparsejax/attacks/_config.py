"""How attack configs are declared: frozen pytree dataclasses with documented fields.

Every config field is declared with :func:`param`, which records, next to the default, what
the field means (``doc``), its unit and the paper's name for it. Static fields (loop bounds,
modes, anything that changes shapes or code) are pytree metadata; every other field is a
traced leaf, so changing it does not recompile and :func:`sparsejax.sweep` can sweep it.

Modes are typed as ``typing.Literal``; :func:`config` checks every static field against its
annotation when the config is built (a typo is an error naming the allowed values, before
anything is traced), and :func:`validate` runs the config's own range checks on concrete
numbers (skipped for traced ones). ``docs/attacks.md`` is generated from these declarations
(``python -m sparsejax.attacks.docs``).
"""

from __future__ import annotations

import dataclasses
import typing

import jax
import numpy as np

from sparsejax.errors import SparsejaxError


def param(default, *, doc: str, unit: str = "", paper: str = "", static: bool = False):
    """A config field: its default, what it means, its unit and the paper's name for it."""
    meta = dict(doc=doc, unit=unit, paper=paper)
    if static:
        meta["static"] = True
    if dataclasses.is_dataclass(default):  # a nested config: one shared immutable default
        return dataclasses.field(default_factory=lambda: default, metadata=meta)
    return dataclasses.field(default=default, metadata=meta)


def config(cls):
    """Makes ``cls`` a frozen dataclass registered as a pytree (static fields as metadata)
    whose static fields are checked against their annotations at construction."""
    original = cls.__dict__.get("__post_init__")

    def __post_init__(self):
        _check_static_fields(self)
        if original is not None:
            original(self)

    cls.__post_init__ = __post_init__  # before dataclass(), whose __init__ then calls it
    cls = dataclasses.dataclass(frozen=True)(cls)
    return jax.tree_util.register_dataclass(cls)


def config_name(cfg) -> str:
    return getattr(type(cfg), "attack_name", type(cfg).__name__)


def _check_static_fields(cfg) -> None:
    """Literal modes, bools and ints of the static fields (always concrete: pytree metadata)."""
    hints = typing.get_type_hints(type(cfg))
    for f in dataclasses.fields(cfg):
        if not f.metadata.get("static"):
            continue
        value, typ = getattr(cfg, f.name), hints[f.name]
        where = f"{config_name(cfg)} {f.name}"
        if typing.get_origin(typ) is typing.Literal:
            allowed = typing.get_args(typ)
            if value not in allowed:
                raise SparsejaxError(
                    f"{where} must be one of {', '.join(map(str, allowed))}, got {value!r}"
                )
        elif typ is bool and not isinstance(value, (bool, np.bool_)):
            raise SparsejaxError(f"{where} must be True or False, got {value!r}")
        elif typ is int and (isinstance(value, bool) or not isinstance(value, (int, np.integer))):
            raise SparsejaxError(f"{where} must be a whole number, got {value!r}")


def is_concrete(*values) -> bool:
    return not any(isinstance(v, jax.core.Tracer) for v in values)


def check_number(cfg, name: str, lo=None, hi=None, lo_open: bool = False, integer=False):
    """Host-side range check of a traced config number, scalar or sweep array (skipped when
    the value is traced)."""
    value = getattr(cfg, name)
    if not is_concrete(value):
        return
    where = f"{config_name(cfg)} {name}"
    v = np.asarray(value, dtype=np.float64)
    if not np.all(np.isfinite(v)):
        raise SparsejaxError(f"{where} must be finite, got {value}")
    if lo is not None and (np.any(v <= lo) if lo_open else np.any(v < lo)):
        raise SparsejaxError(f"{where} must be {'>' if lo_open else '>='} {lo:g}, got {value}")
    if hi is not None and np.any(v > hi):
        raise SparsejaxError(f"{where} must be <= {hi:g}, got {value}")
    if integer and np.any(v != np.round(v)):
        raise SparsejaxError(f"{where} must be a whole number, got {value}")


def check_count(cfg, name: str, lo: int = 1, hi: int = 2**30):
    """Range check of a static count (a loop bound: large values would overflow int32 or
    never finish)."""
    value = getattr(cfg, name)
    if not lo <= value <= hi:
        raise SparsejaxError(f"{config_name(cfg)} {name} must lie in [{lo}, {hi:,}], got {value:,}")


def validate(cfg) -> None:
    """Runs ``cfg.validate()`` and that of every nested config (before compilation)."""
    for f in dataclasses.fields(cfg):
        sub = getattr(cfg, f.name)
        if dataclasses.is_dataclass(sub):
            validate(sub)
    if hasattr(cfg, "validate"):
        cfg.validate()


def field_table(cls) -> list[dict]:
    """One row per field (nested configs flattened with dotted names) for the docs page."""
    rows = []
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        default = f.default if f.default is not dataclasses.MISSING else f.default_factory()
        if dataclasses.is_dataclass(default):
            for r in field_table(type(default)):
                rows.append({**r, "name": f"{f.name}.{r['name']}"})
            continue
        typ = hints[f.name]
        if typing.get_origin(typ) is typing.Literal:
            kind = " / ".join(repr(a) for a in typing.get_args(typ))
        else:
            kind = getattr(typ, "__name__", str(typ))
        rows.append(
            dict(
                name=f.name,
                default=default,
                type=kind,
                static=bool(f.metadata.get("static")),
                unit=f.metadata.get("unit", ""),
                paper=f.metadata.get("paper", ""),
                doc=f.metadata.get("doc", ""),
            )
        )
    return rows
