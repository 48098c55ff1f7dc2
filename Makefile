# Two entry points for a fresh machine: `make export` (the main job) and
# `make test` (the test suite). Each creates the virtualenv it needs.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
EXTRAS ?= cpu,export,test
# MediaPipe Tasks (the export's client check, metadata writer and
# examples/classify.py) in an environment of its own, $(VENV)/mediapipe: mediapipe needs
# absl-py 2, tensorflow-model-optimization (the qat extra) absl-py 1.
# Inside .venv: git and ruff ignore it there, `make clean` removes it.
MEDIAPIPE_VENV ?= $(VENV)/mediapipe
export KERAS_BAM_MEDIAPIPE_PYTHON := $(abspath $(MEDIAPIPE_VENV))/bin/python

.PHONY: export test lint bench clean

$(VENV)/.installed: setup.cfg pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e ".[$(EXTRAS)]"
	touch $@

$(MEDIAPIPE_VENV)/.installed:
	$(PYTHON) -m venv $(MEDIAPIPE_VENV)
	$(MEDIAPIPE_VENV)/bin/python -m pip install --quiet --upgrade pip
	$(MEDIAPIPE_VENV)/bin/python -m pip install --quiet "mediapipe>=1.2.3"
	touch $@

export: $(VENV)/.installed $(MEDIAPIPE_VENV)/.installed
	$(PY) export/to_tflite.py

# -n auto: one pytest worker per core (the suite takes about half the time);
# worksteal: an idle worker takes queued tests from a busy one, so the long
# end-to-end tests do not leave one core idle at the end.
test: $(VENV)/.installed $(MEDIAPIPE_VENV)/.installed
	$(PY) -m pytest -q -n auto --dist worksteal

lint: $(VENV)/.installed
	$(VENV)/bin/ruff check .

bench: $(VENV)/.installed
	$(PY) benchmarks/bam_layer.py
	$(PY) benchmarks/insert_bam.py

clean:
	rm -rf $(VENV) $(MEDIAPIPE_VENV) build *.egg-info
