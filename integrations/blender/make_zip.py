"""Pack the Blender add-on into an installable zip: ``facestyle_vse/`` at the zip's root.

Blender 4.2+ installs it as an extension (Get Extensions > Install from Disk; it finds
``blender_manifest.toml`` in the folder), older Blenders as a legacy add-on (``bl_info``).

    python integrations/blender/make_zip.py [-o facestyle_vse.zip]
"""
from __future__ import annotations

import argparse
import sys
import zipfile
from collections.abc import Sequence
from pathlib import Path

ADDON = Path(__file__).resolve().parent / "facestyle_vse"


def _members(folder: Path) -> list[Path]:
    """The add-on's files, sorted, without caches and editor leftovers."""
    return sorted(p for p in folder.rglob("*")
                  if p.is_file() and "__pycache__" not in p.parts and p.suffix not in (".pyc", ".pyo")
                  and not p.name.startswith("."))


def make_zip(dest: Path) -> Path:
    """Write the add-on zip to ``dest`` (replaced if it exists) and return ``dest``.

    Raises:
        FileNotFoundError: the add-on folder or its manifest is missing.
    """
    if not (ADDON / "__init__.py").is_file() or not (ADDON / "blender_manifest.toml").is_file():
        raise FileNotFoundError(f"{ADDON}: not the add-on folder (no __init__.py or blender_manifest.toml)")
    dest = Path(dest)
    with zipfile.ZipFile(dest, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for path in _members(ADDON):
            zf.write(path, f"{ADDON.name}/{path.relative_to(ADDON).as_posix()}")
    return dest


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-o", "--output", type=Path, default=Path("facestyle_vse.zip"),
                        help="zip to write (default: %(default)s)")
    args = parser.parse_args(argv)
    print(make_zip(args.output))
    return 0


if __name__ == "__main__":
    sys.exit(main())
