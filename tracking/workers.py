"""The RQ worker classes the product runs (`RQ["WORKER_CLASS"]`): RQ's own, with a shutdown that never hangs.

RQ's teardown unsubscribes from the worker's command channel and then stops redis-py's pub/sub thread,
which waits for that thread's current read. When the thread has just read the UNSUBSCRIBE reply, its
next read waits up to the thread's sleep time (RQ gives 60 s) for a subscription that never comes: a
worker's exit, and a burst worker's return, took a minute now and then. Stopping the thread before
unsubscribing makes the UNSUBSCRIBE reply the last thing it reads.
"""

from __future__ import annotations

import importlib
from typing import Any

from rq import SimpleWorker as RQSimpleWorker
from rq import Worker as RQWorker
from rq.worker import BaseWorker

# How long the teardown waits for the pub/sub thread once the reply that ends it has been sent.
PUBSUB_STOP_SECONDS = 1.0


class PromptShutdownMixin(BaseWorker):
    def unsubscribe(self) -> None:
        thread = self.pubsub_thread
        if thread is None or self.pubsub is None:
            return
        self.log.info("Worker %s: unsubscribing from channel %s", self.name, self.pubsub_channel_name)
        # what PubSubWorkerThread.stop() does in every redis-py version, without the unbounded wait for
        # the current read that newer versions add to it
        thread._running.clear()
        self.pubsub.unsubscribe()
        thread.join(timeout=PUBSUB_STOP_SECONDS)
        self.pubsub.close()


class Worker(PromptShutdownMixin, RQWorker):
    """The forking worker `manage.py rqworker` runs."""

    def work(self, *args: Any, **kwargs: Any) -> bool:
        preload_job_modules()
        return super().work(*args, **kwargs)


# What a job's work horse would otherwise import after every fork, exchangelib alone ~0.4 s of each scan
# (docs/performance.md, B7): imported once in the worker, the modules come with each fork. Importing
# them opens no connection, so the horses share no socket with the worker.
JOB_MODULES = (
    "tracking.jobs",
    "tracking.bulkjobs",
    "tracking.notifications",
    "tracking.sources.ews",
    "tracking.sources.graph",
    "tracking.sources.imap",
    "tracking.sources.local",
)


def preload_job_modules() -> None:
    for name in JOB_MODULES:
        importlib.import_module(name)


class SimpleWorker(PromptShutdownMixin, RQSimpleWorker):
    """The worker that runs each job in its own process (tests' burst runs, `--worker-class`)."""
