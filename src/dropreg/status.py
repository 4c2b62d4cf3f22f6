"""How a run ended: the one vocabulary summaries, tables, selection and figures share."""

from __future__ import annotations

from enum import Enum


class Status(str, Enum):
    """A `str` enum, so a summary's JSON and a study's CSV hold the plain value ("completed")."""

    COMPLETED = "completed"  # trained its whole budget and learned (below the chance bound)
    FAILED_TO_LEARN = "failed_to_learn"  # trained its whole budget, error still near chance
    DIVERGED = "diverged"  # a non-finite loss or weight; stopped there

    def __str__(self) -> str:
        return self.value


STATUSES = tuple(s.value for s in Status)
ENDED_BADLY = (Status.DIVERGED.value, Status.FAILED_TO_LEARN.value)
