"""The App Store Server API's retention messaging endpoints: the client, its types and
errors (DESIGN.md's public place; they live in :mod:`flask_retention.appstore`)."""

from __future__ import annotations

from flask import Flask, current_app

from flask_retention.appstore.client import (
    ERROR_CODES,
    ERROR_NAMES,
    PRODUCTION_URL,
    SANDBOX_URL,
    APIError,
    APINetworkError,
    AuthenticationError,
    BadRequestError,
    BulletPoint,
    ConflictError,
    DefaultConfigurationRequest,
    DefaultConfigurationResponse,
    EndpointLimit,
    ForbiddenError,
    GetImageListResponse,
    GetImageListResponseItem,
    GetMessageListResponse,
    GetMessageListResponseItem,
    HeaderPosition,
    ImageSize,
    ImageState,
    MessageState,
    NotFoundError,
    PerformanceTestConfig,
    PerformanceTestRequest,
    PerformanceTestResponse,
    PerformanceTestResponseTimes,
    PerformanceTestResultResponse,
    PerformanceTestStatus,
    RateBudgetExhausted,
    RateLimitedError,
    RealtimeUrlRequest,
    RealtimeUrlResponse,
    RetentionAPIClient,
    SandboxOnlyError,
    SendAttemptResult,
    ServerError,
    UnexpectedResponseError,
    UploadMessageImage,
    UploadMessageRequestBody,
    client_from_settings,
    reset_rate_limits,
)
from flask_retention.extension import EXTENSION_KEY

__all__ = [
    "ERROR_CODES",
    "ERROR_NAMES",
    "PRODUCTION_URL",
    "SANDBOX_URL",
    "APIError",
    "APINetworkError",
    "AuthenticationError",
    "BadRequestError",
    "BulletPoint",
    "ConflictError",
    "DefaultConfigurationRequest",
    "DefaultConfigurationResponse",
    "EndpointLimit",
    "ForbiddenError",
    "GetImageListResponse",
    "GetImageListResponseItem",
    "GetMessageListResponse",
    "GetMessageListResponseItem",
    "HeaderPosition",
    "ImageSize",
    "ImageState",
    "MessageState",
    "NotFoundError",
    "PerformanceTestConfig",
    "PerformanceTestRequest",
    "PerformanceTestResponse",
    "PerformanceTestResponseTimes",
    "PerformanceTestResultResponse",
    "PerformanceTestStatus",
    "RateBudgetExhausted",
    "RateLimitedError",
    "RealtimeUrlRequest",
    "RealtimeUrlResponse",
    "RetentionAPIClient",
    "SandboxOnlyError",
    "SendAttemptResult",
    "ServerError",
    "UnexpectedResponseError",
    "UploadMessageImage",
    "UploadMessageRequestBody",
    "client_from_app",
    "reset_rate_limits",
]


def client_from_app(app: Flask | None = None, environment: str | None = None) -> RetentionAPIClient:
    """A :class:`RetentionAPIClient` built from the app's ``RETENTION_*`` configuration.

    ``app`` defaults to the current app; ``environment`` to the first of
    ``RETENTION_ENVIRONMENT``. A missing setting raises ``ConfigurationError``
    naming the key and where App Store Connect shows it.
    """
    retention = (app or current_app).extensions[EXTENSION_KEY]
    return client_from_settings(retention._get_state(app).settings, environment)
