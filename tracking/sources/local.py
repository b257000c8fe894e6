"""Mail from local files: single .eml files, mbox files and Maildir folders (nested or not)."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import BinaryIO

from tracking.choices import ErrorKind
from tracking.messages import SYNTHETIC_DOMAIN, Item, ParseFailure, RawItem, is_email_address
from tracking.sources.base import SourceError, SyncPage, SyncStateInvalid, configured_max_response_bytes

# Lines are read in pieces of at most this size, so a file without line breaks (/dev/zero) is no one line.
LINE_CHUNK = 64 * 1024


class UnreadablePath(Exception):
    """A path given by the admin that is missing or cannot be read; nothing has been processed."""

    def __init__(self, message: str, kind: ErrorKind = ErrorKind.NOT_FOUND) -> None:
        super().__init__(message)
        self.kind = kind


def _is_mbox(path: Path) -> bool:
    if path.suffix.lower() == ".mbox":
        return True
    try:
        with path.open("rb") as fh:
            return fh.read(5) == b"From "
    except OSError as exc:
        raise UnreadablePath(f"{path}: {exc.strerror}", ErrorKind.PERMISSION) from None


def check_paths(paths: Sequence[str]) -> list[Path]:
    """Refuse the whole request up front when any path is missing or unreadable."""
    out = []
    for raw in paths:
        path = Path(raw)
        if not path.exists():
            raise UnreadablePath(f"{raw}: no such file or directory")
        if not os.access(path, os.R_OK):
            raise UnreadablePath(f"{raw}: permission denied", ErrorKind.PERMISSION)
        out.append(path)
    return out


def _files_under(directory: Path) -> Iterator[Path]:
    for root, dirs, files in os.walk(directory):
        dirs.sort()
        for name in sorted(files):
            if not name.startswith("."):
                yield Path(root) / name


def too_large(provider_item_id: str, limit: int) -> ParseFailure:
    """The failed decision for a message over the size limit: it was not read further."""
    digest = hashlib.sha256(provider_item_id.encode()).hexdigest()[:40]
    return ParseFailure(
        provider_item_id,
        f"<{digest}@too-large.{SYNTHETIC_DOMAIN}>",
        f"the message is larger than {limit // (1024 * 1024):,} MB (SOURCE_MAX_RESPONSE_MB); it was not read",
    )


def _lines(fh: BinaryIO) -> Iterator[tuple[bytes, bool]]:
    """(piece, starts a line): a file's lines in pieces of at most LINE_CHUNK bytes."""
    at_start = True
    while piece := fh.readline(LINE_CHUNK):
        yield piece, at_start
        at_start = piece.endswith(b"\n")


def _read_mbox(path: Path, limit: int) -> Iterator[RawItem | ParseFailure]:
    """The messages of an mbox file, read as a stream: one message at a time in memory, none over `limit`.

    Splits where the stdlib's mailbox.mbox does (a line starting "From "; the blank line before it is
    the separator, not the message's), so messages keep the bytes, and ids ("<path>#<index>"), they had.
    """
    index = -1
    parts: list[bytes] = []
    size = 0
    over = False

    def finish() -> RawItem | ParseFailure:
        if over:
            return too_large(f"{path}#{index}", limit)
        data = b"".join(parts)
        return RawItem(
            provider_item_id=f"{path}#{index}",
            data=data[:-1] if data.endswith(b"\n\n") or data == b"\n" else data,
        )

    with path.open("rb") as fh:
        for piece, line_start in _lines(fh):
            if line_start and piece.startswith(b"From "):
                if index >= 0:
                    yield finish()
                index, parts, size, over = index + 1, [], 0, False
                while not piece.endswith(b"\n") and (piece := fh.readline(LINE_CHUNK)):
                    pass  # the rest of an over-long From_ line
                continue
            if index < 0 or over:
                continue  # before the first message (mailbox.mbox skips it too), or past the limit
            size += len(piece)
            if size > limit:
                over, parts = True, []
            else:
                parts.append(piece)
        if index >= 0:
            yield finish()


def _read_file(path: Path, limit: int) -> RawItem | ParseFailure:
    """One message file, read no further than `limit` bytes (a device such as /dev/zero never ends)."""
    try:
        with path.open("rb") as fh:
            data = fh.read(limit + 1)
    except OSError as exc:
        raise UnreadablePath(f"{path}: {exc.strerror}", ErrorKind.PERMISSION) from None
    return (
        too_large(str(path), limit) if len(data) > limit else RawItem(provider_item_id=str(path), data=data)
    )


