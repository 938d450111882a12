"""Zip files of articles: unpacked safely (no paths outside the folder, bounded sizes)."""

from __future__ import annotations

import zipfile
from pathlib import Path, PurePosixPath

MAX_FILES = 20_000
MAX_TOTAL_BYTES = 500 * 1024 * 1024


class UnsafeArchive(ValueError):
    """A zip that is not one, escapes its folder, or is too large."""


def unpack(archive: Path, into: Path) -> list[Path]:
    """Extract the regular files of ``archive`` under ``into``; returns them."""
    try:
        zf = zipfile.ZipFile(archive)
    except (zipfile.BadZipFile, OSError) as exc:
        raise UnsafeArchive(f"not a readable zip file: {exc}") from None
    with zf:
        members = [m for m in zf.infolist() if not m.is_dir()]
        if len(members) > MAX_FILES:
            raise UnsafeArchive(f"more than {MAX_FILES} files")
        if sum(m.file_size for m in members) > MAX_TOTAL_BYTES:
            raise UnsafeArchive(f"more than {MAX_TOTAL_BYTES // 2**20} MB unpacked")
        out = []
        for member in members:
            name = PurePosixPath(member.filename.replace("\\", "/"))
            if name.is_absolute() or ".." in name.parts or not name.parts:
                raise UnsafeArchive(f"{member.filename!r} points outside the archive's folder")
            target = into.joinpath(*name.parts)
            target.parent.mkdir(parents=True, exist_ok=True)
            with zf.open(member) as src, open(target, "wb") as dst:
                dst.write(src.read(MAX_TOTAL_BYTES + 1))
            out.append(target)
        return out
