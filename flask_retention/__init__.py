"""flask-retention: Apple's Retention Messaging API for Flask apps."""

from __future__ import annotations

from flask_retention.core.config import Tuning
from flask_retention.core.errors import ConfigurationError, RetentionError, VerificationError
from flask_retention.extension import Retention
from flask_retention.insights.notifications import NotificationError
from flask_retention.realtime.choices import (
    Message,
    NoChoice,
    PromotionalOffer,
    RealtimeRequest,
    SwitchPlan,
)
from flask_retention.realtime.decisions import Decision, retention_decided

__all__ = [
    "ConfigurationError",
    "Decision",
    "Message",
    "NoChoice",
    "NotificationError",
    "PromotionalOffer",
    "RealtimeRequest",
    "Retention",
    "RetentionError",
    "SwitchPlan",
    "Tuning",
    "VerificationError",
    "retention_decided",
]
