"""Two views of a run's config that matter beyond validation.

- its *identity* (`run_identity`): what decides its results. Operational keys (threads, logger, where
  the prepared data lives) are left out, and a key missing from an older stored config counts as its
  schema default, so adding a key with a neutral default does not invalidate finished runs;
- its *pack key* (`pack_key`): what runs must share to train together as one batched network
  (dataset, architecture, batch size, budget, trainer). Seeds, initialization, regularizer settings,
  learning-rate and momentum schedules and the training subset may differ within a pack.
"""

from __future__ import annotations

import copy
from typing import Any, Optional

from omegaconf import OmegaConf

from .errors import ConfigError
from .schema import GROUP_SCHEMAS

# keys that change how a run executes, not what it computes
OPERATIONAL_KEYS = ("trainer.threads", "dataset.data_dir", "logger")
# keys in which the members of one pack may differ; every other key must be equal across a pack
MEMBER_KEYS = ("seed", "model.name", "model.init", "model.init_std", "regularizer", "optim.name", "optim.lr",
               "optim.lr_schedule", "optim.lr_decay_updates", "optim.momentum", "optim.momentum_schedule",
               "optim.final_momentum", "optim.momentum_ramp_updates", "dataset.train_subset")


def _without(config: dict, dotted_keys: tuple[str, ...]) -> dict:
    out = copy.deepcopy(config)
    for dotted in dotted_keys:
        *parents, last = dotted.split(".")
        node = out
        for p in parents:
            node = node.get(p, {})
        node.pop(last, None)
    return out


def with_defaults(config: dict) -> dict:
    """A stored config completed with the schema's defaults for keys it lacks (older versions)."""
    def fill(node: Any, defaults: Any) -> Any:
        if not (isinstance(node, dict) and isinstance(defaults, dict)):
            return node
        missing = {k: v for k, v in defaults.items() if k not in node and v != "???"}
        return {**missing, **{k: fill(v, defaults.get(k)) for k, v in node.items()}}

    defaults = {"seed": 0, **{g: OmegaConf.to_container(OmegaConf.structured(cls), enum_to_str=True)
                              for g, cls in GROUP_SCHEMAS.items()}}
    return fill(config, defaults)


def run_identity(config: dict) -> dict:
    """What decides a run's results: its config without operational keys, defaults filled in."""
    return _without(with_defaults(config), OPERATIONAL_KEYS)


def pack_key(config: dict) -> dict:
    """What the runs of one pack must share (see the module docstring)."""
    return _without(config, MEMBER_KEYS)


def first_difference(a: Any, b: Any, prefix: str = "", there: str = "there", now: str = "now") -> Optional[str]:
    """`key: A there, B now` for the first difference between two nested dicts (None when equal)."""
    if isinstance(a, dict) and isinstance(b, dict):
        for key in list(a) + [k for k in b if k not in a]:
            found = first_difference(a.get(key), b.get(key), f"{prefix}{key}.", there, now)
            if found:
                return found
        return None
    return None if a == b else f"{prefix[:-1]}: {a!r} {there}, {b!r} {now}"


class PackError(ConfigError):
    """Runs that cannot train together as one pack (message: the two runs and the key they differ in)."""


def check_packable(configs: list[dict], names: list[str]) -> None:
    """Every run must share the first one's pack key."""
    ref = pack_key(configs[0])
    for config, name in zip(configs[1:], names[1:]):
        diff = first_difference(ref, pack_key(config), there=f"in {names[0]}", now=f"in {name}")
        if diff:
            raise PackError(f"runs that differ in more than seed, init, regularizer, lr and momentum schedule "
                            f"and training subset cannot share a pack: {diff}")
