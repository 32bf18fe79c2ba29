# Everything installs into .venv from scratch: `make test` and `make demo`
# work on a fresh clone with nothing but python3.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: test demo lint proto proto-check bench bench-million docs clean

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
	$(VENV)/bin/hadolint docs/Dockerfile

# Regenerate from protos/: the betterproto messages and grpclib stubs into
# golem_apps/proto/, and the light messages (golem_apps/_wire.py, by our own
# protoc plugin tools/protoc_gen_light.py) that the servers and clients use.
# Both generators take every file listed here: adding a .proto to PROTOS is
# all it takes to get its betterproto and its light classes.
PROTOS := protos/golem_task_api/constants.proto protos/golem_task_api/envs.proto \
	protos/golem_task_api/golem_task_api.proto protos/grpc/health/v1/health.proto \
	protos/golem_apps/progress.proto protos/golem_apps/status.proto
PROTOC := PATH="$(CURDIR)/$(VENV)/bin:$$PATH" $(PY) -m grpc_tools.protoc -I protos
LIGHT := --plugin=protoc-gen-light=tools/protoc_gen_light.py --light_out

proto: $(STAMP)
	rm -rf golem_apps/proto
	mkdir -p golem_apps/proto
	$(PROTOC) --python_betterproto_out=golem_apps/proto $(LIGHT)=golem_apps $(PROTOS)

# Fails when the committed generated code is stale or was edited by hand.
proto-check: $(STAMP)
	@tmp=$$(mktemp -d) && mkdir $$tmp/proto \
	  && $(PROTOC) --python_betterproto_out=$$tmp/proto $(LIGHT)=$$tmp $(PROTOS) >/dev/null \
	  && diff -r -x __pycache__ $$tmp/proto golem_apps/proto \
	  && diff $$tmp/_wire.py golem_apps/_wire.py \
	  && echo "generated code is up to date"; status=$$?; rm -rf $$tmp; \
	  if [ $$status -ne 0 ]; then echo "golem_apps/proto or golem_apps/_wire.py is stale: run make proto"; fi; exit $$status

bench: $(STAMP)
	$(PY) -m benchmarks

# The engine at 1,000,000 parts (a few minutes): its section of docs/performance.md.
bench-million: $(STAMP)
	$(PY) -m benchmarks.engine_million

# The documentation site, into site/: offline, and any warning is an error.
docs: $(STAMP)
	NO_MKDOCS_2_WARNING=1 $(VENV)/bin/mkdocs build --strict --clean --site-dir site

clean:
	rm -rf $(VENV) .mypy_cache .pytest_cache .ruff_cache
