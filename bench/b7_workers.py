"""B7: two RQ workers against one, scanning 40 simulated Exchange mailboxes (PostgreSQL, Redis).

Four sets of 40 mailboxes, 50 corpus messages each, on the EWS simulator (its own process). Each set is
dispatched (`tracking.jobs.dispatch_due_mailboxes`) and scanned by burst workers (`manage.py rqworker
QUEUES --burst`, every queue as deployed): one worker, two at once, two, one, so that a change in the
machine's other load hits both sides. Throughput is messages / (last scan's end − first scan's start),
from the ScanRuns, so worker start-up does not count. Target: two workers ≥ 1.8 × the throughput of one
(issue 19; 1.6 × in issue 6).

Workers run as deployed (DJANGO_SETTINGS_MODULE=syncadmin.settings, DEBUG=1, DATABASE_URL, REDIS_URL,
SYNCADMIN_ENCRYPTION_KEY) on a Redis database of their own (BENCH_REDIS_URL, 14 by default, emptied before
and after).

    python bench/b7_workers.py [--mailboxes 40] [--messages 50]
"""

from __future__ import annotations

import argparse
import os
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


def burst(workers: int, url: str, log_dir: Path) -> float:
    """Start `workers` burst workers at once and wait for all; returns the wall time."""
    from django.conf import settings

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
    started = time.perf_counter()
    procs = []
    for n in range(workers):
        log = (log_dir / f"worker-{workers}-{n}.log").open("wb")
        procs.append(
            subprocess.Popen(
                [common.PYTHON, str(common.ROOT / "manage.py"), "rqworker", *WORKER_QUEUES, "--burst"],
                env=env,
                cwd=common.ROOT,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        )
    for proc in procs:
        if proc.wait(1800) != 0:
            raise RuntimeError(f"a worker failed; see {log_dir}")
    return time.perf_counter() - started


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
    # 1, 2, 2, 1 workers (each run on mailboxes of its own): a drift in the machine's load hits both alike
    plan = [1, 2, 2, 1]
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
                assert dispatch_due_mailboxes() == args.mailboxes
                connections.close_all()
                sim_cpu = cpu_seconds(sim.popen.pid)
                wall = burst(size, url, log_dir)
                sim_cpu = cpu_seconds(sim.popen.pid) - sim_cpu
                runs = ScanRun.objects.filter(mailbox__in=boxes[run])
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
                        "wall_with_startup": wall,
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
        size=f"{args.mailboxes} mailboxes × {args.messages} messages per run, runs 1-2-2-1 workers; "
        f"{os.cpu_count()} CPUs",
        notes=[
            "seconds per run (workers): "
            + ", ".join(f"{r['seconds']:.1f} ({r['workers']})" for r in results)
            + f"; the simulator used {sum(r['simulator_cpu_seconds'] for r in results):.1f} CPU s in all",
        ],
        details={"runs": results},
    )
    common.write_result("b7", [figure])


if __name__ == "__main__":
    main()
