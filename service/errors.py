"""Errors of the service, each with the gRPC status it is reported with.

The shared core's ``InputError`` (bad input: the caller's to fix) is reported as
INVALID_ARGUMENT with its message; the classes here cover the other statuses the service
uses on purpose. Status names are strings so that modules without gRPC can raise them.
"""

from __future__ import annotations

from skeleton.errors import InputError


class ServiceError(Exception):
    """An error reported to the caller with the gRPC status ``code`` (a ``grpc.StatusCode`` name)."""

    code = "INTERNAL"


class NotFound(ServiceError):
    """A model, action set or action that does not exist."""

    code = "NOT_FOUND"


class Overloaded(ServiceError):
    """No room: too many streams, or a full queue in front of the model."""

    code = "RESOURCE_EXHAUSTED"


class Unavailable(ServiceError):
    """The server is not ready (models loading) or is draining before it exits."""

    code = "UNAVAILABLE"


class DeadlineExceeded(ServiceError):
    """The work did not finish in the time it had: a clip call's deadline, or a stream that sent
    no configuration in time."""

    code = "DEADLINE_EXCEEDED"


class ModelFailed(ServiceError):
    """The model raised while classifying a batch: the windows in it fail (the server logs why)."""

    code = "INTERNAL"


def status_of(error: BaseException) -> tuple[str, str] | None:
    """(status name, message) for an error meant for the caller; None for a bug."""
    if isinstance(error, ServiceError):
        return error.code, str(error)
    if isinstance(error, InputError):
        return "INVALID_ARGUMENT", str(error)
    return None
