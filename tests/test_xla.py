"""The XLA:CPU flag sparsejax adds at import (sparsejax/_xla.py) and when it does not."""

from __future__ import annotations

import os

from sparsejax import _xla


def test_the_flag_is_in_this_process():
    # conftest imports sparsejax before any JAX backend starts, as a user's script would.
    assert _xla.FLAG in os.environ["XLA_FLAGS"].split()


def test_added_to_existing_flags_before_a_backend_starts(monkeypatch):
    monkeypatch.setattr(_xla, "_backend_started", lambda: False)
    env = {"XLA_FLAGS": "--xla_backend_optimization_level=0"}
    assert _xla.apply(env)
    assert env["XLA_FLAGS"] == f"--xla_backend_optimization_level=0 {_xla.FLAG}"
    assert not _xla.apply(env)  # once only
    assert env["XLA_FLAGS"].count(_xla.FLAG_NAME) == 1


def test_left_alone_when_the_user_chose_opted_out_or_it_is_too_late(monkeypatch):
    monkeypatch.setattr(_xla, "_backend_started", lambda: False)
    own = {"XLA_FLAGS": f"--{_xla.FLAG_NAME}=dot"}
    assert not _xla.apply(own) and own["XLA_FLAGS"] == f"--{_xla.FLAG_NAME}=dot"
    opted_out = {"SPARSEJAX_KEEP_XLA_FLAGS": "1"}
    assert not _xla.apply(opted_out) and "XLA_FLAGS" not in opted_out
    monkeypatch.setattr(_xla, "_backend_started", lambda: True)
    late = {}
    assert not _xla.apply(late) and "XLA_FLAGS" not in late


def test_left_alone_for_a_jaxlib_it_was_not_measured_on(monkeypatch):
    monkeypatch.setattr(_xla, "_backend_started", lambda: False)
    monkeypatch.setattr(_xla.metadata, "version", lambda name: "0.11.0")
    env = {}
    assert not _xla.apply(env) and "XLA_FLAGS" not in env
