#!/usr/bin/env bash
# The GPU rows of benchmarks/RESULTS.md, in one prepared run (about 5–8 minutes on one GPU).
#
#     bash benchmarks/gpu.sh                 # from the repository root, on a GPU machine
#
# Sets up .venv-gpu (the package with CUDA builds of TensorFlow and JAX; set VENV to an
# existing environment to skip the install), checks that both frameworks see a GPU, then
# measures at 256×256:
# - sampling (benchmarks/sample_speed.py → section sample_speed_gpu): ancestral-200,
#   DDIM-20 and the fast 20-step sampler per image, the naive loop, TensorFlow's XLA loop,
#   and the qpi preset's sampling with a bfloat16 denoiser (speed and phase error);
# - training (benchmarks/train_speed.py → section train_speed_gpu): float32 and
#   mixed_bfloat16 train steps.
# Each stage has a time limit, so a stalled stage cannot eat the machine's allowance.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${VENV:-.venv-gpu}
if [ ! -x "$VENV/bin/python" ]; then
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install -q -e ".[metrics]" "tensorflow[and-cuda]" "jax[cuda12]"
fi
PY="$VENV/bin/python"
KERAS_BACKEND=tensorflow TF_CPP_MIN_LOG_LEVEL=2 "$PY" -c \
  "import tensorflow as tf; assert tf.config.list_physical_devices('GPU'), 'TensorFlow sees no GPU'"
KERAS_BACKEND=jax "$PY" -c \
  "import jax; assert jax.default_backend() == 'gpu', 'JAX sees no GPU'"
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader
timeout 300 "$PY" benchmarks/sample_speed.py --backends tensorflow jax --sizes 256 \
  --section sample_speed_gpu
timeout 180 "$PY" benchmarks/train_speed.py --backends tensorflow jax --sizes 256 \
  --dtype-policies float32 mixed_bfloat16 --section train_speed_gpu
echo "GPU rows written: benchmarks/results/{sample_speed_gpu,train_speed_gpu}.md, RESULTS.md"
