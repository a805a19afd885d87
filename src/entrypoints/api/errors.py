"""The one place that maps errors to HTTP responses.

Every error body is a ProblemOut: status_code, detail, and the field or job
id when known. Bad input gets 400 when the body is not JSON and 422 when a
field is wrong. An unreachable database gets 503, both when the store raised
StoreUnavailable and when a raw connection error escaped the pool.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Any

import asyncpg.exceptions
import msgspec
import sqlalchemy.exc
from litestar import MediaType, Request, Response
from litestar.exceptions import HTTPException, ValidationException
from litestar.openapi import ResponseSpec
from litestar.status_codes import (
    HTTP_400_BAD_REQUEST,
    HTTP_404_NOT_FOUND,
    HTTP_409_CONFLICT,
    HTTP_413_REQUEST_ENTITY_TOO_LARGE,
    HTTP_422_UNPROCESSABLE_ENTITY,
    HTTP_500_INTERNAL_SERVER_ERROR,
    HTTP_503_SERVICE_UNAVAILABLE,
)

from conveyor.domain.errors import (
    IdempotencyConflict,
    IllegalTransition,
    InvalidJobRequest,
    JobNotFound,
    LeaseLost,
    StoreUnavailable,
)
from conveyor.entrypoints.api.schemas import ProblemOut
from conveyor.entrypoints.logging import get_logger

log = get_logger("conveyor.api")

# Seconds a client should wait before retrying after a 503.
RETRY_AFTER_SECONDS = 1

# Errors raised when the database cannot be reached, seen below the store's
# own translation: the pool failing to connect, a connection dropped mid-query.
CONNECTION_ERRORS: tuple[type[BaseException], ...] = (
    OSError,
    sqlalchemy.exc.OperationalError,
    sqlalchemy.exc.InterfaceError,
    sqlalchemy.exc.TimeoutError,
    asyncpg.exceptions.PostgresConnectionError,
    asyncpg.exceptions.InsufficientResourcesError,
    asyncpg.exceptions.OperatorInterventionError,
)

# msgspec puts the location of a problem at the end: "... - at `$.jobs[0].task`".
_LOCATION = re.compile(r" - at `\$\.?(?P<path>[^`]*)`$")
_NAMED_FIELD = re.compile(r"(?:missing required|unknown) field `(?P<name>[^`]+)`")


# What each error status means, as the OpenAPI schema describes it.
_ERROR_DESCRIPTIONS = {
    HTTP_400_BAD_REQUEST: "The body is not JSON",
    HTTP_404_NOT_FOUND: "No job has this id",
    HTTP_409_CONFLICT: "The job's state or idempotency key conflicts with the request",
    HTTP_413_REQUEST_ENTITY_TOO_LARGE: "The body or a payload is too large",
    HTTP_422_UNPROCESSABLE_ENTITY: "A field or parameter is invalid",
    HTTP_503_SERVICE_UNAVAILABLE: "The job store is unavailable; retry later",
}


def error_responses(*status_codes: int) -> dict[int, ResponseSpec]:
    """Describe the given error statuses for OpenAPI, each with a ProblemOut body."""
    return {
        code: ResponseSpec(
            data_container=ProblemOut,
            description=_ERROR_DESCRIPTIONS[code],
            generate_examples=False,
        )
        for code in status_codes
    }


class PayloadTooLarge(HTTPException):
    """A job payload is larger than CONVEYOR_MAX_PAYLOAD_BYTES."""

    status_code = HTTP_413_REQUEST_ENTITY_TOO_LARGE

    def __init__(self, field: str, problem: str) -> None:
        super().__init__(detail=f"{field}: {problem}")
        self.field = field


def problem(
    status_code: int,
    detail: str,
    field: str | None = None,
    job_id: int | None = None,
    headers: Mapping[str, str] | None = None,
) -> Response[ProblemOut]:
    return Response(
        ProblemOut(status_code=status_code, detail=detail, field=field, job_id=job_id),
        status_code=status_code,
        media_type=MediaType.JSON,
        headers=dict(headers or {}),
    )


def _rejected(
    request: Request[Any, Any, Any],
    status_code: int,
    detail: str,
    field: str | None = None,
    job_id: int | None = None,
) -> Response[ProblemOut]:
    log.info(
        "request_rejected",
        method=request.method,
        path=request.url.path,
        status_code=status_code,
        detail=detail,
        field=field,
        job_id=job_id,
    )
    return problem(status_code, detail, field, job_id)


def split_msgspec_error(message: str) -> tuple[str | None, str]:
    """Split a msgspec validation message into the field path and the problem."""
    path = ""
    problem_text = message
    location = _LOCATION.search(message)
    if location is not None:
        path = location.group("path")
        problem_text = message[: location.start()]

    named = _NAMED_FIELD.search(problem_text)
    if named is not None:
        path = f"{path}.{named.group('name')}" if path else named.group("name")
    return (path or None), problem_text


def _on_invalid_request(
    request: Request[Any, Any, Any], exc: InvalidJobRequest
) -> Response[ProblemOut]:
    return _rejected(request, HTTP_422_UNPROCESSABLE_ENTITY, str(exc), exc.field)


def _on_msgspec_validation(
    request: Request[Any, Any, Any], exc: msgspec.ValidationError
) -> Response[ProblemOut]:
    field, problem_text = split_msgspec_error(str(exc))
    if field is None:
        # Only the body as a whole has no path: an array or a scalar.
        field = "body"
        problem_text = f"must be a JSON object ({problem_text})"
    detail = f"{field}: {problem_text}"
    return _rejected(request, HTTP_422_UNPROCESSABLE_ENTITY, detail, field)


def _on_malformed_json(
    request: Request[Any, Any, Any], exc: msgspec.DecodeError
) -> Response[ProblemOut]:
    detail = f"body: is not valid JSON ({exc})"
    return _rejected(request, HTTP_400_BAD_REQUEST, detail, "body")


def _on_litestar_validation(
    request: Request[Any, Any, Any], exc: ValidationException
) -> Response[ProblemOut]:
    field = None
    detail = exc.detail
    if isinstance(exc.extra, list) and exc.extra:
        first = exc.extra[0]
        if isinstance(first, dict):
            field = first.get("key")
            detail = f"{field}: {first.get('message', exc.detail)}"
    if field == "data":
        # Litestar reports an empty body as a missing "data" argument.
        detail = "body: is empty; send a JSON object"
        return _rejected(request, HTTP_400_BAD_REQUEST, detail, "body")
    return _rejected(request, HTTP_422_UNPROCESSABLE_ENTITY, detail, field)


def _on_not_found(
    request: Request[Any, Any, Any], exc: JobNotFound
) -> Response[ProblemOut]:
    return _rejected(request, HTTP_404_NOT_FOUND, str(exc), job_id=exc.job_id)


def _on_illegal_transition(
    request: Request[Any, Any, Any], exc: IllegalTransition
) -> Response[ProblemOut]:
    return _rejected(request, HTTP_409_CONFLICT, str(exc), job_id=exc.job_id)


def _on_idempotency_conflict(
    request: Request[Any, Any, Any], exc: IdempotencyConflict
) -> Response[ProblemOut]:
    return _rejected(
        request,
        HTTP_409_CONFLICT,
        str(exc),
        field=exc.field,
        job_id=exc.existing_job_id,
    )


def _on_lease_lost(
    request: Request[Any, Any, Any], exc: LeaseLost
) -> Response[ProblemOut]:
    return _rejected(request, HTTP_409_CONFLICT, str(exc), job_id=exc.job_id)


def _on_store_unavailable(
    request: Request[Any, Any, Any], exc: Exception
) -> Response[ProblemOut]:
    log.warning(
        "store_unavailable",
        method=request.method,
        path=request.url.path,
        error_type=type(exc).__name__,
        error=str(exc),
    )
    return problem(
        HTTP_503_SERVICE_UNAVAILABLE,
        "the job store is unavailable; retry later",
        headers={"Retry-After": str(RETRY_AFTER_SECONDS)},
    )


def _on_http_exception(
    request: Request[Any, Any, Any], exc: HTTPException
) -> Response[ProblemOut]:
    if isinstance(exc, PayloadTooLarge):
        return _rejected(request, exc.status_code, exc.detail, exc.field)
    detail = exc.detail
    if exc.status_code == HTTP_413_REQUEST_ENTITY_TOO_LARGE:
        limit = request.route_handler.resolve_request_max_body_size()
        detail = (
            f"request body is larger than the limit of {limit} bytes; "
            "CONVEYOR_MAX_PAYLOAD_BYTES sets it"
        )
    return _rejected(request, exc.status_code, detail)


def _on_unexpected(
    request: Request[Any, Any, Any], exc: Exception
) -> Response[ProblemOut]:
    log.error(
        "request_failed",
        method=request.method,
        path=request.url.path,
        exc_info=exc,
    )
    return problem(HTTP_500_INTERNAL_SERVER_ERROR, "internal server error")


Handler = Callable[[Request[Any, Any, Any], Any], Response[ProblemOut]]


def exception_handlers() -> dict[type[Exception] | int, Handler]:
    """Return the handlers to pass to Litestar; the most specific class wins."""
    handlers: dict[type[Exception] | int, Handler] = {
        InvalidJobRequest: _on_invalid_request,
        JobNotFound: _on_not_found,
        IllegalTransition: _on_illegal_transition,
        IdempotencyConflict: _on_idempotency_conflict,
        LeaseLost: _on_lease_lost,
        StoreUnavailable: _on_store_unavailable,
        msgspec.ValidationError: _on_msgspec_validation,
        msgspec.DecodeError: _on_malformed_json,
        ValidationException: _on_litestar_validation,
        HTTPException: _on_http_exception,
        Exception: _on_unexpected,
    }
    for error_type in CONNECTION_ERRORS:
        handlers[error_type] = _on_store_unavailable  # type: ignore[index]
    return handlers
