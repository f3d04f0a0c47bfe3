"""The one error hierarchy. Services raise these; the app renders them as

    {"error": {"code": "...", "message": "...", "request_id": "..."}}

with the status the class carries. Anything else that escapes is a 500 with
code INTERNAL_ERROR and no detail (the detail goes to the log).
"""

from __future__ import annotations

from typing import Any, ClassVar


class AppError(Exception):
    status: ClassVar[int] = 400
    code: ClassVar[str] = "BAD_REQUEST"

    def __init__(
        self,
        message: str,
        *,
        code: str | None = None,
        status: int | None = None,
        details: Any = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        if code:
            self.code = code  # type: ignore[misc]
        if status:
            self.status = status  # type: ignore[misc]
        self.details = details
        self.headers = headers or {}

    def body(self, request_id: str | None) -> dict[str, Any]:
        err: dict[str, Any] = {"code": self.code, "message": self.message, "request_id": request_id}
        if self.details is not None:
            err["details"] = self.details
        return {"error": err}


class BadRequest(AppError):
    status = 400
    code = "BAD_REQUEST"


class ValidationFailed(AppError):
    status = 422
    code = "VALIDATION_ERROR"


class Unauthorized(AppError):
    status = 401
    code = "UNAUTHORIZED"


class Forbidden(AppError):
    status = 403
    code = "FORBIDDEN"


class NotFound(AppError):
    status = 404
    code = "NOT_FOUND"


class Conflict(AppError):
    status = 409
    code = "CONFLICT"


class RateLimited(AppError):
    status = 429
    code = "RATE_LIMITED"


class Unavailable(AppError):
    status = 503
    code = "SERVICE_UNAVAILABLE"
