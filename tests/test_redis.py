"""The real Redis behind RQ answers, and a job enqueued through django-rq runs in a real (burst) worker."""

import django_rq
import pytest
from rq import SimpleWorker


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
