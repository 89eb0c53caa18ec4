"""The fake Guacamole's errors: each `GuacamoleException` the product throws, as `rest/RESTExceptionMapper.java`
answers it (an `APIError` body, `rest/APIError.java`), and the translators' attribute filter."""

from __future__ import annotations

from typing import Any


class ApiError(Exception):
    """A `GuacamoleException` on its way out: the HTTP status and `APIError` type it maps to."""

    def __init__(self, status: int, kind: str, message: str, expected: list[dict[str, str]] | None = None):
        super().__init__(message)
        self.status = status
        self.kind = kind
        self.message = message
        self.expected = expected

    def body(self) -> dict[str, Any]:
        """`APIError` as Jackson writes it (1.5 has no `patches`; an untranslated message is wrapped)."""
        return {
            "message": self.message,
            "translatableMessage": {"key": "APP.TEXT_UNTRANSLATED", "variables": {"MESSAGE": self.message}},
            "statusCode": None,
            "expected": self.expected,
            "type": self.kind,
        }


def not_found(message: str) -> ApiError:
    return ApiError(404, "NOT_FOUND", message)


def bad_request(message: str) -> ApiError:
    return ApiError(400, "BAD_REQUEST", message)


def permission_denied() -> ApiError:
    """`GuacamoleSecurityException("Permission denied.")`, the JDBC extension's refusal."""
    return ApiError(403, "PERMISSION_DENIED", "Permission denied.")


def internal_error() -> ApiError:
    """What the mapper answers for an unchecked exception (a NullPointerException, an SQL error)."""
    return ApiError(500, "INTERNAL_ERROR", "Unexpected internal error")


def unauthorized() -> ApiError:
    """`GuacamoleUnauthorizedException("Permission Denied.")`: no session for the token."""
    return ApiError(403, "PERMISSION_DENIED", "Permission Denied.")


def invalid_credentials() -> ApiError:
    """`GuacamoleInvalidCredentialsException` with `CredentialsInfo.USERNAME_PASSWORD`."""
    fields = [{"name": "username", "type": "USERNAME"}, {"name": "password", "type": "PASSWORD"}]
    return ApiError(403, "INVALID_CREDENTIALS", "Permission Denied.", expected=fields)


def filtered(attributes: dict[str, Any], schema: tuple[str, ...]) -> dict[str, str | None]:
    """`DirectoryObjectTranslator.filterAttributes`: only the schema's attributes survive."""
    return {
        key: (None if value is None else str(value)) for key, value in attributes.items() if key in schema
    }
