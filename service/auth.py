"""Token authentication: every call but health checks carries ``authorization: Bearer TOKEN``."""

from __future__ import annotations

import hmac

import grpc

# Load balancers and orchestrators probe health without credentials.
OPEN_PREFIXES = ("/grpc.health.v1.Health/",)


def _refuse(handler: grpc.RpcMethodHandler, message: str) -> grpc.RpcMethodHandler:
    def abort(request, context):
        context.abort(grpc.StatusCode.UNAUTHENTICATED, message)

    if handler.request_streaming and handler.response_streaming:
        return grpc.stream_stream_rpc_method_handler(abort)
    if handler.request_streaming:
        return grpc.stream_unary_rpc_method_handler(abort)
    if handler.response_streaming:
        return grpc.unary_stream_rpc_method_handler(abort)
    return grpc.unary_unary_rpc_method_handler(abort)


class TokenAuth(grpc.ServerInterceptor):
    def __init__(self, token: str) -> None:
        self._expected = f"Bearer {token}".encode()

    def intercept_service(self, continuation, handler_call_details):
        handler = continuation(handler_call_details)
        if handler is None or handler_call_details.method.startswith(OPEN_PREFIXES):
            return handler
        metadata = dict(handler_call_details.invocation_metadata or ())
        given = metadata.get("authorization")
        if given is None:
            return _refuse(handler, "missing authorization metadata (authorization: Bearer TOKEN)")
        if not hmac.compare_digest(str(given).encode(), self._expected):  # constant time: no timing oracle
            return _refuse(handler, "wrong token")
        return handler
