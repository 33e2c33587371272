# The two commands of the quickstart. Each creates .venv on first use.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo readme readme-demo test test-torch sanitize venv clean

# Installs, then builds StRA's C kernels into the user's cache (when a C compiler is there: a
# compiler whose build fails stops here; without one the blocks run as plain torch ops).
# Bytecode: pip's own compile step is one process (about 80 s for torch and the rest), so pip
# installs without it and compileall writes the same .pyc files on every core, while the kernels
# compile beside it. As pip does, a third-party file that does not compile is skipped (-qq);
# strabench's own must compile (pip skips an editable install's). The third-party packages' own
# test folders (a quarter of the files: pandas', sympy's, scipy's ...) are never imported here,
# so they are not compiled (-x). Python reads .pyc files even where PYTHONDONTWRITEBYTECODE is
# set, so the processes that the demo and the tests start do not each compile their imports
# again; an edited file's stale copy is ignored.
$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet --no-compile -e '.[dev]'
	$(BIN)/python -m compileall -q strabench
	$(BIN)/python -m compileall -qq -j 0 -x '/tests?/' "$$($(BIN)/python -c 'import sysconfig; print(sysconfig.get_path("purelib"))')" & \
	  compiling=$$!; $(BIN)/python -m strabench.layers.build_kernels; built=$$?; wait $$compiling; test $$built -eq 0
	touch $(STAMP)

venv: $(STAMP)

# The demo trains suites/demo.toml (ResNet-50 vs StRA, 6 epochs: about 6 minutes on 2 idle
# cores) into demo-results/ (git-ignored), not results/: the committed results/demo is the
# reference run of the same suite, and a fresh clone must really train, not find it finished.
# Re-running `make demo` resumes or skips what is already done there.
DEMO_OUT ?= demo-results

demo: $(STAMP)
	$(BIN)/strabench run suites/demo.toml --out $(DEMO_OUT)
	$(BIN)/strabench report $(DEMO_OUT)/demo
	@echo "report written to $(DEMO_OUT)/demo/report.md (plots in $(DEMO_OUT)/demo/plots/); the committed reference run is results/demo/report.md"

# README's generated blocks (the demo's report, the quick suite's verdicts) are rendered from the
# committed results/ (tests/test_readme.py fails when they disagree): run this after re-running
# a suite into results/. readme-demo is the older name of the same step.
readme readme-demo: $(STAMP)
	$(BIN)/python scripts/update_readme.py

test: $(STAMP)
	$(BIN)/python -m pytest -n 2 --dist worksteal -q

# The layer tests with StRA's C kernels switched off: every block in its plain-torch form.
TORCH_PATH_TESTS := tests/layers/test_local_attention.py tests/layers/test_mode_attention.py tests/layers/test_stra.py \
	tests/layers/test_local_traceable.py tests/layers/test_sasa.py

test-torch: $(STAMP)
	STRABENCH_FUSED_KERNEL=0 $(BIN)/python -m pytest -n 2 -q $(TORCH_PATH_TESTS)

# The kernel tests once under AddressSanitizer + UBSan (gcc or clang with their runtimes): a
# separate sanitized build of the kernels, libasan (and libstdc++, for the C++ extensions torch
# loads) preloaded into python, leak checks off (python's own allocations). About 15 minutes on
# 2 cores; `make test` runs a short sanitized smoke test (tests/layers/test_kernel_sanitized.py).
CC ?= cc
SANITIZED_TESTS := tests/layers/test_local_kernel.py tests/layers/test_ops.py tests/layers/test_pointwise.py \
	tests/layers/test_local_attention_fused.py tests/layers/test_mode_attention_fused.py

sanitize: $(STAMP)
	STRABENCH_KERNEL_SANITIZE=1 ASAN_OPTIONS=detect_leaks=0 UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 \
	LD_PRELOAD="$$($(CC) -print-file-name=libasan.so) $$($(CC) -print-file-name=libstdc++.so)" \
	$(BIN)/python -m pytest -q -p no:xdist $(SANITIZED_TESTS)

clean:
	rm -rf $(VENV) .pytest_cache
