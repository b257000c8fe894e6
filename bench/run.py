"""Run every benchmark (issues 6 and 17), print the table and save it as build/bench/latest.json (and .md).

    python bench/run.py                  # everything, at the sizes in SIZES (what `make bench` runs)
    python bench/run.py --only B1,B4     # some of them
    python bench/run.py --quick          # smaller sizes, to check that the benchmarks work

Each benchmark is a script in bench/ run in a process of its own; it writes build/bench/bN.json. Needs
PostgreSQL (BENCH_PG_URL, default postgres://postgres@127.0.0.1:5432) and Redis (BENCH_REDIS_URL, default
redis://127.0.0.1:6379/14); every database it makes is named syncadmin_bench_* and dropped at the end.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import common, decisions_data

# The sizes, except where noted: they were chosen so that `make bench` takes well under 20
# minutes on 2 cores (see docs/performance.md for how long each part takes).
SIZES: dict[str, list[str]] = {
    "B1": ["--messages", "10000", "--records", "10000"],
    "B4": ["--small", "1000", "--large", "100000"],
    "B3": ["--messages", "10000"],
    "B2": ["--messages", "5000"],
    "B7": ["--mailboxes", "40", "--messages", "50"],
    "B9": ["--sizes", "100,1000,10000"],
    "B10": ["--mailboxes", "1000", "--ews-mailboxes", "50", "--poll-mailboxes", "100", "--duration", "120"],
    "B6": ["--messages", "50000"],
    "B5": ["--decisions", "1000000"],
    "B8": ["--decisions", "1000000"],
    "B11": ["--rows", "197008"],
    "B12": ["--messages", "10000"],
    "B14": ["--emails", "1000000"],
    "B13": ["--emails", "1000000", "--requests", "100"],
}
QUICK: dict[str, list[str]] = {
    "B1": ["--messages", "2000", "--records", "2000", "--repeat", "1"],
    "B4": ["--small", "100", "--large", "2000"],
    "B3": ["--messages", "1000"],
    "B2": ["--messages", "500"],
    "B7": ["--mailboxes", "6", "--messages", "20"],
    "B9": ["--sizes", "100,1000", "--repeat", "1", "--window", "3"],
    "B10": ["--mailboxes=50", "--ews-mailboxes=5", "--poll-mailboxes=10", "--rate=2", "--duration=60"],
    "B6": ["--messages", "3000"],
    "B5": ["--decisions", "20000", "--requests", "10"],
    "B8": ["--decisions", "20000"],
    "B11": ["--rows", "20000", "--repeat", "1"],
    "B12": ["--messages", "1000"],
    "B14": ["--emails", "20000", "--repeat", "3"],
    "B13": ["--emails", "20000", "--requests", "10"],
}
SCRIPTS = {
    "B1": "b1_engine.py",
    "B2": "b2_first_scan.py",
    "B3": "b3_rescan.py",
    "B4": "b4_queries.py",
    "B5": "b5_decision_log.py",
    "B6": "b6_worker_memory.py",
    "B7": "b7_workers.py",
    "B8": "b8_export.py",
    "B9": "b9_dispatch.py",
    "B10": "b10_latency.py",
    "B11": "b11_import.py",
    "B12": "b12_reprocess.py",
    "B13": "b13_timeline.py",
    "B14": "b14_search.py",
}
ORDER = ("B1", "B4", "B3", "B2", "B7", "B9", "B10", "B6", "B5", "B8", "B11", "B12", "B13", "B14")


def decisions_arg(args: list[str]) -> int:
    return int(args[args.index("--decisions") + 1])


def fmt(value: float | None, unit: str = "") -> str:
    if value is None:
        return "—"
    text = f"{value:,.0f}" if abs(value) >= 100 else f"{value:.3g}"
    return f"{text} {unit}".strip()


def label(figure: dict[str, Any]) -> str:
    """B4 is measured on both databases: its notes say which."""
    return f"{figure['figure']} ({figure['db']})" if figure["figure"] == "B4" else str(figure["figure"])


def table(figures: list[dict[str, Any]]) -> str:
    lines = [
        "| figure | measured | baseline | ratio | target | met? | scale |",
        "|---|---|---|---|---|---|---|",
    ]
    for f in figures:
        ratio = "—" if f["ratio"] is None else f"{f['ratio']:.3g}×"
        met = "yes" if f["met"] else ("**no**" if f["met"] is False else "—")
        lines.append(
            f"| {f['figure']} {f['measure']} | {fmt(f['measured'], f['unit'])} | "
            f"{fmt(f['baseline'], f['unit'])} | {ratio} | {f['target']} | {met} | {f['db']}; {f['size']} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--only", default="", help="comma-separated figures, e.g. B1,B4")
    parser.add_argument("--quick", action="store_true", help="small sizes: checks the scripts, not the code")
    parser.add_argument("--keep-templates", action="store_true", help="keep the migrated template databases")
    args = parser.parse_args()
    wanted = [f.strip().upper() for f in args.only.split(",") if f.strip()] or list(ORDER)
    sizes = QUICK if args.quick else SIZES
    common.BUILD.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    load_before = os.getloadavg()
    for vendor in ("sqlite", "postgresql"):
        common.ensure_template(vendor)

    figures: list[dict[str, Any]] = []
    timings: dict[str, float] = {}
    failures: dict[str, str] = {}
    shared = "B5" in wanted and "B8" in wanted and decisions_arg(sizes["B5"]) == decisions_arg(sizes["B8"])
    try:
        for name in (n for n in ORDER if n in wanted):
            extra = list(sizes[name])
            if shared and name == "B5":
                extra.append("--keep")  # B8 exports the same decisions
            if shared and name == "B8":
                extra.append("--reuse")
            result = common.BUILD / f"{name.lower()}.json"
            result.unlink(missing_ok=True)
            common.log(f"{name}: PostgreSQL settled in {common.settle():.1f} s")
            common.log(f"{name}: {SCRIPTS[name]} {' '.join(extra)}")
            began = time.perf_counter()
            script = Path(__file__).parent / SCRIPTS[name]
            proc = subprocess.run([common.PYTHON, str(script), *extra], cwd=common.ROOT, check=False)
            timings[name] = time.perf_counter() - began
            common.log(f"{name}: done in {timings[name]:.0f} s")
            if proc.returncode != 0 or not result.exists():
                failures[name] = f"exit status {proc.returncode}"
                continue
            figures += json.loads(result.read_text())["figures"]
    finally:
        if shared:
            decisions_data.drop("postgresql", decisions_arg(sizes["B5"]))
            decisions_data.drop("postgresql", 10000)
        if not args.keep_templates:
            for vendor in ("sqlite", "postgresql"):
                common.drop_db(vendor, common.template_name())
                (common.BUILD / "db" / f"template-{vendor}.fingerprint").unlink(missing_ok=True)

    total = time.perf_counter() - started
    command = "make bench" if not sys.argv[1:] else "python bench/run.py " + " ".join(sys.argv[1:])
    summary = {
        "command": command,
        "quick": args.quick,
        "revision": common.git_revision(),
        "finished": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "seconds": total,
        "seconds_per_benchmark": timings,
        "machine": {
            "cpus": os.cpu_count(),
            "load_average_before": load_before,
            "load_average_after": os.getloadavg(),
            "python": platform.python_version(),
            "platform": platform.platform(),
        },
        "failures": failures,
        "figures": figures,
    }
    (common.BUILD / "latest.json").write_text(json.dumps(summary, indent=2))
    text = table(figures)
    notes = "\n".join(f"- {label(f)}: {note}" for f in figures for note in f["notes"])
    (common.BUILD / "latest.md").write_text(
        f"{text}\n\n{notes}\n\n`{command}` at {summary['revision']}, {summary['finished']}, "
        f"{total / 60:.1f} min on {os.cpu_count()} CPUs\n"
    )
    print()
    print(text)
    print()
    print(notes)
    print(f"\n{total / 60:.1f} min; build/bench/latest.json, build/bench/latest.md")
    if failures:
        print(f"FAILED: {failures}", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
