# Everything installs into .venv from scratch: `make test` and `make demo`
# work on a fresh clone with nothing but python3.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: test demo lint proto proto-check bench docs clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

test: $(STAMP)
	$(PY) -m pytest -q

demo: $(STAMP)
	$(PY) -m golem_apps.run examples.mandelbrot --providers 4 --out demo_output

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy

# Regenerate the betterproto messages and grpclib stubs from protos/.
PROTOS := protos/golem_task_api/constants.proto protos/golem_task_api/envs.proto \
	protos/golem_task_api/golem_task_api.proto protos/grpc/health/v1/health.proto
PROTOC := PATH="$(CURDIR)/$(VENV)/bin:$$PATH" $(PY) -m grpc_tools.protoc -I protos

proto: $(STAMP)
	rm -rf golem_apps/proto
	mkdir -p golem_apps/proto
	$(PROTOC) --python_betterproto_out=golem_apps/proto $(PROTOS)

# Fails when the committed generated code is stale.
proto-check: $(STAMP)
	@tmp=$$(mktemp -d) && $(PROTOC) --python_betterproto_out=$$tmp $(PROTOS) >/dev/null \
	  && diff -r -x __pycache__ $$tmp golem_apps/proto \
	  && echo "generated code is up to date"; status=$$?; rm -rf $$tmp; \
	  if [ $$status -ne 0 ]; then echo "golem_apps/proto is stale: run make proto"; fi; exit $$status

bench: $(STAMP)
	$(PY) -m benchmarks

# The documentation site, into site/: offline, and any warning is an error.
docs: $(STAMP)
	NO_MKDOCS_2_WARNING=1 $(VENV)/bin/mkdocs build --strict --clean --site-dir site

clean:
	rm -rf $(VENV) .mypy_cache .pytest_cache .ruff_cache
