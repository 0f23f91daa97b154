"""Every way imagegate can fail, as one tree.

    ImagegateError                      500 server_error            (a bug: never raised on purpose)
    ├── InvalidRequest                  400 invalid_request_error   (the caller can fix the request)
    │   ├── UnsupportedParameter        400 unsupported_parameter
    │   ├── ContentPolicyViolation      400 content_policy_violation
    │   ├── PayloadTooLarge             413 payload_too_large
    │   ├── UnsafeUrl                   400 unsafe_url              (SSRF guard: URL not callable)
    │   └── IdempotencyKeyReused        422 idempotency_key_reused  (same key, different body)
    ├── AuthenticationFailed            401 invalid_api_key
    │   └── ApiKeyExpired               401 api_key_expired
    ├── NotFound                        404 not_found
    │   └── ModelNotFound               404 model_not_found
    ├── IdempotencyKeyInUse             409 idempotency_key_in_use  (carries retry_after)
    ├── RateLimited                     429 rate_limit_exceeded     (carries retry_after)
    │   ├── ConcurrencyLimitExceeded    429 concurrency_limit_exceeded (key's line full)
    │   ├── QueueFull                   429 queue_full              (the model's line is full)
    │   ├── BudgetExceeded              429 budget_exceeded         (USD per day or month)
    │   └── QuotaExceeded               429 quota_exceeded          (images per minute or day)
    ├── ProviderError                   502 upstream_error          (retryable unless noted)
    │   ├── ProviderTimeout             504 upstream_timeout
    │   ├── ProviderRateLimited         429 upstream_rate_limited   (carries retry_after)
    │   ├── ProviderUnavailable         503 upstream_unavailable    (breaker open, no target left)
    │   └── ProviderRejected            502 upstream_rejected       (not retried; next target tried)
    │       └── ProviderBadRequest      400 upstream_invalid_request (final: no retry, no fallback)
    ├── RequestAbandoned                499 client_closed_request   (the caller left while queued)
    │   └── JobSuperseded               499 job_superseded          (canceled, or lease lost)
    ├── Unavailable                     503 service_unavailable     (a backend is down)
    │   ├── DatabaseUnavailable         503 database_unavailable    (carries retry_after)
    │   └── StorageError                503 storage_error           (a blob could not be written)
    │       └── StorageFull             507 insufficient_storage    (ENOSPC, EDQUOT, EFBIG)
    └── ConfigurationError              --- invalid_setting         (at start-up: exit code 2)

Each class knows its HTTP status, the OpenAI error ``type`` and a stable ``code``; the API turns
any of them into ``{"error": {"message", "type", "param", "code"}}`` in one place
(``api/errors.py``). Callers catch at the level they care about: the router retries on
``retryable``, the API maps everything.
"""

from __future__ import annotations


class ImagegateError(Exception):
    """Base of the tree. Raised directly only for bugs; the API reports it as a 500."""

    status: int = 500
    type: str = "server_error"
    code: str = "internal_error"
    retryable: bool = False
    """Whether the same call may succeed if made again (the router retries with backoff)."""
    fallback: bool = False
    """Whether the router may try the next target of the route after this error."""

    def __init__(
        self,
        message: str,
        *,
        param: str | None = None,
        code: str | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.param = param
        if code is not None:
            self.code = code
        self.retry_after = retry_after

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.message!r}, code={self.code!r}, param={self.param!r})"


class InvalidRequest(ImagegateError):
    """The request is malformed or outside the model's limits; ``param`` names the field."""

    status = 400
    type = "invalid_request_error"
    code = "invalid_value"


class UnsupportedParameter(InvalidRequest):
    """A parameter this model (or route) cannot honour."""

    code = "unsupported_parameter"


class ContentPolicyViolation(InvalidRequest):
    """The provider's safety system refused the prompt or the result; never retried."""

    code = "content_policy_violation"


class PayloadTooLarge(InvalidRequest):
    status = 413
    code = "payload_too_large"


class UnsafeUrl(InvalidRequest):
    """A URL imagegate was asked to call (a webhook, later a reference image) points where it
    must not go: not http(s), credentials in it, or a loopback, private, link-local or
    cloud-metadata address. ``param`` names the field that carried it. Refused before any
    connection is made, and again for every address a connection would use."""

    code = "unsafe_url"


