"""The real Redis behind RQ answers, and a job enqueued through django-rq runs in a real (burst) worker."""

import threading
import time
from collections.abc import Callable

import django_rq
import pytest

from tracking.workers import SimpleWorker


@pytest.fixture
def queue():
    q = django_rq.get_queue("default")
    q.empty()
    yield q
    q.empty()


def test_it_runs_an_enqueued_job_on_the_real_redis(queue):
    assert queue.connection.ping()
    job = queue.enqueue("json.dumps", {"scan": "ok"})
    SimpleWorker([queue], connection=queue.connection).work(burst=True)
    job.refresh()
    assert job.is_finished
    assert job.return_value() == '{"scan": "ok"}'


def wait_until(condition: Callable[[], object], seconds: float = 10.0) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)


def test_a_worker_whose_command_thread_has_already_read_its_unsubscribe_still_shuts_down(queue):
    # The race that held a burst worker's return for 60 s: the pub/sub thread reads the UNSUBSCRIBE
    # reply, then waits the thread's sleep time for a subscription before it looks at its stop flag.
    worker = SimpleWorker([queue], connection=queue.connection)
    worker.subscribe()
    pubsub = worker.pubsub
    assert pubsub is not None
    wait_until(lambda: pubsub.subscribed)
    pubsub.unsubscribe()
    wait_until(lambda: not pubsub.subscribed)
    teardown = threading.Thread(target=worker.unsubscribe, daemon=True)
    teardown.start()
    teardown.join(timeout=10)  # a liveness bound, far under the 60 s it hung for
    assert not teardown.is_alive()
