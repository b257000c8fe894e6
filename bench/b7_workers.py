"""B7: two RQ workers against one, scanning 40 simulated Exchange mailboxes (PostgreSQL, Redis).

Eight sets of 40 mailboxes, 50 corpus messages each, on the EWS simulator (its own process). Each set is
dispatched (`tracking.jobs.dispatch_due_mailboxes`) to workers already started and listening (`manage.py
rqworker QUEUES`, every queue, as deployed; stopped once the set is scanned): one worker, two at once, two,
one, and again, so that a change in the machine's other load hits both sides. Throughput is messages /
(last scan's end − first scan's start), from the ScanRuns: no worker's start-up counts (with burst workers
started beside the queued scans, as before, the second worker's later start did).
Target: two workers ≥ 1.8 × the throughput of one (issue 19; 1.6 × in issue 6).

Workers run as deployed (DJANGO_SETTINGS_MODULE=syncadmin.settings, DEBUG=1, DATABASE_URL, REDIS_URL,
SYNCADMIN_ENCRYPTION_KEY) on a Redis database of their own (BENCH_REDIS_URL, 14 by default, emptied before
and after).

    python bench/b7_workers.py [--mailboxes 40] [--messages 50]
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import common

VENDOR = "postgresql"
DB = f"{common.DB_PREFIX}_b7"


def cpu_seconds(pid: int) -> float:
    """User + system CPU of a process so far (from /proc/PID/stat)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def busy_cpu_seconds() -> tuple[float, float]:
    """(CPU seconds the whole machine spent busy, seconds of all CPUs) so far, from /proc/stat."""
    ticks = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = ticks[3] + ticks[4]  # idle and iowait
    hz = os.sysconf("SC_CLK_TCK")
    return (sum(ticks) - idle) / hz, sum(ticks) / hz


