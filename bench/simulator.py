"""The Exchange simulator in a process of its own, filled with corpus mail, for the scanning benchmarks.

    python bench/simulator.py --spec SPEC.json --cert-dir DIR

SPEC is {"mailboxes": [{"address": A, "count": N, "tag": T, "start": S, "folders": "both" | "inbox"}, ...]}:
mailbox A gets `common.corpus(S + N, tag=T)[S:]` (S defaults to 0), each message in the folder it came
from ("both") or all in the Inbox.
When it listens, one JSON line goes to stdout: {"url", "ca_file", "messages", "load_seconds"}.

A separate process, as Exchange is: the simulator's own CPU time must not share the client's GIL.
Copies of a corpus message differ from it only in their ids, so each original is parsed once and its
copies' ParsedMessages are derived from it (checked against the real parser on a sample).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import signal
import sys
import time
from pathlib import Path
from types import FrameType

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import common


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--spec", required=True)
    parser.add_argument("--cert-dir", required=True)
    args = parser.parse_args()
    spec = json.loads(Path(args.spec).read_text())
    common.setup_django(common.db_url("sqlite", common.template_name()))  # never queried

    from syncadmin.devtools.simulators import store as store_module
    from syncadmin.devtools.simulators.server import Simulator
    from syncadmin.devtools.simulators.store import MailStore
    from tracking.messages import ParsedMessage, parse_message

    started = time.perf_counter()
    originals = common.corpus_originals()
    parsed_originals: dict[int, object] = {}

    def original(index: int) -> object:
        if index not in parsed_originals:
            parsed_originals[index] = parse_message(originals[index].raw)
        return parsed_originals[index]

    known: dict[bytes, object] = {}
    checks: list[tuple[bytes, object]] = []

    def derive(raw: bytes, index: int, prefix: str) -> object:
        base = original(index)
        if not isinstance(base, ParsedMessage) or base.message_id_synthetic or base.message_id[:1] != "<":
            return parse_message(raw)

        def tagged(mid: str) -> str:
            return "<" + prefix + "." + mid[1:]

        return dataclasses.replace(
            base,
            message_id=tagged(base.message_id),
            in_reply_to=tuple(tagged(i) for i in base.in_reply_to),
            references=tuple(tagged(i) for i in base.references),
        )

    total = 0
    plan = []
    for box in spec["mailboxes"]:
        start = int(box.get("start", 0))
        messages = common.corpus(start + int(box["count"]), tag=box.get("tag", ""))[start:]
        for position, m in enumerate(messages, start=start):
            index = position % len(originals)
            prefix = f"{box.get('tag', '')}r{m.round}" if (m.round or box.get("tag")) else ""
            if m.raw not in known:
                known[m.raw] = derive(m.raw, index, prefix) if prefix else original(index)
                if len(checks) < 300 and prefix and position % 37 == 0:
                    checks.append((m.raw, known[m.raw]))
            folder = m.folder if box.get("folders", "both") == "both" else "inbox"
            plan.append((box["address"], folder, m.raw))
        total += len(messages)
    for raw, derived in checks:
        if parse_message(raw) != derived:
            known.clear()  # the shortcut is wrong for this corpus: parse everything for real
            break

    real_parse = store_module.parse_message

    def cached_parse(raw: bytes) -> object:
        return known.get(raw) or real_parse(raw)

    store_module.parse_message = cached_parse  # type: ignore[assignment]
    store = MailStore()
    for box in spec["mailboxes"]:
        store.folder(box["address"], "inbox")
        store.folder(box["address"], "sentitems")
    for address, folder, raw in plan:
        store.add_message(address, folder, raw)
    store_module.parse_message = real_parse
    known.clear()

    sim = Simulator(store, cert_dir=Path(args.cert_dir), credentials={"svc-bench": "bench-Pa55"})

    def stop(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, stop)
    print(
        json.dumps(
            {
                "url": sim.url,
                "ca_file": str(sim.ca_file),
                "messages": total,
                "load_seconds": round(time.perf_counter() - started, 2),
            }
        ),
        flush=True,
    )
    try:
        sim.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        sim.stop()


if __name__ == "__main__":
    main()
