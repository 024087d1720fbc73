#!/usr/bin/env bash
# The GPU check (issue 23): on one GPU machine with no network, install nnsight and this project from the wheels in
# the carried folder, run chapters 01, 04 (short), 06 and 07 at Qwen3-4B shape in bf16 (benchmarks/gpu_check.py,
# no Jupyter kernel needed), then the attribution benchmark at full size (benchmarks/scale.py), and write JSON.
#   bash benchmarks/gpu_check.sh [OUTDIR]        (OUTDIR default: $OUT, else /tmp/gpu_check)
# The carried folder ($WHL, default .whl; make it with `bash benchmarks/gpu_check.sh --pack` here) holds:
#   *.whl       nnsight 0.8.1 and what the GPU image lacks (greenlet, pydantic(-core), ...), fastcore, this project
#   cache.txz   the mi-repro cache (xz: a third smaller than gzip) the chapters need offline: models/qwen3-4b-shape (config + tiny-qwen3's
#               tokenizer; the weights are drawn on the GPU) and the text corpus
#   src/        nbs/, benchmarks/ and data/ of this checkout (the chapters run from there; data/prompts is read beside the package)
# Time limits: CHAPTERS_S (default 420) for the chapters, SCALE_S (default 150) for the benchmark; SCALE_F features
# per layer (default 16384); GPU_CHECK_ARGS more arguments for gpu_check.py (e.g. --chapters 04 06 07 --set 04:n_tokens=2048).
# circuit-tracer (scale.py's `circuit-tracer` mode) does not run here: its venv does not travel cheaply. Without torch,
# circuit-tracer 0.5.0 pins transformers <= 4.57.3 and huggingface-hub < 1.0, so it needs its own copies of them,
# transformer-lens 3.2.1 and what `import transformer_lens` pulls in (datasets -> pyarrow, pandas, aiohttp, ...): 88 MB of
# cp312 wheels (pyarrow 55, pandas 12, transformers 12; `pip download --no-deps` of the venv's versions), beyond the
# 64 MiB a carried folder may hold beside the 29 MB the pack above makes.
set -u
W=${WHL:-.whl}
if [ "${1:-}" = "--pack" ]; then  # run here, in the repo root, with the project's venv
  PY=${PY:-.venv/bin/python}; C=${MI_REPRO_CACHE:-$HOME/.cache/mi_repro}
  mkdir -p "$W" && rm -f "$W"/mi_repro-*.whl
  $PY -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 --platform manylinux1_x86_64 \
    -d "$W" nnsight==0.8.1 fastcore greenlet pydantic pydantic-core annotated-types typing-inspection websocket-client zstandard || exit 1
  $PY -m pip wheel -q --no-deps --no-build-isolation -w "$W" . || exit 1
  $PY -c "from mi_repro.models import locate; locate('qwen3-4b-shape')" || exit 1
  rm -f "$W"/cache.t*z && tar -cJf "$W/cache.txz" -C "$C" models/qwen3-4b-shape corpus || exit 1
  rm -rf "$W/src" && mkdir -p "$W/src" && cp -r nbs benchmarks data "$W/src/" && rm -rf "$W/src/benchmarks/results" "$W"/src/benchmarks/.venv*
  du -sh "$W"; exit 0
fi
OUTD=${1:-${OUT:-/tmp/gpu_check}}; mkdir -p "$OUTD"
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site "$W"/*.whl || exit 1
export PYTHONPATH=/tmp/site MI_REPRO_CACHE=/tmp/mi_cache PYTHONUNBUFFERED=1 TOKENIZERS_PARALLELISM=false
mkdir -p "$MI_REPRO_CACHE" && tar -xJf "$W/cache.txz" -C "$MI_REPRO_CACHE" || exit 1
cp -r "$W/src/data" /tmp/site/  # the prompt sets: read from data/ beside the package, as in a source checkout
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
python3 -c "import torch, transformers, nnsight, mi_repro; print('torch', torch.__version__, 'transformers', transformers.__version__, 'nnsight', nnsight.__version__)" || exit 1
t0=$(date +%s)
timeout "${CHAPTERS_S:-420}" python3 "$W/src/benchmarks/gpu_check.py" "$OUTD/gpu_check.json" --model qwen3-4b-shape --device cuda --dtype bf16 ${GPU_CHECK_ARGS:-}
echo "chapters: exit $? after $(( $(date +%s) - t0 )) s"
t1=$(date +%s)
timeout "${SCALE_S:-150}" python3 "$W/src/benchmarks/scale.py" --model qwen3-4b-shape --device cuda --dtype bf16 \
  --n-features "${SCALE_F:-16384}" --set-dtype bf16 --threads 8 --set-dir /tmp/scale-set --save "$OUTD/scale_gpu.json" > /dev/null
echo "scale: exit $? after $(( $(date +%s) - t1 )) s"
