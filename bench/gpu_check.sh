#!/usr/bin/env bash
# GPU check (docs/gpu.md): the README pipeline on the sample clip with every torch stage on CUDA
# (reconstruct --preset full, an Instruct-Pix2Pix edit with the tiny random pipeline and the real
# one when cached, animate, render, evaluate), asserting gsplat / CUDA / float16 were used.
# Writes per-stage times, render backends and PSNR to out/bench/gpu_check.json; exit 1 on a failed
# assertion. Sized for 8 minutes on one modern GPU. Needs `make setup` (or PYTHON=...) and the data.
#
#   bench/gpu_check.sh                # on a CUDA machine
#   bench/gpu_check.sh --cpu-smoke    # anywhere: same steps, tiny sizes, CUDA assertions skipped
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-.venv/bin/python}"
for f in data/videos/franck.webm data/videos/cap13_edit2.mp4; do
  [ -s "$f" ] || { echo "gpu_check: $f is missing; run 'make data' first" >&2; exit 2; }
done
exec "$PY" bench/gpu_check.py "$@"
