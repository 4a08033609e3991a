# Entry points. Variables: DATA (train/test folder, zip or file; default data/, else the bundled sample),
# RUN (models/$(RUN)), FOLDS, EPOCHS, RECIPE (default|seed|bncnn|resnet|poolres|drawn), PARAMS (a `tune` result for cv), TRIALS and JOBS
# (for `make tune`; JOBS also `make best`'s runs at once), PLAN (a plan file for `make best`), SRC (for `make data`), ARGS (extra CLI flags). docs/cli.md lists them all.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
# models/sample while the data is the bundled sample, models/default once `make data` has filled data/ (the same
# files competition.data.default_data_dir looks for) or DATA= names other data: so a run trained on the sample is
# never what `make submit` sends for the full test file.
RUN    ?= $(if $(DATA)$(wildcard data/train.csv data/train.csv.gz data/digit-recognizer.zip),default,sample)
OUT    ?=

data_flag = $(if $(DATA),--data $(DATA))
train_flags = $(data_flag) $(if $(FOLDS),--folds $(FOLDS)) $(if $(EPOCHS),--epochs $(EPOCHS)) \
              $(if $(RECIPE),--recipe $(RECIPE)) $(if $(ARCH),--arch $(ARCH)) $(if $(PARAMS),--params $(PARAMS))
cv_flags    = $(train_flags) --out models/$(RUN)

.PHONY: help install cv best blend runs submit kaggle-submit tune demo data test test-fast bench clean distclean
.DEFAULT_GOAL := help

# `make` alone explains rather than starting a 6.5 GB install
help:
	@echo 'make submit   train 5 folds on the default data (first use: makes .venv), write submissions/submission.csv'
	@echo 'make test     ruff, mypy and the whole pytest suite (what CI runs)'
	@echo 'make test-fast  the unit and in-process tests only (about a minute)'
	@echo 'make data     fill data/ from SRC=path (a Kaggle zip, a folder, a csv pair) or the Kaggle API'
	@echo 'make kaggle-submit  upload submissions/submission.csv (FILE=, MESSAGE=) and record its public score'
	@echo 'make cv       5-fold cross-validation -> models/$(RUN)/ (ARCH=, SEEDS="1 2 3" for a blend of seeds)'
	@echo 'make best     train the runs of competition/best.json (PLAN=), blend them, write the submission'
	@echo 'make blend    RUNS="models/a models/b" NAME=ab -> models/blends/ab'
	@echo 'make runs     the finished runs and blends, best first'
	@echo 'make tune     Optuna search (TRIALS=, JOBS=) -> models/tune/best_params.json (then make cv PARAMS=...)'
	@echo 'make demo     the draw-a-digit page on http://127.0.0.1:7860'
	@echo 'make bench    DATA=folder: the figures of docs/benchmarks.md -> benchmarks/results/'
	@echo 'variables: DATA= RUN= FOLDS= EPOCHS= RECIPE= ARCH= PARAMS= SEEDS= PLAN= ARGS="more CLI flags"; docs/cli.md has the rest'

# A virtual environment made on first use; re-made when pyproject.toml changes. On Linux pip takes PyTorch's
# CUDA build, ~6.5 GB in the venv: a first install checks the space first rather than letting pip fill the disk.
MIN_FREE_GB ?= 7
$(VENV)/.installed: pyproject.toml
	@test -x $(PY) || $(PYTHON) -c 'import shutil, sys; free = shutil.disk_usage(".").free / 1e9; \
	  free < $(MIN_FREE_GB) and sys.exit(f"make: only {free:.1f} GB free here; installing PyTorch into $(VENV) needs about $(MIN_FREE_GB) GB: free some space, or lower MIN_FREE_GB= at your own risk")'
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e .
	touch $@

$(VENV)/.installed-test: $(VENV)/.installed
	$(PY) -m pip install -q -e '.[test,postgres]'
	touch $@

install: $(VENV)/.installed

# SEEDS="1 2 3": one run per seed on one shared fold split (SPLIT_SEED, default 42), then their blend
cv: $(VENV)/.installed
ifdef SEEDS
	for s in $(SEEDS); do $(PY) -m competition cv $(train_flags) --out models/$(RUN)-seed$$s --seed $$s \
	  --split-seed $(or $(SPLIT_SEED),42) $(ARGS) || exit 1; done
	$(PY) -m competition blend $(foreach s,$(SEEDS),models/$(RUN)-seed$(s)) --out models/blends/$(RUN)-seeds
else
	$(PY) -m competition cv $(cv_flags) $(ARGS)
endif

# the plan's runs and their blend -> models/$(RUN)-best/ (sample or full data apart, as for cv), then the submission
best: $(VENV)/.installed
	$(PY) -m competition best $(data_flag) $(if $(PLAN),--plan $(PLAN)) $(if $(JOBS),--jobs $(JOBS)) --out models/$(RUN)-best $(if $(OUT),--submission $(OUT)) $(ARGS)

# RUNS="models/a models/b" NAME=ab: a blend of finished runs -> models/blends/$(NAME)
blend: $(VENV)/.installed
	$(PY) -m competition blend $(RUNS) --out models/blends/$(or $(NAME),blend)

runs: $(VENV)/.installed
	$(PY) -m competition runs

# `make submit` trains first when the run has no report yet.
models/$(RUN)/cv_report.json: | $(VENV)/.installed
	$(PY) -m competition cv $(cv_flags) $(ARGS)

submit: models/$(RUN)/cv_report.json
	$(PY) -m competition submit --models models/$(RUN) $(data_flag) $(if $(OUT),--out $(OUT))

tune: $(VENV)/.installed
	$(PY) -m competition tune $(data_flag) $(if $(TRIALS),--trials $(TRIALS)) $(if $(JOBS),--jobs $(JOBS)) $(ARGS)

# the demo needs a run; trains one on the default data first when there is none
demo: models/$(RUN)/cv_report.json
	$(PY) -m competition demo --models models/$(RUN) $(ARGS)

# upload with the Kaggle API (pip install kaggle, ~/.kaggle/kaggle.json); FILE= and MESSAGE= are optional
kaggle-submit: $(VENV)/.installed
	$(PY) -m competition kaggle-submit $(FILE) $(if $(MESSAGE),-m "$(MESSAGE)")

data: $(VENV)/.installed
	$(PY) -m competition data $(if $(SRC),--src $(SRC))

test: $(VENV)/.installed-test
	$(PY) -m ruff check competition tests notebooks benchmarks
	$(PY) -m mypy
	$(PY) -m pytest -q $(ARGS)

# the edit loop: no subprocess training, servers, browser, notebook or database
test-fast: $(VENV)/.installed-test
	$(PY) -m pytest -q -m 'not slow' $(ARGS)

bench: $(VENV)/.installed-test
	@test -n "$(DATA)" || { echo 'make bench needs DATA=path/to/digit-recognizer (a folder with train and test files)' >&2; exit 2; }
	$(PY) benchmarks/bench.py --data $(DATA) --work bench $(ARGS)

# keeps the Optuna study (models/tune) and the submission history (submissions/log.csv)
clean:
	find models -mindepth 1 -maxdepth 1 ! -name tune -exec rm -rf {} + 2>/dev/null || true
	find submissions -maxdepth 1 -name '*.csv' ! -name log.csv -delete 2>/dev/null || true
	rm -rf bench

# everything made here: runs, the study, the submissions and their log, the venv
distclean: clean
	@echo 'distclean: removing models/ (with the study in models/tune), submissions/*.csv (with log.csv) and $(VENV)/'
	rm -rf models submissions/*.csv $(VENV)
