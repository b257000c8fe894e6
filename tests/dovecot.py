"""A real Dovecot (Debian's binary) for the IMAP tests: loopback only, its own config, certs and Maildirs.

    with Dovecot.start(tmp_dir) as server:
        user = server.add_user("alice", messages=corpus_messages(path))
        server.imaps_url  # imaps://127.0.0.1:PORT, trusted through server.ca_file

Nothing of the system's Dovecot is used: `dovecot -c OUR.conf -F` runs in the foreground as a child of
the test process, with base_dir, state_dir and logs in the temp dir, a passwd-file for users and a
trustme certificate. Dovecot never runs mail processes as root, so when the tests run as root the
Maildirs belong to `nobody` and the Dovecot-internal processes run as the package's `dovecot` /
`dovenull` users; as any other user, everything runs as that user.
"""

from __future__ import annotations

import contextlib
import ctypes
import email
import email.policy
import email.utils
import grp
import imaplib
import mailbox
import os
import pwd
import re
import shutil
import signal
import socket
import ssl
import subprocess
import tempfile
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from types import TracebackType
from typing import IO

import trustme

from tests.rq_helpers import free_port

INSTALL_HINT = "Dovecot is not installed: run .ci/dovecot-install as root (CI does, from .ci/services)"
START_TIMEOUT = 15.0


def dovecot_binary() -> str:
    """The dovecot binary, or RuntimeError telling how to install it."""
    found = shutil.which("dovecot") or next(
        (p for p in ("/usr/sbin/dovecot", "/usr/local/sbin/dovecot") if os.access(p, os.X_OK)), None
    )
    if not found:
        raise RuntimeError(INSTALL_HINT)
    return found


def corpus_messages(path: Path) -> list[bytes]:
    """The raw messages of an mbox file, in file order."""
    box = mailbox.mbox(path, create=False)
    try:
        return [box.get_bytes(key) for key in box.iterkeys()]
    finally:
        box.close()


def message_id_of(raw: bytes) -> str:
    msg = email.message_from_bytes(raw, policy=email.policy.compat32)
    return str(msg.get("Message-ID", "")).strip()


def date_of(raw: bytes) -> datetime | None:
    msg = email.message_from_bytes(raw, policy=email.policy.compat32)
    try:
        return email.utils.parsedate_to_datetime(str(msg["Date"])) if msg["Date"] else None
    except (TypeError, ValueError):
        return None


def make_message(subject: str, message_id: str, *, sender: str = "carol@fabrikam.com", to: str = "") -> bytes:
    return (
        f"From: Carol <{sender}>\r\nTo: {to or 'phillip.allen@enron.com'}\r\nSubject: {subject}\r\n"
        f"Date: {email.utils.format_datetime(datetime.now().astimezone())}\r\n"
        f"Message-ID: {message_id}\r\n\r\nHello.\r\n"
    ).encode()


@dataclass(frozen=True)
class MailUser:
    name: str
    password: str
    home: Path

    @property
    def maildir(self) -> Path:
        return self.home / "Maildir"


@dataclass(frozen=True)
class _Accounts:
    """Who runs what: Dovecot refuses to run mail processes as root."""

    mail_uid: int
    mail_gid: int
    internal_user: str
    internal_group: str
    login_user: str

    @classmethod
    def current(cls) -> _Accounts:
        if os.geteuid() != 0:
            me = pwd.getpwuid(os.geteuid()).pw_name
            group = grp.getgrgid(os.getegid()).gr_name
            return cls(os.geteuid(), os.getegid(), me, group, me)
        nobody = pwd.getpwnam("nobody")
        # The package creates these; fall back to nobody where an older package did not.
        internal = _user_or("dovecot", "nobody")
        login = _user_or("dovenull", "nobody")
        return cls(
            nobody.pw_uid, nobody.pw_gid, internal, grp.getgrgid(pwd.getpwnam(internal).pw_gid).gr_name, login
        )


def _user_or(name: str, fallback: str) -> str:
    try:
        pwd.getpwnam(name)
    except KeyError:
        return fallback
    return name


