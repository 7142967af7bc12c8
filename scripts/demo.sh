#!/usr/bin/env bash
# The main job: the service with the shipped default model, and a client streaming a real clip
# through it at the clip's own frame rate. Prints one JSON event per line and writes the
# annotated video to out/demo/annotated.mp4. Usage: scripts/demo.sh [VIDEO]
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=.venv/bin
CLIP=${1:-../shared/data/videos/arm_wrestling.mp4}
PORT=${ACTIONREC_DEMO_PORT:-50051}
mkdir -p out/demo

"$BIN/actionrec" serve --host 127.0.0.1 --port "$PORT" > out/demo/server.log 2>&1 &
SERVER=$!
trap 'kill -TERM "$SERVER" 2>/dev/null || true; wait "$SERVER" 2>/dev/null || true' EXIT

# Wait for the standard health check to say SERVING (models loaded and warmed up).
"$BIN/actionrec" health --server "127.0.0.1:$PORT" --wait 120 >/dev/null \
    || { echo "the server did not become healthy within 120 s (see out/demo/server.log)" >&2; exit 1; }

"$BIN/actionrec" client "$CLIP" --server "127.0.0.1:$PORT" --json --max-people 2 --out out/demo/annotated.mp4
echo "annotated video: out/demo/annotated.mp4; server log: out/demo/server.log" >&2
