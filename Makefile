# The two commands a user needs: `make run` and `make test`. Both create .venv on first use.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
SAMPLE := sample_data/cardio

.PHONY: run test setup sample-data demo-checkpoint

$(STAMP): requirements.txt requirements-dev.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements.txt -r requirements-dev.txt
	touch $(STAMP)

setup: $(STAMP)

test: $(STAMP)
	$(PY) -m pytest

# Until the dashboard lands, `make run` checks the bundled cohort end to end, shows what it holds, and
# evaluates the bundled demo checkpoint on it.
run: $(STAMP)
	$(PY) -m neurofusion.data validate $(SAMPLE)
	$(PY) -m neurofusion.data summary $(SAMPLE)
	$(PY) -m neurofusion.evaluate --checkpoint sample_data/checkpoints/cardio_demo --data $(SAMPLE)

# Rebuild the committed sample cohort from its recorded command (see sample_data/cardio/README.md).
sample-data: $(STAMP)
	rm -rf $(SAMPLE)
	$(PY) -m neurofusion.data generate --task cardio --n 2000 --seed 2026 --splits test --signal-format 212 --out $(SAMPLE)

# Retrain the bundled demo checkpoint (about 15 minutes on 2 CPU cores): regenerate the training and
# validation splits of the sample cohort's seed, train, and evaluate on the committed test split.
demo-checkpoint: $(STAMP)
	rm -rf build/cardio_trainval sample_data/checkpoints/cardio_demo
	$(PY) -m neurofusion.data generate --task cardio --n 2000 --seed 2026 --splits train,val --out build/cardio_trainval
	$(PY) -m neurofusion.train --config configs/cardio_demo.yaml --data build/cardio_trainval --eval-data $(SAMPLE) --out sample_data/checkpoints/cardio_demo
