#!/bin/bash
# The GPU checks in one run on a lent device machine (H200: python3.12 with CuPy, torch,
# numpy, scipy, pytest; no pydantic, redis or isal, and no ../shared). Prepare here first:
#
#   echo /.whl/ >> .git/info/exclude; echo /.gpu/ >> .git/info/exclude
#   python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 \
#     --implementation cp --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 \
#     --platform manylinux2014_x86_64 -d .whl annotated-types pydantic pydantic_core \
#     pydantic-settings python-dotenv redis isal typing-inspection typing_extensions
#     (pin the versions of .venv's pip list)
#   mkdir -p .gpu && python -c "import numpy as np; z = np.load('../shared/data/fashion_mnist/\
#     fashion_mnist.npz'); o = np.random.default_rng(0).permutation(70000)[:16000]; \
#     np.savez('.gpu/fashion_16k.npz', features=z['features'][o].astype(np.uint8), \
#     labels=z['labels'][o])"
#
# then call the device tool's run with command "bash bench/device_check.sh", carry [".whl",
# ".gpu"] and a timeout that leaves time for a second try. Outputs land in $OUT.
set -o pipefail
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
  --target /tmp/site .whl/*.whl || exit 1
export PYTHONPATH=/tmp/site PYTHONUNBUFFERED=1
F=.gpu/fashion_16k.npz
OUT=${OUT:-/tmp/device-out}
mkdir -p "$OUT"
{ nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm --format=csv; nproc
  python3 -c "import cupy, torch, numpy, scipy; print('cupy', cupy.__version__, 'torch', \
torch.__version__, 'numpy', numpy.__version__, 'scipy', scipy.__version__)"; } 2>&1 \
  | tee "$OUT/machine.txt"
# the parity suite: NumPy against CuPy over six round configurations, and the solver tests
timeout 170 python3 -m pytest -q -p no:cacheprovider tests/solver 2>&1 | tail -40 \
  | tee "$OUT/parity.txt"
timeout 170 python3 bench/round_speed.py --backend cupy --fashion $F --rounds 10 --repeats 2 \
  2>&1 | tee "$OUT/round_cupy32.txt"
timeout 60 python3 bench/round_speed.py --backend cupy --dtype float64 --fashion $F \
  --rounds 10 --cases "identity d=784" "rbf d=784, linear query encoder" 2>&1 \
  | tee "$OUT/round_cupy64.txt"
OPENBLAS_NUM_THREADS=16 timeout 90 python3 bench/round_speed.py --backend numpy --fashion $F \
  --rounds 8 2>&1 | tee "$OUT/round_numpy16.txt"
