"""Zip files of articles: unpacked safely (no paths outside the folder, bounded sizes)."""

from __future__ import annotations

import zipfile
from pathlib import Path, PurePosixPath

MAX_FILES = 20_000
MAX_TOTAL_BYTES = 200 * 1024 * 1024
MAX_FILE_BYTES = 50 * 1024 * 1024


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
        big = next((m for m in members if m.file_size > MAX_FILE_BYTES), None)
        if big is not None:
            raise UnsafeArchive(f"{big.filename!r} is larger than {MAX_FILE_BYTES // 2**20} MB")
        out = []
        for member in members:
            name = PurePosixPath(member.filename.replace("\\", "/"))
            if name.is_absolute() or ".." in name.parts or not name.parts:
                raise UnsafeArchive(f"{member.filename!r} points outside the archive's folder")
            target = into.joinpath(*name.parts)
            try:
                target.parent.mkdir(parents=True, exist_ok=True)
                with zf.open(member) as src, open(target, "wb") as dst:
                    data = src.read(MAX_FILE_BYTES + 1)  # the sizes in the listing can lie
                    if len(data) > MAX_FILE_BYTES:
                        raise UnsafeArchive(f"{member.filename!r} is too large")
                    dst.write(data)
            except (OSError, zipfile.BadZipFile, RuntimeError) as exc:
                reason = getattr(exc, "strerror", None) or exc.__class__.__name__
                raise UnsafeArchive(f"cannot unpack {member.filename!r}: {reason}") from None
            out.append(target)
        return out
