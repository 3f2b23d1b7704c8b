"""Catalogue benchmarks: name resolution through the snapshot, and importing a big file.

    python benchmarks/catalogue.py [--messages 2000] [--postgresql URL]

Prints the median time to resolve a message name (and a default) through the
request path's snapshot for a catalogue of ``--messages`` messages (target:
under 5 microseconds), the time of a full snapshot reload, and the time to
import a catalogue file of that size (first import, then the same file again,
which changes nothing) on SQLite and, when a PostgreSQL URL is given (or
``RETENTION_TEST_DATABASE_URL`` is set), on PostgreSQL in a scratch schema
that is dropped afterwards.
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

import sqlalchemy as sa

from flask_retention.catalogue.entries import (
    BulletPointEntry,
    CatalogueDocument,
    DefaultEntry,
    MessageEntry,
)
from flask_retention.catalogue.files import write_catalogue_file
from flask_retention.catalogue.png import encode_png
from flask_retention.catalogue.schema import upgrade
from flask_retention.catalogue.snapshot import CatalogueSnapshot, load_view
from flask_retention.catalogue.store import Catalogue
from flask_retention.catalogue.validation import check_image
from flask_retention.core.database import create_engine

ENVIRONMENT = "Sandbox"


def document(messages: int) -> CatalogueDocument:
    """A catalogue of ``messages`` messages: a third with an image, a third with bullets."""
    heroes = [
        check_image(encode_png(3840, 400, color=(i * 20, 80, 160)), name=f"hero-{i}")
        for i in range(10)
    ]
    images = (*heroes, check_image(encode_png(1024, 1024), name="tick"))
    entries = []
    for i in range(messages):
        image = f"hero-{i % 10}" if i % 3 == 1 else None
        bullets = (
            tuple(BulletPointEntry(f"Point {j}", "tick", "tick") for j in range(3))
            if i % 3 == 2
            else ()
        )
        entries.append(
            MessageEntry(
                name=f"message-{i:04d}",
                header=f"Header {i}",
                body=f"Body of message {i}, long enough to look like real text.",
                image=image,
                image_alt_text="A picture" if image else None,
                bullet_points=bullets,
            )
        )
    defaults = tuple(
        DefaultEntry(f"com.example.product{i}", "en-US", f"message-{i:04d}") for i in range(50)
    )
    return CatalogueDocument(images=images, messages=tuple(entries), defaults=defaults)


def per_call_ns(fn: object, args: list[tuple[object, ...]], rounds: int = 50) -> float:
    """Median over ``rounds`` of the mean time per call of ``fn(*a)`` over ``args``."""
    call = fn  # type: ignore[assignment]
    samples = []
    for _ in range(rounds):
        start = time.perf_counter_ns()
        for a in args:
            call(*a)  # type: ignore[operator]
        samples.append((time.perf_counter_ns() - start) / len(args))
    return statistics.median(samples)


def bench_resolution(engine: sa.Engine, messages: int) -> None:
    catalogue = Catalogue(engine)
    # approve every other message in the sandbox, so both paths of the rule are exercised
    states = {m.uuid: "APPROVED" for m in catalogue.list_messages()[::2]}
    catalogue.record_apple_states("message", ENVIRONMENT, states)
    catalogue.record_apple_states(
        "image", ENVIRONMENT, {i.uuid: "APPROVED" for i in catalogue.list_images()}
    )
    snapshot = CatalogueSnapshot(lambda: engine, interval=3600)
    try:
        snapshot.refresh()
        snapshot.start()
        rng = random.Random(7)
        names = [(f"message-{rng.randrange(messages):04d}", ENVIRONMENT) for _ in range(1000)]
        uuids = [(m.uuid, ENVIRONMENT) for m in catalogue.list_messages()[:1000]]
        defaults = [(f"com.example.product{i % 50}", "en-US", ENVIRONMENT) for i in range(1000)]
        assert all(snapshot.lookup(*a) is not None for a in names)
        name_ns = per_call_ns(snapshot.lookup, names)
        uuid_ns = per_call_ns(snapshot.lookup, uuids)
        default_ns = per_call_ns(snapshot.default_for, defaults)
        with engine.connect() as connection:
            reloads = []
            for _ in range(5):
                start = time.perf_counter()
                load_view(connection)
                reloads.append(time.perf_counter() - start)
    finally:
        snapshot.close()
    print(f"  resolve a name:        {name_ns / 1000:6.2f} µs median (target < 5 µs)")
    print(f"  resolve a UUID:        {uuid_ns / 1000:6.2f} µs median")
    print(f"  resolve a default:     {default_ns / 1000:6.2f} µs median")
    print(f"  full snapshot reload:  {statistics.median(reloads) * 1000:6.1f} ms median")


def bench_import(engine: sa.Engine, path: Path, label: str) -> None:
    upgrade(engine)
    catalogue = Catalogue(engine)
    start = time.perf_counter()
    result = catalogue.import_file(path)
    first = time.perf_counter() - start
    start = time.perf_counter()
    again = catalogue.import_file(path)
    second = time.perf_counter() - start
    assert again.changes == 0, again
    print(f"{label}: import {len(result.messages_added)} messages: {first:6.2f} s; ", end="")
    print(f"same file again (no changes): {second:6.2f} s")


def postgres_schema_url(url: str) -> tuple[str, str]:
    schema = f"bench_{uuid.uuid4().hex[:12]}"
    admin = sa.create_engine(url)
    with admin.begin() as conn:
        conn.execute(sa.text(f'CREATE SCHEMA "{schema}"'))
    admin.dispose()
    scoped = sa.make_url(url).update_query_dict({"options": f"-csearch_path={schema}"})
    return scoped.render_as_string(hide_password=False), schema


def drop_schema(url: str, schema: str) -> None:
    admin = sa.create_engine(url)
    with admin.begin() as conn:
        conn.execute(sa.text(f'DROP SCHEMA "{schema}" CASCADE'))
    admin.dispose()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=2000)
    parser.add_argument("--postgresql", default=os.environ.get("RETENTION_TEST_DATABASE_URL"))
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        path = folder / "file" / "catalogue.toml"
        path.parent.mkdir()
        write_catalogue_file(document(args.messages), path)
        print(f"catalogue file: {args.messages} messages, {path.stat().st_size // 1024} KiB TOML")

        engine = create_engine(f"sqlite:///{folder / 'bench.db'}")
        try:
            bench_import(engine, path, "SQLite    ")
            if args.postgresql:
                url, schema = postgres_schema_url(args.postgresql)
                pg = create_engine(url)
                try:
                    bench_import(pg, path, "PostgreSQL")
                finally:
                    pg.dispose()
                    drop_schema(args.postgresql, schema)
            print(f"snapshot, {args.messages} messages (SQLite-loaded; lookups never touch it):")
            bench_resolution(engine, args.messages)
        finally:
            engine.dispose()
    return 0


if __name__ == "__main__":
    sys.exit(main())
