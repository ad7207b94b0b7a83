# Two entry points: `make demo` and `make test`. Both create/reuse .venv.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.ecgproto-installed
# torch is installed first, pinned, with PyTorch's CPU wheel index added: on Linux the public index
# alone resolves `torch` (pinned or not) to the multi-GB CUDA build, while `2.13.0+cpu` from the
# CPU index ranks above `2.13.0` (PEP 440) and wins. For the CUDA build set TORCH_INDEX= (empty).
# --retries 1: offline (wheels on disk) an unreachable index costs seconds, not minutes.
TORCH_SPEC ?= torch==2.13.0
TORCH_INDEX ?= https://download.pytorch.org/whl/cpu
DEMO_OUT ?= runs/demo

.PHONY: install demo test clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q --retries 1 "$(TORCH_SPEC)" $(if $(TORCH_INDEX),--extra-index-url $(TORCH_INDEX))
	$(BIN)/python -m pip install -q -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/ecgproto demo --config configs/demo.yaml --out $(DEMO_OUT)

test: $(STAMP)
	OMP_NUM_THREADS=1 ECGPROTO_NO_PROGRESS=1 $(BIN)/python -m pytest -q

clean:
	rm -rf $(VENV) runs .pytest_cache
