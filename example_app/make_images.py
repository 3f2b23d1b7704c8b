"""Make the example catalogue's images: solid-colour PNGs at Apple's sizes.

Run ``python example_app/make_images.py`` (or ``python -m example_app.make_images``)
to write them into ``example_app/images/``. The images are committed, so the
example starts without writing into its own source folder (which may be
read-only once installed); this script is how they were made, and how to
remake or change them. Apple's sizes: ``FULL_SIZE`` 3840 px wide and 160 to
2160 px high, ``BULLET_POINT`` 1024 x 1024; no transparency.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from flask_retention.catalogue.png import encode_png

HERE = Path(__file__).resolve().parent

#: file name -> (width, height, RGB colour)
IMAGES: dict[str, tuple[int, int, tuple[int, int, int]]] = {
    "hero.png": (3840, 1280, (0, 122, 255)),  # FULL_SIZE, a wide banner
    "tick.png": (1024, 1024, (52, 199, 89)),  # BULLET_POINT
    "star.png": (1024, 1024, (255, 204, 0)),  # BULLET_POINT
}


def make_images(folder: Path) -> list[Path]:
    """Write every image into ``folder`` (created if needed); the paths written."""
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for name, (width, height, color) in IMAGES.items():
        path = folder / name
        path.write_bytes(encode_png(width, height, color=color))
        written.append(path)
    return written


def main(argv: list[str] | None = None) -> int:
    """Command line: ``make_images.py [--out FOLDER]``."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=HERE / "images", help="target folder")
    args = parser.parse_args(argv)
    for path in make_images(args.out):
        print(f"wrote {path} ({path.stat().st_size} bytes)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
