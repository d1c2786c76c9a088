"""The error envelope every HTTP answer uses, and the one exception that carries it
(README, "HTTP API": `{"error": {"code", "message", "details"}}`)."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from app.journal import JournalError


def error_body(code: str, message: str, details: list[dict[str, Any]]) -> dict[str, Any]:
    return {"error": {"code": code, "message": message, "details": details}}


class ApiError(Exception):
    """A 4xx or 503 answer: raised by routes and by the raw ingest endpoint alike."""

    def __init__(self, status: int, code: str, message: str, details: list[dict[str, Any]] | None = None,
                 headers: list[tuple[bytes, bytes]] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.details = details or []
        self.headers = headers or []
        if status == 401 and not self.headers:
            self.headers = [(b"www-authenticate", b"Bearer")]

    @property
    def body(self) -> dict[str, Any]:
        return error_body(self.code, self.message, self.details)


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(ApiError)
    async def _api_error(request: Request, exc: ApiError) -> JSONResponse:
        headers = {name.decode(): value.decode() for name, value in exc.headers}
        return JSONResponse(exc.body, status_code=exc.status, headers=headers or None)

    @app.exception_handler(JournalError)
    async def _journal(request: Request, exc: JournalError) -> JSONResponse:
        # a route that needed the journal (taking a gateway's lock, say) while it cannot commit
        return JSONResponse(error_body("journal_unavailable", f"nothing was applied: {exc}; retry later", []),
                            status_code=503, headers={"retry-after": "1"})

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> JSONResponse:
        details = [{"loc": list(error["loc"]), "msg": error["msg"]} for error in exc.errors()]
        return JSONResponse(error_body("validation_failed", "the request is invalid", details), status_code=422)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
        return JSONResponse(error_body(code, str(exc.detail), []), status_code=exc.status_code)
