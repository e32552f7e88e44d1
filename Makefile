# The two commands a user needs: `make run` and `make test`. Both create .venv on first use.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
SAMPLE := sample_data/cardio

.PHONY: run test test-gpu setup chromium postgresql sample-data sample-data-cancer sample-data-icu demo-checkpoint cancer-demo-checkpoint icu-demo-checkpoint screenshot

$(STAMP): requirements.txt requirements-dev.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements.txt -r requirements-dev.txt
	touch $(STAMP)

setup: $(STAMP)

test: $(STAMP) chromium postgresql
	$(PY) -m pytest

# The GPU checks (CUDA against the CPU, faithfulness, a bfloat16 training epoch, the dashboard on CUDA), a few
# minutes on a GPU machine; the output is kept in benchmarks/results/gpu_check.txt. Refuses to run without a GPU
# rather than report skipped tests as a pass.
test-gpu: SHELL := /bin/bash
test-gpu: $(STAMP)
	@$(PY) -c "import sys, torch; sys.exit(0 if torch.cuda.is_available() else 'make test-gpu: torch sees no CUDA GPU here')"
	set -o pipefail; $(PY) -m pytest -m gpu tests -v -rs 2>&1 | tee benchmarks/results/gpu_check.txt

# The study database tests start a throwaway PostgreSQL server from Debian's postgresql package (its binaries only:
# the package's own cluster is not used). Without it those tests are skipped with the reason.
postgresql:
	@ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ]; then apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql; \
	  elif command -v sudo >/dev/null 2>&1; then sudo apt-get update -qq && sudo DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql; \
	  else echo "postgresql is missing and cannot be installed here: the PostgreSQL tests will be skipped"; fi; }

# The browser test drives Debian's chromium (never a browser downloaded by a test tool).
chromium:
	@command -v chromium >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ]; then apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium; \
	  elif command -v sudo >/dev/null 2>&1; then sudo apt-get update -qq && sudo DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium; \
	  else echo "chromium is missing and cannot be installed here: the browser test will be skipped"; fi; }

# The dashboard on the bundled demo model and cohort, at http://127.0.0.1:8501 (offline, no usage statistics).
run: $(STAMP)
	$(PY) -m streamlit run app/main.py --server.headless true --browser.gatherUsageStats false \
	  --server.address 127.0.0.1 --server.port 8501

# Refresh the README's screenshots from the real-browser test: app/assets/dashboard.png and every page at
# 1440x900 and 1280x720 in app/assets/screens/<page>_<w>x<h>.png (cardio), cancer_<page>_<w>x<h>.png and
# icu_<page>_<w>x<h>.png, the ICU case page after moving its hour slider in icu_case_1440x900.png, and an expert
# study's pages (rate_cases, rate_cases_reveal, expert_studies at 1440x900).
screenshot: $(STAMP) chromium
	DASHBOARD_SCREENSHOT=app/assets/dashboard.png DASHBOARD_SCREENS=app/assets/screens $(PY) -m pytest tests/app/test_browser.py tests/app/test_browser_study.py -k "real_browser or raters_submit"

# Rebuild the committed sample cohort from its recorded command (see sample_data/cardio/README.md).
sample-data: $(STAMP)
	rm -rf $(SAMPLE)
	$(PY) -m neurofusion.data generate --task cardio --n 2000 --seed 2026 --splits test --signal-format 212 --interaction-share 0.4 --out $(SAMPLE)

# Rebuild the committed cancer sample cohort (the test split, 200 cases; H&E tiles stored as 8-bit palette PNG
# to keep the folder under 15 MB; see sample_data/cancer/README.md).
sample-data-cancer: $(STAMP)
	rm -rf sample_data/cancer
	$(PY) -m neurofusion.data generate --task cancer --n 2000 --seed 2026 --splits test --colour-format palette --out sample_data/cancer

# Rebuild the committed ICU sample cohort (the test split, 200 stays; vitals stored as vitals.csv.gz; see
# sample_data/icu/README.md).
sample-data-icu: $(STAMP)
	rm -rf sample_data/icu
	$(PY) -m neurofusion.data generate --task icu --n 2000 --seed 2026 --splits test --out sample_data/icu

# Retrain the bundled demo checkpoint (about 15 minutes on 2 CPU cores): regenerate the training and
# validation splits of the sample cohort's seed, train, and evaluate on the committed test split.
demo-checkpoint: $(STAMP)
	rm -rf build/cardio_trainval sample_data/checkpoints/cardio_demo
	$(PY) -m neurofusion.data generate --task cardio --n 2000 --seed 2026 --splits train,val --interaction-share 0.4 --out build/cardio_trainval
	$(PY) -m neurofusion.train --config configs/cardio_demo.yaml --data build/cardio_trainval --eval-data $(SAMPLE) --out sample_data/checkpoints/cardio_demo

# Retrain the bundled cancer demo checkpoint (at most 15 minutes on 2 CPU cores, training capped at 12):
# regenerate the training and validation splits of the cancer sample's seed, train the survival model, and
# evaluate on the committed test split.
cancer-demo-checkpoint: $(STAMP)
	rm -rf build/cancer_trainval sample_data/checkpoints/cancer_demo
	$(PY) -m neurofusion.data generate --task cancer --n 2000 --seed 2026 --splits train,val --out build/cancer_trainval
	$(PY) -m neurofusion.train --config configs/cancer_demo.yaml --data build/cancer_trainval --eval-data sample_data/cancer --out sample_data/checkpoints/cancer_demo

# Retrain the bundled ICU demo checkpoint (at most 15 minutes on 2 CPU cores, training capped at 12; one torch
# thread: on busy cores two threads made a batch of the vitals encoder up to 100x slower): regenerate
# the training and validation stays of the ICU sample's seed, train the 48-hour mortality model on every stay at
# each prediction hour, and evaluate on the committed test stays.
icu-demo-checkpoint: $(STAMP)
	rm -rf build/icu_trainval sample_data/checkpoints/icu_demo
	$(PY) -m neurofusion.data generate --task icu --n 2000 --seed 2026 --splits train,val --out build/icu_trainval
	OMP_NUM_THREADS=1 $(PY) -m neurofusion.train --config configs/icu_demo.yaml --data build/icu_trainval --eval-data sample_data/icu --out sample_data/checkpoints/icu_demo
