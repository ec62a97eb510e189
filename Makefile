# `make install` then `make test`. PYTHON is the interpreter of the environment to use.
PYTHON ?= python3
# The CPU build that pip takes from this machine's disk; a CUDA torch already present is kept.
TORCH_CPU ?= torch==2.13.0

.PHONY: install test demo bench lint clean

install:
	@$(PYTHON) -c "import torch" 2>/dev/null \
		&& echo "torch $$($(PYTHON) -c 'import torch; print(torch.__version__)') already installed: keeping it" \
		|| $(PYTHON) -m pip install "$(TORCH_CPU)"
	$(PYTHON) -m pip install -e ".[test]"

# The suite on WORKERS pytest-xdist processes, one torch thread each (tests/conftest.py); the ten
# slowest tests are listed at the end (keep it under five minutes on 2 cores).
WORKERS ?= 2
test:
	$(PYTHON) -m pytest -q -n $(WORKERS) --durations=10 tests

# ruff over the project; mypy over config/, layers/ and postprocess/ (ruff.toml, mypy.ini)
lint:
	$(PYTHON) -m ruff check darknet_py tests tools
	$(PYTHON) -m mypy

# The shipped model on the sample photo: prints the detections, writes predictions.jpg.
demo:
	$(PYTHON) -m darknet_py detect cfg/yolov3-tiny-shapes.cfg weights/yolov3-tiny-shapes.weights data/shapes.jpg \
		--names cfg/shapes.names

bench:
	$(PYTHON) tools/bench_cpu.py

clean:
	rm -rf build dist *.egg-info .pytest_cache .hypothesis predictions*.jpg results
