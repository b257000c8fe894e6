"""What every benchmark needs: databases made from a migrated template, the corpus, timing, RSS, results.

A benchmark is a plain script (bench/bN_*.py). It picks its database *before* Django is set up
(`setup_django(url)`), so a script that needs two databases, or a clean process to measure memory in,
runs itself again as a child (`run_child`). Every figure is a ratio to a baseline measured in the same
run, because these machines are shared and noisy.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import mailbox as stdlib_mailbox
import os
import re
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

BUILD = ROOT / "build" / "bench"
CORPORA = Path(os.environ.get("BENCH_CORPORA", ROOT / "tests" / "data" / "corpora"))
PG_SERVER = os.environ.get("BENCH_PG_URL", "postgres://postgres@127.0.0.1:5432").rstrip("/")
REDIS_URL = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/14")
SETTINGS = "bench.settings"
PYTHON = sys.executable
# every database a benchmark makes starts with this, so a crashed run's leftovers are easy to find and drop;
# BENCH_DB_PREFIX (syncadmin_bench_SOMETHING) keeps two runs on one PostgreSQL server apart
DB_PREFIX = os.environ.get("BENCH_DB_PREFIX", "syncadmin_bench")
assert DB_PREFIX.startswith("syncadmin_bench"), "BENCH_DB_PREFIX must start with syncadmin_bench"

# Enron mailbox owners (the address they send from in Outlook's Sent Items), for deciding their folders
ENRON_OWNERS = {
    "allen-p": "phillip.allen@enron.com",
    "arnold-j": "john.arnold@enron.com",
    "grigsby-m": "mike.grigsby@enron.com",
    "kuykendall-t": "tori.kuykendall@enron.com",
    "lavorato-j": "john.lavorato@enron.com",
    "shively-h": "hunter.shively@enron.com",
    "tholt-j": "jane.tholt@enron.com",
}
PONYMAIL_OWNER = "list-reader@apache.example"


# -- results -----------------------------------------------------------------------------------------------


@dataclass
class Figure:
    """One row of the table: measured and baseline in `unit`, ratio = measured / baseline unless given."""

    figure: str
    measure: str
    measured: float
    baseline: float | None
    unit: str
    target: str
    met: bool | None
    ratio: float | None = None
    db: str = ""
    size: str = ""
    notes: list[str] = field(default_factory=list)
    details: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.ratio is None and self.baseline:
            self.ratio = self.measured / self.baseline


def write_result(name: str, figures: Sequence[Figure], **extra: Any) -> Path:
    BUILD.mkdir(parents=True, exist_ok=True)
    path = BUILD / f"{name}.json"
    path.write_text(json.dumps({"name": name, "figures": [asdict(f) for f in figures], **extra}, indent=2))
    for f in figures:
        ratio = f"{f.ratio:.3g}" if f.ratio is not None else "-"
        base = f"{f.baseline:.4g}" if f.baseline is not None else "-"
        print(
            f"{f.figure}: measured {f.measured:.4g} {f.unit}, baseline {base}, ratio {ratio}, "
            f"target {f.target}: {'met' if f.met else 'NOT met' if f.met is False else '-'}"
        )
        for note in f.notes:
            print(f"  note: {note}")
    return path


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


# -- timing and memory -------------------------------------------------------------------------------------


@contextlib.contextmanager
def stopwatch() -> Iterator[list[float]]:
    """`with stopwatch() as t: ...` then t[0] is the elapsed wall time in seconds."""
    out: list[float] = []
    start = time.perf_counter()
    try:
        yield out
    finally:
        out.append(time.perf_counter() - start)


def best_of(repeat: int, fn: Callable[[], object]) -> float:
    """The fastest of `repeat` runs: noise on a shared machine only ever adds time."""
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def percentile(values: Sequence[float], p: float) -> float:
    ordered = sorted(values)
    if len(ordered) == 1:
        return ordered[0]
    k = (len(ordered) - 1) * p / 100
    lo, hi = int(k), min(int(k) + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (k - lo)


def median(values: Sequence[float]) -> float:
    return statistics.median(values)


def proc_status_kb(key: str, pid: int | str = "self") -> int:
    """A VmXXX line of /proc/PID/status in KiB (VmHWM is the peak resident set size)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1])
    raise KeyError(key)