class IdempotencyKeyReused(InvalidRequest):
    """An ``Idempotency-Key`` already answered a request with a different body."""

    status = 422
    code = "idempotency_key_reused"


class AuthenticationFailed(ImagegateError):
    status = 401
    type = "invalid_request_error"
    code = "invalid_api_key"


class ApiKeyExpired(AuthenticationFailed):
    """The key is genuine but past its ``expires_at``."""

    code = "api_key_expired"


class NotFound(ImagegateError):
    """Unknown or not the caller's: both are 404 so existence is never confirmed."""

    status = 404
    type = "invalid_request_error"
    code = "not_found"


class ModelNotFound(NotFound):
    code = "model_not_found"


class IdempotencyKeyInUse(ImagegateError):
    """The first request with this ``Idempotency-Key`` is still running; retry after a while."""

    status = 409
    type = "invalid_request_error"
    code = "idempotency_key_in_use"
    retryable = True


class RateLimited(ImagegateError):
    status = 429
    type = "requests"
    code = "rate_limit_exceeded"
    retryable = True


class ConcurrencyLimitExceeded(RateLimited):
    """The key runs as many generations as it may and has as many more waiting as it may."""

    code = "concurrency_limit_exceeded"


class QueueFull(RateLimited):
    """The model's line is as long as it may be: refused at once rather than left to hang."""

    code = "queue_full"


class BudgetExceeded(RateLimited):
    """The key's or user's spending limit for the period would be passed."""

    code = "budget_exceeded"


class QuotaExceeded(RateLimited):
    """The key's or user's image quota for the period is used up."""

    code = "quota_exceeded"


class ProviderError(ImagegateError):
    """An upstream provider failed in a way that another attempt may fix."""

    status = 502
    type = "server_error"
    code = "upstream_error"
    retryable = True
    fallback = True


class ProviderTimeout(ProviderError):
    status = 504
    code = "upstream_timeout"


class ProviderRateLimited(ProviderError):
    """The provider said slow down; ``retry_after`` is its hint in seconds, if it gave one."""

    status = 429
    type = "requests"
    code = "upstream_rate_limited"


class ProviderUnavailable(ProviderError):
    status = 503
    code = "upstream_unavailable"


class ProviderRejected(ProviderError):
    """The provider refused the call for a reason a retry cannot fix (our credentials, an unknown
    upstream model): the same target is not retried, but the next target of the route is."""

    code = "upstream_rejected"
    retryable = False
    fallback = True


class ProviderBadRequest(ProviderRejected):
    """The provider found the request itself invalid: reported to the caller, no other target."""

    status = 400
    type = "invalid_request_error"
    code = "upstream_invalid_request"
    fallback = False


class RequestAbandoned(ImagegateError):
    """The caller went away (or canceled) before its request left the line; nobody reads this."""

    status = 499
    type = "invalid_request_error"
    code = "client_closed_request"


class JobSuperseded(RequestAbandoned):
    """The job this work was for was canceled, or its lease passed to another worker: the
    result is discarded (nothing recorded, nothing charged)."""

    code = "job_superseded"


class Unavailable(ImagegateError):
    """A backend imagegate needs (database, storage, the Redis of the limits) cannot be reached
    right now."""

    status = 503
    type = "server_error"
    code = "service_unavailable"
    retryable = True


class DatabaseUnavailable(Unavailable):
    """The database cannot be reached (connection refused, reset or timed out): raised by the
    database layer within its connect timeout instead of hanging, so a request fails fast with
    a 503 and ``Retry-After``, and works again as soon as the database is back."""

    code = "database_unavailable"


class StorageError(Unavailable):
    code = "storage_error"


class StorageFull(StorageError):
    """The disk (or quota, or file-size limit) is full: 507, not worth an immediate retry."""

    status = 507
    code = "insufficient_storage"


class ConfigurationError(ImagegateError):
    """A setting or the model catalogue is invalid; raised at start-up, the CLI exits with 2."""

    code = "invalid_setting"


def error_for_code(code: str | None, message: str) -> ImagegateError:
    """Rebuild an error from its stable code (e.g. one recorded by another process)."""
    pending: list[type[ImagegateError]] = [ImagegateError]
    while pending:
        cls = pending.pop()
        if cls.code == code:
            return cls(message)
        pending.extend(cls.__subclasses__())
    return ProviderError(message, code=code)
