"""flask-retention: Apple's Retention Messaging API for Flask apps."""

from __future__ import annotations

from .choices import Message, NoChoice, PromotionalOffer, RealtimeRequest, SwitchPlan
from .decisions import Decision, retention_decided
from .errors import ConfigurationError, RetentionError, VerificationError
from .extension import Retention
from .notifications import NotificationError

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
    "VerificationError",
    "retention_decided",
]
