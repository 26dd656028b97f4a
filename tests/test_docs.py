"""docs/attacks.md is generated from the registry and the config declarations: it must be
current, and every config field must be documented."""

from __future__ import annotations

from pathlib import Path

from sparsejax.attacks import _docs

DOCS = Path(__file__).resolve().parents[1] / "docs" / "attacks.md"


def test_every_config_field_is_documented():
    _docs._check_documented()


def test_the_attacks_page_is_current():
    want = _docs.attacks_markdown() + "\n"
    assert DOCS.read_text() == want, (
        "docs/attacks.md is stale: python -m sparsejax.attacks._docs > docs/attacks.md"
    )
