"""``--set KEY=VALUE`` overrides of a frozen config dataclass, checked before compilation."""

from __future__ import annotations

import dataclasses
import typing

from sparsejax.errors import SparsejaxError, UnknownNameError

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


def _parse(value: str, typ, where: str):
    origin = typing.get_origin(typ)
    if origin in (typing.Union, getattr(__import__("types"), "UnionType", None)):
        args = [a for a in typing.get_args(typ) if a is not type(None)]
        if value.lower() in ("none", "null") and len(args) < len(typing.get_args(typ)):
            return None
        typ = args[0]
    if origin is typing.Literal:  # a mode: the config checks the allowed values
        options = typing.get_args(typ)
        for option in options:
            if str(option) == value:
                return option
        raise SparsejaxError(
            f"{where}: must be one of {', '.join(map(str, options))}, got {value!r}"
        )
    if typ is bool:
        v = value.lower()
        if v in _TRUE:
            return True
        if v in _FALSE:
            return False
        raise SparsejaxError(f"{where}: expected true/false, got {value!r}")
    if typ is int:
        try:
            return int(value)
        except ValueError:
            raise SparsejaxError(f"{where}: expected an integer, got {value!r}") from None
    if typ is float:
        try:
            out = float(value)
        except ValueError:
            raise SparsejaxError(f"{where}: expected a number, got {value!r}") from None
        if out != out or out in (float("inf"), float("-inf")):
            raise SparsejaxError(f"{where}: expected a finite number, got {value!r}")
        return out
    if typ is str:
        return value
    raise SparsejaxError(f"{where}: cannot be set from the command line")


def _fields(config):
    cls = type(config)
    return cls, typing.get_type_hints(cls), {f.name: f for f in dataclasses.fields(cls)}


def _set(config, path: list[str], value: str, item: str, forbidden: tuple[str, ...]):
    cls, hints, fields = _fields(config)
    key = path[0]
    if key not in fields:
        raise UnknownNameError(
            f"--set {item!r}: {cls.__name__} has no field {key!r}; "
            f"fields: {', '.join(sorted(fields))}"
        )
    if key in forbidden:
        raise SparsejaxError(f"--set {item!r}: {key} is set by its own option, not --set")
    current = getattr(config, key)
    if len(path) > 1:
        if not dataclasses.is_dataclass(current):
            raise SparsejaxError(f"--set {item!r}: {key} has no sub-fields")
        return dataclasses.replace(config, **{key: _set(current, path[1:], value, item, ())})
    if dataclasses.is_dataclass(current):
        raise SparsejaxError(f"--set {item!r}: set the sub-fields of {key}, e.g. {key}.NAME=V")
    return dataclasses.replace(config, **{key: _parse(value, hints[key], f"--set {item!r}")})


def apply_overrides(config, assignments: list[str] | None, forbidden: tuple[str, ...] = ()):
    """Returns ``config`` with ``KEY=VALUE`` assignments applied (types from the fields).

    Nested configs take dotted keys (``deepfool.max_iter=30``). Raises a one-line
    :class:`SparsejaxError` naming the assignment for a malformed item, an unknown or
    ``forbidden`` field, or a value of the wrong type. Range checks belong to the config's
    own ``validate()``, which the caller runs afterwards.
    """
    for item in assignments or []:
        if "=" not in item:
            raise SparsejaxError(f"--set {item!r}: expected KEY=VALUE")
        key, value = item.split("=", 1)
        path = key.strip().split(".")
        if not all(path):
            raise SparsejaxError(f"--set {item!r}: malformed key {key!r}")
        config = _set(config, path, value.strip(), item, forbidden)
    return config
