#!/usr/bin/env bash
# The CUDA path in one step, on a machine with a GPU: the tests marked `cuda` (bf16 autocast, channels_last,
# data and augmentation resident on the device, no per-step host reads), training images per second on the
# 10k-image folder, then a short recipe on that folder on the GPU with its stage times.
#
#   bench/gpu_check.sh [STAGES]      # STAGES default: inspect,baselines,overfit (comma-separated)
#
# Run from the repository root with the project's environment active (or PYTHON=path/to/python).
# Exit code: that of the first step that failed (2 when there is no CUDA device).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
[ -x "$PY" ] || PY=python
STAGES=${1:-inspect,baselines,overfit}
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" OMP_WAIT_POLICY=PASSIVE PREFECT_SERVER_ANALYTICS_ENABLED=false

"$PY" - <<'PY' || { echo "gpu_check: no CUDA device visible to torch" >&2; exit 2; }
import sys, torch
if not torch.cuda.is_available():
    sys.exit(1)
print(f"device: {torch.cuda.get_device_name(0)}; torch {torch.__version__}, CUDA {torch.version.cuda}")
PY
echo "== tests marked cuda"
"$PY" -m pytest -q -m cuda tests/gpu -p no:cacheprovider
echo "== training throughput on the 10k folder (bf16 autocast, channels_last, data resident on the GPU)"
"$PY" bench/images_per_second.py --device cuda --epochs 3
echo "== a short recipe on the 10k folder on the GPU: $STAGES"
"$PY" bench/recipe_time.py --dataset folder10k --stages "$STAGES" --set trainer.device=cuda