def peak_rss_mb(pid: int | str = "self") -> float:
    return proc_status_kb("VmHWM", pid) / 1024


def rss_mb(pid: int | str = "self") -> float:
    return proc_status_kb("VmRSS", pid) / 1024


def profile(name: str, fn: Callable[[], object]) -> Path:
    """Run `fn` under pyinstrument (in the dev extra) and keep the text report."""
    from pyinstrument import Profiler

    profiler = Profiler(interval=0.0005)
    profiler.start()
    try:
        fn()
    finally:
        profiler.stop()
    path = BUILD / "profiles" / f"{name}.txt"
    path.parent.mkdir(parents=True, exist_ok=True)
    # BENCH_PROFILE_ALL=1 keeps the library frames (Django, psycopg) that the report folds away otherwise
    show_all = os.environ.get("BENCH_PROFILE_ALL") == "1"
    path.write_text(profiler.output_text(unicode=True, color=False, show_all=show_all))
    log(f"profile of {name}: {path}")
    return path


# -- databases ---------------------------------------------------------------------------------------------


def db_url(vendor: str, name: str) -> str:
    if vendor == "postgresql":
        return f"{PG_SERVER}/{name}"
    return f"sqlite:///{BUILD / 'db' / name}.sqlite3"


def _pg_admin(sql: str) -> None:
    import psycopg

    with psycopg.connect(f"{PG_SERVER}/postgres", autocommit=True) as conn:
        conn.execute(sql)


def settle(limit_seconds: float = 60.0) -> float:
    """Wait until PostgreSQL has finished what the benchmark before left it (autovacuum of the tables it
    filled, the checkpoint of what it wrote), so that it is not measured beside the next one.

    Returns the seconds waited."""
    import psycopg

    began = time.perf_counter()
    with psycopg.connect(f"{PG_SERVER}/postgres", autocommit=True) as conn:
        conn.execute("CHECKPOINT")
        while time.perf_counter() - began < limit_seconds:
            busy = conn.execute(
                "select count(*) from pg_stat_activity where backend_type = 'autovacuum worker'"
            ).fetchone()
            if not busy or not busy[0]:
                break
            time.sleep(0.5)
    return time.perf_counter() - began


def _pg_exists(name: str) -> bool:
    import psycopg

    with psycopg.connect(f"{PG_SERVER}/postgres", autocommit=True) as conn:
        return conn.execute("select 1 from pg_database where datname = %s", [name]).fetchone() is not None


def _migrations_fingerprint() -> str:
    import django

    digest = hashlib.sha256(django.get_version().encode())
    # The settings (INSTALLED_APPS) and the dependencies decide which other apps' tables exist.
    schema_inputs = [ROOT / "syncadmin" / "settings.py", ROOT / "pyproject.toml"]
    for path in [*schema_inputs, *sorted((ROOT / "tracking" / "migrations").glob("*.py"))]:
        digest.update(path.name.encode() + path.read_bytes())
    return digest.hexdigest()[:16]


def template_name() -> str:
    return f"{DB_PREFIX}_template"


def ensure_template(vendor: str) -> None:
    """A migrated, empty database to copy: migrating takes ~10 s, copying a template well under one."""
    BUILD.mkdir(parents=True, exist_ok=True)
    (BUILD / "db").mkdir(exist_ok=True)
    stamp = BUILD / "db" / f"template-{vendor}.fingerprint"
    fingerprint = _migrations_fingerprint()
    name = template_name()
    exists = _pg_exists(name) if vendor == "postgresql" else Path(db_url(vendor, name)[10:]).exists()
    if exists and stamp.exists() and stamp.read_text() == fingerprint:
        return
    log(f"migrating a template database ({vendor})")
    drop_db(vendor, name)
    if vendor == "postgresql":
        _pg_admin(f'create database "{name}"')
    subprocess.run(
        [PYTHON, str(ROOT / "manage.py"), "migrate", "--no-input", "-v0"],
        env=child_env(db_url(vendor, name)),
        cwd=ROOT,
        check=True,
    )
    stamp.write_text(fingerprint)


def create_db(vendor: str, name: str) -> str:
    """A fresh migrated database named `name` (replacing one left over), as a DATABASE_URL."""
    assert name.startswith(DB_PREFIX), name
    ensure_template(vendor)
    drop_db(vendor, name)
    if vendor == "postgresql":
        _pg_admin(f'create database "{name}" template "{template_name()}"')
    else:
        shutil.copyfile(db_url(vendor, template_name())[10:], db_url(vendor, name)[10:])
    return db_url(vendor, name)


