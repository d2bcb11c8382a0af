#!/usr/bin/env bash
# One prepared GPU check (a few minutes on one datacenter GPU): see benchmarks/gpu_check.py.
# Usage: bash benchmarks/gpu_check.sh [--compile reduce-overhead]
set -euo pipefail
cd "$(dirname "$0")/.."
python -c "import open_clip, safetensors" 2>/dev/null || pip install -q open_clip_torch safetensors
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
PYTHONPATH=. python -m benchmarks.gpu_check "$@"
