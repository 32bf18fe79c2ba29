"""Constants of the Golem task-api (protos/golem_task_api/constants.proto, envs.proto).

They are published in the protos as file options; they are repeated here as
plain strings so that importing them costs nothing (a test checks both agree).
"""

__all__ = [
    "DOCKER_CPU_ENV_ID",
    "DOCKER_GPU_ENV_ID",
    "SUBTASK_INPUTS_DIR",
    "SUBTASK_OUTPUTS_DIR",
    "TASK_INPUTS_DIR",
    "TASK_OUTPUTS_DIR",
    "WORK_DIR",
]

#: Folder of a task's dir that holds the task creator's input files.
TASK_INPUTS_DIR = "task_inputs"
#: Folder of a task's dir that holds the resources shipped to providers.
SUBTASK_INPUTS_DIR = "subtask_inputs"
#: Folder of a task's dir that holds the final results, and nothing else.
TASK_OUTPUTS_DIR = "task_outputs"
#: Folder of a task's dir where the node puts each subtask's result.
SUBTASK_OUTPUTS_DIR = "subtask_outputs"
#: The work dir, relative to the container's root (mounted at /golem/work).
WORK_DIR = "golem/work"
#: Environment id of the docker CPU environment.
DOCKER_CPU_ENV_ID = "docker_cpu"
#: Environment id of the docker GPU environment (Linux only).
DOCKER_GPU_ENV_ID = "docker_gpu"
