"""OpenAI-style error objects and the HTTP status of every failure the gateway can meet.

Body: ``{"error": {"message", "type", "param", "code"}}`` (what the OpenAI SDKs parse
into ``BadRequestError``, ``RateLimitError``, ...).

    cause                                              status  type
    request body invalid / unsupported field            400     invalid_request_error
    task rejected as invalid (invalid_payload)          400     invalid_request_error
    prompt longer than the model's context              400     invalid_request_error (context_length_exceeded)
    missing or wrong bearer token                       401     authentication_error
    unknown model id, unknown task or thread            404     invalid_request_error
    gateway in-flight limit, TASKS stream full,
      an engine's bounded queue full (queue_full)       429     rate_limit_error  + Retry-After
    task cancelled by someone else                      409     conflict_error
    review of a task that does not wait for one         409     conflict_error (wrong_state)
    agent / engine failure                              500     server_error
    bus down, retriever absent, no model server         503     service_unavailable_error
    task deadline passed (status timeout)               504     timeout_error
"""

from __future__ import annotations

from typing import Any

from pydantic import ValidationError

from shared.contracts import TaskResult
from shared.errors import (
    BusError,
    Cancelled,
    DeadlineExceeded,
    EngineError,
    InvalidPayload,
    ModelUnavailable,
    NotFound,
    Overloaded,
    QueueFull,
    SyndicateError,
    WrongState,
)


class APIError(Exception):
    """An HTTP error answered as an OpenAI error object."""

    def __init__(
        self, status: int, message: str, *, type: str, code: str | None = None, param: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.type = type
        self.code = code
        self.param = param
        self.headers = headers or {}

    def body(self) -> dict[str, Any]:
        return {"error": {"message": self.message, "type": self.type, "param": self.param, "code": self.code}}


def invalid_request(exc: ValidationError | str) -> APIError:
    """400 from a pydantic validation error of a request body (first problems, readable)."""
    if isinstance(exc, str):
        return APIError(400, exc, type="invalid_request_error", code="invalid_request")
    errors = exc.errors()
    loc = [str(p) for p in (errors[0]["loc"] if errors else ()) if p != "body"]
    problems = "; ".join(
        f"{'.'.join(str(p) for p in e['loc'] if p != 'body') or 'body'}: {e['msg']}" for e in errors[:5]
    )
    return APIError(400, f"invalid request: {problems}", type="invalid_request_error",
                    code="invalid_request", param=".".join(loc) or None)


def unknown_model(model: str, known: list[str]) -> APIError:
    return APIError(
        404, f"The model '{model}' does not exist; available: {', '.join(known)}",
        type="invalid_request_error", code="model_not_found", param="model",
    )


def unauthorized() -> APIError:
    return APIError(401, "Incorrect or missing API key (use 'Authorization: Bearer <key>')",
                    type="authentication_error", code="invalid_api_key")


def rate_limited(message: str, retry_after_s: int, code: str = "queue_full") -> APIError:
    return APIError(429, message, type="rate_limit_error", code=code, headers={"Retry-After": str(retry_after_s)})


def bus_unavailable(message: str = "the syndicate's message bus is unreachable") -> APIError:
    return APIError(503, message, type="service_unavailable_error", code="bus_unavailable")


def from_exception(exc: BaseException, retry_after_s: int) -> APIError:
    """The API error for an exception raised while serving a request."""
    if isinstance(exc, APIError):
        return exc
    if isinstance(exc, ValidationError):
        return invalid_request(exc)
    if isinstance(exc, (Overloaded, QueueFull)):  # back-pressure: the syndicate's or a model's queue
        return rate_limited(exc.message, retry_after_s, code=exc.code)
    if isinstance(exc, DeadlineExceeded):
        return APIError(504, exc.message, type="timeout_error", code="timeout")
    if isinstance(exc, BusError):
        return bus_unavailable(exc.message)
    if isinstance(exc, ModelUnavailable):  # nobody serves the model now (restarting, died)
        return APIError(503, exc.message, type="service_unavailable_error", code=exc.code)
    if isinstance(exc, InvalidPayload):
        return APIError(400, exc.message, type="invalid_request_error", code=exc.code)
    if isinstance(exc, EngineError) and "n_ctx" in exc.detail:  # the prompt does not fit the model's context
        return APIError(400, exc.message, type="invalid_request_error", code="context_length_exceeded", param="messages")
    if isinstance(exc, Cancelled):
        return APIError(409, exc.message, type="conflict_error", code="cancelled")
    if isinstance(exc, NotFound):
        return APIError(404, exc.message, type="invalid_request_error", code=exc.code)
    if isinstance(exc, WrongState):
        return APIError(409, exc.message, type="conflict_error", code=exc.code)
    if isinstance(exc, SyndicateError):
        return APIError(500, exc.message, type="server_error", code=exc.code)
    return APIError(500, f"internal error: {type(exc).__name__}", type="server_error", code="internal_error")


def from_result(result: TaskResult, retry_after_s: int) -> APIError | None:
    """None for a task that finished ``done``; else the error that tells the client why."""
    if result.status == "done":
        return None
    code = result.error.code if result.error else result.status
    message = result.error.message if result.error and result.error.message else f"task {result.status}"
    message = f"task {result.task_id} {result.status}: {message}"
    if code in (Overloaded.code, QueueFull.code):
        return rate_limited(message, retry_after_s, code=code)
    if result.status == "timeout" or code == "timeout":
        return APIError(504, message, type="timeout_error", code="timeout")
    if result.status == "cancelled":
        return APIError(409, message, type="conflict_error", code="cancelled")
    if code == "invalid_payload":
        return APIError(400, message, type="invalid_request_error", code=code)
    if code in ("bus_error", "model_unavailable"):
        return APIError(503, message, type="service_unavailable_error", code=code)
    return APIError(500, message, type="server_error", code=code)
