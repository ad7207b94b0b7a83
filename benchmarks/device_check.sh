#!/usr/bin/env bash
# Device check: GPU against CPU in one run (training steps/s fp32 vs bf16, a short real-data training,
# CPU/GPU agreement, scoring records/s, peak GPU memory, the estimated full-PTB-XL wall time).
# Prints a JSON summary and writes reports/benchmarks/device_check.json (--out elsewhere).
# Runs on a CPU-only machine too: every GPU part is then a "no CUDA device" entry.
#
#   benchmarks/device_check.sh                  # GPU machine: about 5-8 minutes (--budget-s 450)
#   OMP_NUM_THREADS=1 nice -n 10 benchmarks/device_check.sh --quick     # CPU smoke run, ~2-4 minutes
#
# Python: $PYTHON, else .venv/bin/python, else python3. Needs ecgproto's dependencies (wfdb is the one a
# stock CUDA image may lack: put its wheel in .whl/, e.g. `pip download --no-deps wfdb==4.3.1 -d .whl`;
# it is installed to /tmp/site when `import wfdb` fails). Real data: --data PTBXL_FOLDER, else
# shared/data/ptbxl-dev in the repo (make one small enough to travel with
# `benchmarks/device_check.sh --make-subset 1500 shared/data/ptbxl-dev`), else ../shared/data/ptbxl-dev,
# else a synthetic archive (the JSON says which).
set -euo pipefail
cd "$(dirname "$0")/.."
if [[ -n "${PYTHON:-}" ]]; then PY=$PYTHON; elif [[ -x .venv/bin/python ]]; then PY=.venv/bin/python; else PY=python3; fi
if ! "$PY" -c "import wfdb" 2>/dev/null && compgen -G ".whl/wfdb-*.whl" >/dev/null; then
  "$PY" -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .whl/wfdb-*.whl
  export PYTHONPATH="/tmp/site${PYTHONPATH:+:$PYTHONPATH}"
fi
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1 ECGPROTO_NO_PROGRESS=1
exec timeout 480 "$PY" benchmarks/device_check.py "$@"
