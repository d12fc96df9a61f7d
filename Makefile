# edgeseg: the two commands a newcomer runs on a fresh machine are `make demo` and `make test`.
# Both create .venv and install what they need. torch is pinned to 2.13.0 (the CPU build this
# project is tested with); installing it first keeps pip from resolving a multi-GB CUDA build.
# Every install is constrained to constraints.txt, the exact versions CI tested, so a fresh
# machine gets the same set (pyproject.toml keeps the ranges a pip user may resolve within).

PYTHON ?= python3
VENV   ?= .venv
PY      = $(VENV)/bin/python
PIP     = $(PY) -m pip --disable-pip-version-check -q
TORCH   = torch==2.13.0
PINS    = -c constraints.txt

.PHONY: demo test bench oracle clean

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PIP) install --upgrade pip

$(VENV)/.run: $(PY) pyproject.toml constraints.txt
	$(PIP) install $(PINS) $(TORCH)
	$(PIP) install $(PINS) -e ".[train,convert]" $(TORCH)
	touch $@

$(VENV)/.test: $(VENV)/.run
	$(PIP) install $(PINS) -e ".[train,convert,test,dask,napari,bioimageio]" $(TORCH)
	touch $@

demo: $(VENV)/.run
	$(VENV)/bin/edgeseg demo -o edgeseg-demo

test: $(VENV)/.test
	$(PY) -m pytest

bench: $(VENV)/.test
	cd benchmarks && ../$(PY) bench_postprocess.py --json ../out/bench_postprocess.json
	cd benchmarks && ../$(PY) bench_metrics.py --json ../out/bench_metrics.json
	cd benchmarks && ../$(PY) bench_segmenter.py --json ../out/bench_segmenter.json
	cd benchmarks && ../$(PY) bench_precisions.py --json ../out/bench_precisions.json

oracle: $(VENV)/.test
	cd benchmarks && ../$(PY) oracle.py --json ../out/oracle.json

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache edgeseg-demo out
