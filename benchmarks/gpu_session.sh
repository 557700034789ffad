#!/usr/bin/env bash
# One call on a lent GPU machine: install kornia from carried wheels (.whl/; the image has
# torch but not kornia), measure SimCLR ResNet-18 throughput at batch 512, 1024 and 2048,
# eager and compiled, split one step into views and model, and run the fast test suite with
# CUDA visible. Results go to $OUT (or ./gpu_out); benchmarks/gpu/ holds the last ones.
#   bash benchmarks/gpu_session.sh
set -uo pipefail
OUT=${OUT:-gpu_out}; mkdir -p "$OUT"
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 1
export PYTHONPATH=/tmp/site:$(pwd) PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$OUT/gpu.txt"
for bs in 512 1024 2048; do
  for compile in "" "--compile"; do
    f="$OUT/throughput-$bs${compile:+-compile}.json"
    python3 -m benchmarks.gpu_throughput --batch-size $bs --steps 40 $compile --json > "$f"
    python3 -c "import json; r = json.load(open('$f')); print(r['batch_size'], 'compile' if r['compile'] else 'eager', round(r['views_per_s']), 'views/s')"
  done
done
python3 -m benchmarks.gpu_profile --batch-size 1024 --rows 0 2>&1 | grep "views/s"
timeout ${TEST_TIMEOUT:-300} python3 -m pytest -m "not slow" -q -p no:cacheprovider -n 8 2>&1 | tail -5 | tee "$OUT/pytest.txt"
