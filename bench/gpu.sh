#!/bin/sh
# The GPU check (bench/gpu.py): the seed's recipe on one GPU and the DDP path once on NCCL; falls back to CPU.
# NOT YET RUN ON A GPU. Sized for one 10-minute command: about 600 + 100 iterations of batch 192 from carried LMDBs.
#
# The device machine has python3 with torch+CUDA but none of hwocr's other dependencies and no network, so before
# the call, here:
#   python bench/gpu.py --build-only          # bench/gpu-data/{train,val}: 4,096 + 512 renders (~15 MB)
#   python -m pip download --only-binary=:all: --python-version 3.X -d .whl/gpu \
#       lmdb pydantic pillow numpy fsspec opencv-python-headless tqdm   # 3.X: the device's python3
# and name bench/gpu-data and .whl/gpu (both ignored) in the run's carry. hwocr itself runs from the tree (PYTHONPATH), not installed.
set -eu
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if ! "$PY" -c "import lmdb, pydantic, PIL, numpy, fsspec, cv2" 2>/dev/null; then
  "$PY" -m pip install --no-index --find-links .whl/gpu lmdb pydantic pillow numpy fsspec opencv-python-headless tqdm
fi
PYTHONPATH=$(pwd) PYTHONUNBUFFERED=1 exec "$PY" bench/gpu.py "$@"
