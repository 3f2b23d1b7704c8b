"""The message catalogue: images, messages and defaults in the app's database.

:class:`Catalogue` is the Python API behind ``retention.catalogue`` and the
``flask retention`` catalogue commands. Every input is checked by
:mod:`flask_retention.catalogue.validation` before it is stored, and every write is one
transaction: a bad file or a bad call changes nothing.

Apple identifies images and messages by UUIDs we choose, and cannot edit a
message. So a name is a lineage of *versions*: a message whose text (or
image, alt text, bullets, header position) changes becomes a new version with
a new UUID, and the old one is retired but kept, because the request path
keeps serving it while the new version is in review and sync deletes it from
Apple only afterwards. An image whose bytes change likewise becomes a new
version, and so does every message that uses it.

Each translation of a message is its own lineage of versions (its own Apple
message): editing a translation makes a new version of that translation
only, and retiring a message retires its translations. Defaults name a
message for a product and locale, or for every translation it has;
:meth:`Catalogue.expand_defaults` turns them into the exact (product, locale)
slots Apple needs, each with the text the fallback chain picks.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any, Final, Literal
from uuid import UUID, uuid4

import sqlalchemy as sa
from sqlalchemy.orm import Session, selectinload, sessionmaker, undefer

from flask_retention.catalogue.entries import (
    BulletPointEntry,
    CatalogueDocument,
    DefaultEntry,
    ImageEntry,
    ImageSize,
    LanguageSettings,
    MessageEntry,
    TranslationEntry,
    TranslationsDefaultEntry,
)
from flask_retention.catalogue.files import (
    load_catalogue_file,
    read_image_file,
    write_catalogue_file,
)
from flask_retention.catalogue.languages import check_languages, chooser_for, pick_text
from flask_retention.catalogue.locales import Pick
from flask_retention.catalogue.models import (
    APPLE_STATES,
    KINDS,
    AppleDefault,
    AppleState,
    BulletPoint,
    CatalogueVersion,
    Default,
    Image,
    Languages,
    Message,
    RealtimeURL,
    TranslationsDefault,
    utcnow,
)
from flask_retention.catalogue.validation import (
    DEFAULT_MAX_IMAGE_BYTES,
    CatalogueError,
    check_document,
    check_image,
    locale_problem,
    validate_default,
    validate_message,
    validate_translation,
)
from flask_retention.core.apple import ENVIRONMENTS

Kind = Literal["image", "message"]

_VERSION_ROW: Final = 1
_LANGUAGES_ROW: Final = 1


def text_label(name: str, locale: str) -> str:
    """``name`` for a base text, ``name [locale]`` for a translation."""
    return f"{name} [{locale}]" if locale else name


@dataclass(frozen=True, slots=True)
class AppleStatus:
    """What Apple knows of one image or message version in one environment.

    ``state`` is ``None`` when it was never uploaded there.
    """

    environment: str
    state: str | None
    uploaded_at: datetime | None = None
    last_seen_at: datetime | None = None


class _Version:
    """What stored image and message versions share: retirement and Apple's state."""

    __slots__ = ()
    retired_at: datetime | None
    apple: Mapping[str, AppleStatus]

    @property
    def retired(self) -> bool:
        """Whether a newer version replaced it or it was retired."""
        return self.retired_at is not None

    def state(self, environment: str) -> str | None:
        """Apple's state of this version in ``environment`` (``None``: not uploaded)."""
        status = self.apple.get(environment)
        return None if status is None else status.state


@dataclass(frozen=True, slots=True)
class StoredImage(_Version):
    """One stored version of an image (its bytes: :meth:`Catalogue.image_data`)."""

    name: str
    version: int
    uuid: UUID
    size: ImageSize
    width: int
    height: int
    sha256: str
    created_at: datetime
    retired_at: datetime | None
    apple: Mapping[str, AppleStatus] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class StoredBulletPoint:
    """A bullet point of a stored message, with the UUID of its image version."""

    text: str
    image: str
    image_uuid: UUID
    alt_text: str


@dataclass(frozen=True, slots=True)
class StoredMessage(_Version):
    """One stored version of a message's text, with the UUIDs of the image versions it uses.

    ``locale`` is ``''`` for the base text, else the translation's locale:
    each is its own Apple message with its own versions.
    """

    name: str
    version: int
    uuid: UUID
    header: str
    body: str
    image: str | None
    image_uuid: UUID | None
    image_alt_text: str | None
    header_position: str | None
    bullet_points: tuple[StoredBulletPoint, ...]
    created_at: datetime
    retired_at: datetime | None
    apple: Mapping[str, AppleStatus] = field(default_factory=dict)
    locale: str = ""

    @property
    def label(self) -> str:
        """``winback`` for a base text, ``winback [fr-FR]`` for a translation."""
        return text_label(self.name, self.locale)

    def _bullet_entries(self) -> tuple[BulletPointEntry, ...]:
        return tuple(
            BulletPointEntry(text=b.text, image=b.image, alt_text=b.alt_text)
            for b in self.bullet_points
        )

    def translation_entry(self) -> TranslationEntry:
        """This version as a translation entry (for a base text, ``locale`` is ``''``)."""
        return TranslationEntry(
            locale=self.locale,
            header=self.header,
            body=self.body,
            image=self.image,
            image_alt_text=self.image_alt_text,
            header_position=self.header_position,  # type: ignore[arg-type]
            bullet_points=self._bullet_entries(),
        )

    def entry(self) -> MessageEntry:
        """This version as a catalogue entry (names, not UUIDs; the base text's fields
        for a translation too, without translations)."""
        return MessageEntry(
            name=self.name,
            header=self.header,
            body=self.body,
            image=self.image,
            image_alt_text=self.image_alt_text,
            header_position=self.header_position,  # type: ignore[arg-type]
            bullet_points=self._bullet_entries(),
        )


