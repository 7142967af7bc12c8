"""Requests gRPC cannot parse reach the handlers as ``Unparsable``, to be refused as bad input.

gRPC parses a request before its handler sees it, and one that does not parse (a string field
that is not UTF-8, a message cut short: bytes a client in another language can send) would end
the call with INTERNAL "Exception deserializing request!" and a traceback in the log; in the
middle of a stream, the handler would see the stream end as if its client had closed it and
answer as for a clean end. With ``TolerantRequests`` the handler gets an ``Unparsable`` in the
message's place, and ``parsed`` turns it into an INVALID_ARGUMENT that says what was wrong.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import grpc

from skeleton.errors import InputError


@dataclass(frozen=True)
class Unparsable:
    """A request message that could not be parsed, and why."""

    error: str


def _parse_or_note(parse: Callable[[bytes], object]) -> Callable[[bytes], object]:
    def parse_or_note(data: bytes) -> object:
        try:
            return parse(data)
        except Exception as e:  # noqa: BLE001 - protobuf's DecodeError, or whatever its parser raises
            return Unparsable(str(e) or type(e).__name__)

    return parse_or_note


class TolerantRequests(grpc.ServerInterceptor):
    """Gives the methods under ``prefix`` (a service's, "/package.Service/") requests that may be
    ``Unparsable``; other services (health, reflection) keep gRPC's own handling."""

    def __init__(self, prefix: str) -> None:
        self._prefix = prefix

    def intercept_service(self, continuation, handler_call_details):
        handler = continuation(handler_call_details)
        if handler is None or handler.request_deserializer is None:
            return handler
        if not handler_call_details.method.startswith(self._prefix):
            return handler
        return handler._replace(request_deserializer=_parse_or_note(handler.request_deserializer))


def parsed(message: object, what: str) -> object:
    """``message``, or an InputError naming ``what`` could not be parsed."""
    if isinstance(message, Unparsable):
        raise InputError(f"{what} could not be parsed ({message.error})")
    return message
