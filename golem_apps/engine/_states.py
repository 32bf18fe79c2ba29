"""The states the engine stores: a task's, a part's, a subtask's.

Each value is the TEXT the database holds (the SQL of the transactions
spells the same words), so a row's state compares equal to its member.
"""

from __future__ import annotations

from enum import StrEnum


class TaskState(StrEnum):
    """A task's life: creating, then active, merging once every part is done, finished."""

    CREATING = "creating"
    """Its parts are still being recorded (a restart drops it)."""
    ACTIVE = "active"
    MERGING = "merging"
    """Every part is done; the merge runs, or a crash interrupted it."""
    FINISHED = "finished"
    ABORTED = "aborted"


class PartStatus(StrEnum):
    """Where a part stands."""

    READY = "ready"
    """May be handed out."""
    BLOCKED = "blocked"
    """A dependency is not done."""
    COMPUTING = "computing"
    """Live subtasks hold every copy it wants."""
    DONE = "done"
    """A result decided it; ``parts.subtask`` names that subtask."""


class SubtaskState(StrEnum):
    """One attempt at a part."""

    COMPUTING = "computing"
    """Handed out; its result is to come."""
    STANDBY = "standby"
    """A hand-out a restart may have lost, whose part went out again as a backup
    copy: the first of the two verified wins."""
    AWAITING = "awaiting"
    """(A vote) its result passed verification and waits for the vote."""
    SUCCESS = "success"
    FAILURE = "failure"
    SUPERSEDED = "superseded"
    """The other copy of its hand-out was verified first: not used, not counted."""
    VOIDED = "voided"
    """(A vote) its node was banned: the result never counts."""
    ABORTED = "aborted"
    DISCARDED = "discarded"


#: States whose result is still to come (Verify runs the check).
LIVE = frozenset({SubtaskState.COMPUTING, SubtaskState.STANDBY})
#: States with a verdict, answered again to every later Verify.
DECIDED = frozenset(
    {SubtaskState.SUCCESS, SubtaskState.FAILURE, SubtaskState.SUPERSEDED, SubtaskState.VOIDED}
)