@dataclass(frozen=True, slots=True)
class ImportResult:
    """What an import changed, by name; ``changes == 0`` means nothing was written."""

    images_added: tuple[str, ...] = ()
    images_changed: tuple[str, ...] = ()
    images_retired: tuple[str, ...] = ()
    messages_added: tuple[str, ...] = ()
    messages_changed: tuple[str, ...] = ()
    messages_retired: tuple[str, ...] = ()
    defaults_set: tuple[str, ...] = ()
    defaults_removed: tuple[str, ...] = ()
    warnings: tuple[str, ...] = ()
    translations_added: tuple[str, ...] = ()
    translations_changed: tuple[str, ...] = ()
    translations_retired: tuple[str, ...] = ()
    settings_changed: tuple[str, ...] = ()

    @property
    def changes(self) -> int:
        """How many entries were added, changed, retired or removed."""
        return sum(
            len(names)
            for names in (
                self.images_added,
                self.images_changed,
                self.images_retired,
                self.messages_added,
                self.messages_changed,
                self.messages_retired,
                self.translations_added,
                self.translations_changed,
                self.translations_retired,
                self.defaults_set,
                self.defaults_removed,
                self.settings_changed,
            )
        )

    def summary(self) -> str:
        """One line for people, e.g. ``2 images added, 1 message changed``."""
        parts = []
        for label, names in (
            ("image added", self.images_added),
            ("image changed", self.images_changed),
            ("image retired", self.images_retired),
            ("message added", self.messages_added),
            ("message changed", self.messages_changed),
            ("message retired", self.messages_retired),
            ("translation added", self.translations_added),
            ("translation changed", self.translations_changed),
            ("translation retired", self.translations_retired),
            ("default set", self.defaults_set),
            ("default removed", self.defaults_removed),
            ("setting changed", self.settings_changed),
        ):
            if names:
                noun, verb = label.split(" ")
                parts.append(f"{len(names)} {noun}{'s' if len(names) != 1 else ''} {verb}")
        return ", ".join(parts) if parts else "no changes"


def _check_environment(environment: str) -> None:
    if environment not in ENVIRONMENTS:
        raise ValueError(
            f"environment must be one of {', '.join(ENVIRONMENTS)}, not {environment!r}"
        )


def _check_kind(kind: str) -> None:
    if kind not in KINDS:
        raise ValueError(f"kind must be 'image' or 'message', not {kind!r}")


def _message_key(row: Message) -> tuple[Any, ...]:
    """Everything Apple would see of a message version (images by version)."""
    return (
        row.header,
        row.body,
        row.image_id,
        row.image_alt_text,
        row.header_position,
        tuple((b.text, b.image_id, b.alt_text) for b in row.bullet_points),
    )


def _text_key(text: TranslationEntry, image: Image | None, bullets: list[Image]) -> tuple[Any, ...]:
    return (
        text.header,
        text.body,
        None if image is None else image.id,
        text.image_alt_text,
        text.header_position,
        tuple(
            (b.text, bullet_image.id, b.alt_text)
            for b, bullet_image in zip(text.bullet_points, bullets, strict=True)
        ),
    )


