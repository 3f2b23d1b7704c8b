"""A local test CA, so that an endpoint can be exercised with signed requests anywhere.

``flask retention dev-ca`` (:func:`create_dev_ca`) writes a chain shaped like
Apple's (root, intermediate with Apple's WWDR OID, leaf with Apple's
receipt-signing OID, EC P-256), made by the testing kit's
:class:`~flask_retention.testing.AppStoreSigner`, into the app's instance
folder. ``flask retention simulate`` signs requests with it
(:func:`load_dev_ca_signer`), and the endpoint trusts its root
(:func:`dev_ca_root`) only when ``RETENTION_TRUST_DEV_CA`` is true, which the
configuration refuses while Production is accepted.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Final

from cryptography import x509

from flask_retention.core.errors import ConfigurationError, RetentionError

if TYPE_CHECKING:
    from flask import Flask

    from flask_retention.realtime.signer import AppStoreSigner

__all__ = [
    "DEV_CA_FILES",
    "DEV_CA_FOLDER",
    "DevCAExistsError",
    "create_dev_ca",
    "dev_ca_folder",
    "dev_ca_root",
    "load_dev_ca_signer",
]

#: The dev CA's folder inside the app's instance folder.
DEV_CA_FOLDER: Final = "retention-dev-ca"

#: The file of each part of the chain, keyed like ``AppStoreSigner.from_files``.
DEV_CA_FILES: Final = {
    "root": "root.pem",
    "intermediate_cert": "intermediate.pem",
    "intermediate_key": "intermediate-key.pem",
    "leaf_cert": "leaf.pem",
    "leaf_key": "leaf-key.pem",
}

_PRIVATE: Final = frozenset({"intermediate_key", "leaf_key"})


class DevCAExistsError(RetentionError, FileExistsError):
    """:func:`create_dev_ca` found a dev CA and was not told to replace it."""


def dev_ca_folder(app: Flask) -> Path:
    """Where ``app``'s dev CA lives: ``<instance folder>/retention-dev-ca``."""
    return Path(app.instance_path) / DEV_CA_FOLDER


def create_dev_ca(folder: str | os.PathLike[str], *, force: bool = False) -> Path:
    """Write a new dev CA into ``folder`` (created if needed) and return its path.

    Keys are written with mode ``0600``. An existing dev CA is kept (and
    :class:`DevCAExistsError` raised) unless ``force``: replacing it makes
    every endpoint that trusts the old root refuse the new requests.
    """
    from flask_retention.realtime.signer import AppStoreSigner

    path = Path(folder)
    existing = sorted(name for name in DEV_CA_FILES.values() if (path / name).exists())
    if existing and not force:
        raise DevCAExistsError(
            f"A dev CA already exists in {path} ({', '.join(existing)}); keep it, or replace "
            "it with `flask retention dev-ca --force` (endpoints trusting the old one must "
            "restart)."
        )
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    for part, pem in AppStoreSigner().export_pem().items():
        target = path / DEV_CA_FILES[part]
        partial = target.with_name(f".{target.name}.partial")
        mode = 0o600 if part in _PRIVATE else 0o644
        fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
        try:
            os.fchmod(fd, mode)  # an older partial file keeps its mode under O_CREAT
            with os.fdopen(fd, "wb", closefd=False) as f:
                f.write(pem)
        finally:
            os.close(fd)
        partial.replace(target)
    return path


def _missing(path: Path, what: str) -> ConfigurationError:
    return ConfigurationError(
        f"No dev CA {what} in {path}: create one with `flask retention dev-ca` "
        "(in the app whose endpoint you test)."
    )


def load_dev_ca_signer(folder: str | os.PathLike[str]) -> AppStoreSigner:
    """An :class:`~flask_retention.testing.AppStoreSigner` that signs with the dev CA in
    ``folder``; :class:`~flask_retention.ConfigurationError` when there is none."""
    from flask_retention.realtime.signer import AppStoreSigner

    path = Path(folder)
    files = {part: path / name for part, name in DEV_CA_FILES.items()}
    required = ("root", "intermediate_cert", "leaf_cert", "leaf_key")
    missing = [files[part].name for part in required if not files[part].is_file()]
    if missing:
        raise _missing(path, f"({', '.join(missing)} missing)")
    try:
        return AppStoreSigner.from_files(
            root=files["root"],
            intermediate_cert=files["intermediate_cert"],
            leaf_cert=files["leaf_cert"],
            leaf_key=files["leaf_key"],
            intermediate_key=files["intermediate_key"]
            if files["intermediate_key"].is_file()
            else None,
        )
    except ValueError as e:
        reason = " ".join(str(e).split())
        raise ConfigurationError(
            f"The dev CA in {path} is damaged ({reason}); replace it with "
            "`flask retention dev-ca --force`."
        ) from None


def dev_ca_root(folder: str | os.PathLike[str]) -> x509.Certificate:
    """The root certificate of the dev CA in ``folder``, for an endpoint to trust."""
    path = Path(folder) / DEV_CA_FILES["root"]
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise _missing(Path(folder), "root certificate") from None
    except OSError as e:
        raise ConfigurationError(
            f"Cannot read the dev CA root {path} ({e.strerror}); let this process read it, or "
            "replace the dev CA with `flask retention dev-ca --force`."
        ) from None
    try:
        return x509.load_pem_x509_certificate(data)
    except ValueError:
        raise ConfigurationError(
            f"{path} is not a PEM certificate; replace the dev CA with "
            "`flask retention dev-ca --force`."
        ) from None
