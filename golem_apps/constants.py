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
    "TLS_CLIENT_CERT",
    "TLS_CLIENT_KEY",
    "TLS_SERVER_CERT",
    "TLS_SERVER_KEY",
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

# TLS file names in the work dir (the spec, section 6): with the three server
# files present, the server speaks mutual TLS.
#: The server's private key.
TLS_SERVER_KEY = "task_api_server_key.pem"
#: The server's certificate; clients verify the server against it.
TLS_SERVER_CERT = "task_api_server_cert.pem"
#: The client's certificate; the server verifies clients against it.
TLS_CLIENT_CERT = "task_api_client_cert.pem"
#: The client's private key.
TLS_CLIENT_KEY = "task_api_client_key.pem"