class _Writer:
    """One catalogue write transaction: versioning rules applied to rows of a session.

    ``messages`` holds the current base text of each message by name,
    ``translations`` the current translations by name and locale.
    """

    def __init__(self, session: Session) -> None:
        self.session = session
        self.now = utcnow()
        self.images: dict[str, Image] = {
            row.name: row
            for row in session.scalars(sa.select(Image).where(Image.retired_at.is_(None)))
        }
        self.messages: dict[str, Message] = {}
        self.translations: dict[str, dict[str, Message]] = {}
        for row in session.scalars(
            sa.select(Message)
            .where(Message.retired_at.is_(None))
            .options(selectinload(Message.bullet_points))
        ):
            if row.locale:
                self.translations.setdefault(row.name, {})[row.locale] = row
            else:
                self.messages[row.name] = row
        self.replaced_images: dict[int, Image] = {}
        self.log: dict[str, list[str]] = {}
        self.latest: dict[tuple[str, str, str], int] = {}
        self.defaults: dict[tuple[str, str], Default] | None = None
        for name, version in session.execute(
            sa.select(Image.name, sa.func.max(Image.version)).group_by(Image.name)
        ):
            self.latest[(Image.__tablename__, name, "")] = version
        for name, locale, version in session.execute(
            sa.select(Message.name, Message.locale, sa.func.max(Message.version)).group_by(
                Message.name, Message.locale
            )
        ):
            self.latest[(Message.__tablename__, name, locale)] = version

    def note(self, what: str, name: str) -> None:
        self.log.setdefault(what, []).append(name)

    def known_images(self) -> dict[str, ImageSize]:
        return {name: row.size for name, row in self.images.items()}  # type: ignore[misc]

    def current_rows(self) -> list[Message]:
        """Every current text: base texts and translations."""
        rows = list(self.messages.values())
        for by_locale in self.translations.values():
            rows.extend(by_locale.values())
        return rows

    def text_count(self, skip: Iterable[tuple[str, str]] = ()) -> int:
        """How many Apple messages the current texts make, but those in ``skip``."""
        skipped = set(skip)
        return sum(1 for row in self.current_rows() if (row.name, row.locale) not in skipped)

    def _current(self, name: str, locale: str) -> Message | None:
        if locale:
            return self.translations.get(name, {}).get(locale)
        return self.messages.get(name)

    def _next_version(self, model: type[Image] | type[Message], name: str, locale: str = "") -> int:
        key = (model.__tablename__, name, locale)
        version = self.latest[key] = self.latest.get(key, 0) + 1
        return version

    def put_image(self, entry: ImageEntry) -> Image:
        current = self.images.get(entry.name)
        if current is not None and current.sha256 == entry.sha256 and current.size == entry.size:
            return current
        row = Image(
            name=entry.name,
            version=self._next_version(Image, entry.name),
            uuid=uuid4(),
            size=entry.size,
            data=entry.data,
            sha256=entry.sha256,
            width=entry.width,
            height=entry.height,
            created_at=self.now,
        )
        self.session.add(row)
        if current is None:
            self.note("images_added", entry.name)
        else:
            current.retired_at = self.now
            self.note("images_changed", entry.name)
        self.session.flush()
        if current is not None:
            self.replaced_images[current.id] = row
        self.images[entry.name] = row
        return row

    def _image(self, name: str, where: str) -> Image:
        row = self.images.get(name)
        if row is None:
            raise CatalogueError(f"{where}: no image named {name!r} in the catalogue")
        return row

    def put_message(self, entry: MessageEntry, *, prune_translations: bool = False) -> Message:
        """Store the base text and the translations of ``entry``; with
        ``prune_translations`` retire the translations it does not list."""
        row = self.put_text(entry.name, entry.text())
        for translation in entry.translations:
            self.put_text(entry.name, translation)
        if prune_translations:
            listed = {t.locale for t in entry.translations}
            for locale in sorted(set(self.translations.get(entry.name, {})) - listed):
                self.retire_translation(entry.name, locale)
        return row

    def put_text(self, name: str, text: TranslationEntry) -> Message:
        """Store one text (``text.locale`` ``''``: the base text) as a new version if it changed."""
        where = f"message {text_label(name, text.locale)!r}"
        image = None if text.image is None else self._image(text.image, f"{where}.image")
        bullet_images = [
            self._image(b.image, f"{where}.bullet_points[{i}].image")
            for i, b in enumerate(text.bullet_points)
        ]
        current = self._current(name, text.locale)
        if current is not None and _message_key(current) == _text_key(text, image, bullet_images):
            return current
        row = self._new_message(
            name,
            text.locale,
            text.header,
            text.body,
            image,
            text.image_alt_text,
            text.header_position,
            [
                (b.text, bullet_image, b.alt_text)
                for b, bullet_image in zip(text.bullet_points, bullet_images, strict=True)
            ],
        )
        return self._store_message(row)

    def _new_message(
        self,
        name: str,
        locale: str,
        header: str,
        body: str,
        image: Image | None,
        image_alt_text: str | None,
        header_position: str | None,
        bullets: list[tuple[str, Image, str]],
    ) -> Message:
        """A new (unsaved) version row of a message's text, with a fresh UUID."""
        return Message(
            name=name,
            locale=locale,
            version=0,
            uuid=uuid4(),
            header=header,
            body=body,
            image_id=None if image is None else image.id,
            image=image,
            image_alt_text=image_alt_text,
            header_position=header_position,
            created_at=self.now,
            bullet_points=[
                BulletPoint(
                    position=i,
                    text=text,
                    image_id=bullet_image.id,
                    image=bullet_image,
                    alt_text=alt_text,
                )
                for i, (text, bullet_image, alt_text) in enumerate(bullets)
            ],
        )

    def _store_message(self, row: Message) -> Message:
        current = self._current(row.name, row.locale)
        if current is not None and _message_key(current) == _message_key(row):
            return current
        row.version = self._next_version(Message, row.name, row.locale)
        self.session.add(row)
        kind = "translations" if row.locale else "messages"
        if current is None:
            self.note(f"{kind}_added", text_label(row.name, row.locale))
        else:
            current.retired_at = self.now
            self.note(f"{kind}_changed", text_label(row.name, row.locale))
        if row.locale:
            self.translations.setdefault(row.name, {})[row.locale] = row
        else:
            self.messages[row.name] = row
        return row

    def follow_replaced_images(self, skip: Iterable[str] = ()) -> None:
        """Give every current text that uses a replaced image a new version using its new one."""
        if not self.replaced_images:
            return
        skip = set(skip)
        for current in self.current_rows():
            if current.name in skip:
                continue
            uses = {current.image_id, *(b.image_id for b in current.bullet_points)}
            if not uses & self.replaced_images.keys():
                continue
            image = (
                None
                if current.image_id is None
                else self.replaced_images.get(current.image_id, current.image)
            )
            row = self._new_message(
                current.name,
                current.locale,
                current.header,
                current.body,
                image,
                current.image_alt_text,
                current.header_position,
                [
                    (b.text, self.replaced_images.get(b.image_id, b.image), b.alt_text)
                    for b in current.bullet_points
                ],
            )
            self._store_message(row)

    def retire_message(self, name: str) -> None:
        current = self.messages.pop(name)
        current.retired_at = self.now
        self.note("messages_retired", name)
        for locale in sorted(self.translations.get(name, {})):
            self.retire_translation(name, locale)

    def retire_translation(self, name: str, locale: str) -> None:
        current = self.translations.get(name, {}).pop(locale)
        current.retired_at = self.now
        self.note("translations_retired", text_label(name, locale))

    def retire_image(self, name: str) -> None:
        current = self.images[name]
        users = sorted(
            {
                m.name
                for m in self.current_rows()
                if current.id in {m.image_id, *(b.image_id for b in m.bullet_points)}
            }
        )
        if users:
            raise CatalogueError(
                f"image {name!r} is used by message(s) {', '.join(map(repr, users))}: "
                "change or retire those messages first"
            )
        del self.images[name]
        current.retired_at = self.now
        self.note("images_retired", name)

    def set_default(self, entry: DefaultEntry) -> None:
        if entry.message not in self.messages:
            raise CatalogueError(
                f"default {entry.product_id}/{entry.locale}.message: no message named "
                f"{entry.message!r} in the catalogue"
            )
        if self.defaults is None:
            self.defaults = {
                (d.product_id, d.locale): d for d in self.session.scalars(sa.select(Default))
            }
        row = self.defaults.get((entry.product_id, entry.locale))
        if row is None:
            row = Default(
                product_id=entry.product_id,
                locale=entry.locale,
                message_name=entry.message,
                updated_at=self.now,
            )
            self.session.add(row)
            self.defaults[(entry.product_id, entry.locale)] = row
        elif row.message_name != entry.message:
            row.message_name = entry.message
            row.updated_at = self.now
        else:
            return
        self.note("defaults_set", f"{entry.product_id}/{entry.locale}")

    def set_translations_default(self, entry: TranslationsDefaultEntry) -> None:
        label = f"{entry.product_id}/all"
        if entry.message not in self.messages:
            raise CatalogueError(
                f"default {label}.message: no message named {entry.message!r} in the catalogue"
            )
        row = self.session.scalar(
            sa.select(TranslationsDefault).where(TranslationsDefault.product_id == entry.product_id)
        )
        if row is None:
            self.session.add(
                TranslationsDefault(
                    product_id=entry.product_id, message_name=entry.message, updated_at=self.now
                )
            )
        elif row.message_name != entry.message:
            row.message_name = entry.message
            row.updated_at = self.now
        else:
            return
        self.note("defaults_set", label)

    def remove_defaults_except(
        self, keep: set[tuple[str, str]], keep_translations: Collection[str] = ()
    ) -> None:
        for row in self.session.scalars(sa.select(Default).order_by(Default.id)):
            if (row.product_id, row.locale) not in keep:
                self.session.delete(row)
                self.note("defaults_removed", f"{row.product_id}/{row.locale}")
        for rule in self.session.scalars(
            sa.select(TranslationsDefault).order_by(TranslationsDefault.id)
        ):
            if rule.product_id not in keep_translations:
                self.session.delete(rule)
                self.note("defaults_removed", f"{rule.product_id}/all")
        self.defaults = None

    def defaults_using(self, names: Iterable[str]) -> list[str]:
        names = list(names)
        if not names:
            return []
        rows = self.session.execute(
            sa.select(Default.product_id, Default.locale).where(Default.message_name.in_(names))
        )
        found = [f"{p}/{loc}" for p, loc in rows]
        found.extend(
            f"{p}/all"
            for p in self.session.scalars(
                sa.select(TranslationsDefault.product_id).where(
                    TranslationsDefault.message_name.in_(names)
                )
            )
        )
        return found

    def set_languages(self, settings: LanguageSettings | None) -> None:
        """Store the language settings (``None``: back to the defaults, as never stated)."""
        row = self.session.get(Languages, _LANGUAGES_ROW)
        before = None if row is None else _languages(row)
        if before == settings:
            return
        if settings is None:
            assert row is not None
            self.session.delete(row)
        else:
            chain = {locale: list(stand_ins) for locale, stand_ins in settings.chain.items()}
            if row is None:
                row = Languages(id=_LANGUAGES_ROW, chain=chain)
                self.session.add(row)
            row.base_locale = settings.base_locale
            row.base_fallback = settings.base_fallback
            row.chain = chain
            row.updated_at = self.now
        old = before or LanguageSettings()
        new = settings or LanguageSettings()
        changed = [
            key
            for key in ("base_locale", "base_fallback", "chain")
            if getattr(old, key) != getattr(new, key)
        ]
        for key in changed or ["languages"]:
            self.note("settings_changed", key)

    def base_locale(self) -> str:
        row = self.session.get(Languages, _LANGUAGES_ROW)
        return LanguageSettings().base_locale if row is None else row.base_locale

    def result(self, warnings: Sequence[str] = ()) -> ImportResult:
        return ImportResult(
            **{key: tuple(names) for key, names in self.log.items()},
            warnings=tuple(warnings),
        )


