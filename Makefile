# `make demo` and `make test` do all set-up on a fresh machine: a .venv with the pinned, tested versions.
# torch==2.13.0 is pinned so pip takes this machine's local CPU build and never downloads a CUDA build.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test lint bench clean

$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet torch==2.13.0 -c constraints.txt
	$(BIN)/pip install --quiet -c constraints.txt -e '.[dev]'
	$(BIN)/pip install --quiet --no-deps -c constraints.txt torchattacks quantus
	$(BIN)/pip install --quiet --no-deps -c constraints.txt grad-cam==1.5.7
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/kdscope demo

test: $(STAMP)
	sh scripts/ensure-chromium
	$(BIN)/ruff check src tests bench
	$(BIN)/python -m pytest -q

bench: $(STAMP)
	$(BIN)/pip install --quiet -c constraints.txt -e '.[dev,bench]'
	$(BIN)/python bench/bench_foundation.py
	$(BIN)/python bench/bench_distill.py
	$(BIN)/python bench/bench_quantize.py
	$(BIN)/python bench/bench_prune.py --only masks
	$(BIN)/python bench/bench_prune.py --only structured
	$(BIN)/python bench/bench_prune.py --only curve
	$(BIN)/python bench/bench_attacks.py --only throughput
	$(BIN)/python bench/bench_attacks.py --only cw
	$(BIN)/python bench/bench_attacks.py --only transfer
	$(BIN)/python bench/bench_explainers.py --only timing
	$(BIN)/python bench/bench_explainers.py --only sanity
	$(BIN)/python bench/bench_explainers.py --only pointing
	$(BIN)/python bench/bench_cka.py
	$(BIN)/python bench/bench_audit.py
	$(BIN)/python bench/bench_real_models.py
	$(BIN)/python bench/bench_scale.py memory --stages predictions,cka,cams,explanations,gallery
	$(BIN)/python bench/bench_scale.py memory --codes streaming
	$(BIN)/python bench/bench_scale.py resnet18
	$(BIN)/python bench/bench_scale.py world

clean:
	rm -rf $(VENV) runs .pytest_cache