@contextlib.contextmanager
def fresh_db(vendor: str, name: str) -> Iterator[str]:
    """create_db for the length of a with block, then drop_db."""
    url = create_db(vendor, name)
    try:
        yield url
    finally:
        drop_db(vendor, name)


def drop_db(vendor: str, name: str) -> None:
    assert name.startswith(DB_PREFIX), name
    if vendor == "postgresql":
        _pg_admin(f'drop database if exists "{name}" with (force)')
        return
    path = Path(db_url(vendor, name)[10:])
    for suffix in ("", "-wal", "-shm", "-journal"):
        Path(str(path) + suffix).unlink(missing_ok=True)


def child_env(database_url: str, **overrides: str) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        {
            "DJANGO_SETTINGS_MODULE": SETTINGS,
            "DATABASE_URL": database_url,
            "REDIS_URL": REDIS_URL,
            "PYTHONPATH": str(ROOT) + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else ""),
        }
    )
    env.update(overrides)
    return env


def setup_django(database_url: str) -> None:
    os.environ["DJANGO_SETTINGS_MODULE"] = SETTINGS
    os.environ["DATABASE_URL"] = database_url
    os.environ["REDIS_URL"] = REDIS_URL
    import django

    django.setup()


def vendor_of(url: str) -> str:
    return "postgresql" if url.startswith("postgres") else "sqlite"


