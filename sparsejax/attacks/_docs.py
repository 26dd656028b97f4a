"""Writes ``docs/attacks.md`` from the registry and the config declarations.

``python -m sparsejax.attacks._docs > docs/attacks.md``; ``tests/test_docs.py`` checks that
the committed page is current.
"""

from __future__ import annotations

import dataclasses

from sparsejax.attacks import _config, registry

NAMING = """\
## Names shared by every attack

The same idea has the same name in every config:

| name | meaning |
|---|---|
| `max_iter` | the engine's cap on `iterations` of an attack that stops early (SparseFool's outer iterations, SAPF's λ1 values, DeepFool's steps) |
| `steps`, `<phase>_steps` | the fixed number of steps of an attack or of one of its phases, all run (Lin et al.'s SGD steps, `fgsm_steps`; SAPF's `delta_steps`, `g_steps`, `finetune_steps`) |
| `learning_rate`, `learning_rate_<variable>` | a gradient step size (optax's name): Lin et al.'s SGD rate; SAPF's η_δ and η_G as `learning_rate_delta`, `learning_rate_g`, with `learning_rate_decay`, `learning_rate_min` and `decay_every` for their schedule |
| `overshoot` | the fraction by which a step is pushed past the boundary it aims at (SparseFool's output, DeepFool's class check) |
| `solver_margin`, `confidence` | how far past a decision boundary an attack aims: SparseFool's LinearSolver margin (in wᵀx units), and the C&W margin κ on logits (SAPF) |
| `lambda_`, `lambda1`, `lambda2`, `k`, `tau`, `a`, `epsilon`, `alpha`, `delta`, `rho*` | the paper's own symbols, each attack's own idea (see its table) |

Static fields (marked *static*) change shapes or code: a new value compiles again and cannot
be swept. Every other field is a traced leaf: `sparsejax.sweep` sweeps it (nested fields by
a dotted path, `deepfool.overshoot`), and a new value does not recompile.
"""


def _value(v) -> str:
    if isinstance(v, float):
        return f"{v:.6g}"
    return repr(v) if isinstance(v, str) else str(v)


def attacks_markdown() -> str:
    lines = [
        "# Attacks and their config fields",
        "",
        "Generated from the registry and the config declarations by "
        "`python -m sparsejax.attacks._docs > docs/attacks.md`; do not edit by hand.",
        "",
        "Every attack is called as `sparsejax.attacks.NAME(logits_fn, x, y, config=None, *, "
        "targets=None, lower=0.0, upper=1.0, key=None, mask=None)` and returns an "
        "`AttackResult` (SPEC §2).",
        "",
        NAMING,
    ]
    for name in registry.names():
        spec = registry.get(name)
        fn_name = spec.fn.__name__
        doc = (spec.fn.__doc__ or "").split("\n\n    Args:")[0]
        summary = " ".join(line.strip() for line in doc.splitlines() if line.strip())
        lines += [
            f"## `{name}` — `sparsejax.attacks.{fn_name}`, `{spec.config_cls.__name__}`",
            "",
            f"{spec.paper}. {spec.description[0].upper()}{spec.description[1:]}.",
            "",
            f"- ℓ0 unit: **{spec.unit}**; budget: {spec.budget}; targeted: {spec.targeted}; "
            f"needs a key: {'yes' if spec.needs_key else 'no'}"
            + (
                f"; extra inputs: {', '.join(spec.algorithm.extras)}"
                if spec.algorithm.extras
                else ""
            ),
            f"- {summary}",
            "",
            "| field | default | type | unit | paper | meaning |",
            "|---|---|---|---|---|---|",
        ]
        for r in _config.field_table(spec.config_cls):
            kind = f"{r['type']}, static" if r["static"] else r["type"]
            lines.append(
                f"| `{r['name']}` | `{_value(r['default'])}` | {kind} | {r['unit']} | "
                f"{r['paper']} | {r['doc']} |"
            )
        lines.append("")
    return "\n".join(lines)


def _check_documented() -> None:
    """Every field of every registered config has a doc (a missing one is a bug here)."""
    for name in registry.names():
        for f in dataclasses.fields(registry.get(name).config_cls):
            if not f.metadata.get("doc"):
                raise AssertionError(f"{name}: config field {f.name} has no doc")


if __name__ == "__main__":
    _check_documented()
    print(attacks_markdown())