def _languages(row: Languages) -> LanguageSettings:
    return LanguageSettings(
        base_locale=row.base_locale,
        base_fallback=row.base_fallback,
        chain={str(k): tuple(v) for k, v in (row.chain or {}).items()},
    )


def _bump_version(connection: sa.Connection) -> None:
    """Bump the catalogue version; first in a write, it also serialises catalogue writers."""
    table = CatalogueVersion.__table__
    assert isinstance(table, sa.Table)
    updated = connection.execute(
        sa.update(table).where(table.c.id == _VERSION_ROW).values(version=table.c.version + 1)
    )
    if updated.rowcount == 0:
        connection.execute(sa.insert(table).values(id=_VERSION_ROW, version=1))


def read_version(connection: sa.Connection) -> int:
    """The catalogue version counter (``0`` before the first write)."""
    table = CatalogueVersion.__table__
    assert isinstance(table, sa.Table)
    value = connection.scalar(sa.select(table.c.version).where(table.c.id == _VERSION_ROW))
    return int(value or 0)


def _states(
    session: Session, kind: str, uuids: Iterable[UUID]
) -> dict[UUID, dict[str, AppleStatus]]:
    wanted = list(uuids)
    found: dict[UUID, dict[str, AppleStatus]] = {}
    for start in range(0, len(wanted), 500):
        rows = session.scalars(
            sa.select(AppleState).where(
                AppleState.kind == kind, AppleState.uuid.in_(wanted[start : start + 500])
            )
        )
        for row in rows:
            found.setdefault(row.uuid, {})[row.environment] = AppleStatus(
                environment=row.environment,
                state=row.state,
                uploaded_at=row.uploaded_at,
                last_seen_at=row.last_seen_at,
            )
    return found


def _stored_image(row: Image, apple: Mapping[str, AppleStatus] | None = None) -> StoredImage:
    return StoredImage(
        name=row.name,
        version=row.version,
        uuid=row.uuid,
        size=row.size,  # type: ignore[arg-type]
        width=row.width,
        height=row.height,
        sha256=row.sha256,
        created_at=row.created_at,
        retired_at=row.retired_at,
        apple=dict(apple or {}),
    )


def _stored_message(row: Message, apple: Mapping[str, AppleStatus] | None = None) -> StoredMessage:
    return StoredMessage(
        name=row.name,
        version=row.version,
        uuid=row.uuid,
        header=row.header,
        body=row.body,
        image=None if row.image is None else row.image.name,
        image_uuid=None if row.image is None else row.image.uuid,
        image_alt_text=row.image_alt_text,
        header_position=row.header_position,
        bullet_points=tuple(
            StoredBulletPoint(
                text=b.text, image=b.image.name, image_uuid=b.image.uuid, alt_text=b.alt_text
            )
            for b in row.bullet_points
        ),
        created_at=row.created_at,
        retired_at=row.retired_at,
        apple=dict(apple or {}),
        locale=row.locale,
    )


def _bullet_data(item: BulletPointEntry | Mapping[str, Any] | Sequence[str]) -> Any:
    if isinstance(item, BulletPointEntry):
        return {"text": item.text, "image": item.image, "alt_text": item.alt_text}
    if isinstance(item, Mapping):
        return dict(item)
    if isinstance(item, Sequence) and not isinstance(item, str) and len(item) == 3:
        text, image, alt_text = item
        return {"text": text, "image": image, "alt_text": alt_text}
    return item


def _translated_bullet_data(
    item: BulletPointEntry | Mapping[str, Any] | Sequence[str | None],
) -> Any:
    """A translation's bullet point as data; an image of ``None`` (or ``"-"``) shares the
    base text's."""
    data = _bullet_data(item)  # type: ignore[arg-type]
    if isinstance(data, dict) and data.get("image") in (None, "-"):
        data.pop("image", None)
    return data


@dataclass(frozen=True, slots=True)
class DefaultSlot:
    """One exact (product, locale) default Apple needs, expanded from the catalogue's
    defaults (see :func:`expand_defaults`).

    ``message`` is the message's name; ``every_translation`` whether a
    ``locales = "all"`` default made the slot (else an exact one). ``pick`` is
    the chain's pick among the message's usable texts (``pick.locale`` the
    text's locale, the base locale for the base text) and ``target`` the
    version to configure: the newest usable version of that text, ``None``
    when no text is usable. ``best`` is the current version of the text the
    chain would pick were every text usable, ``None`` when the chain cannot
    serve the locale at all (no translation of its language, no base
    fallback): then Apple gets no default there.
    """

    product_id: str
    locale: str
    message: str
    pick: Pick
    target: StoredMessage | None
    best: StoredMessage | None
    every_translation: bool = False

    @property
    def slot(self) -> tuple[str, str]:
        """``(product_id, locale)``."""
        return (self.product_id, self.locale)

    @property
    def served(self) -> bool:
        """Whether the chain can serve the locale (once its text is usable)."""
        return self.best is not None


