#!/usr/bin/env bash
# The GPU report: `strabench bench` of the Table 1/4 ReID models (fp32 and bf16 + channels_last,
# infer and train step), LocalAttention against the 3x3 conv, and a short AMP training of
# resnet50_stra, in one markdown file, results/bench/<gpu name>.md (under 8 minutes on an H200).
#
#   benchmarks/gpu.sh                  # on the GPU
#   benchmarks/gpu.sh --device cpu     # the same steps, CPU sizes (a dry run: a few minutes)
#   benchmarks/gpu.sh --help           # --out DIR, --overwrite, --smoke, --budget-s S
#
# Uses the repository's .venv (make venv), or the python given in $PYTHON.
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
python="${PYTHON:-$repo/.venv/bin/python}"
if [[ ! -x "$python" ]]; then
    echo "gpu.sh: no python at $python: run 'make venv' first, or set PYTHON" >&2
    exit 2
fi
exec "$python" "$repo/benchmarks/gpu_report.py" "$@"
