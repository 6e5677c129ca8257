"""Domain errors and the handlers that turn them into 4xx JSON or pages."""

from __future__ import annotations

from flask import Flask, jsonify, render_template, request
from marshmallow import ValidationError
from werkzeug.exceptions import HTTPException


class DomainError(Exception):
    """A rule of the domain refused the request; `status` and `code` say how."""

    status = 400
    code = "bad_request"

    def __init__(self, message: str, fields: dict | None = None):
        super().__init__(message)
        self.message = message
        self.fields = fields or {}


class NotFound(DomainError):
    status = 404
    code = "not_found"


class Conflict(DomainError):
    status = 409
    code = "conflict"


class InvalidTransition(Conflict):
    code = "invalid_transition"


class Invalid(DomainError):
    status = 422
    code = "validation_error"


class Forbidden(DomainError):
    status = 403
    code = "forbidden"


def wants_json() -> bool:
    return request.path.startswith(("/api/", "/webhooks/")) or (
        request.accept_mimetypes.best == "application/json"
    )


def error_body(status: int, code: str, message: str, fields: dict | None = None, **extra):
    """The one JSON error envelope; `extra` adds keys inside it (conflicting texts, unmet gates)."""
    return jsonify({"error": {"code": code, "message": message, "fields": fields or {}, **extra}}), status


def register_error_handlers(app: Flask) -> None:
    @app.errorhandler(DomainError)
    def _domain(e: DomainError):
        if wants_json():
            return error_body(e.status, e.code, e.message, e.fields)
        return render_template("error.html", status=e.status, message=e.message), e.status

    @app.errorhandler(ValidationError)
    def _validation(e: ValidationError):
        fields = e.messages if isinstance(e.messages, dict) else {"_schema": e.messages}
        if wants_json():
            return error_body(422, "validation_error", "The request has invalid fields.", fields)
        return render_template("error.html", status=422, message=str(fields)), 422

    @app.errorhandler(HTTPException)
    def _http(e: HTTPException):
        code = (e.name or "error").lower().replace(" ", "_")
        if wants_json():
            resp, status = error_body(e.code or 500, code, e.description or e.name)
            for name, value in e.get_headers():
                if name.lower() != "content-type":
                    resp.headers[name] = value
            return resp, status
        return render_template("error.html", status=e.code, message=e.description), e.code
