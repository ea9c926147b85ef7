"""The syndicate's exception tree. Every error a caller can see has a place here and a
stable ``code`` that travels in ErrorReply / TaskResult.error.

    SyndicateError
    ├── InvalidPayload            a message failed contract validation      (invalid_payload)
    ├── ConfigError               bad settings or roster                    (config_error)
    │   ├── ModelUnavailable      model file missing or sha256 mismatch      (model_unavailable)
    │   ├── SuiteError            an eval item cannot become a program       (suite_error)
    │   └── DoesNotFit            the roster's models do not fit the memory  (does_not_fit)
    ├── BusError                  NATS unreachable, no responders, timeout   (bus_error)
    │   └── Undeliverable         a message exhausted its redeliveries        (undeliverable)
    ├── Overloaded                admission refused: too many active tasks   (overloaded)
    ├── NotAllowed                outside what the operator allows (a path)  (not_allowed)
    ├── NotFound                  no such task or thread (or past retention)  (not_found)
    ├── WrongState                not now: a review of a task not waiting     (wrong_state)
    │                             for one, a follow-up of a running task
    ├── ReviewRejected            the reviewer rejected the task's answer    (review_rejected)
    ├── EngineError               llama.cpp generation failed                (engine_error)
    │   ├── QueueFull             the model's bounded queue is full          (queue_full)
    │   ├── DeadlineExceeded      a request passed its deadline              (timeout)
    │   ├── Cancelled             the task was cancelled                     (cancelled)
    │   └── ToolCallInvalid       a required tool call the model wrote is broken (tool_call_invalid)
    ├── SandboxError              code-sandbox could not run the program     (sandbox_error)
    │   └── IsolationUnavailable  no isolation tier available on this host   (isolation_unavailable)
    ├── RetrievalError            ingest/search failed                       (retrieval_error)
    │   └── CollectionMismatch    embedder model/dim differs from the collection's (collection_mismatch)
    └── RemoteError               a service answered with an ErrorReply      (the remote code)
"""

from __future__ import annotations


class SyndicateError(Exception):
    """Base of every error the syndicate raises on purpose."""

    code = "error"

    def __init__(self, message: str = "", *, detail: dict | None = None) -> None:
        super().__init__(message or self.__class__.__name__)
        self.message = message or self.__class__.__name__
        self.detail = detail or {}


class InvalidPayload(SyndicateError):
    code = "invalid_payload"


class ConfigError(SyndicateError):
    code = "config_error"


class ModelUnavailable(ConfigError):
    code = "model_unavailable"


class SuiteError(ConfigError):
    """An evaluation item the evaluator cannot assemble into a program (it names the item)."""

    code = "suite_error"


class DoesNotFit(ConfigError):
    """A roster whose agents' memory exceeds the machine's (it names the biggest consumers)."""

    code = "does_not_fit"


class BusError(SyndicateError):
    code = "bus_error"


class Undeliverable(BusError):
    """A JetStream message reached its consumer's ``max_deliver`` without being acked."""

    code = "undeliverable"


class Overloaded(SyndicateError):
    """Back-pressure: the router's active tasks or the task queue are at their bound."""

    code = "overloaded"


class NotAllowed(SyndicateError):
    """A caller asked for something the operator has not allowed (an ingest folder outside
    the gateway's allow-list)."""

    code = "not_allowed"


class NotFound(SyndicateError):
    """No task or thread by that id (unknown, or past the retention period)."""

    code = "not_found"


class WrongState(SyndicateError):
    """The task is not in a state that allows this: a review decision for a task that does
    not wait for one, a follow-up of a task that has not ended."""

    code = "wrong_state"


class ReviewRejected(SyndicateError):
    """A person reviewing the task rejected its answer (the task ends ``rejected``)."""

    code = "review_rejected"


class EngineError(SyndicateError):
    code = "engine_error"


class QueueFull(EngineError):
    code = "queue_full"


class DeadlineExceeded(EngineError):
    code = "timeout"


class Cancelled(EngineError):
    code = "cancelled"


class ToolCallInvalid(EngineError):
    """The model was required to call a tool (tool_choice required or a named function)
    and what it wrote does not parse or does not match the tool's schema."""

    code = "tool_call_invalid"


class SandboxError(SyndicateError):
    code = "sandbox_error"


class IsolationUnavailable(SandboxError):
    code = "isolation_unavailable"


class RetrievalError(SyndicateError):
    code = "retrieval_error"


class CollectionMismatch(RetrievalError):
    code = "collection_mismatch"


class RemoteError(SyndicateError):
    """A service answered a request with an ErrorReply; ``code`` is the remote code."""

    def __init__(self, code: str, message: str, *, detail: dict | None = None) -> None:
        super().__init__(message, detail=detail)
        self.code = code


_BY_CODE: dict[str, type[SyndicateError]] = {
    cls.code: cls
    for cls in (
        InvalidPayload, ConfigError, ModelUnavailable, SuiteError, DoesNotFit, BusError, Undeliverable, Overloaded,
        NotAllowed, NotFound, WrongState, ReviewRejected, EngineError, QueueFull,
        DeadlineExceeded, Cancelled, ToolCallInvalid, SandboxError, IsolationUnavailable, RetrievalError,
        CollectionMismatch,
    )
}


def error_from_code(code: str, message: str, detail: dict | None = None) -> SyndicateError:
    """Rebuild the local exception for a remote error code (RemoteError when unknown)."""
    cls = _BY_CODE.get(code)
    if cls is None:
        return RemoteError(code, message, detail=detail)
    return cls(message, detail=detail)


__all__ = [
    "BusError", "Cancelled", "CollectionMismatch", "ConfigError", "DeadlineExceeded", "DoesNotFit",
    "EngineError", "InvalidPayload", "IsolationUnavailable", "ModelUnavailable", "NotAllowed", "Overloaded", "QueueFull",
    "RemoteError", "RetrievalError", "SandboxError", "SuiteError", "SyndicateError", "ToolCallInvalid", "Undeliverable",
    "error_from_code",
]