def run_child(script: Path, *args: str, database_url: str, timeout: float = 1200) -> dict[str, Any]:
    """Run `script --child ARGS` on that database; it prints one JSON object as its last stdout line."""
    proc = subprocess.run(
        [PYTHON, str(script), "--child", *args],
        env=child_env(database_url),
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    sys.stderr.write(proc.stderr)
    if proc.returncode != 0:
        raise RuntimeError(
            f"{script.name} --child {' '.join(args)} failed ({proc.returncode}):\n{proc.stdout}"
        )
    return json.loads(proc.stdout.strip().splitlines()[-1])


def manage(*args: str, database_url: str, timeout: float = 1200) -> str:
    proc = subprocess.run(
        [PYTHON, str(ROOT / "manage.py"), *args],
        env=child_env(database_url),
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"manage.py {' '.join(args)} failed:\n{proc.stdout}\n{proc.stderr}")
    return proc.stdout


# -- the corpus --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class CorpusMessage:
    owner: str  # the address of the mailbox the message was found in
    folder: str  # inbox or sentitems
    raw: bytes
    round: int  # 0: as stored; n > 0: the n-th copy, its Message-IDs made unique with a prefix


def _mbox(path: Path) -> list[bytes]:
    box = stdlib_mailbox.mbox(path, create=False)
    try:
        return [box.get_bytes(key) for key in box.iterkeys()]
    finally:
        box.close()


@functools.cache
def corpus_originals() -> tuple[CorpusMessage, ...]:
    """Enron (every user's Inbox and sent folders) then Pony Mail, in a stable order: 7,646 messages."""
    out: list[CorpusMessage] = []
    for user, owner in ENRON_OWNERS.items():
        for path in sorted((CORPORA / "enron-mbox" / user).glob("*.mbox")):
            folder = "inbox" if path.stem == "inbox" else "sentitems"
            out += [CorpusMessage(owner, folder, raw, 0) for raw in _mbox(path)]
    for path in sorted((CORPORA / "ponymail-asf-mbox").glob("*.mbox")):
        out += [CorpusMessage(PONYMAIL_OWNER, "inbox", raw, 0) for raw in _mbox(path)]
    return tuple(out)


_HEADER_END = re.compile(rb"\r?\n\r?\n")
_ID_HEADERS = re.compile(rb"^(message-id|in-reply-to|references)[ \t]*:", re.IGNORECASE)


def copy_of(raw: bytes, tag: str) -> bytes:
    """The message with every id in Message-ID, In-Reply-To and References prefixed by `tag`.

    Copies thread among themselves exactly as the originals do, and never collide with them.
    A message without Message-ID gets one, so that each copy is a distinct message.
    """
    end = _HEADER_END.search(raw)
    head, body = (raw[: end.start()], raw[end.start() :]) if end else (raw, b"")
    lines = head.split(b"\n")
    out, in_id_header, had_id = [], False, False
    for line in lines:
        if line[:1] in (b" ", b"\t"):
            out.append(line.replace(b"<", b"<" + tag.encode() + b".") if in_id_header else line)
            continue
        in_id_header = bool(_ID_HEADERS.match(line))
        if in_id_header:
            is_message_id = line[:10].lower() == b"message-id"
            had_id = had_id or is_message_id
            name, _, value = line.partition(b":")
            if is_message_id and b"<" not in value and value.strip():
                value = b" <" + value.strip().rstrip(b"\r") + b">" + (b"\r" if value.endswith(b"\r") else b"")
            line = name + b":" + value.replace(b"<", b"<" + tag.encode() + b".")
        out.append(line)
    if not had_id:
        digest = hashlib.sha256(raw).hexdigest()[:24]
        out.append(f"Message-ID: <{tag}.{digest}@copies.bench.invalid>".encode())
    return b"\n".join(out) + body


def corpus(count: int, tag: str = "") -> list[CorpusMessage]:
    """`count` messages: the corpus, then copies of it (rounds r1, r2, ...) until there are enough.

    `tag` makes every Message-ID unique to one use (one simulated mailbox), including round 0.
    """
    originals = corpus_originals()
    out: list[CorpusMessage] = []
    rnd = 0
    while len(out) < count:
        prefix = f"{tag}r{rnd}" if (rnd or tag) else ""
        for m in originals[: count - len(out)]:
            raw = copy_of(m.raw, prefix) if prefix else m.raw
            out.append(CorpusMessage(m.owner, m.folder, raw, rnd))
        rnd += 1
    return out


def corpus_addresses(limit: int, exclude: frozenset[str] | set[str]) -> list[str]:
    """The corpus's most frequent correspondents, most frequent first (from its first 3,000 messages)."""
    import collections

    cache = BUILD / "corpus-correspondents.json"
    if cache.exists():
        ranked = json.loads(cache.read_text())
    else:
        from tracking.messages import ParsedMessage, parse_message

        counts: collections.Counter[str] = collections.Counter()
        for m in corpus_originals()[:3000]:
            parsed = parse_message(m.raw)
            if isinstance(parsed, ParsedMessage):
                parties = [parsed.sender] if parsed.sender else []
                counts.update(a.address for a in [*parties, *parsed.to, *parsed.cc])
        ranked = [a for a, _ in counts.most_common()]
        BUILD.mkdir(parents=True, exist_ok=True)
        cache.write_text(json.dumps(ranked))
    return [a for a in ranked if a not in exclude][:limit]


def add_corpus_records(
    count: int, *, exclude: frozenset[str] | set[str] = frozenset(), seed: int = 1
) -> None:
    """`count` CRM records through generate_load: 60 % of them the corpus's frequent correspondents."""
    from django.core.management import call_command

    path = BUILD / "corpus-addresses.txt"
    path.write_text("\n".join(corpus_addresses(count * 6 // 10, exclude | set(ENRON_OWNERS.values()))))
    call_command("generate_load", records=count, addresses_from=str(path), seed=seed, stdout=sys.stderr)


def git_revision() -> str:
    try:
        rev = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        return rev + ("+changes" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


# -- the simulator in its own process ----------------------------------------------------------------------

SIM_USER = "svc-bench"
SIM_SECRET = "bench-Pa55"


class SimProcess:
    """bench/simulator.py running on; `with SimProcess(mailboxes, workdir) as sim:` waits until it listens."""

    def __init__(self, mailboxes: list[dict[str, object]], workdir: Path) -> None:
        workdir.mkdir(parents=True, exist_ok=True)
        self.workdir = workdir
        spec = workdir / "simulator-spec.json"
        spec.write_text(json.dumps({"mailboxes": mailboxes}))
        self._log = (workdir / "simulator.log").open("wb")
        self.popen = subprocess.Popen(
            [PYTHON, str(ROOT / "bench" / "simulator.py"), "--spec", str(spec), "--cert-dir", str(workdir)],
            env=child_env(db_url("sqlite", template_name())),
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=self._log,
        )
        assert self.popen.stdout is not None
        line = self.popen.stdout.readline()
        if not line:
            self.popen.wait(10)
            raise RuntimeError(f"the simulator did not start; see {workdir / 'simulator.log'}")
        info = json.loads(line)
        self.url: str = info["url"]
        self.ca_file: str = info["ca_file"]
        self.messages: int = info["messages"]
        self.load_seconds: float = info["load_seconds"]

    def __enter__(self) -> SimProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def stop(self) -> None:
        if self.popen.poll() is None:
            self.popen.terminate()
            try:
                self.popen.wait(15)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait(5)
        self._log.close()

    def _control(self, method: str, what: str, body: bytes | None = None) -> Any:
        import requests

        response = requests.request(
            method, f"{self.url}/_simulator/{what}", data=body, verify=self.ca_file, timeout=60
        )
        response.raise_for_status()
        return response.json() if response.content else None

    def add_message(self, address: str, folder: str, raw: bytes) -> None:
        """New mail in a folder (a key such as inbox/projects/b3, or a display path)."""
        self._control("POST", f"messages?mailbox={address}&folder={folder}", raw)

    def requests(self) -> list[dict[str, Any]]:
        return list(self._control("GET", "requests"))

    def clear_requests(self) -> None:
        self._control("DELETE", "requests")

    def count(self, operation: str | None = None, mailbox: str | None = None) -> int:
        return sum(
            1
            for r in self.requests()
            if r["protocol"] == "ews"
            and (operation is None or r["operation"] == operation)
            and (mailbox is None or r["mailbox"] == mailbox.lower())
        )


def add_sim_profile(sim: SimProcess, name: str = "bench-ews", max_connections: int = 10) -> Any:
    """An EWS server profile on the simulator (Basic auth, impersonation, the simulator's CA)."""
    from tracking.actions import ProfileValues, check_add_profile

    return check_add_profile(
        ProfileValues(
            name,
            "exchange_ews",
            endpoint=f"{sim.url}/EWS/Exchange.asmx",
            auth_method="basic",
            username=SIM_USER,
            ca_bundle=sim.ca_file,
            use_impersonation=True,
            max_concurrent_connections=max_connections,
        ),
        secret=SIM_SECRET,
        actor_label="bench",
    )


def seed_enabled_mailboxes(addresses: list[str], profile: Any) -> list[int]:
    """Users' mailboxes in bulk, approved and enabled as a passed Test & Enable leaves them, none due yet
    (tomorrow); their ids. The user of each is named by its address's local part."""
    from datetime import timedelta

    from django.contrib.auth.hashers import make_password
    from django.contrib.auth.models import User
    from django.utils import timezone

    from tracking.choices import Approval, IncomingMethod, MailboxStatus
    from tracking.models import Mailbox

    unusable = make_password(None)
    now = timezone.now()
    names = [a.split("@")[0] for a in addresses]
    User.objects.bulk_create(
        [User(username=n, password=unusable, date_joined=now) for n in names], batch_size=5000
    )
    users = dict(User.objects.filter(username__in=names).values_list("username", "pk"))
    Mailbox.objects.bulk_create(
        [
            Mailbox(
                email_address=a,
                user_id=users[n],
                profile=profile,
                incoming_method=IncomingMethod.SERVER_SIDE_SYNC,
                approval=Approval.APPROVED,
                enabled=True,
                incoming_status=MailboxStatus.SUCCESS,
                next_run_at=now + timedelta(days=1),
            )
            for a, n in zip(addresses, names, strict=True)
        ],
        batch_size=5000,
    )
    return list(Mailbox.objects.filter(email_address__in=addresses).values_list("pk", flat=True))


def add_enabled_mailbox(address: str, profile_name: str, *, track: int = 1) -> Any:
    """A user mailbox, approved and enabled as a passed Test & Enable leaves it (due now)."""
    from django.utils import timezone

    from tracking.actions import check_add_mailbox, do_record_test_result, do_set_personal_options

    mailbox = check_add_mailbox(
        address,
        profile_name=profile_name,
        username=address.split("@")[0],
        create_user=True,
        approve=True,
        actor_label="bench",
    )
    assert mailbox.user is not None
    do_set_personal_options(mailbox.user, track=track, actor_label="bench")
    do_record_test_result(mailbox, ok=True, message="connected", now=timezone.now(), actor_label="bench")
    mailbox.refresh_from_db()
    return mailbox
