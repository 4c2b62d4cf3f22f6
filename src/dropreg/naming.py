"""How values are spelled where users read them: in run ids, in Hydra overrides and in captions.

One place for these, so a run id written by the pipeline, the override select writes and the
caption a figure prints agree (`0.5` and `0.5000001` are different runs; `None` is `all`).
"""

from __future__ import annotations

from typing import Any


def id_value(value: Any) -> str:
    """A sweep or grid value as it appears in a run id (exact: 0.5 and 0.5000001 differ)."""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if value is None:
        return "all"
    if isinstance(value, float):
        return repr(value)
    return str(value)


def hydra_value(value: Any) -> str:
    """A value as a Hydra override writes it (`null`, `true`, exact floats)."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    return id_value(value)


def short_key(key: str) -> str:
    """`optim.lr` -> `lr`, `regularizer.l2.weight` -> `l2_weight`: a tuned key inside a run id."""
    for prefix in ("regularizer.", "optim.", "model.", "dataset."):
        if key.startswith(prefix):
            key = key[len(prefix):]
            break
    return key.replace(".", "_")


def describe_values(values: dict[str, Any]) -> str:
    """`lr 0.1, l2_weight 0.0001`: tuned values as captions and tables show them."""
    return ", ".join(f"{short_key(k)} {v:g}" if isinstance(v, float) else f"{short_key(k)} {v}"
                     for k, v in values.items())
