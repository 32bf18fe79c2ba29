"""Apps a run must refuse before starting anything: the module has no ``provider``.

Its namespaces each lack a handler (``no_compute``, ``no_task``) or hold the
sides the wrong way round (``swapped``).
"""

from __future__ import annotations

from types import SimpleNamespace

from golem_apps import Part, Provider, Requestor, TaskContext

requestor = Requestor("only_requestor")


@requestor.task
def split(task: TaskContext) -> list[Part]:
    return [Part(params={})]


no_compute = SimpleNamespace(requestor=requestor, provider=Provider())
no_task = SimpleNamespace(requestor=Requestor("no_task"), provider=Provider())
swapped = SimpleNamespace(requestor=Provider(), provider=requestor)
