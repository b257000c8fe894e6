"""Mail from local files: single .eml files, mbox files and Maildir folders (nested or not)."""

from __future__ import annotations

import mailbox
import os
from collections.abc import Iterator, Sequence
from pathlib import Path

from tracking.choices import ErrorKind
from tracking.messages import RawItem, is_email_address
from tracking.sources.base import SourceError, SyncPage, SyncStateInvalid


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
                    raise UnreadablePath(f"{file}: {exc.strerror}", ErrorKind.PERMISSION) from None
                yield RawItem(provider_item_id=str(file), data=data)


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
            items = list(read_paths([path]))
        except (UnreadablePath, OSError) as exc:
            raise SourceError(
                f"cannot read {path}: {exc}", kind=ErrorKind.PERMISSION, permanent=False
            ) from None
        if done > len(items):
            raise SyncStateInvalid(f"{path} holds fewer messages than already read; a full resync is needed")
        pending = items[done:]
        if not pending:
            yield SyncPage(items=[], state=str(done), more=False, estimated_total=0)
            return
        for start in range(0, len(pending), self.page_size):
            chunk = pending[start : start + self.page_size]
            done += len(chunk)
            yield SyncPage(items=chunk, state=str(done), more=done < len(items), estimated_total=len(pending))
