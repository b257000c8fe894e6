"""Mail from local files: single .eml files, mbox files and Maildir folders (nested or not)."""

from __future__ import annotations

import mailbox
import os
from collections.abc import Iterator, Sequence
from pathlib import Path

from tracking.pipeline import RawItem


class UnreadablePath(Exception):
    """A path given by the admin that is missing or cannot be read; nothing has been processed."""


def _is_mbox(path: Path) -> bool:
    if path.suffix.lower() == ".mbox":
        return True
    try:
        with path.open("rb") as fh:
            return fh.read(5) == b"From "
    except OSError as exc:
        raise UnreadablePath(f"{path}: {exc.strerror}") from None


def check_paths(paths: Sequence[str]) -> list[Path]:
    """Refuse the whole request up front when any path is missing or unreadable."""
    out = []
    for raw in paths:
        path = Path(raw)
        if not path.exists():
            raise UnreadablePath(f"{raw}: no such file or directory")
        if not os.access(path, os.R_OK):
            raise UnreadablePath(f"{raw}: permission denied")
        out.append(path)
    return out


def _files_under(directory: Path) -> Iterator[Path]:
    for root, dirs, files in os.walk(directory):
        dirs.sort()
        for name in sorted(files):
            if not name.startswith("."):
                yield Path(root) / name


def _read_mbox(path: Path) -> Iterator[RawItem]:
    box = mailbox.mbox(path, create=False)
    try:
        for index, key in enumerate(box.iterkeys()):
            yield RawItem(provider_item_id=f"{path}#{index}", data=box.get_bytes(key))
    finally:
        box.close()


def read_paths(paths: Sequence[Path]) -> Iterator[RawItem]:
    """Every message under the paths, in a stable order (files sorted, mbox messages in file order)."""
    for path in paths:
        files = _files_under(path) if path.is_dir() else iter([path])
        for file in files:
            if _is_mbox(file):
                yield from _read_mbox(file)
            else:
                try:
                    data = file.read_bytes()
                except OSError as exc:
                    raise UnreadablePath(f"{file}: {exc.strerror}") from None
                yield RawItem(provider_item_id=str(file), data=data)
