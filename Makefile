# StyleTalker developer entry points. See README.md.
PY ?= .venv/bin/python
VENV ?= .venv

.PHONY: setup data render-ext browser test demo bench clean

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

# Debian's chromium for the viewer's browser tests (tests/test_viewer.py drives it with playwright;
# `playwright install` cannot download a browser here). Needs root and apt-get; without them, or
# when the install fails, the browser tests skip and say why.
browser:
	@if command -v chromium >/dev/null 2>&1; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium) \
	    || echo "note: could not install chromium; the viewer's browser tests will be skipped"; \
	else echo "note: no chromium and no root apt-get; the viewer's browser tests will be skipped"; fi

test: setup browser
	$(PY) -m pytest -q

demo: setup
	PYTHON=$(PY) ./scripts/demo.sh

bench: setup
	$(PY) bench/render.py

clean:
	rm -rf out .pytest_cache
