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
"$BIN/python" - "$PORT" <<'PY'
import sys, time
import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

channel = grpc.insecure_channel(f"127.0.0.1:{sys.argv[1]}")
stub = health_pb2_grpc.HealthStub(channel)
deadline = time.monotonic() + 120
while True:
    try:
        if stub.Check(health_pb2.HealthCheckRequest(), timeout=2).status == health_pb2.HealthCheckResponse.SERVING:
            break
    except grpc.RpcError:
        pass
    if time.monotonic() > deadline:
        sys.exit("the server did not become healthy within 120 s (see out/demo/server.log)")
    time.sleep(0.5)
PY

"$BIN/actionrec" client "$CLIP" --server "127.0.0.1:$PORT" --json --max-people 2 --out out/demo/annotated.mp4
echo "annotated video: out/demo/annotated.mp4; server log: out/demo/server.log" >&2
