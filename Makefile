# keras-cvdm: `make demo` and `make test` set up .venv themselves on a fresh machine.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
BACKENDS ?= tensorflow jax torch
DEMO_BACKEND ?= tensorflow
PYTEST_ARGS ?=
# Keep freed tensor buffers in the process instead of returning them to the OS at once:
# with glibc's defaults a training step on this CPU spends ~20% of its time in the kernel
# mapping and unmapping memory (measured: 0.43 s of system time per 128×128 step → 0.03 s).
export MALLOC_MMAP_THRESHOLD_ ?= 33554432
export MALLOC_TRIM_THRESHOLD_ ?= 1073741824
export MALLOC_TOP_PAD_ ?= 268435456

.PHONY: setup test demo lint benchmarks clean

$(STAMP): pyproject.toml requirements-dev.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q -r requirements-dev.txt
	$(PY) -m pip install -q --no-deps -e .
	touch $(STAMP)

setup: $(STAMP)

# The whole suite once per backend, with the docstring examples of the package
# (the backend/ modules import one framework each and hold no examples); torch runs
# single-threaded (fragile with 2 threads on 2 shared cores). Every backend runs even if
# an earlier one fails.
test: $(STAMP)
	@status=0; \
	for backend in $(BACKENDS); do \
	  echo "=== pytest, KERAS_BACKEND=$$backend ==="; \
	  threads=$$([ $$backend = torch ] && echo 1 || echo 2); \
	  KERAS_BACKEND=$$backend OMP_NUM_THREADS=$$threads TF_CPP_MIN_LOG_LEVEL=2 \
	    $(PY) -m pytest -q --doctest-modules --ignore=keras_cvdm/backend $(PYTEST_ARGS) \
	      keras_cvdm tests || status=1; \
	done; \
	exit $$status

demo: $(STAMP)
	KERAS_BACKEND=$(DEMO_BACKEND) TF_CPP_MIN_LOG_LEVEL=2 $(VENV)/bin/keras-cvdm demo --output demo_output --overwrite

lint: $(STAMP)
	$(VENV)/bin/ruff check keras_cvdm tests benchmarks examples

benchmarks: $(STAMP)
	$(PY) benchmarks/tie_baseline.py
	$(PY) benchmarks/train_speed.py
	$(PY) benchmarks/sample_speed.py
	$(PY) benchmarks/tiling.py
	$(PY) benchmarks/preset_quality.py

clean:
	rm -rf $(VENV) demo_output
