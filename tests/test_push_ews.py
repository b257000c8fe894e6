"""Push for Exchange Server end to end: the `ews_stream` process's runner and threads with the real
exchangelib, against the simulator's streaming notifications over HTTPS on loopback, the jobs run by RQ
(in this thread), the decisions in the database. Connection timeouts and heartbeats are in seconds here
(the simulator's connection_timeout), so a reconnect takes a second, not half an hour.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.utils import timezone

from syncadmin.devtools.simulators.faults import Fault
from syncadmin.devtools.simulators.server import Simulator
from tests import rq_helpers as h
from tracking.actions import check_set_org_setting, do_disable_mailbox
from tracking.ews_stream import EwsStreamRunner, StreamOptions
from tracking.folders import add_folder_rule
from tracking.jobqueues import NOTIFICATIONS
from tracking.jobs import dispatch_due_mailboxes
from tracking.models import Decision, EmailServerProfile, EwsStreamState, Mailbox
from tracking.push_ews import enqueue_folder_sync
from tracking.pushstate import healthy_mailbox_ids, is_push_healthy, push_status

ADDRESS = "stream@contoso.example"


@pytest.fixture
def fast(sim: Simulator) -> Simulator:
    sim.ews_streaming.connection_timeout = 30.0
    sim.ews_streaming.heartbeat = 0.3
    return sim


@pytest.fixture
def runner(fast: Simulator) -> Iterator[EwsStreamRunner]:
    options = StreamOptions(read_timeout=10, backoff_base=0.05, backoff_max=0.5, reload_seconds=0.3)
    streams = EwsStreamRunner(options)
    yield streams
    streams.shutdown()


def pump_until(
    runner: EwsStreamRunner, condition: Callable[[], object], what: str, timeout: float = 15
) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        runner.pump(0.05)


def state(mailbox: Mailbox) -> EwsStreamState:
    return EwsStreamState.objects.get(mailbox=mailbox)


def connected(mailbox: Mailbox) -> Callable[[], bool]:
    return lambda: EwsStreamState.objects.filter(mailbox=mailbox, connected_since__isnull=False).exists()


def push_jobs() -> list[tuple[int, str]]:
    """The push jobs waiting (queued, or held back by the mailbox's rate limit), as (mailbox id, folder)."""
    jobs = h.queue(NOTIFICATIONS).get_jobs() + h.rate_limited_jobs()
    return sorted(tuple(job.args) for job in jobs if job.func_name == "tracking.push_ews.push_sync_folder")


def decided(mailbox: Mailbox) -> Counter[str]:
    """How often each message (Message-ID without the mailbox's tag) was decided."""
    return Counter(
        h.untagged(mid)
        for mid in Decision.objects.filter(mailbox=mailbox).values_list("message_id", flat=True)
    )


def new_mail(sim: Simulator, n: int, folder: str = "inbox") -> bytes:
    raw = (
        f"From: Customer <c{n}@fabrikam.example>\nTo: {ADDRESS}\nSubject: question {n}\n"
        f"Message-ID: <push{n}@fabrikam.example>\nDate: Fri, 04 Dec 2026 10:00:00 +0000\n\nhello\n"
    ).encode()
    sim.store.add_message(ADDRESS, folder, raw)
    return raw


def streamed_mailbox(sim: Simulator, ews: EmailServerProfile, runner: EwsStreamRunner) -> Mailbox:
    """A mailbox with 3 messages, streamed, its catch-up syncs run: everything there so far decided once."""
    h.fill(sim, ADDRESS, count=3)
    mailbox = h.add_enabled_mailbox(ADDRESS, ews)
    pump_until(runner, connected(mailbox), "the stream to connect")
    assert push_jobs() == [(mailbox.pk, "inbox")]  # the catch-up after subscribing
    h.burst()
    assert sorted(decided(mailbox).values()) == [1, 1, 1]
    return mailbox


def test_a_new_message_is_decided_seconds_after_it_arrives(sim, ews, runner):
    mailbox = streamed_mailbox(sim, ews, runner)
    assert is_push_healthy(mailbox)
    assert healthy_mailbox_ids() == {mailbox.pk}
    started = time.monotonic()

    new_mail(sim, 1)
    pump_until(runner, lambda: push_jobs(), "the event's job")
    h.burst()

    assert time.monotonic() - started < 5
    assert decided(mailbox)["<push1@fabrikam.example>"] == 1
    assert set(decided(mailbox).values()) == {1}
    assert state(mailbox).last_event_at is not None
    assert sim.count("ews", "Subscribe") == 1


def test_a_burst_of_events_queues_one_job(sim, ews, runner):
    mailbox = streamed_mailbox(sim, ews, runner)

    for n in range(5):
        new_mail(sim, n)
    pump_until(runner, lambda: push_jobs(), "the events' job")
    runner.pump(1.0)  # every event has arrived by now

    assert push_jobs() == [(mailbox.pk, "inbox")]
    h.burst()
    assert [decided(mailbox)[f"<push{n}@fabrikam.example>"] for n in range(5)] == [1] * 5


def test_an_event_while_the_job_runs_queues_the_next_one(sim, ews, runner):
    """The job clears its mark before reading the folder: what arrives after the read is not left behind."""
    mailbox = streamed_mailbox(sim, ews, runner)
    new_mail(sim, 1)
    pump_until(runner, lambda: push_jobs(), "the event's job")
    h.burst()  # the job has started, and cleared its mark
    assert enqueue_folder_sync(mailbox.pk, "inbox")
    assert not enqueue_folder_sync(mailbox.pk, "inbox")


def test_it_reconnects_when_the_server_closes_the_connection_and_keeps_receiving(sim, ews, runner):
    sim.ews_streaming.connection_timeout = 0.5
    mailbox = streamed_mailbox(sim, ews, runner)
    pump_until(runner, lambda: sim.count("ews", "GetStreamingEvents") >= 4, "three reconnections")

    new_mail(sim, 1)
    pump_until(runner, lambda: push_jobs(), "the event's job")
    h.burst()

    assert decided(mailbox)["<push1@fabrikam.example>"] == 1
    assert sim.count("ews", "Subscribe") == 1  # the same subscription throughout
    assert state(mailbox).reconnects == 0  # closing at the timeout is no failure
    assert is_push_healthy(mailbox)


def test_an_subscription_expired_is_renewed_and_what_came_meanwhile_caught_up(sim, ews, runner):
    mailbox = streamed_mailbox(sim, ews, runner)
    first = state(mailbox).subscription_id

    with sim.store.lock:  # nothing can subscribe again before the message is in
        assert sim.ews_streaming.expire(ADDRESS) == 1
        new_mail(sim, 1)  # no subscription: no event, ever
    pump_until(runner, lambda: sim.count("ews", "Subscribe") == 2 and push_jobs(), "a new subscription")
    h.burst()

    assert decided(mailbox)["<push1@fabrikam.example>"] == 1
    assert set(decided(mailbox).values()) == {1}
    pump_until(runner, connected(mailbox), "the new stream to connect")
    now = state(mailbox)
    assert now.subscription_id not in ("", first)
    assert now.reconnects == 1 and "subscription" in now.last_error
    new_mail(sim, 2)
    pump_until(runner, lambda: push_jobs(), "an event on the new subscription")
    h.burst()
    assert decided(mailbox)["<push2@fabrikam.example>"] == 1


def test_a_subscription_the_server_lost_before_the_first_connection_is_renewed(sim, ews, runner):
    sim.faults.add(Fault("subscription_expired", protocol="ews", mailbox=ADDRESS))
    mailbox = streamed_mailbox(sim, ews, runner)

    assert sim.count("ews", "Subscribe") == 2
    new_mail(sim, 1)
    pump_until(runner, lambda: push_jobs(), "the event's job")
    h.burst()
    assert decided(mailbox)["<push1@fabrikam.example>"] == 1


def test_a_dropped_event_is_caught_by_the_safety_net_poll(sim, ews, runner):
    mailbox = streamed_mailbox(sim, ews, runner)
    sim.faults.add(Fault("notification_dropped", protocol="ews", mailbox=ADDRESS))

    new_mail(sim, 1)
    runner.pump(1.5)
    assert push_jobs() == []  # the server never told
    assert decided(mailbox)["<push1@fabrikam.example>"] == 0

    h.make_due(mailbox)
    assert dispatch_due_mailboxes() == 1
    h.burst()
    assert decided(mailbox)["<push1@fabrikam.example>"] == 1

    new_mail(sim, 2)  # the next event finds the folder's state past message 1: decided once, not twice
    pump_until(runner, lambda: push_jobs(), "the next event's job")
    h.burst()
    assert decided(mailbox)["<push2@fabrikam.example>"] == 1
    assert set(decided(mailbox).values()) == {1}


def test_it_streams_sent_items_when_they_are_tracked(sim, ews, runner):
    check_set_org_setting("AutoTrackSentFolderItems", "true")
    h.fill(sim, ADDRESS, count=1)
    mailbox = h.add_enabled_mailbox(ADDRESS, ews)
    pump_until(runner, connected(mailbox), "the stream to connect")
    assert push_jobs() == [(mailbox.pk, "inbox"), (mailbox.pk, "sentitems")]
    assert state(mailbox).folders == ["inbox", "sentitems"]
    h.burst()

    new_mail(sim, 1, folder="sentitems")
    pump_until(runner, lambda: push_jobs(), "the event's job")

    assert push_jobs() == [(mailbox.pk, "sentitems")]
    h.burst()
    assert Decision.objects.filter(mailbox=mailbox, folder="sentitems").count() == 1


def test_mailboxes_enabled_and_disabled_while_it_runs_are_picked_up(sim, ews, runner):
    mailbox = streamed_mailbox(sim, ews, runner)
    h.fill(sim, "late@contoso.example", count=1)
    late = h.add_enabled_mailbox("late@contoso.example", ews)
    pump_until(runner, connected(late), "the new mailbox's stream")

    do_disable_mailbox(mailbox, acting_user=None)
    pump_until(
        runner, lambda: not sim.ews_streaming.subscriptions(ADDRESS), "the disabled mailbox's unsubscribe"
    )

    assert not is_push_healthy(mailbox)
    assert is_push_healthy(late)
    assert set(runner.streams) == {late.pk}


def test_a_failing_server_is_retried_with_back_off_and_push_is_unhealthy_meanwhile(sim, ews, runner):
    mailbox = streamed_mailbox(sim, ews, runner)
    sim.faults.add(Fault("http_status", protocol="ews", operation="GetStreamingEvents", status=503, times=3))
    sim.ews_streaming.expire(ADDRESS)  # the open stream ends; its reconnections meet the faults

    pump_until(runner, lambda: state(mailbox).reconnects >= 3, "three failed attempts")
    assert not is_push_healthy(mailbox)
    assert "503" in state(mailbox).last_error
    down = push_status(state(mailbox))
    assert not down.on_push and down.why.startswith("Polling: the stream is down:") and "503" in down.why
    pump_until(runner, connected(mailbox), "the stream to come back")
    assert is_push_healthy(mailbox)


def test_push_is_not_healthy_when_the_process_has_not_been_heard_from(sim, ews, runner):
    mailbox = streamed_mailbox(sim, ews, runner)
    assert is_push_healthy(mailbox)
    assert push_status(state(mailbox)).on_push
    assert push_status(state(mailbox)).why.startswith("Push: streaming since ")
    later = timezone.now() + timedelta(minutes=4)
    assert not is_push_healthy(mailbox, now=later)
    assert push_status(state(mailbox), now=later).why.startswith(
        "Polling: nothing heard from the stream since"
    )
    runner.shutdown()
    assert not is_push_healthy(mailbox)
    stopped = push_status(state(mailbox))
    assert (stopped.on_push, stopped.why) == (
        False,
        "Polling: not streamed now (ews_stream stopped, or left the mailbox).",
    )
    assert push_status(None).why == "Polling: no EWS stream (ews_stream is not running for it)."
    assert sim.ews_streaming.subscriptions() == []  # unsubscribed on the way out


def test_the_process_stops_cleanly_on_sigterm(sim, ews, tmp_path: Path):
    h.fill(sim, ADDRESS, count=1)
    mailbox = h.add_enabled_mailbox(ADDRESS, ews)
    process = h.BackgroundProcess("ews_stream", "--reload-seconds", "1", log_dir=tmp_path)
    try:
        h.wait_for(lambda: sim.ews_streaming.open_streams(ADDRESS) == 1, 30, "the process's stream")
        h.wait_for(connected(mailbox), 10, "the process to record its stream")
        assert process.popen.poll() is None
        started = time.monotonic()
        process.stop(timeout=20)
    finally:
        process.kill()
    assert process.popen.returncode == 0, process.output
    assert time.monotonic() - started < 10
    assert "ews_stream: stopped" in process.output
    assert sim.ews_streaming.subscriptions() == []
    assert not is_push_healthy(mailbox)
    assert h.queue(NOTIFICATIONS).count == 1  # the catch-up sync it queued on subscribing


def test_a_folder_rule_added_while_it_runs_is_streamed_too(sim, ews, runner):
    mailbox = streamed_mailbox(sim, ews, runner)
    sim.store.folder(ADDRESS, "inbox/projects", display_name="Projects")
    add_folder_rule(mailbox, "Inbox/Projects")
    pump_until(
        runner,
        lambda: state(mailbox).folders == ["inbox", "Inbox/Projects"] and connected(mailbox)(),
        "the stream to restart with the mapped folder",
    )
    h.burst()  # the catch-up of the new subscription

    new_mail(sim, 1, folder="inbox/projects")
    pump_until(runner, lambda: push_jobs(), "the event's job")

    assert push_jobs() == [(mailbox.pk, "Inbox/Projects")]
    h.burst()
    assert Decision.objects.filter(mailbox=mailbox, folder="Inbox/Projects").count() == 1
    assert set(decided(mailbox).values()) == {1}


def test_bad_options_are_refused():
    for args, words in [
        (["--max-streams", "0"], "--max-streams"),
        (["--connection-timeout", "31"], "--connection-timeout"),
        (["--read-timeout", "0"], "--read-timeout"),
    ]:
        with pytest.raises(CommandError, match=words):
            call_command("ews_stream", *args)
