"""Client-side channels to the service: TLS, load balancing and the auth header, in one place.

Kept free of OpenCV and MediaPipe so that a health probe (a container's HEALTHCHECK, run every
few seconds) starts in a fraction of a second.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

MAX_MESSAGE_BYTES = 64 << 20


def make_channel(target: str, tls_ca: Path | None = None, lb_policy: str = "") -> grpc.Channel:
    options = [
        ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
        ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
    ]
    if lb_policy:
        options.append(("grpc.service_config", json.dumps({"loadBalancingConfig": [{lb_policy: {}}]})))
    if tls_ca is not None:
        credentials = grpc.ssl_channel_credentials(root_certificates=Path(tls_ca).read_bytes())
        return grpc.secure_channel(target, credentials, options=options)
    return grpc.insecure_channel(target, options=options)


def call_metadata(token: str | None) -> tuple[tuple[str, str], ...]:
    return (("authorization", f"Bearer {token}"),) if token else ()


def health_status(target: str, tls_ca: Path | None = None, service: str = "", timeout_s: float = 2.0) -> str:
    """The standard health service's answer as a name (SERVING, NOT_SERVING, ...), or UNREACHABLE."""
    with make_channel(target, tls_ca) as channel:
        try:
            response = health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(service=service), timeout=timeout_s
            )
        except grpc.RpcError as e:
            return "UNKNOWN_SERVICE" if e.code() == grpc.StatusCode.NOT_FOUND else "UNREACHABLE"
    return health_pb2.HealthCheckResponse.ServingStatus.Name(response.status)


def wait_until_serving(target: str, wait_s: float, tls_ca: Path | None = None, service: str = "") -> str:
    """Poll health until SERVING or ``wait_s`` has passed; the last status seen."""
    deadline = time.monotonic() + wait_s
    while True:
        status = health_status(target, tls_ca, service)
        if status == "SERVING" or time.monotonic() >= deadline:
            return status
        time.sleep(0.5)
