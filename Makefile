# Two commands for a fresh machine: `make demo` (the main job) and `make test` (the suite).
# Both create .venv and install what is missing; re-running them skips what is in place.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
SYSTEM_STAMP := $(VENV)/.system-tools
# The corpus folder of hparams/vqscore.yaml (one folder per configuration: minutes and seed).
DEMO_CORPUS := data/embedded/train60min_seed1234

.PHONY: demo test install system-tools lint bench clean-data readme-check figures

install: $(STAMP) $(SYSTEM_STAMP)

# Debian's flite and espeak-ng speak the embedded corpus. Installed with apt-get when absent
# and permitted (root, or passwordless sudo); otherwise a clear message says what to install.
$(SYSTEM_STAMP):
	@if command -v flite >/dev/null && command -v espeak-ng >/dev/null; then :; \
	elif [ "$$(id -u)" = 0 ]; then apt-get update -qq && apt-get install -y -qq flite espeak-ng; \
	elif sudo -n true 2>/dev/null; then sudo apt-get update -qq && sudo apt-get install -y -qq flite espeak-ng; \
	else echo "Please install Debian's flite and espeak-ng (apt-get install flite espeak-ng)" >&2; exit 1; fi
	@mkdir -p $(VENV) && touch $@

$(STAMP): setup.py constraints.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -c constraints.txt torch torchaudio
	$(PY) -m pip install -q -c constraints.txt -e ".[eval,dev,bench]"
	touch $@

demo: install
	$(PY) train.py hparams/vqscore.yaml
	$(VENV)/bin/sqe score $(DEMO_CORPUS)/test/noisy --model results/vqscore/1234/hub --csv results/vqscore/demo_scores.csv --limit 8
	$(VENV)/bin/sqe enhance $(DEMO_CORPUS)/test/noisy --out-dir results/enhance/demo --limit 8 --overwrite

# --timeout (pytest-timeout): a test stuck for 15 minutes fails with the stack of where it is stuck,
# and the suite goes on, instead of a silent CI run that ends only at its time limit.
# -n (pytest-xdist): one worker per core, at most 4, each test file on one worker (its module
# fixtures, a generated corpus or a trained model, are made once). In-process tests run on one torch
# thread (tests/conftest.py), so a second worker uses the core they leave idle: 9 min 26 s against
# 14 min 16 s on 2 cores (session 30).
test: install
	$(PY) -m pytest -q tests speechbrain_sqe --doctest-modules -p no:cacheprovider --timeout=900 \
		--numprocesses=auto --maxprocesses=4 --dist=loadfile

# Speed and memory measurements (tables printed; results in benchmarks/RESULTS.md).
bench: install
	$(PY) benchmarks/bench_corpus.py
	$(PY) benchmarks/bench_metrics.py --pairs 48
	$(PY) benchmarks/bench_vqscore.py
	$(PY) benchmarks/bench_enhance_speed.py
	$(PY) benchmarks/bench_enhance_peers.py --mix 0.2

lint: install
	$(VENV)/bin/ruff check speechbrain_sqe tests train.py benchmarks tools recipes

# The README's result tables regenerated from the runs' report files and compared with the text
# (seconds; tables whose runs are absent are listed with the command that makes them).
readme-check: install
	$(PY) tools/readme_tables.py

# Every run behind the README's tables (about 2 h on 2 CPU cores), then the check.
figures: install
	$(PY) tools/readme_tables.py --run