def expand_defaults(
    defaults: Iterable[DefaultEntry],
    translation_defaults: Iterable[TranslationsDefaultEntry],
    messages: Iterable[StoredMessage],
    usable: Callable[[StoredMessage], bool],
    languages: LanguageSettings,
) -> list[DefaultSlot]:
    """The exact (product, locale) slots ``defaults`` and ``translation_defaults`` make,
    sorted, each with the text the fallback chain picks for its locale.

    An exact default makes its slot; an every-translation default makes one
    slot per text its message has (each translation's locale and the base
    locale), but where the product has an exact default. Each slot's text is
    :func:`~flask_retention.catalogue.languages.pick_text` among the message's
    current texts, a text being usable when one of its versions is
    (``usable``; the newest such is the target, so an edited text keeps its
    approved predecessor while in review). Pure: sync, ``coverage`` and the
    request path share it.
    """
    chooser = chooser_for(languages)
    base = languages.base_locale
    texts: dict[str, dict[str, list[StoredMessage]]] = {}
    for message in messages:
        texts.setdefault(message.name, {}).setdefault(message.locale or base, []).append(message)
    for by_locale in texts.values():
        for versions in by_locale.values():
            versions.sort(key=lambda m: m.version, reverse=True)
        for key in [k for k, versions in by_locale.items() if versions[0].retired]:
            del by_locale[key]
    wanted: dict[tuple[str, str], tuple[str, bool]] = {
        (d.product_id, d.locale): (d.message, False) for d in defaults
    }
    for rule in translation_defaults:
        for locale in texts.get(rule.message, {}):
            wanted.setdefault((rule.product_id, locale), (rule.message, True))
    slots: list[DefaultSlot] = []
    for (product_id, locale), (name, every) in sorted(wanted.items()):
        by_locale = texts.get(name, {})
        translated = any(key != base for key in by_locale)
        targets = {
            key: next((v for v in versions if usable(v)), None)
            for key, versions in by_locale.items()
        }
        pick = pick_text(
            chooser, locale, {k: v is not None for k, v in targets.items()}, translated=translated
        )
        ideal = pick_text(chooser, locale, dict.fromkeys(by_locale, True), translated=translated)
        slots.append(
            DefaultSlot(
                product_id=product_id,
                locale=locale,
                message=name,
                pick=pick,
                target=None if pick.locale is None else targets.get(pick.locale),
                best=None if ideal.locale is None else by_locale[ideal.locale][0],
                every_translation=every,
            )
        )
    return slots


