"""B10: arrival-to-decision latency at 1,000 simulated Exchange Online mailboxes, push against polling.

One run, everything in processes of its own as deployed: the simulator (bench/simulator.py: Microsoft
Graph and EWS), the web app (`manage.py runserver --noreload`, as runall starts it; SYNCADMIN_SITE_URL
points at it, so the simulator's change notifications reach /graph/notifications/), `--workers` RQ
workers (`manage.py rqworker` with tracking.jobqueues.WORKER_QUEUES; the worker class comes from the
settings), `manage.py ews_stream`, and the dispatcher queued every 30 s on the default queue, as rqcron
does (rqcron itself would also queue the push upkeep, which would subscribe the polling mailboxes too).

Three sets of empty mailboxes are seeded with bulk inserts (approved, enabled): `--mailboxes` Exchange
Online (Graph) mailboxes on push, subscribed by the push upkeep's jobs (tracking.pushjobs: a
subscription per folder, validated by the web app, then a catch-up scan); `--ews-mailboxes` Exchange
Server mailboxes, streamed by ews_stream (a thread and a GetStreamingEvents connection each); and
`--poll-mailboxes` Graph mailboxes never subscribed, as if SYNCADMIN_SITE_URL were unset for them, polled
every `--poll-minutes` (MailboxPollIntervalMinutes, at its minimum 1). Every mailbox then has its first
scan cycle (push mailboxes then poll only every PushSafetyNetPollMinutes, 60), and mail arrives:
`--rate` messages a second for `--duration` seconds, of every five 3 in a random Graph push mailbox, 1 in
an EWS one and 1 in a polling one (a set of 0 mailboxes loses its turns).

A message's arrival is when the simulator stored it (the `stored_at` its control endpoint answers, the
clock read just before the store takes it); its decision is Decision.decided_at: the clock the scan reads
once the page holding the message has been fetched, just before the page is decided and committed (the
commit follows within milliseconds; the scan run's end, ScanRun.finished_at, is reported beside it).
Latency = decision − arrival, both on this machine's clock. Every message must be decided exactly once.
Targets: push p95 ≤ 10 s; polling p95 ≈ the poll interval (between 0.5 and 1.5 × it).

    python bench/b10_latency.py [--mailboxes 1000] [--ews-mailboxes 50] [--poll-mailboxes 100]
                                [--rate 5] [--duration 120] [--workers 4] [--poll-minutes 1]
"""

from __future__ import annotations

import argparse
import os
import random
import signal
import socket
import subprocess
import sys
import threading
import time
from collections import Counter
from datetime import timedelta
from email.utils import formatdate
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import common

