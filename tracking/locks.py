"""Leases in Redis that expire by themselves, so a worker that dies holds nothing for long."""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from redis import Redis
from redis.exceptions import RedisError

log = logging.getLogger(__name__)

# KEYS[1] the lease set; ARGV: now, lease expiry, limit, token. Expired leases go first, then a
# new one is granted if fewer than `limit` remain: one round trip, atomic in Redis.
_ACQUIRE = """
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', ARGV[1])
if redis.call('ZCARD', KEYS[1]) < tonumber(ARGV[3]) then
    redis.call('ZADD', KEYS[1], ARGV[2], ARGV[4])
    return 1
end
return 0
"""


@dataclass
class Lease:
    connection: Redis
    key: str
    token: str
    seconds: float
    granted: bool

    def renew(self) -> None:
        """Push the expiry out again: called while work progresses (after each committed page).

        Redis being away for a moment does not stop the work: the lease only keeps others out, and it
        expires by itself (a Redis that restarts empty has forgotten it anyway).
        """
        if self.granted:
            try:
                self.connection.zadd(self.key, {self.token: time.time() + self.seconds}, xx=True)
            except RedisError as exc:
                log.warning("could not renew the lease %s: %s", self.key, exc)


@contextmanager
def connection_slot(connection: Redis, key: str, limit: int, lease_seconds: float) -> Iterator[Lease]:
    """Hold one of `limit` slots of `key` (e.g. a server profile's max concurrent connections).

    The lease's `granted` is False when all slots are taken. A slot whose holder died is free again
    `lease_seconds` after its last renewal.
    """
    token = uuid.uuid4().hex
    now = time.time()
    granted = bool(connection.eval(_ACQUIRE, 1, key, now, now + lease_seconds, limit, token))
    lease = Lease(connection, key, token, lease_seconds, granted)
    try:
        yield lease
    finally:
        if granted:
            try:
                connection.zrem(key, token)
            except RedisError as exc:
                log.warning("could not release the lease %s, it expires by itself: %s", key, exc)
