# The two commands of the quickstart. Each creates .venv on first use.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo readme-demo test venv clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

venv: $(STAMP)

# The demo trains suites/demo.toml (ResNet-50 vs StRA, 6 epochs: under 5 minutes on 2 idle
# cores) into demo-results/ (git-ignored), not results/: the committed results/demo is the
# reference run of the same suite, and a fresh clone must really train, not find it finished.
# Re-running `make demo` resumes or skips what is already done there.
DEMO_OUT ?= demo-results

demo: $(STAMP)
	$(BIN)/strabench run suites/demo.toml --out $(DEMO_OUT)
	$(BIN)/strabench report $(DEMO_OUT)/demo
	@echo "report written to $(DEMO_OUT)/demo/report.md (plots in $(DEMO_OUT)/demo/plots/); the committed reference run is results/demo/report.md"

# README's demo section is generated from the committed results/demo (tests/test_readme.py
# fails when they disagree): run this after re-running the demo suite into results/.
readme-demo: $(STAMP)
	$(BIN)/python scripts/update_readme_demo.py

test: $(STAMP)
	$(BIN)/python -m pytest -n 2 -q

clean:
	rm -rf $(VENV) .pytest_cache
