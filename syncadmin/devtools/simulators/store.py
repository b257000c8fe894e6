"""The simulator's mailboxes: messages per mailbox folder, each folder with an append-only change log.

Sync states handed to clients are offsets into that log, so an incremental sync returns exactly
what was added, changed or deleted since, and a message added while the simulator runs appears
in the next sync. Bumping a folder's generation invalidates every state handed out before.

Folders form a tree: each has a stable key (the lower-case path it was created with, from which its
EWS and Graph ids are derived, so ids survive a rename or a move), a display name and a parent key
("" for the top of the information store). `DIR/<address>/inbox/Projects/Contoso.mbox` (or
`.../Contoso/` holding .eml files) is the folder Inbox/Projects/Contoso.
"""

from __future__ import annotations

import base64
import hashlib
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal

from tracking.messages import Address, ParsedMessage, RawItem, parse_message
from tracking.sources.local import read_paths

ChangeKind = Literal["create", "update", "delete"]
FALLBACK_RECEIVED = datetime(2000, 1, 1, tzinfo=UTC)


@dataclass
class SimMessage:
    item_id: str
    change_key: str
    raw: bytes
    parsed: ParsedMessage | None  # None when the bytes are not a readable message
    received_at: datetime
    folder: str
    last_modified: datetime | None = None  # LastModifiedTime / lastModifiedDateTime; received_at when None

    @property
    def modified_at(self) -> datetime:
        return self.last_modified or self.received_at

    @property
    def subject(self) -> str:
        return self.parsed.subject if self.parsed else ""

    @property
    def sender(self) -> Address | None:
        return self.parsed.sender if self.parsed else None


@dataclass(frozen=True)
class Change:
    seq: int
    kind: ChangeKind
    item_id: str


@dataclass(frozen=True)
class StoreEvent:
    """What happened to a message, for whoever listens (the EWS streaming notifications): a create, a
    delete, or a move (`old_folder` and `old_item_id` say where it was)."""

    kind: Literal["create", "delete", "move"]
    address: str
    folder: str
    item_id: str
    old_folder: str = ""
    old_item_id: str = ""


Listener = Callable[[StoreEvent], None]


@dataclass
class SimFolder:
    name: str  # the stable key: ids derive from it, so a rename or a move keeps them
    messages: dict[str, SimMessage] = field(default_factory=dict)
    log: list[Change] = field(default_factory=list)
    generation: int = 1
    display_name: str = ""
    parent: str = ""  # the parent's key; "" = the top of the information store

    def changes_since(self, seq: int, limit: int) -> tuple[list[Change], int, bool]:
        """Changes after `seq` (at most `limit`), the seq to resume from, and whether more remain."""
        pending = [c for c in self.log if c.seq > seq]
        page = pending[:limit]
        next_seq = page[-1].seq if page else seq
        return page, next_seq, len(pending) > len(page)


# Folders Exchange has at the top of every mailbox; any other folder named without a parent is an Inbox
# sub-folder (folder-level tracking maps those).
TOP_LEVEL = {
    "inbox": "Inbox",
    "sentitems": "Sent Items",
    "drafts": "Drafts",
    "deleteditems": "Deleted Items",
    "junkemail": "Junk Email",
    "outbox": "Outbox",
    "archive": "Archive",
}
MAILDIR_PARTS = frozenset({"cur", "new", "tmp"})


def _item_id(address: str, folder: str, n: int) -> str:
    digest = hashlib.sha256(f"{address}/{folder}/{n}".encode()).digest()
    return base64.b64encode(b"AAMkAD" + digest).decode()


