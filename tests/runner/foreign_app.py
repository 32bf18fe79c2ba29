"""A task-api app written without golem_apps: grpcio, and protobuf stubs made from protos/.

``python foreign_app.py --stubs DIR requestor|provider PORT``: DIR holds the
``golem_task_api_pb2*`` and ``health_pb2*`` modules that ``grpc_tools.protoc``
generated from the repository's protos (the test makes them). It squares
numbers: task params ``{"numbers": [3, 4]}``, one part per number; the
provider writes ``n*n`` to ``square.txt``; verify checks it, and the last
verification writes ``task_outputs/squares.txt`` (one ``n n*n`` line per
number, sorted) and ``task_outputs/total.txt``. Its Health answers SERVING
for ``""`` and its own service, NOT_FOUND for anything else, as grpcio's
health servicer does. State lives in ``<task_id>/state.json``, so a
restarted requestor carries on. Each Compute leaves its
``<subtask_id>/square.txt`` in the provider's work dir: the test counts
them. A call of a method it does not serve is noted in ``unknown_calls.log``.
"""

from __future__ import annotations

import argparse
import json
import sys
import threading
import time
from concurrent import futures
from pathlib import Path
from typing import Any

import grpc  # type: ignore[import-untyped]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--stubs", required=True)
    parser.add_argument("role", choices=["requestor", "provider"])
    parser.add_argument("port", type=int)
    args = parser.parse_args()
    sys.path.insert(0, args.stubs)
    import golem_task_api_pb2 as api  # type: ignore[import-not-found]
    import golem_task_api_pb2_grpc as api_grpc  # type: ignore[import-not-found]
    import health_pb2  # type: ignore[import-not-found]
    import health_pb2_grpc  # type: ignore[import-not-found]

    served = (
        "golem_task_api.RequestorApp" if args.role == "requestor" else "golem_task_api.ProviderApp"
    )

    class Health(health_pb2_grpc.HealthServicer):  # type: ignore[misc]
        def Check(self, request: Any, context: Any) -> Any:
            if request.service not in ("", served):
                context.abort(grpc.StatusCode.NOT_FOUND, "unknown service")
            return health_pb2.HealthCheckResponse(status=health_pb2.HealthCheckResponse.SERVING)

    work_dir = Path.cwd()  # the runner starts us in our work dir, as a node mounts /golem/work

    class Unknown(grpc.GenericRpcHandler):  # type: ignore[misc]
        """Consulted for a method no service has: notes it (grpcio then answers UNIMPLEMENTED)."""

        def service(self, details: Any) -> None:
            with (work_dir / "unknown_calls.log").open("a") as log:
                log.write(f"{details.method}\n")

    server = grpc.server(futures.ThreadPoolExecutor(max_workers=8), handlers=[Unknown()])
    health_pb2_grpc.add_HealthServicer_to_server(Health(), server)
    stop = threading.Event()

    if args.role == "requestor":
        lock = threading.Lock()

        def load(task_id: str) -> dict[str, Any]:
            state: dict[str, Any] = json.loads((work_dir / task_id / "state.json").read_text())
            return state

        def save(task_id: str, state: dict[str, Any]) -> None:
            temp = work_dir / task_id / "state.json.tmp"
            temp.write_text(json.dumps(state))
            temp.replace(work_dir / task_id / "state.json")

        class Requestor(api_grpc.RequestorAppServicer):  # type: ignore[misc]
            def CreateTask(self, request: Any, context: Any) -> Any:
                numbers = json.loads(request.task_params_json)["numbers"]
                with lock:
                    save(request.task_id, {"pending": numbers, "out": {}, "done": {}})
                return api.CreateTaskReply(env_id="docker", prerequisites_json="{}")

            def NextSubtask(self, request: Any, context: Any) -> Any:
                with lock:
                    state = load(request.task_id)
                    if not state["pending"]:
                        return api.NextSubtaskReply()
                    number = state["pending"].pop(0)
                    state["out"][request.subtask_id] = number
                    save(request.task_id, state)
                params = json.dumps({"n": number})
                return api.NextSubtaskReply(subtask=api.SubtaskReply(subtask_params_json=params))

            def HasPendingSubtasks(self, request: Any, context: Any) -> Any:
                with lock:
                    pending = bool(load(request.task_id)["pending"])
                return api.HasPendingSubtasksReply(has_pending_subtasks=pending)

            def Verify(self, request: Any, context: Any) -> Any:
                task_dir = work_dir / request.task_id
                with lock:
                    state = load(request.task_id)
                    number = state["out"].pop(request.subtask_id)
                    result = task_dir / "subtask_outputs" / request.subtask_id / "square.txt"
                    if int(result.read_text()) != number * number:
                        state["pending"].append(number)
                        save(request.task_id, state)
                        return api.VerifyReply(result=api.VerifyReply.FAILURE, reason="wrong")
                    state["done"][str(number)] = number * number
                    if not state["pending"] and not state["out"]:
                        squares = sorted(state["done"].items(), key=lambda kv: int(kv[0]))
                        lines = "".join(f"{n} {sq}\n" for n, sq in squares)
                        (task_dir / "task_outputs" / "squares.txt").write_text(lines)
                        total = sum(state["done"].values())
                        (task_dir / "task_outputs" / "total.txt").write_text(f"{total}\n")
                    save(request.task_id, state)
                return api.VerifyReply(result=api.VerifyReply.SUCCESS)

            def AbortSubtask(self, request: Any, context: Any) -> Any:
                with lock:
                    state = load(request.task_id)
                    number = state["out"].pop(request.subtask_id, None)
                    if number is not None:
                        state["pending"].append(number)
                    save(request.task_id, state)
                return api.AbortSubtaskReply()

            def AbortTask(self, request: Any, context: Any) -> Any:
                return api.AbortTaskReply()

            def Shutdown(self, request: Any, context: Any) -> Any:
                stop.set()
                return api.ShutdownReply()

        api_grpc.add_RequestorAppServicer_to_server(Requestor(), server)
    else:

        class Provider(api_grpc.ProviderAppServicer):  # type: ignore[misc]
            def Compute(self, request: Any, context: Any) -> Any:
                number = json.loads(request.subtask_params_json)["n"]
                folder = work_dir / request.subtask_id
                folder.mkdir()
                (folder / "square.txt").write_text(str(number * number))
                context.add_callback(stop.set)  # one-shot: stop once this call has ended
                return api.ComputeReply(output_filepath=f"{request.subtask_id}/square.txt")

            def Shutdown(self, request: Any, context: Any) -> Any:
                stop.set()
                return api.ShutdownReply()

        api_grpc.add_ProviderAppServicer_to_server(Provider(), server)

    server.add_insecure_port(f"127.0.0.1:{args.port}")
    server.start()
    stop.wait()
    if args.role == "provider":
        # grpcio's stop can drop a reply it has not written yet (seen with
        # grpclib clients): linger a moment after the one call, as a
        # careful one-shot server does, then stop.
        time.sleep(0.2)
    server.stop(grace=2).wait()


if __name__ == "__main__":
    main()