class Catalogue:
    """The catalogue stored through ``engine``: add, list, retire, import, export.

    ``retention.catalogue`` gives the current app's; ``Catalogue(engine)``
    works on any engine whose database has the tables (``flask retention
    init-db``).
    """

    def __init__(self, engine: sa.Engine) -> None:
        self.engine = engine
        self._sessions = sessionmaker(engine, expire_on_commit=False)

    def __repr__(self) -> str:
        return f"<Catalogue {self.engine.url.render_as_string(hide_password=True)}>"

    # -- transactions ------------------------------------------------------

    @contextmanager
    def _write(self) -> Iterator[_Writer]:
        """One write transaction, committed (version bumped) only if it changed something."""
        with self._sessions() as session:
            session.begin()
            try:
                _bump_version(session.connection())
                writer = _Writer(session)
                yield writer
            except BaseException:
                session.rollback()
                raise
            if writer.log:
                session.commit()
            else:
                session.rollback()

    @contextmanager
    def _read(self) -> Iterator[Session]:
        with self._sessions() as session, session.begin():
            yield session

    @property
    def version(self) -> int:
        """The catalogue version counter: it moves whenever the catalogue or Apple's state does."""
        with self.engine.connect() as connection:
            return read_version(connection)

    # -- images ------------------------------------------------------------

    def add_image(
        self,
        name: str,
        data: bytes | str | os.PathLike[str],
        size: ImageSize | None = None,
        *,
        max_image_bytes: int = DEFAULT_MAX_IMAGE_BYTES,
    ) -> StoredImage:
        """Add image ``name`` from PNG bytes or a file path; ``size`` is inferred when omitted.

        Adding a name again with other bytes makes a new version (new UUID),
        and a new version of every message that uses it; the same bytes change
        nothing. A path must be a regular file of at most ``max_image_bytes``
        (see :func:`~flask_retention.catalogue.files.read_image_file`).
        """
        source = None
        if not isinstance(data, bytes | bytearray):
            source = os.fspath(data)
            try:
                data = read_image_file(source, max_bytes=max_image_bytes)
            except CatalogueError as e:
                raise CatalogueError(f"image {name!r}: {e}") from None
        entry = check_image(bytes(data), size, name=name, source=source)
        with self._write() as w:
            check_document(
                CatalogueDocument(images=(entry,)),
                known_images={k: v for k, v in w.known_images().items() if k != name},
                known_messages=list(w.messages),
            )
            row = w.put_image(entry)
            w.follow_replaced_images()
            return _stored_image(row)

    def get_image(self, name: str) -> StoredImage | None:
        """The current version of image ``name``, or ``None``."""
        with self._read() as s:
            row = s.scalar(sa.select(Image).where(Image.name == name, Image.retired_at.is_(None)))
            if row is None:
                return None
            return _stored_image(row, _states(s, "image", [row.uuid]).get(row.uuid))

    def image_data(self, image: str | UUID) -> bytes | None:
        """The PNG bytes of a version (by UUID) or of a name's current version."""
        with self._read() as s:
            where = (
                Image.uuid == image
                if isinstance(image, UUID)
                else sa.and_(Image.name == image, Image.retired_at.is_(None))
            )
            return s.scalar(sa.select(Image.data).where(where))

    def list_images(self) -> list[StoredImage]:
        """The current version of every image, by name."""
        return [i for i in self.image_versions() if not i.retired]

    def retire_image(self, name: str) -> None:
        """Retire image ``name`` (sync deletes it from Apple); refused while a message uses it."""
        with self._write() as w:
            if name not in w.images:
                raise CatalogueError(f"image {name!r}: no such image in the catalogue")
            w.retire_image(name)

    def image_versions(self, *, include_retired: bool = True) -> list[StoredImage]:
        """Every stored version of every image with Apple's state per environment."""
        with self._read() as s:
            query = sa.select(Image).order_by(Image.name, Image.version)
            if not include_retired:
                query = query.where(Image.retired_at.is_(None))
            rows = list(s.scalars(query))
            states = _states(s, "image", [r.uuid for r in rows])
            return [_stored_image(r, states.get(r.uuid)) for r in rows]

    # -- messages ----------------------------------------------------------

    def add_message(
        self,
        name: str,
        header: str,
        body: str,
        *,
        image: str | None = None,
        image_alt_text: str | None = None,
        header_position: str | None = None,
        bullet_points: Iterable[BulletPointEntry | Mapping[str, Any] | Sequence[str]] = (),
    ) -> StoredMessage:
        """Add message ``name``; images and bullet images are names of catalogue images.

        Adding a name again with other content makes a new version (new UUID)
        and retires the old one; the same content changes nothing. This is the
        message's base text: its translations are kept (see
        :meth:`add_translation`).
        """
        data: dict[str, Any] = {"name": name, "header": header, "body": body}
        if image is not None:
            data["image"] = image
        if image_alt_text is not None:
            data["image_alt_text"] = image_alt_text
        if header_position is not None:
            data["header_position"] = header_position
        bullets = [_bullet_data(b) for b in bullet_points]
        if bullets:
            data["bullet_points"] = bullets
        entry = validate_message(data, where=f"message {name!r}")
        with self._write() as w:
            check_document(
                CatalogueDocument(messages=(entry,)),
                known_images=w.known_images(),
                known_messages=[k for k in w.messages if k != name],
                known_texts=w.text_count(skip=[(name, "")]),
                base_locale=w.base_locale(),
            )
            return _stored_message(w.put_message(entry))

    def add_translation(
        self,
        name: str,
        locale: str,
        header: str,
        body: str,
        *,
        image: str | None = None,
        image_alt_text: str | None = None,
        header_position: str | None = None,
        bullet_points: Iterable[BulletPointEntry | Mapping[str, Any] | Sequence[str | None]] = (),
    ) -> StoredMessage:
        """Add or update the translation ``locale`` of message ``name`` (its own Apple message).

        Texts are checked as the base text's are. ``image`` and
        ``header_position`` are the base text's unless given, and so is each
        bullet point's image (give ``image=None`` in a bullet point, or a
        ``(text, None, alt_text)`` triple, to share it); alt text is required
        with the image. A changed translation makes a new version of that
        translation only.
        """
        where = f"message {text_label(name, locale)!r}"
        with self._write() as w:
            base_row = w.messages.get(name)
            if base_row is None:
                raise CatalogueError(
                    f"{where}: no message named {name!r} in the catalogue; add its base text first"
                )
            base = _stored_message(base_row).entry()
            data: dict[str, Any] = {"header": header, "body": body}
            for key, value in (
                ("image", image),
                ("image_alt_text", image_alt_text),
                ("header_position", header_position),
            ):
                if value is not None:
                    data[key] = value
            bullets = [_translated_bullet_data(b) for b in bullet_points]
            if bullets or not base.bullet_points:
                data["bullet_points"] = bullets
            problem = locale_problem(locale)
            if problem is not None:
                raise CatalogueError(f"{where}.locale: {problem}")
            translation = validate_translation(data, locale, base, where=where)
            entry = replace(base, translations=(translation,))
            check_document(
                CatalogueDocument(messages=(entry,)),
                known_images=w.known_images(),
                known_messages=[k for k in w.messages if k != name],
                known_texts=w.text_count(skip=[(name, ""), (name, locale)]),
                base_locale=w.base_locale(),
            )
            return _stored_message(w.put_text(name, translation))

    def get_message(self, name: str, locale: str = "") -> StoredMessage | None:
        """The current version of message ``name`` (its translation ``locale``), or ``None``."""
        with self._read() as s:
            row = s.scalar(
                sa.select(Message).where(
                    Message.name == name, Message.locale == locale, Message.retired_at.is_(None)
                )
            )
            if row is None:
                return None
            return _stored_message(row, _states(s, "message", [row.uuid]).get(row.uuid))

    def list_messages(self) -> list[StoredMessage]:
        """The current version of every message's texts, by name, the base text first
        and then its translations by locale."""
        return [m for m in self.message_versions() if not m.retired]

    def retire_translation(self, name: str, locale: str) -> None:
        """Retire the translation ``locale`` of message ``name`` (sync deletes it from Apple)."""
        with self._write() as w:
            if locale not in w.translations.get(name, {}):
                raise CatalogueError(
                    f"message {text_label(name, locale)!r}: no such translation in the catalogue"
                )
            w.retire_translation(name, locale)

    def retire_message(self, name: str) -> None:
        """Retire message ``name`` and its translations (sync deletes them from Apple);
        refused while a default uses it."""
        with self._write() as w:
            if name not in w.messages:
                raise CatalogueError(f"message {name!r}: no such message in the catalogue")
            defaults = w.defaults_using([name])
            if defaults:
                raise CatalogueError(
                    f"message {name!r} is the default for {', '.join(defaults)}: "
                    "set another default or remove those first"
                )
            w.retire_message(name)

    def message_versions(self, *, include_retired: bool = True) -> list[StoredMessage]:
        """Every stored version of every message's texts (base texts and translations,
        each one Apple message) with Apple's state per environment."""
        with self._read() as s:
            query = (
                sa.select(Message)
                .options(selectinload(Message.bullet_points))
                .order_by(Message.name, Message.locale, Message.version)
            )
            if not include_retired:
                query = query.where(Message.retired_at.is_(None))
            rows = list(s.scalars(query))
            states = _states(s, "message", [r.uuid for r in rows])
            return [_stored_message(r, states.get(r.uuid)) for r in rows]

    # -- defaults ----------------------------------------------------------

    def set_default(self, product_id: str, locale: str, message: str) -> tuple[str, ...]:
        """Make ``message`` (a name) the default for a product and locale; returns warnings.

        The request path serves, per environment, the newest version of that
        message approved there; sync configures Apple's default likewise. For
        a message with translations, the slot gets the translation the
        fallback chain picks for ``locale`` (:meth:`expand_defaults`).
        """
        return self.set_defaults(product_id, [locale], message)

    def set_defaults(
        self, product_id: str, locales: Iterable[str], message: str
    ) -> tuple[str, ...]:
        """:meth:`set_default` for several locales in one transaction; returns warnings."""
        entries: list[DefaultEntry] = []
        errors: list[str] = []
        for locale in locales:
            try:
                entries.append(
                    validate_default(
                        {"product_id": product_id, "locale": locale, "message": message},
                        where=f"default {product_id}/{locale}",
                    )
                )
            except CatalogueError as exc:
                errors.extend(exc.errors)
        if errors:
            raise CatalogueError(errors)
        with self._write() as w:
            doc = check_document(
                CatalogueDocument(defaults=tuple(entries)),
                known_images=w.known_images(),
                known_messages=list(w.messages),
            )
            for entry in entries:
                w.set_default(entry)
            return doc.warnings

    def set_translations_default(self, product_id: str, message: str) -> tuple[str, ...]:
        """Make ``message`` the default for ``product_id`` in every locale it has a text in
        (each translation's and the base text's); returns warnings.

        Stored as that rule: a translation added later is covered too. An exact
        default of the product (:meth:`set_default`) wins for its locale;
        :meth:`expand_defaults` gives the slots.
        """
        entry = TranslationsDefaultEntry(product_id=product_id, message=message)
        with self._write() as w:
            doc = check_document(
                CatalogueDocument(translation_defaults=(entry,)),
                known_images=w.known_images(),
                known_messages=list(w.messages),
            )
            w.set_translations_default(entry)
            return doc.warnings

    def remove_translations_default(self, product_id: str) -> bool:
        """Remove the every-translation default of a product; ``False`` when there was none."""
        with self._write() as w:
            deleted = w.session.execute(
                sa.delete(TranslationsDefault).where(TranslationsDefault.product_id == product_id)
            )
            if deleted.rowcount:  # type: ignore[attr-defined]
                w.note("defaults_removed", f"{product_id}/all")
                return True
            return False

    def list_translation_defaults(self) -> list[TranslationsDefaultEntry]:
        """Every every-translation default, by product."""
        with self._read() as s:
            rows = s.scalars(
                sa.select(TranslationsDefault).order_by(TranslationsDefault.product_id)
            )
            return [
                TranslationsDefaultEntry(product_id=r.product_id, message=r.message_name)
                for r in rows
            ]

    def expand_defaults(
        self,
        usable: Callable[[StoredMessage], bool],
        *,
        messages: Sequence[StoredMessage] | None = None,
    ) -> list[DefaultSlot]:
        """The exact (product, locale) slots the catalogue's defaults make, each with the
        text the fallback chain picks: see :func:`expand_defaults`.

        ``usable`` says whether a version may be configured (sync: approved at
        Apple with its images, in the environment planned); ``messages`` are
        :meth:`message_versions` when already read.
        """
        return expand_defaults(
            self.list_defaults(),
            self.list_translation_defaults(),
            self.message_versions() if messages is None else messages,
            usable,
            self.language_settings(),
        )

    # -- languages -----------------------------------------------------------

    def get_languages(self) -> LanguageSettings | None:
        """The language settings as stated (by a file or :meth:`set_languages`), or ``None``."""
        with self._read() as s:
            row = s.get(Languages, _LANGUAGES_ROW)
            return None if row is None else _languages(row)

    def language_settings(self) -> LanguageSettings:
        """The language settings in force: as stated, else the defaults (``en-US``, no base
        fallback, the shipped chain)."""
        return self.get_languages() or LanguageSettings()

    def set_languages(self, settings: LanguageSettings | None) -> tuple[str, ...]:
        """State the language settings (``None``: back to the defaults); returns warnings.

        Refused when a translation is keyed by the new base locale.
        """
        warnings: list[str] = []
        if settings is not None:
            errors, warnings = check_languages(settings)
            if errors:
                raise CatalogueError(errors)
        with self._write() as w:
            base = (settings or LanguageSettings()).base_locale
            clashing = sorted(name for name, by in w.translations.items() if base in by)
            if clashing:
                raise CatalogueError(
                    f"languages.base_locale: {', '.join(map(repr, clashing))} have a {base} "
                    "translation; a base text's locale cannot also be a translation's"
                )
            w.set_languages(settings)
        return tuple(warnings)

    def remove_default(self, product_id: str, locale: str) -> bool:
        """Remove the default for a product and locale; ``False`` when there was none."""
        with self._write() as w:
            deleted = w.session.execute(
                sa.delete(Default).where(Default.product_id == product_id, Default.locale == locale)
            )
            if deleted.rowcount:  # type: ignore[attr-defined]
                w.note("defaults_removed", f"{product_id}/{locale}")
                return True
            return False

    def list_defaults(self) -> list[DefaultEntry]:
        """Every default, by product and locale."""
        with self._read() as s:
            rows = s.scalars(sa.select(Default).order_by(Default.product_id, Default.locale))
            return [
                DefaultEntry(product_id=r.product_id, locale=r.locale, message=r.message_name)
                for r in rows
            ]

    # -- import and export ---------------------------------------------------

    def import_document(self, doc: CatalogueDocument, *, prune: bool = False) -> ImportResult:
        """Bring the catalogue in line with ``doc`` in one transaction.

        Entries that ``doc`` does not list are kept (a message's translations
        too), unless ``prune``: then they are retired (defaults removed, the
        language settings back to the defaults when ``doc`` states none).
        Importing the same document again changes nothing and leaves the
        version counter alone.
        """
        language_warnings: list[str] = []
        if doc.languages is not None:
            language_errors, language_warnings = check_languages(doc.languages)
            if language_errors:
                raise CatalogueError(language_errors)
        with self._write() as w:
            base_locale = (
                doc.languages.base_locale if doc.languages is not None else w.base_locale()
            )
            if prune:
                doc = check_document(doc, base_locale=base_locale)
            else:
                listed_texts = [
                    (m.name, t.locale) for m in doc.messages for t in (m.text(), *m.translations)
                ]
                doc = check_document(
                    doc,
                    known_images={
                        k: v
                        for k, v in w.known_images().items()
                        if k not in {i.name for i in doc.images}
                    },
                    known_messages=[
                        k for k in w.messages if k not in {m.name for m in doc.messages}
                    ],
                    known_texts=w.text_count(skip=listed_texts),
                    base_locale=base_locale,
                )
                clashing = sorted(
                    name
                    for name, by in w.translations.items()
                    if base_locale in by and name not in {m.name for m in doc.messages}
                )
                if clashing:
                    raise CatalogueError(
                        f"languages.base_locale: {', '.join(map(repr, clashing))} have a "
                        f"{base_locale} translation; a base text's locale cannot also be a "
                        "translation's"
                    )
            if doc.languages is not None or prune:
                w.set_languages(doc.languages)
            for image in doc.images:
                w.put_image(image)
            listed = {m.name for m in doc.messages}
            if prune:
                for name in sorted(set(w.messages) - listed):
                    w.retire_message(name)
            for message in doc.messages:
                w.put_message(message, prune_translations=prune)
            w.follow_replaced_images(skip=listed)
            if prune:
                for name in sorted(set(w.images) - {i.name for i in doc.images}):
                    w.retire_image(name)
                w.remove_defaults_except(
                    {(d.product_id, d.locale) for d in doc.defaults},
                    {r.product_id for r in doc.translation_defaults},
                )
            for default in doc.defaults:
                w.set_default(default)
            for rule in doc.translation_defaults:
                w.set_translations_default(rule)
            warnings = tuple(dict.fromkeys((*language_warnings, *doc.warnings)))
            return w.result(warnings)

    def import_file(
        self,
        path: str | os.PathLike[str],
        *,
        prune: bool = False,
        max_image_bytes: int = DEFAULT_MAX_IMAGE_BYTES,
    ) -> ImportResult:
        """Load a catalogue file (TOML or JSON) and import it; see :meth:`import_document`.

        Images larger than ``max_image_bytes`` are refused (see
        :func:`~flask_retention.catalogue.files.load_catalogue_file`); the
        result's warnings include the file's (an image outside its folder).
        """
        document = load_catalogue_file(path, max_image_bytes=max_image_bytes)
        result = self.import_document(document, prune=prune)
        warnings = tuple(dict.fromkeys((*document.warnings, *result.warnings)))
        return replace(result, warnings=warnings)

    def export_document(self) -> CatalogueDocument:
        """The current catalogue (current versions only, translations included) as a
        document; the language settings when they were stated."""
        with self._read() as s:
            images = list(
                s.scalars(
                    sa.select(Image)
                    .where(Image.retired_at.is_(None))
                    .options(undefer(Image.data))
                    .order_by(Image.name)
                )
            )
            rows = list(
                s.scalars(
                    sa.select(Message)
                    .where(Message.retired_at.is_(None))
                    .options(selectinload(Message.bullet_points))
                    .order_by(Message.name, Message.locale)
                )
            )
            translations: dict[str, list[TranslationEntry]] = {}
            for row in rows:
                if row.locale:
                    translations.setdefault(row.name, []).append(
                        _stored_message(row).translation_entry()
                    )
            messages = [
                replace(
                    _stored_message(row).entry(),
                    translations=tuple(translations.get(row.name, ())),
                )
                for row in rows
                if not row.locale
            ]
            languages_row = s.get(Languages, _LANGUAGES_ROW)
            return CatalogueDocument(
                images=tuple(
                    ImageEntry(
                        name=r.name,
                        size=r.size,  # type: ignore[arg-type]
                        data=r.data,
                        width=r.width,
                        height=r.height,
                        sha256=r.sha256,
                    )
                    for r in images
                ),
                messages=tuple(messages),
                defaults=tuple(self.list_defaults()),
                translation_defaults=tuple(self.list_translation_defaults()),
                languages=None if languages_row is None else _languages(languages_row),
            )

    def export_file(self, path: str | os.PathLike[str]) -> None:
        """Write the current catalogue as a catalogue file (TOML or JSON by extension)."""
        write_catalogue_file(self.export_document(), path)

    # -- Apple's state (for sync) -----------------------------------------------

    def record_apple_state(
        self,
        kind: Kind,
        uuid_: UUID,
        environment: str,
        state: str | None,
        *,
        uploaded_at: datetime | None = None,
        seen_at: datetime | None = None,
    ) -> bool:
        """Record Apple's state of one version in one environment; ``True`` if it changed.

        ``state=None`` records "not uploaded". ``uploaded_at`` and ``seen_at``
        are kept when given. The version counter moves only when the state
        changes, so the request path reloads only then.
        """
        return (
            self.record_apple_states(
                kind, environment, {uuid_: state}, uploaded_at=uploaded_at, seen_at=seen_at
            )
            > 0
        )

    def record_apple_states(
        self,
        kind: Kind,
        environment: str,
        states: Mapping[UUID, str | None],
        *,
        uploaded_at: datetime | None = None,
        seen_at: datetime | None = None,
    ) -> int:
        """Record many states of one kind in one environment at once; the count of changes."""
        _check_kind(kind)
        _check_environment(environment)
        for state in states.values():
            if state is not None and state not in APPLE_STATES:
                raise ValueError(
                    f"state must be one of {', '.join(APPLE_STATES)} or None, not {state!r}"
                )
        with self._sessions() as session, session.begin():
            existing = {
                row.uuid: row
                for start in range(0, len(states), 500)
                for row in session.scalars(
                    sa.select(AppleState).where(
                        AppleState.kind == kind,
                        AppleState.environment == environment,
                        AppleState.uuid.in_(list(states)[start : start + 500]),
                    )
                )
            }
            changed = 0
            for key, state in states.items():
                row = existing.get(key)
                if row is None:
                    row = AppleState(kind=kind, uuid=key, environment=environment, state=None)
                    session.add(row)
                if row.state != state:
                    changed += 1
                    row.state = state
                if uploaded_at is not None:
                    row.uploaded_at = uploaded_at
                if seen_at is not None:
                    row.last_seen_at = seen_at
            if changed:
                _bump_version(session.connection())
            return changed

    def forget_apple_state(self, kind: Kind, uuid_: UUID, environment: str) -> bool:
        """Drop what we know of a version in an environment (after sync deleted it there)."""
        _check_kind(kind)
        _check_environment(environment)
        with self._sessions() as session, session.begin():
            deleted = session.execute(
                sa.delete(AppleState).where(
                    AppleState.kind == kind,
                    AppleState.uuid == uuid_,
                    AppleState.environment == environment,
                )
            )
            if deleted.rowcount:  # type: ignore[attr-defined]
                _bump_version(session.connection())
                return True
            return False

    def apple_defaults(self, environment: str) -> dict[tuple[str, str], UUID]:
        """The message UUID Apple holds as default per (product, locale), as sync last set it."""
        _check_environment(environment)
        with self._read() as s:
            rows = s.scalars(sa.select(AppleDefault).where(AppleDefault.environment == environment))
            return {(r.product_id, r.locale): r.message_uuid for r in rows}

    def record_apple_default(
        self, product_id: str, locale: str, environment: str, message_uuid: UUID | None
    ) -> None:
        """Record the default Apple holds for a product and locale (``None``: none)."""
        _check_environment(environment)
        with self._sessions() as session, session.begin():
            row = session.scalar(
                sa.select(AppleDefault).where(
                    AppleDefault.product_id == product_id,
                    AppleDefault.locale == locale,
                    AppleDefault.environment == environment,
                )
            )
            if message_uuid is None:
                if row is not None:
                    session.delete(row)
                return
            if row is None:
                session.add(
                    AppleDefault(
                        product_id=product_id,
                        locale=locale,
                        environment=environment,
                        message_uuid=message_uuid,
                    )
                )
            else:
                row.message_uuid = message_uuid
                row.configured_at = utcnow()

    def realtime_url(self, environment: str) -> str | None:
        """The real-time URL last configured at Apple for ``environment``, as recorded."""
        _check_environment(environment)
        with self._read() as s:
            return s.scalar(
                sa.select(RealtimeURL.url).where(RealtimeURL.environment == environment)
            )

    def record_realtime_url(self, environment: str, url: str | None) -> None:
        """Record the real-time URL configured at Apple (``None``: deleted)."""
        _check_environment(environment)
        with self._sessions() as session, session.begin():
            row = session.get(RealtimeURL, environment)
            if url is None:
                if row is not None:
                    session.delete(row)
            elif row is None:
                session.add(RealtimeURL(environment=environment, url=url))
            else:
                row.url = url
                row.configured_at = utcnow()