class MailStore:
    """Thread-safe: the HTTP server answers from several threads while tests add messages."""

    def __init__(self) -> None:
        self.lock = threading.RLock()
        self.mailboxes: dict[str, dict[str, SimFolder]] = {}
        self._counter = 0
        self._seq = 0
        # Called with (mailbox, folder key, message) for every message created or moved into a folder, under
        # the store's lock: a listener only queues work (the Graph change notifications do).
        self.created_listeners: list[Callable[[str, str, SimMessage], None]] = []
        # called with the lock held, right after the change; a listener must not block
        self.listeners: list[Listener] = []
        self._quiet = 0  # >0 while a move is made of a delete and a create, which it reports as one event

    @classmethod
    def from_directory(cls, data_dir: Path) -> MailStore:
        """DIR/<mailbox address>/<folder>.mbox or DIR/<mailbox address>/<folder>/ (Maildir or .eml files).

        Inside a folder's directory, `<name>.mbox` files and sub-directories are sub-folders (so
        `inbox/Projects/Contoso.mbox` is Inbox/Projects/Contoso); other files are the folder's messages.
        """
        store = cls()
        for mailbox_dir in sorted(p for p in data_dir.iterdir() if p.is_dir()):
            address = mailbox_dir.name.lower()
            store.mailboxes.setdefault(address, {})
            for entry in sorted(mailbox_dir.iterdir()):
                store._load_entry(address, "", entry)
        return store

    def _load_entry(self, address: str, parent_path: str, entry: Path) -> None:
        name = entry.stem if entry.is_file() else entry.name
        path = f"{parent_path}/{name}" if parent_path else name
        self.folder(address, path.lower(), display_name=name)
        if entry.is_file() or (entry / "cur").is_dir() or (entry / "new").is_dir():
            for item in read_paths([entry]):
                if isinstance(item, RawItem):  # a message over the size limit is not served
                    self.add_message(address, path.lower(), item.data)
            return
        own = []
        for child in sorted(entry.iterdir()):
            if child.name.startswith(".") or child.name in MAILDIR_PARTS:
                continue
            if child.is_dir() or child.suffix.lower() == ".mbox":
                self._load_entry(address, path, child)
            else:
                own.append(child)
        for item in read_paths(own):
            if isinstance(item, RawItem):
                self.add_message(address, path.lower(), item.data)

    def folder(self, address: str, folder: str, *, display_name: str | None = None) -> SimFolder:
        """The folder with this key, created (with its parents) when missing."""
        with self.lock:
            folders = self.mailboxes.setdefault(address.lower(), {})
            found = folders.get(folder)
            if found is not None:
                return found
            head, _, last = folder.rpartition("/")
            if head:
                self.folder(address, head)
                parent = head
            else:
                parent = "" if folder in TOP_LEVEL else "inbox"
                if parent:
                    self.folder(address, parent)
            created = SimFolder(
                folder, display_name=TOP_LEVEL.get(folder) or display_name or last, parent=parent
            )
            folders[folder] = created
            return created

    def children(self, address: str, key: str) -> list[SimFolder]:
        with self.lock:
            return [f for f in self.mailboxes.get(address.lower(), {}).values() if f.parent == key]

    def path_of(self, address: str, key: str) -> str:
        """The display path, e.g. Inbox/Projects/Contoso."""
        with self.lock:
            folders = self.mailboxes.get(address.lower(), {})
            parts: list[str] = []
            current: SimFolder | None = folders.get(key)
            while current is not None:
                parts.append(current.display_name)
                current = folders.get(current.parent) if current.parent else None
            return "/".join(reversed(parts)) or TOP_LEVEL.get(key, key)

    def resolve(self, address: str, text: str) -> str | None:
        """A folder's key from its key or its current display path (any case)."""
        with self.lock:
            folders = self.mailboxes.get(address.lower(), {})
            wanted = text.strip().strip("/").lower()
            if wanted in folders:
                return wanted
            return next((k for k in folders if self.path_of(address, k).lower() == wanted), None)

    def rename_folder(
        self, address: str, key: str, display_name: str | None = None, parent: str | None = None
    ) -> SimFolder:
        """Rename and/or move a folder; its id, messages and sync states stay."""
        with self.lock:
            target = self.mailboxes[address.lower()][key]
            if display_name:
                target.display_name = display_name
            if parent is not None:
                target.parent = parent
            return target

    def delete_folder(self, address: str, key: str) -> None:
        """Delete a folder and every folder under it."""
        with self.lock:
            folders = self.mailboxes.get(address.lower(), {})
            for child in self.children(address, key):
                self.delete_folder(address, child.name)
            folders.pop(key, None)

    def move_message(
        self, address: str, item_id: str, to_folder: str, now: datetime | None = None
    ) -> SimMessage:
        """Move a message as Exchange does: a new item id in the target folder, the same Message-ID and
        received time, and a new last-modified time."""
        with self.lock:
            found = self.find(address, item_id)
            if found is None:
                raise KeyError(item_id)
            self._quiet += 1
            try:
                self.delete_message(address, found.folder, item_id)
                moved = self.add_message(
                    address,
                    to_folder,
                    found.raw,
                    received_at=found.received_at,
                    last_modified=now or datetime.now(UTC),
                )
            finally:
                self._quiet -= 1
            self._notify(StoreEvent("move", address.lower(), to_folder, moved.item_id, found.folder, item_id))
            return moved

    def has_mailbox(self, address: str) -> bool:
        return address.lower() in self.mailboxes

    def add_message(
        self,
        address: str,
        folder: str,
        raw: bytes,
        received_at: datetime | None = None,
        last_modified: datetime | None = None,
    ) -> SimMessage:
        with self.lock:
            target = self.folder(address, folder)
            self._counter += 1
            parsed = parse_message(raw)
            good = parsed if isinstance(parsed, ParsedMessage) else None
            when = (
                received_at or (good.received_at if good and good.received_at else None) or FALLBACK_RECEIVED
            )
            msg = SimMessage(
                item_id=_item_id(address.lower(), folder, self._counter),
                change_key=base64.b64encode(f"CQAAABYA{self._counter}".encode()).decode(),
                raw=raw,
                parsed=good,
                received_at=when,
                folder=folder,
                last_modified=last_modified,
            )
            target.messages[msg.item_id] = msg
            self._log(target, "create", msg.item_id)
            for listener in self.created_listeners:
                listener(address.lower(), folder, msg)
            self._notify(StoreEvent("create", address.lower(), folder, msg.item_id))
            return msg

    def delete_message(self, address: str, folder: str, item_id: str) -> None:
        with self.lock:
            target = self.folder(address, folder)
            if target.messages.pop(item_id, None) is not None:
                self._log(target, "delete", item_id)
                self._notify(StoreEvent("delete", address.lower(), folder, item_id))

    def invalidate_sync_states(self, address: str, folder: str) -> None:
        with self.lock:
            self.folder(address, folder).generation += 1

    def find(self, address: str, item_id: str) -> SimMessage | None:
        with self.lock:
            for f in self.mailboxes.get(address.lower(), {}).values():
                if item_id in f.messages:
                    return f.messages[item_id]
        return None

    def all_messages(self, address: str, folder: str) -> Iterable[SimMessage]:
        with self.lock:
            return list(self.folder(address, folder).messages.values())

    def _notify(self, event: StoreEvent) -> None:
        if self._quiet:
            return
        for listener in list(self.listeners):
            listener(event)

    def _log(self, target: SimFolder, kind: ChangeKind, item_id: str) -> None:
        self._seq += 1
        target.log.append(Change(self._seq, kind, item_id))
