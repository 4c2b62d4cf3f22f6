"""Errors of configuration, and the one line that names the culprit in a library's wrapped error."""

from __future__ import annotations

from typing import Any


class ConfigError(ValueError):
    """A configuration value outside its allowed range (message: key, value, what is allowed)."""


def exception_chain(exc: BaseException) -> list[Any]:
    """The exception, its causes/contexts, and the arguments of each (libraries wrap the error that
    names the culprit: Hydra an OmegaConf error, Snakemake a jsonschema error)."""
    chain: list[Any] = []
    seen: BaseException | None = exc
    while seen is not None:
        chain += [seen, *seen.args]
        seen = seen.__cause__ or seen.__context__
    return chain


def one_line(exc: BaseException) -> str:
    """A one-line description of a composition/validation error that names the offending key."""
    from omegaconf.errors import OmegaConfBaseException

    for e in exception_chain(exc):
        if isinstance(e, OmegaConfBaseException) and getattr(e, "full_key", None):
            msg = str(getattr(e, "msg", "") or e).splitlines()[0]
            return f"{e.full_key}: {msg}"
    # Hydra appends its search path to a missing group option; the first part names the culprit.
    return " ".join(str(exc).split()).split(" Config search path:")[0]
