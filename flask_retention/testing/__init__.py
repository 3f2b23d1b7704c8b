"""Testing kit for flask-retention and the apps that use it.

:class:`AppStoreSigner` signs App Store-like requests with a test certificate
chain (and makes each kind of broken token); trust its root with
``RETENTION_ROOT_CERTIFICATES=[signer.root_pem]``.
"""

from __future__ import annotations

from .signer import BROKEN_VARIANT_REASONS, AppStoreSigner

__all__ = ["BROKEN_VARIANT_REASONS", "AppStoreSigner"]