class Dovecot:
    """One running Dovecot; `start` returns it ready to accept logins."""

    host = "127.0.0.1"

    def __init__(self, root: Path) -> None:
        self.root = root
        self.accounts = _Accounts.current()
        self.imap_port = 0
        self.imaps_port = 0
        self.ca_file = root / "ca.pem"
        self.conf_file = root / "dovecot.conf"
        self.log_file = root / "dovecot.log"
        self.users_dir = root / "users"
        self.startup_seconds = 0.0
        self.extra_conf = ""
        self.users: dict[str, MailUser] = {}
        self._process: subprocess.Popen[bytes] | None = None
        self._stderr: IO[bytes] | None = None

    # -- lifecycle ---------------------------------------------------------------------------

    @classmethod
    def start(cls, parent: Path | None = None, extra_conf: str = "") -> Dovecot:
        """A running server; `extra_conf` is appended to its dovecot.conf."""
        binary = dovecot_binary()
        # Not pytest's tmp_path: its parents are 0700 root, and Dovecot's login and mail processes
        # (dovenull, nobody) must reach base_dir and the Maildirs.
        root = Path(tempfile.mkdtemp(prefix="syncadmin-dovecot-", dir=parent))
        root.chmod(0o755)
        server = cls(root)
        server.extra_conf = extra_conf
        try:
            server._write_files()
            for attempt in range(3):
                server.imap_port, server.imaps_port = free_port(), free_port()
                server._write_conf()
                if server._launch(binary):
                    break
                if attempt == 2:
                    raise RuntimeError(f"Dovecot did not start; its log:\n{server.log()}")
        except BaseException:
            server.stop()
            raise
        return server

    def _write_files(self) -> None:
        ca = trustme.CA()
        cert = ca.issue_cert("127.0.0.1", "localhost")
        ca.cert_pem.write_to_path(str(self.ca_file))
        cert.private_key_pem.write_to_path(str(self.root / "server.key"))
        with (self.root / "server.pem").open("wb") as fh:
            for blob in cert.cert_chain_pems:
                fh.write(blob.bytes())
        for sub in ("run", "state", "home", "users"):
            (self.root / sub).mkdir(mode=0o755)
        os.chown(self.root / "home", self.accounts.mail_uid, self.accounts.mail_gid)

    def _write_conf(self) -> None:
        a, r = self.accounts, self.root
        # chroot needs root; as another user, the login and anvil processes stay in place.
        chroot = "" if os.geteuid() == 0 else "  chroot =\n"
        self.conf_file.write_text(
            f"""# written by tests/dovecot.py
base_dir = {r}/run
state_dir = {r}/state
instance_name = syncadmin-test-{r.name}
log_path = {self.log_file}
protocols = imap
listen = {self.host}
ssl = required
ssl_cert = <{r}/server.pem
ssl_key = <{r}/server.key
ssl_min_protocol = TLSv1.2
auth_mechanisms = plain login
auth_failure_delay = 0
default_internal_user = {a.internal_user}
default_internal_group = {a.internal_group}
default_login_user = {a.login_user}
first_valid_uid = {a.mail_uid}
last_valid_uid = {a.mail_uid}
first_valid_gid = {a.mail_gid}
last_valid_gid = {a.mail_gid}
mail_location = maildir:~/Maildir
# One passwd-file per user: Dovecot stats a passwd-file at most once a second, so a user appended to
# a shared one right after a lookup would stay unknown for up to a second.
passdb {{
  driver = passwd-file
  args = scheme=PLAIN username_format=%u {self.users_dir}/%u
}}
userdb {{
  driver = passwd-file
  args = username_format=%u {self.users_dir}/%u
  default_fields = uid={a.mail_uid} gid={a.mail_gid} home={r}/home/%u
}}
# No growing delay for 127.0.0.1 after the tests' deliberate failed logins (anvil's auth penalty).
service anvil {{
{chroot}  unix_listener anvil-auth-penalty {{
    mode = 0
  }}
}}
service imap-login {{
{chroot}  inet_listener imap {{
    address = {self.host}
    port = {self.imap_port}
  }}
  inet_listener imaps {{
    address = {self.host}
    port = {self.imaps_port}
    ssl = yes
  }}
}}
{self.extra_conf}
"""
        )

    def _launch(self, binary: str) -> bool:
        """Start the master in the foreground; True once it greets on both ports."""
        began = time.monotonic()
        if self._stderr is None:
            self._stderr = (self.root / "stderr.log").open("ab")
        self._process = subprocess.Popen(
            [binary, "-c", str(self.conf_file), "-F"],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=self._stderr,
            # Its own process group, so that stop() can signal every Dovecot process and nothing else,
            # and a Ctrl-C in pytest does not reach Dovecot before the fixture's teardown does.
            start_new_session=True,
            preexec_fn=_die_with_parent,
        )
        deadline = began + START_TIMEOUT
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                self._process = None
                return False  # e.g. a port taken between free_port() and bind
            if self._greets(self.imap_port) and self._greets(self.imaps_port, tls=True):
                self.startup_seconds = time.monotonic() - began
                return True
            time.sleep(0.02)
        log = self.log()
        self.stop()
        raise RuntimeError(f"Dovecot did not answer within {START_TIMEOUT:g} s; its log:\n{log}")

    def _greets(self, port: int, *, tls: bool = False) -> bool:
        try:
            with socket.create_connection((self.host, port), timeout=2) as sock:
                if tls:
                    ctx = ssl.create_default_context(cafile=str(self.ca_file))
                    with ctx.wrap_socket(sock, server_hostname=self.host) as tls_sock:
                        greeting = tls_sock.recv(100)
                        tls_sock.sendall(b"a LOGOUT\r\n")
                else:
                    greeting = sock.recv(100)
                    sock.sendall(b"a LOGOUT\r\n")
                return greeting.startswith(b"* OK")
        except OSError:
            return False

    def stop(self) -> None:
        process, self._process = self._process, None
        if process is not None and process.poll() is None:
            # TERM to the whole group (master, auth, log, login and mail processes): each shuts down on
            # its own handler at once, where TERM to the master alone waits about a second for them.
            os.killpg(process.pid, signal.SIGTERM)
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait(timeout=10)
            _kill_leftovers(process.pid)
        if self._stderr is not None:
            self._stderr.close()
            self._stderr = None
        shutil.rmtree(self.root, ignore_errors=True)

    def __enter__(self) -> Dovecot:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def log(self) -> str:
        parts = []
        for name in ("stderr.log", "dovecot.log"):
            path = self.root / name
            if path.exists():
                parts.append(path.read_text(errors="replace"))
        return "\n".join(parts)

    # -- endpoints ---------------------------------------------------------------------------

    @property
    def imaps_url(self) -> str:
        return f"imaps://{self.host}:{self.imaps_port}"

    @property
    def imap_url(self) -> str:
        return f"imap://{self.host}:{self.imap_port}"

    # -- users and mail ----------------------------------------------------------------------

    def add_user(
        self,
        name: str,
        password: str = "secret",
        messages: Iterable[bytes] = (),
        folders: dict[str, Iterable[bytes]] | None = None,
    ) -> MailUser:
        """A user whose Maildir holds `messages` in INBOX (cur/, unseen) and any Maildir++ `folders`."""
        if name in self.users or ":" in password:
            raise ValueError(f"bad or duplicate user {name!r}")
        user = MailUser(name, password, self.root / "home" / name)
        user.home.mkdir(mode=0o700)
        build_maildir(user.maildir, messages, folders or {})
        self._chown_tree(user.home)
        if not re.fullmatch(r"[a-z0-9._-]+", name):
            raise ValueError(f"user names here are file names too: {name!r}")
        (self.users_dir / name).write_text(f"{name}:{{PLAIN}}{password}::::\n", encoding="utf-8")
        self.users[name] = user
        return user

    def _chown_tree(self, top: Path) -> None:
        a = self.accounts
        for root, dirs, files in os.walk(top):
            os.chown(root, a.mail_uid, a.mail_gid)
            for name in dirs + files:
                os.chown(os.path.join(root, name), a.mail_uid, a.mail_gid)

    def connect(self, user: MailUser) -> imaplib.IMAP4_SSL:
        """A logged-in client for the test's own checks and changes."""
        ctx = ssl.create_default_context(cafile=str(self.ca_file))
        conn = imaplib.IMAP4_SSL(self.host, self.imaps_port, ssl_context=ctx, timeout=10)
        conn.login(user.name, user.password)
        return conn

    @contextlib.contextmanager
    def session(self, user: MailUser) -> Iterator[imaplib.IMAP4_SSL]:
        """A logged-in client, logged out at the end; returns once the server has logged the session's
        end, so that it never shows up in `sessions()` counted for what a test does next."""
        before = len(self.sessions(user))
        conn = self.connect(user)
        try:
            yield conn
        finally:
            conn.logout()
            self.sessions(user, at_least=before + 1)

    def append(self, user: MailUser, raw: bytes, folder: str = "INBOX") -> int:
        """IMAP APPEND while the server runs; returns the new message's UID."""
        with self.session(user) as conn:
            typ, data = conn.append(folder, "", None, raw)
            assert typ == "OK", data
            found = re.search(rb"APPENDUID \d+ (\d+)", data[0] or b"")
            assert found, data
            return int(found.group(1))

    def flags(self, user: MailUser, folder: str = "INBOX") -> dict[int, str]:
        """UID → FLAGS of every message, read with EXAMINE so looking changes nothing."""
        with self.session(user) as conn:
            typ, data = conn.select(folder, readonly=True)
            assert typ == "OK", data
            typ, data = conn.uid("FETCH", "1:*", "(FLAGS)")
            out = {}
            for line in data:
                if isinstance(line, bytes) and (m := re.search(rb"UID (\d+) FLAGS \(([^)]*)\)", line)):
                    out[int(m.group(1))] = m.group(2).decode()
            return out

    def sessions(self, user: MailUser, at_least: int = 0) -> list[dict[str, str]]:
        """The statistics Dovecot logs as each of the user's IMAP sessions ends (body_count = message
        bodies fetched, in/out = bytes), oldest first: what a client really asked the server for.

        The log is written asynchronously: wait (up to 5 s) until `at_least` sessions are in it.
        """
        deadline = time.monotonic() + 5
        while True:
            out = []
            for line in self.log().splitlines():
                if f" imap({user.name})<" in line and ": Disconnected: " in line:
                    out.append(dict(re.findall(r"(\w+)=(\S+)", line.split(": Disconnected: ", 1)[1])))
            if len(out) >= at_least or time.monotonic() > deadline:
                return out
            time.sleep(0.02)

    def recreate_inbox(self, user: MailUser) -> None:
        """What a server rebuild or a folder re-creation does: same messages, new UIDVALIDITY and UIDs.

        Dovecot keeps UIDs in dovecot-uidlist and its indexes; without them it assigns UIDs afresh,
        taking a new UIDVALIDITY from the dovecot-uidvalidity counter (so it always differs).
        """
        for path in user.maildir.iterdir():
            if path.name == "dovecot-uidlist" or path.name.startswith("dovecot.index"):
                path.unlink()

    def kick(self, user: MailUser) -> None:
        """Disconnect the user's sessions: the server sends BYE, as on a restart.

        Returns once the log says the session is gone, so the client's next command meets the BYE.
        """
        before = self.log().count(f"imap({user.name})")
        subprocess.run(
            [shutil.which("doveadm") or "/usr/bin/doveadm", "-c", str(self.conf_file), "kick", user.name],
            check=True,
            capture_output=True,
        )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            lines = [line for line in self.log().splitlines() if f"imap({user.name})" in line]
            if len(lines) > before and any("Server shutting down" in line for line in lines[before:]):
                return
            time.sleep(0.02)
        raise RuntimeError(f"doveadm kick {user.name} did not end the session; log:\n{self.log()}")


def _die_with_parent() -> None:
    """In the child before exec: TERM when the test process dies without a teardown (kill -9, a
    crashed CI job), so no Dovecot outlives its tests. Linux only; elsewhere teardown alone stops it."""
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def _kill_leftovers(pgid: int) -> None:
    """After the master: anything of its group still running gets KILL (usually only zombies are left,
    children that exited after the master, which init reaps)."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pgid, signal.SIGKILL)


def build_maildir(path: Path, messages: Iterable[bytes], folders: dict[str, Iterable[bytes]]) -> None:
    """Maildir++ with `messages` in cur/ (no flags: unseen) and each folder as .Name; mtime = Date:,
    which Dovecot reports as INTERNALDATE."""
    root = mailbox.Maildir(path, create=True)
    _fill(root, messages)
    for name, folder_messages in folders.items():
        _fill(root.add_folder(name), folder_messages)


def _fill(box: mailbox.Maildir, messages: Iterable[bytes]) -> None:
    for raw in messages:
        msg = mailbox.MaildirMessage(raw)
        msg.set_subdir("cur")
        msg.set_flags("")
        date = date_of(raw)
        if date is not None:
            msg.set_date(date.timestamp())
        box.add(msg)
