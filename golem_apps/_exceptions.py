"""Every exception golem_apps raises, in one place.

Engine errors know nothing of gRPC: the server binding translates each into a
gRPC status (see ``golem_apps._server._status``).
"""

from __future__ import annotations


class GolemAppsError(Exception):
    """Raised as the base of every golem_apps error; catch it to catch them all."""


class HandlerError(GolemAppsError, TypeError):
    """Raised at decoration time when a handler has the wrong signature or its slot is taken."""


class ConfigError(GolemAppsError):
    """Raised when a server cannot start (bad work dir, incomplete TLS files, busy port).

    Also raised when the app's metadata cannot make a valid app definition.
    """


class InvalidArgument(GolemAppsError):
    """Raised when a request carries a bad value (bad id, malformed JSON, invalid params).

    The message names the field.
    """


class UsageError(GolemAppsError):
    """Raised when a command line is wrong; the command prints it as one line and exits 2."""


class ComputeFailed(GolemAppsError):
    """Raised by ProviderClient and the runner when a provider's computation failed."""


class TaskFailed(GolemAppsError):
    """Raised by the local runner when a task cannot finish.

    For example: CreateTask refused, a part failing again and again, or no
    subtask left to hand out while the task has no outputs. The message says why.
    """

    def __init__(
        self,
        message: str,
        *,
        app_traceback: str | None = None,
        app_exception: BaseException | None = None,
    ) -> None:
        super().__init__(message)
        self.app_traceback = app_traceback
        """The traceback of the app's handler failure behind it, when the runner found one."""
        self.app_exception = app_exception
        """That exception itself, for apps served in this process (else None)."""


class EngineError(GolemAppsError):
    """Raised as the base of the task engine's expected errors."""


class TaskNotFound(EngineError):
    """Raised when a call names a task id the requestor does not know."""


class SubtaskNotFound(EngineError):
    """Raised when a call names a subtask id the task does not know."""


class AlreadyExists(EngineError):
    """Raised when a task id or subtask id is used a second time."""


class WrongState(EngineError):
    """Raised when a call does not fit the task's or subtask's state.

    For example Verify on a subtask already verified, or NextSubtask on an
    aborted task.
    """


class InvalidTask(EngineError):
    """Raised when the split handler's parts are invalid (too many, bad names, bad dependencies)."""
