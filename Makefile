# The two commands of the quickstart. Each creates .venv on first use.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test venv clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

venv: $(STAMP)

# The demo trains into demo-results/ (git-ignored), not results/: the committed results/quick is
# the reference run of the same suite, and a fresh clone must really train, not find it finished.
# Re-running `make demo` resumes or skips what is already done there.
DEMO_OUT ?= demo-results

demo: $(STAMP)
	$(BIN)/strabench run suites/quick.toml --out $(DEMO_OUT)
	$(BIN)/strabench report $(DEMO_OUT)/quick
	@echo "report written to $(DEMO_OUT)/quick/report.md (plots in $(DEMO_OUT)/quick/plots/); the committed reference run is results/quick/report.md"

test: $(STAMP)
	$(BIN)/python -m pytest -n 2 -q

clean:
	rm -rf $(VENV) .pytest_cache
