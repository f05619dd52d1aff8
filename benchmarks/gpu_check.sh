#!/usr/bin/env bash
# The GPU check, run on a lent CUDA machine from the repository root (see docs/benchmarks.md,
# "GPU runs"). That machine has torch, jax and flax but no package index: normspec installs
# without its dependencies. Logs and reports go to $OUT (or ./gpu-check-out).
set -u
OUT=${OUT:-gpu-check-out}; mkdir -p "$OUT"; R=/tmp/normspec-gpu-reports; rm -rf "$R"; mkdir -p "$R"
export PYTHONUNBUFFERED=1 XLA_PYTHON_CLIENT_PREALLOCATE=false
export JAX_COMPILATION_CACHE_DIR=/tmp/jax-cache  # the Flax adapters' executables (adapters/_jax_executables.py)
python3 -m pip install -q --no-deps --no-build-isolation --no-index -e . >"$OUT/install.log" 2>&1 \
  || { cat "$OUT/install.log"; exit 1; }
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader
python3 -c "import torch, jax, flax, hypothesis; print('torch', torch.__version__, torch.cuda.get_device_name(0)); print('jax', jax.__version__, jax.devices(), 'flax', flax.__version__, 'hypothesis', hypothesis.__version__)" \
  || { echo "gpu_check.sh: torch sees no CUDA device here; run it on a GPU machine"; exit 1; }
W=${WORKERS:-14}
STATUS=0
step() {  # step NAME pytest-args...: one timed pytest run, its log in $OUT and summary line printed
  local name=$1; shift; local t0=$SECONDS
  python3 -m pytest tests/conformance -q -p no:cacheprovider --normspec-report "$R/$name" "$@" >"$OUT/$name.log" 2>&1
  local rc=$?; [ "$rc" -eq 0 ] || STATUS=1
  echo "$name: rc=$rc wall=$((SECONDS - t0))s :: $(tail -n 1 "$OUT/$name.log")"
}
step torch-cuda --adapter torch --adapter torch-channels-last --devices cuda -n "$W"
# Mixed precision inside torch.autocast("cuda"): autocast's own kernels for layer_norm, group_norm and rms_norm.
step torch-autocast-cuda --adapter torch-autocast --devices cuda -n "$W"
step flax-cuda --adapter flax-linen --adapter flax-nnx --devices cuda -n "$W"
# JAX's default device is the GPU here, so --devices cpu takes the adapter's jax.device_put path.
step flax-cpu-on-gpu-host --adapter flax-linen --devices cpu --dtypes float32 -n "$W"
tar -C "$R" -czf "$OUT/reports.tgz" . && ls -la "$OUT"
for f in "$OUT"/*.log; do echo "== $f"; grep -E "^(FAILED|ERROR)|passed|failed" "$f" | head -n 15; done
exit "$STATUS"  # non-zero when any step had an unexpected result
