"""Exceptions that users of flask-retention may catch."""

from __future__ import annotations

from typing import Final, Literal, get_args

VerificationReason = Literal[
    "malformed",
    "bad_alg",
    "bad_chain",
    "untrusted_root",
    "missing_oid",
    "expired",
    "bad_signature",
]

VERIFICATION_REASONS: Final[frozenset[str]] = frozenset(get_args(VerificationReason))


class RetentionError(Exception):
    """Base class of every error flask-retention raises on purpose."""


class ConfigurationError(RetentionError, ValueError):
    """A ``RETENTION_*`` setting is missing or wrong; the message says how to fix it."""


class VerificationError(RetentionError):
    """An App Store JWS failed verification.

    ``reason`` is machine-readable, one of :data:`VERIFICATION_REASONS`; the
    real-time endpoint returns it as its ``error`` code.
    """

    def __init__(self, reason: VerificationReason, message: str) -> None:
        if reason not in VERIFICATION_REASONS:
            raise ValueError(f"unknown verification reason {reason!r}")
        super().__init__(message)
        self.reason: VerificationReason = reason
        self.message = message

    def __repr__(self) -> str:
        return f"VerificationError({self.reason!r}, {self.message!r})"


def first_line(error: BaseException) -> str:
    """``error`` as ``Type: first line of its message``, for a one-line log message."""
    text = str(error).strip().splitlines()
    return f"{type(error).__name__}: {text[0] if text else ''}".rstrip(": ")
