"""The simulator's mailboxes: messages per mailbox folder, each folder with an append-only change log.

Sync states handed to clients are offsets into that log, so an incremental sync returns exactly
what was added, changed or deleted since, and a message added while the simulator runs appears
in the next sync. Bumping a folder's generation invalidates every state handed out before.
"""

from __future__ import annotations

import base64
import hashlib
import threading
from collections.abc import Iterable
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


@dataclass
class SimFolder:
    name: str
    messages: dict[str, SimMessage] = field(default_factory=dict)
    log: list[Change] = field(default_factory=list)
    generation: int = 1

    def changes_since(self, seq: int, limit: int) -> tuple[list[Change], int, bool]:
        """Changes after `seq` (at most `limit`), the seq to resume from, and whether more remain."""
        pending = [c for c in self.log if c.seq > seq]
        page = pending[:limit]
        next_seq = page[-1].seq if page else seq
        return page, next_seq, len(pending) > len(page)


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

    @classmethod
    def from_directory(cls, data_dir: Path) -> MailStore:
        """DIR/<mailbox address>/<folder>.mbox or DIR/<mailbox address>/<folder>/ (Maildir or .eml files)."""
        store = cls()
        for mailbox_dir in sorted(p for p in data_dir.iterdir() if p.is_dir()):
            address = mailbox_dir.name.lower()
            store.mailboxes.setdefault(address, {})
            for entry in sorted(mailbox_dir.iterdir()):
                folder = entry.stem if entry.is_file() else entry.name
                store.folder(address, folder.lower())
                for item in read_paths([entry]):
                    if isinstance(item, RawItem):  # a message over the size limit is not served
                        store.add_message(address, folder.lower(), item.data)
        return store

    def folder(self, address: str, folder: str) -> SimFolder:
        with self.lock:
            folders = self.mailboxes.setdefault(address.lower(), {})
            return folders.setdefault(folder, SimFolder(folder))

    def has_mailbox(self, address: str) -> bool:
        return address.lower() in self.mailboxes

    def add_message(
        self, address: str, folder: str, raw: bytes, received_at: datetime | None = None
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
            )
            target.messages[msg.item_id] = msg
            self._log(target, "create", msg.item_id)
            return msg

    def delete_message(self, address: str, folder: str, item_id: str) -> None:
        with self.lock:
            target = self.folder(address, folder)
            if target.messages.pop(item_id, None) is not None:
                self._log(target, "delete", item_id)

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

    def _log(self, target: SimFolder, kind: ChangeKind, item_id: str) -> None:
        self._seq += 1
        target.log.append(Change(self._seq, kind, item_id))