def start_workers(workers: int, url: str, log_dir: Path) -> list[subprocess.Popen[bytes]]:
    """Start `workers` workers (long-lived, as deployed) and wait until each is registered and listening, so
    that none is still starting up when the scans are queued."""
    import django_rq
    from django.conf import settings
    from rq import Worker

    from tracking.jobqueues import WORKER_QUEUES

    env = dict(os.environ)
    env.update(
        {
            "DJANGO_SETTINGS_MODULE": "syncadmin.settings",
            "DEBUG": "1",
            "DATABASE_URL": url,
            "REDIS_URL": common.REDIS_URL,
            "SYNCADMIN_ENCRYPTION_KEY": settings.SYNCADMIN_ENCRYPTION_KEY,
            "LOG_LEVEL": "WARNING",
        }
    )
    procs = []
    for n in range(workers):
        log = (log_dir / f"worker-{workers}-{n}.log").open("wb")
        procs.append(
            subprocess.Popen(
                [common.PYTHON, str(common.ROOT / "manage.py"), "rqworker", *WORKER_QUEUES],
                env=env,
                cwd=common.ROOT,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        )
    redis = django_rq.get_connection(WORKER_QUEUES[0])
    deadline = time.monotonic() + 120
    while len([w for w in Worker.all(connection=redis) if w.get_state() == "idle"]) < workers:
        if time.monotonic() > deadline or any(p.poll() is not None for p in procs):
            stop_workers(procs)
            raise RuntimeError(f"the workers did not start; see {log_dir}")
        time.sleep(0.1)
    return procs


def stop_workers(procs: list[subprocess.Popen[bytes]]) -> None:
    for proc in procs:
        proc.send_signal(signal.SIGTERM)  # a warm shutdown: each is idle by now
    for proc in procs:
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--mailboxes", type=int, default=40)
    parser.add_argument("--messages", type=int, default=50, help="per mailbox")
    args = parser.parse_args()
    with common.fresh_db(VENDOR, DB) as url:
        run(url, args)


def run(url: str, args: argparse.Namespace) -> None:
    common.setup_django(url)
    import django_rq
    from django.db import connections
    from django.db.models import Max, Min, Sum
    from django.utils import timezone

    from tracking.actions import check_add_mailbox, do_record_test_result, do_set_personal_options
    from tracking.choices import ScanStatus
    from tracking.jobs import QUEUE, dispatch_due_mailboxes
    from tracking.models import Mailbox, ScanRun

    redis = django_rq.get_connection(QUEUE)
    assert redis.connection_pool.connection_kwargs.get("db") == int(common.REDIS_URL.rsplit("/", 1)[1])
    redis.flushdb()
    # 1, 2, 2, 1 workers, twice (each run on mailboxes of its own): a drift in the machine's load hits both
    # alike, and eight runs of ~5–10 s average out more of its ups and downs than four
    plan = [1, 2, 2, 1, 1, 2, 2, 1]
    sets = {
        run: [f"b7-r{run}-{n:02d}@bench.example" for n in range(args.mailboxes)] for run in range(len(plan))
    }
    spec: list[dict[str, object]] = [
        {"address": a, "count": args.messages, "tag": a.split("@")[0].replace("-", ""), "folders": "inbox"}
        for addresses in sets.values()
        for a in addresses
    ]
    log_dir = common.BUILD / "b7-logs"
    log_dir.mkdir(parents=True, exist_ok=True)
    results: list[dict[str, float]] = []
    try:
        with common.SimProcess(spec, common.BUILD / "sim-b7") as sim:
            common.log(f"B7: simulator with {sim.messages} messages, loaded in {sim.load_seconds} s")
            common.add_sim_profile(sim, max_connections=10)
            common.add_corpus_records(1000)
            boxes: dict[int, list[Mailbox]] = {}
            for run, addresses in sets.items():
                boxes[run] = []
                for address in addresses:
                    box = check_add_mailbox(
                        address,
                        profile_name="bench-ews",
                        username=address.split("@")[0],
                        create_user=True,
                        approve=True,
                        actor_label="bench",
                    )
                    assert box.user is not None
                    do_set_personal_options(box.user, track=2, actor_label="bench")
                    boxes[run].append(box)
            for run, size in enumerate(plan):
                for box in boxes[run]:  # Test & Enable passed: enabled and due now
                    do_record_test_result(box, ok=True, message="connected", now=timezone.now())
                connections.close_all()
                workers = start_workers(size, url, log_dir)
                sim_cpu = cpu_seconds(sim.popen.pid)
                machine = busy_cpu_seconds()
                began = time.perf_counter()
                try:
                    assert dispatch_due_mailboxes() == args.mailboxes
                    runs = ScanRun.objects.filter(mailbox__in=boxes[run])
                    expected = args.mailboxes * args.messages
                    while (
                        runs.filter(finished_at__isnull=True).exists()
                        or (runs.aggregate(n=Sum("items_done"))["n"] or 0) < expected
                    ):
                        if time.perf_counter() - began > 1800:
                            raise RuntimeError(f"the scans did not finish; see {log_dir}")
                        time.sleep(0.2)
                    wall = time.perf_counter() - began
                    busy, all_cpus = (b - a for a, b in zip(machine, busy_cpu_seconds(), strict=True))
                finally:
                    stop_workers(workers)
                sim_cpu = cpu_seconds(sim.popen.pid) - sim_cpu
                span = runs.aggregate(
                    first=Min("started_at"), last=Max("finished_at"), items=Sum("items_done")
                )
                failed = runs.exclude(status=ScanStatus.SUCCEEDED).count()
                assert failed == 0 and span["items"] == args.mailboxes * args.messages, (failed, span)
                seconds = (span["last"] - span["first"]).total_seconds()
                results.append(
                    {
                        "workers": size,
                        "messages": span["items"],
                        "seconds": seconds,
                        "throughput": span["items"] / seconds,
                        "wall_from_dispatch": wall,
                        # how many of the machine's CPUs were busy on average (anything running on it)
                        "busy_cpus": (os.cpu_count() or 1) * busy / all_cpus,
                        "simulator_cpu_seconds": sim_cpu,
                        "load_average": os.getloadavg()[0],
                    }
                )
                common.log(f"B7: {size} worker(s): {span['items']} messages in {seconds:.1f} s")
                Mailbox.objects.filter(pk__in=[b.pk for b in boxes[run]]).update(enabled=False)
    finally:
        redis.flushdb()

    def total(workers: int, key: str) -> float:
        return sum(r[key] for r in results if r["workers"] == workers)

    one = total(1, "messages") / total(1, "seconds")
    two = total(2, "messages") / total(2, "seconds")
    ratio = two / one
    figure = common.Figure(
        figure="B7",
        measure=f"throughput of 2 RQ workers vs 1, {args.mailboxes} simulated mailboxes",
        measured=two,
        baseline=one,
        unit="msg/s",
        target="≥ 1.8×",
        met=ratio >= 1.8,
        ratio=ratio,
        db=VENDOR,
        size=f"{args.mailboxes} mailboxes × {args.messages} messages per run, runs 1-2-2-1-1-2-2-1 workers; "
        f"{os.cpu_count()} CPUs",
        notes=[
            "seconds per run (workers): "
            + ", ".join(f"{r['seconds']:.1f} ({r['workers']})" for r in results)
            + f"; the simulator used {sum(r['simulator_cpu_seconds'] for r in results):.1f} CPU s in all",
            "CPUs busy on average, from the dispatch to the last scan (workers): "
            + ", ".join(f"{r['busy_cpus']:.2f} ({r['workers']})" for r in results),
        ],
        details={"runs": results},
    )
    common.write_result("b7", [figure])


if __name__ == "__main__":
    main()
