#!/usr/bin/env bash
# Serve a local teacher with vLLM's OpenAI-compatible server, for `synthesize` (see
# pipelines/examples/local_teacher.yaml, which points at http://127.0.0.1:${PORT}/v1).
#
#   scripts/serve_teacher_vllm.sh [MODEL] [extra vllm serve args...]
#
# Environment: PORT (8000), HOST (127.0.0.1), TP (tensor parallel size, 1), MAX_MODEL_LEN (8192),
# GPU_MEM (0.90), MAX_IMAGES (4, images per request), SERVED_NAME (the name recipes use, default: MODEL).
# Needs the `gpu` extra (pip install -e '.[gpu]'). The key is optional: vLLM accepts any key unless
# started with --api-key; the recipe's api_key_env then names the variable holding it.
set -euo pipefail

MODEL="${1:-Qwen/Qwen2.5-VL-72B-Instruct}"
shift || true
PORT="${PORT:-8000}"
HOST="${HOST:-127.0.0.1}"
TP="${TP:-1}"
MAX_MODEL_LEN="${MAX_MODEL_LEN:-8192}"
GPU_MEM="${GPU_MEM:-0.90}"
MAX_IMAGES="${MAX_IMAGES:-4}"
SERVED_NAME="${SERVED_NAME:-$MODEL}"

if ! command -v vllm >/dev/null 2>&1; then
  echo "vllm is not installed: pip install -e '.[gpu]'" >&2
  exit 1
fi

exec vllm serve "$MODEL" \
  --host "$HOST" --port "$PORT" \
  --served-model-name "$SERVED_NAME" \
  --tensor-parallel-size "$TP" \
  --max-model-len "$MAX_MODEL_LEN" \
  --gpu-memory-utilization "$GPU_MEM" \
  --limit-mm-per-prompt "{\"image\": ${MAX_IMAGES}}" \
  --generation-config vllm \
  "$@"
