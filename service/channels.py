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

from service.config import token_problem
from skeleton.errors import InputError, read_input_file

MAX_MESSAGE_BYTES = 64 << 20
# A stream can be silent for long (nobody in view), so only pings tell a live server from a frozen
# one or a dead link: a ping after KEEPALIVE_TIME_MS without a byte from the server, and the
# connection and its calls end (UNAVAILABLE) when it is not answered within KEEPALIVE_TIMEOUT_MS.
KEEPALIVE_TIME_MS = 10_000
KEEPALIVE_TIMEOUT_MS = 5_000
# A unary call (model info) is answered in milliseconds; one unanswered for this long is not
# going to be (a frozen server, or a peer that accepts connections and never speaks gRPC).
CALL_TIMEOUT_S = 10.0


def read_ca(path: Path) -> bytes:
    """The PEM certificates of ``--tls-ca``, or an InputError saying why they cannot be used."""
    pem = read_input_file(path, "CA certificate file")
    if b"-----BEGIN CERTIFICATE-----" not in pem:
        raise InputError(f"{path}: not a PEM certificate")
    return pem


def make_channel(target: str, tls_ca: Path | None = None, lb_policy: str = "") -> grpc.Channel:
    options = [
        ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
        ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
        ("grpc.keepalive_time_ms", KEEPALIVE_TIME_MS),
        ("grpc.keepalive_timeout_ms", KEEPALIVE_TIMEOUT_MS),
        # gRPC (1.85) waits for a ping's answer this long, whatever keepalive_timeout says (default: a minute)
        ("grpc.http2.ping_timeout_ms", KEEPALIVE_TIMEOUT_MS),
    ]
    if lb_policy:
        options.append(("grpc.service_config", json.dumps({"loadBalancingConfig": [{lb_policy: {}}]})))
    if tls_ca is not None:
        credentials = grpc.ssl_channel_credentials(root_certificates=read_ca(tls_ca))
        return grpc.secure_channel(target, credentials, options=options)
    return grpc.insecure_channel(target, options=options)


def call_metadata(token: str | None) -> tuple[tuple[str, str], ...]:
    if not token:
        return ()
    problem = token_problem(token)
    if problem:  # the token itself is never part of a message
        raise InputError(f"--token {problem}")
    return (("authorization", f"Bearer {token}"),)


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


class CallFailed(InputError):
    """A call the server answered with an error status: one line naming the server, the status
    and the server's message."""

    def __init__(self, target: str, code: str, details: str) -> None:
        super().__init__(f"{target}: {code}: {details}")
        self.target, self.code, self.details = target, code, details

    def about(self, what: str, details: str | None = None) -> CallFailed:
        """The same failure, said to be about ``what`` (a clip file)."""
        return CallFailed(self.target, self.code, f"{what}: {self.details if details is None else details}")
