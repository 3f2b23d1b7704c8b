"""Verify the JWS that the App Store signs (DESIGN.md's public place; the verifier lives
in :mod:`flask_retention.realtime.verification`)."""

from __future__ import annotations

from flask_retention.realtime.verification import (
    INTERMEDIATE_OID,
    LEAF_OID,
    CacheInfo,
    JWSVerifier,
)

__all__ = ["INTERMEDIATE_OID", "LEAF_OID", "CacheInfo", "JWSVerifier"]