VENDOR = "postgresql"
DB = f"{common.DB_PREFIX}_b10"
PUSH_P95_TARGET = 10.0
DISPATCH_EVERY_SECONDS = 30  # tracking.cron.DISPATCH_EVERY_SECONDS


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Processes:
    """The web server and the workers, started with the same environment, stopped together."""

    def __init__(self, env: dict[str, str], log_dir: Path) -> None:
        self.env = env
        self.log_dir = log_dir
        self.procs: list[subprocess.Popen[bytes]] = []

    def start(self, name: str, *args: str) -> subprocess.Popen[bytes]:
        log = (self.log_dir / f"{name}.log").open("wb")
        proc = subprocess.Popen(
            [common.PYTHON, str(common.ROOT / "manage.py"), *args],
            env=self.env,
            cwd=common.ROOT,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        self.procs.append(proc)
        return proc

    def check(self) -> None:
        for proc in self.procs:
            if proc.poll() is not None:
                raise RuntimeError(f"{proc.args!r} stopped ({proc.returncode}); see {self.log_dir}")

    def stop(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in self.procs:
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)


def wait_until(what: str, done: Any, timeout: float, procs: Processes) -> None:
    deadline = time.monotonic() + timeout
    while not done():
        procs.check()
        if time.monotonic() > deadline:
            raise RuntimeError(f"B10: still waiting for {what} after {timeout:.0f} s")
        time.sleep(0.5)


def queues_idle() -> bool:
    """Nothing queued on any queue and no worker busy."""
    import django_rq
    from rq import Worker

    from tracking.jobqueues import WORKER_QUEUES
    from tracking.jobs import QUEUE

    if any(django_rq.get_queue(name).count for name in WORKER_QUEUES):
        return False
    workers = Worker.all(connection=django_rq.get_connection(QUEUE))
    return all(w.get_state() != "busy" for w in workers)


def message(n: int, address: str) -> tuple[str, bytes]:
    message_id = f"<b10-{n:06d}@customer.bench.example>"
    raw = (
        f"Message-ID: {message_id}\r\nDate: {formatdate(usegmt=True)}\r\n"
        f"From: Buyer {n % 97} <buyer{n % 97}@customer.bench.example>\r\nTo: <{address}>\r\n"
        f"Subject: Order {n}\r\nMIME-Version: 1.0\r\nContent-Type: text/plain\r\n\r\n"
        "Please confirm the delivery date.\r\n"
    ).encode()
    return message_id, raw


def stats(values: list[float]) -> dict[str, float]:
    return {
        "count": len(values),
        "p50": common.percentile(values, 50),
        "p95": common.percentile(values, 95),
        "max": max(values),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--mailboxes", type=int, default=1000, help="on push")
    parser.add_argument("--poll-mailboxes", type=int, default=100, help="on polling")
    parser.add_argument("--ews-mailboxes", type=int, default=50, help="Exchange Server, EWS streaming")
    parser.add_argument("--rate", type=float, default=5.0, help="messages a second, all mailboxes")
    parser.add_argument("--duration", type=float, default=120.0, help="seconds of arriving mail")
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--poll-minutes", type=int, default=1, help="MailboxPollIntervalMinutes")
    parser.add_argument("--seed", type=int, default=10)
    args = parser.parse_args()
    with common.fresh_db(VENDOR, DB) as url:
        run(url, args)


def run(url: str, args: argparse.Namespace) -> None:
    port = free_port()
    site = f"http://127.0.0.1:{port}"
    # this process queues the upkeep and reads the push state: the same settings as the workers
    os.environ["SYNCADMIN_SITE_URL"] = site
    common.setup_django(url)
    import django_rq
    import requests
    from django.db import connections

    from tracking.actions import ProfileValues, check_add_profile
    from tracking.actions.settings import check_set_org_setting
    from tracking.choices import SubscriptionStatus
    from tracking.context import load_rules
    from tracking.jobqueues import WORKER_QUEUES
    from tracking.jobs import QUEUE
    from tracking.models import Decision, GraphSubscription, Mailbox, ScanRun
    from tracking.pushjobs import enqueue_push_maintenance
    from tracking.pushstate import healthy_mailbox_ids, on_push, push_folders

    redis = django_rq.get_connection(QUEUE)
    assert redis.connection_pool.connection_kwargs.get("db") == int(common.REDIS_URL.rsplit("/", 1)[1])
    redis.flushdb()
    check_set_org_setting("MailboxPollIntervalMinutes", str(args.poll_minutes), actor_label="bench")
    rules = load_rules()
    folders = push_folders(rules)
    push_addresses = [f"b10-push-{n:05d}@bench.example" for n in range(args.mailboxes)]
    poll_addresses = [f"b10-poll-{n:05d}@bench.example" for n in range(args.poll_mailboxes)]
    ews_addresses = [f"b10-ews-{n:05d}@bench.example" for n in range(args.ews_mailboxes)]
    addresses = {"push": push_addresses, "ews": ews_addresses, "poll": poll_addresses}
    # of every 5 messages: 3 to Graph push mailboxes, 1 to EWS push ones, 1 to polling ones (an empty set
    # loses its turns)
    turns = [s for s in ("push", "push", "push", "ews", "poll") if addresses[s]]
    spec: list[dict[str, object]] = [
        {"address": a, "count": 0, "folders": "inbox"}
        for a in push_addresses + ews_addresses + poll_addresses
    ]
    log_dir = common.BUILD / "b10-logs"
    log_dir.mkdir(parents=True, exist_ok=True)
    env = common.child_env(url, SYNCADMIN_SITE_URL=site)
    procs = Processes(env, log_dir)
    stop_dispatch = threading.Event()
    phases: dict[str, float] = {}
    try:
        with common.SimProcess(spec, common.BUILD / "sim-b10") as sim:
            profile = check_add_profile(
                ProfileValues(
                    "bench-graph",
                    "exchange_graph",
                    endpoint=sim.url,
                    auth_method="oauth2",
                    tenant_id="contoso.example",
                    client_id=common.SIM_USER,
                    authority=sim.url,
                    ca_bundle=sim.ca_file,
                    # a slot per worker and more: a push scan never waits for one
                    max_concurrent_connections=max(10, 2 * args.workers),
                ),
                secret=common.SIM_SECRET,
                actor_label="bench",
            )
            began = time.perf_counter()
            push_ids = common.seed_enabled_mailboxes(push_addresses, profile)
            poll_ids = common.seed_enabled_mailboxes(poll_addresses, profile)
            ews_ids = common.seed_enabled_mailboxes(
                ews_addresses, common.add_sim_profile(sim, max_connections=max(10, 2 * args.workers))
            )
            every_id = push_ids + ews_ids + poll_ids
            phases["seed"] = time.perf_counter() - began
            common.log(f"B10: {len(every_id):,} mailboxes seeded in {phases['seed']:.1f} s")

            procs.start("web", "runserver", f"127.0.0.1:{port}", "--noreload")
            wait_until("the web server", lambda: _answers(requests, site), 60, procs)
            for n in range(args.workers):
                procs.start(f"worker-{n}", "rqworker", *WORKER_QUEUES)
            if ews_ids:
                # a stream per Exchange Server mailbox, which subscribes and catches each folder up
                procs.start("ews_stream", "ews_stream")
            connections.close_all()

            # push upkeep of the push mailboxes: subscribe (validated by the web app), then catch up
            began = time.perf_counter()
            for mailbox_id in push_ids:
                enqueue_push_maintenance(mailbox_id)
            subs = GraphSubscription.objects.filter(mailbox_id__in=push_ids)
            wanted = len(push_ids) * len(folders)
            wait_until(
                "the subscriptions",
                lambda: subs.count() >= wanted and queues_idle(),
                120 + len(push_ids),
                procs,
            )
            active = subs.filter(status=SubscriptionStatus.ACTIVE).count()
            assert active == wanted, f"{active} of {wanted} subscriptions active; see {log_dir}"
            phases["subscribe"] = time.perf_counter() - began
            common.log(f"B10: {active:,} subscriptions in {phases['subscribe']:.1f} s")
            wait_until(
                "the EWS streams",
                lambda: set(ews_ids) <= healthy_mailbox_ids() and queues_idle(),
                120 + len(ews_ids),
                procs,
            )

            # every mailbox's first scan cycle, then the dispatcher every 30 s as rqcron runs it
            began = time.perf_counter()
            Mailbox.objects.filter(pk__in=every_id).update(next_run_at=None)
            dispatcher = threading.Thread(
                target=_dispatch_every, args=(DISPATCH_EVERY_SECONDS, stop_dispatch), daemon=True
            )
            dispatcher.start()
            wait_until(
                "the first scan cycles",
                lambda: not _unscheduled(every_id) and queues_idle(),
                120 + len(push_ids),
                procs,
            )
            phases["first_cycles"] = time.perf_counter() - began
            now = _now()
            pushed = sum(on_push(i, rules, now) for i in push_ids + ews_ids)
            assert pushed == len(push_ids + ews_ids), f"only {pushed} push mailboxes on push"
            common.log(f"B10: first scan cycles in {phases['first_cycles']:.1f} s; {pushed:,} on push")

            # steady mail: `rate` a second, each in a random mailbox of its set
            rng = random.Random(args.seed)
            session = requests.Session()
            sent: dict[str, tuple[str, float]] = {}  # message id: (push, ews or poll, stored_at)
            total = int(args.rate * args.duration)
            started = time.time()
            for n in range(total):
                time.sleep(max(0.0, started + n / args.rate - time.time()))
                which = turns[n % len(turns)]
                address = rng.choice(addresses[which])
                message_id, raw = message(n, address)
                response = session.post(
                    f"{sim.url}/_simulator/messages",
                    params={"mailbox": address, "folder": "inbox"},
                    data=raw,
                    verify=sim.ca_file,
                    timeout=30,
                )
                response.raise_for_status()
                sent[message_id] = (which, float(response.json()["stored_at"]))
            # behind schedule at the end: the simulator or this process could not keep the rate
            lag = phases["behind"] = time.time() - started - (total - 1) / args.rate
            common.log(f"B10: {total} messages in {time.time() - started:.0f} s ({lag:.2f} s behind)")

            decided = Decision.objects.filter(message_id__in=list(sent))
            wait_until(
                "every message's decision",
                lambda: decided.values("message_id").distinct().count() == len(sent),
                args.poll_minutes * 60 + DISPATCH_EVERY_SECONDS + 300,
                procs,
            )
            time.sleep(2)  # a decision made twice would show now
            rows = list(decided.values_list("message_id", "decided_at", "scan_run_id"))
            finished = dict(
                ScanRun.objects.filter(pk__in={r[2] for r in rows}).values_list("pk", "finished_at")
            )
            load = os.getloadavg()
    finally:
        stop_dispatch.set()
        procs.stop()
        redis.flushdb()

    twice = [m for m, c in Counter(r[0] for r in rows).items() if c > 1]
    latency: dict[str, list[float]] = {name: [] for name in addresses}
    visible: dict[str, list[float]] = {name: [] for name in addresses}
    for message_id, decided_at, run_id in rows:
        which, stored_at = sent[message_id]
        latency[which].append(decided_at.timestamp() - stored_at)
        ended = finished.get(run_id)
        if ended is not None:
            visible[which].append(ended.timestamp() - stored_at)
    found = {name: stats(values) for name, values in latency.items() if values}
    to_end = {name: stats(values) for name, values in visible.items() if values}
    interval = args.poll_minutes * 60.0
    size = (
        f"{args.mailboxes:,} Graph push, {args.ews_mailboxes:,} EWS push, {args.poll_mailboxes:,} polling "
        f"mailboxes; {args.rate:g} msg/s for {args.duration:g} s; {args.workers} workers; "
        f"{os.cpu_count()} CPUs"
    )
    label = {"push": "Graph push", "ews": "EWS push", "poll": f"polling every {args.poll_minutes} min"}

    def describe(s: dict[str, float]) -> str:
        return f"p50 {s['p50']:.1f} s, p95 {s['p95']:.1f} s, max {s['max']:.1f} s ({s['count']:.0f} messages)"

    notes = [
        "; ".join(f"{label[name]}: {describe(s)}" for name, s in found.items()),
        "to the end of the deciding scan run: "
        + "; ".join(f"{label[name]}: {describe(s)}" for name, s in to_end.items()),
        f"decided twice: {len(twice)}; setup: seeding {phases['seed']:.1f} s, "
        f"{args.mailboxes * len(folders):,} Graph subscriptions {phases['subscribe']:.0f} s, "
        f"first scan cycles {phases['first_cycles']:.0f} s; the mail's last message "
        f"{phases['behind']:.2f} s behind its schedule; load average after {load[0]:.1f}",
    ]
    poll = found.get("poll")
    figures = []
    for name, count in (("push", args.mailboxes), ("ews", args.ews_mailboxes)):
        if name not in found:
            continue
        how = "Graph change notifications" if name == "push" else "EWS streaming notifications"
        figures.append(
            common.Figure(
                figure="B10",
                measure=f"arrival-to-decision latency p95, push ({how}), {count:,} mailboxes; "
                "baseline polling",
                measured=found[name]["p95"],
                baseline=poll["p95"] if poll else None,
                unit="s",
                target=f"≤ {PUSH_P95_TARGET:g} s",
                met=found[name]["p95"] <= PUSH_P95_TARGET and not twice,
                db=VENDOR,
                size=size,
                notes=notes if name == "push" else [],
                details={
                    "latency": found,
                    "to_run_end": to_end,
                    "decided_twice": twice,
                    "phases": phases,
                    "load_average_after": load,
                }
                if name == "push"
                else {},
            )
        )
    if poll:
        figures.append(
            common.Figure(
                figure="B10",
                measure=f"arrival-to-decision latency p95, polling every {args.poll_minutes} min "
                f"(same run), {args.poll_mailboxes:,} mailboxes; baseline the poll interval",
                measured=poll["p95"],
                baseline=interval,
                unit="s",
                target="≈ the poll interval (0.5–1.5×)",
                met=0.5 * interval <= poll["p95"] <= 1.5 * interval,
                db=VENDOR,
                size=size,
            )
        )
    common.write_result("b10", figures)


def _answers(requests: Any, site: str) -> bool:
    try:
        requests.get(f"{site}/", timeout=2, allow_redirects=False)
    except requests.RequestException:
        return False
    return True


def _unscheduled(mailbox_ids: list[int]) -> bool:
    """Whether a mailbox is still due or claimed (a claim puts next_run_at a lease ahead; a finished
    cycle, the poll interval or PushSafetyNetPollMinutes)."""
    from django.db.models import Q
    from django.utils import timezone

    from tracking.jobs import CLAIM_LEASE
    from tracking.models import Mailbox

    claimed_after = timezone.now() + CLAIM_LEASE - timedelta(minutes=2)
    return (
        Mailbox.objects.filter(pk__in=mailbox_ids)
        .filter(Q(next_run_at__isnull=True) | Q(next_run_at__gt=claimed_after))
        .exists()
    )


def _now() -> Any:
    from django.utils import timezone

    return timezone.now()


def _dispatch_every(seconds: float, stop: threading.Event) -> None:
    """Queue the dispatcher now and every `seconds`, as rqcron does (tracking/cron.py)."""
    import django_rq

    from tracking.jobs import QUEUE, dispatch_due_mailboxes

    queue = django_rq.get_queue(QUEUE)
    while not stop.is_set():
        queue.enqueue_call(dispatch_due_mailboxes, timeout=300)
        stop.wait(seconds)


if __name__ == "__main__":
    main()