def read_paths(paths: Sequence[Path], limit: int | None = None) -> Iterator[RawItem | ParseFailure]:
    """Every message under the paths, in a stable order (files sorted, mbox messages in file order).

    Streamed: files are read one message at a time, and a message over `limit` bytes (default
    SOURCE_MAX_RESPONSE_MB, the cap of every source) is a failed decision rather than read whole.
    """
    limit = configured_max_response_bytes() if limit is None else limit
    for path in paths:
        files = _files_under(path) if path.is_dir() else iter([path])
        for file in files:
            if _is_mbox(file):
                yield from _read_mbox(file, limit)
            else:
                yield _read_file(file, limit)


class LocalSource:
    """A `local` profile: DIR/<mailbox address>/<folder>.mbox or DIR/<mailbox address>/<folder>/.

    The sync state is how many messages were handed out, in the stable order of read_paths:
    mail appended to an mbox, or new Maildir files (named by delivery time), comes after it.
    """

    def __init__(self, root: Path, mailbox: str, page_size: int = 100) -> None:
        self.root = root
        self.mailbox = mailbox.lower()
        self.page_size = page_size

    def _inside(self, path: Path) -> Path:
        """`path` when it lies inside the profile's folder once resolved (links, `..`), else refused.

        A mailbox address or a folder name is never allowed to walk out of the profile's folder: a
        mailbox `a/../../x@y` would otherwise read `<root>/../x@y`.
        """
        root = self.root.resolve()
        resolved = path.resolve()
        if resolved != root and not resolved.is_relative_to(root):
            raise SourceError(
                f"{path} lies outside the profile's folder {self.root}; it is not read",
                kind=ErrorKind.PERMISSION,
                permanent=True,
            )
        return resolved

    def _mailbox_dir(self) -> Path:
        if not is_email_address(self.mailbox):
            raise SourceError(
                f"{self.mailbox!r} is not an email address; a local profile reads <folder>/<address>/ only "
                "for one",
                kind=ErrorKind.NOT_FOUND,
                permanent=True,
            )
        return self._inside(self.root / self.mailbox)

    def _folder_path(self, folder: str) -> Path | None:
        base = self._mailbox_dir()
        for candidate in (base / f"{folder}.mbox", base / folder):
            if candidate.exists():
                return self._inside(candidate)
        return None

    def test_connection(self, folders: Sequence[str]) -> None:
        if not self.root.is_dir():
            raise SourceError(
                f"the directory {self.root} does not exist", kind=ErrorKind.NOT_FOUND, permanent=True
            )
        if not self._mailbox_dir().is_dir():
            raise SourceError(
                f"mailbox not found: no directory {self.root / self.mailbox}",
                kind=ErrorKind.NOT_FOUND,
                permanent=True,
            )
        for folder in folders:
            path = self._folder_path(folder)
            if path is not None and not os.access(path, os.R_OK):
                raise SourceError(f"{path}: permission denied", kind=ErrorKind.PERMISSION, permanent=True)

    def sync(self, folder: str, state: str) -> Iterator[SyncPage]:
        try:
            done = int(state or "0")
        except ValueError:
            raise SyncStateInvalid() from None
        path = self._folder_path(folder)
        if path is None:
            yield SyncPage(items=[], state=str(done), more=False, estimated_total=0)
            return
        try:
            # Two streamed passes: one counts (what a page's progress needs), one hands out a page at a
            # time, so a folder never sits in memory whole.
            total = sum(1 for _ in read_paths([path]))
            if done > total:
                raise SyncStateInvalid(
                    f"{path} holds fewer messages than already read; a full resync is needed"
                )
            if done == total:
                yield SyncPage(items=[], state=str(done), more=False, estimated_total=0)
                return
            pending = total - done
            chunk: list[Item] = []
            for position, item in enumerate(read_paths([path])):
                if position < done:
                    continue
                chunk.append(item)
                if len(chunk) == self.page_size or position + 1 == total:
                    done += len(chunk)
                    yield SyncPage(items=chunk, state=str(done), more=done < total, estimated_total=pending)
                    chunk = []
                    if done == total:
                        return
        except (UnreadablePath, OSError) as exc:
            raise SourceError(
                f"cannot read {path}: {exc}", kind=ErrorKind.PERMISSION, permanent=False
            ) from None
