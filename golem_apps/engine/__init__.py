"""The task engine: part and subtask bookkeeping behind the RequestorApp RPCs.

It knows nothing of gRPC: it raises the errors of ``golem_apps._exceptions``
and the server binding translates them into statuses. The provider never
imports this package.
"""

from ._base import Assignment, Engine, Hooks
from ._open import open_engine

__all__ = ["Assignment", "Engine", "Hooks", "open_engine"]
