# StyleTalker developer entry points. See README.md.
PY ?= .venv/bin/python
VENV ?= .venv

.PHONY: setup data render-ext test demo bench clean

$(VENV)/bin/python:
	python3 -m venv $(VENV)
	$(VENV)/bin/pip install --upgrade pip
	# CPU torch first: a bare `torch` requirement would pull a multi-GB CUDA build.
	$(VENV)/bin/pip install torch==2.13.0
	$(VENV)/bin/pip install -e ".[test]"
	# LPIPS linear weights (styletalker.perceptual); --no-deps: its torchvision requirement would
	# replace the CPU torch, and styletalker computes the AlexNet itself
	$(VENV)/bin/pip install --no-deps lpips==0.1.4

setup: $(VENV)/bin/python render-ext data

# compile (once, cached under ~/.cache/torch_extensions) and self-check the C++ CPU rasterizer
render-ext: $(VENV)/bin/python
	$(PY) -m styletalker.render.build

data: $(VENV)/bin/python
	PYTHON=$(PY) ./scripts/fetch_data.sh

test: setup
	$(PY) -m pytest -q

demo: setup
	PYTHON=$(PY) ./scripts/demo.sh

bench: setup
	$(PY) bench/render.py

clean:
	rm -rf out .pytest_cache
