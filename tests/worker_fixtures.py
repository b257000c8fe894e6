"""Fixtures of the tests that run scans through RQ (tests/test_workers.py, tests/test_faults_processes.py):
an empty tests' Redis and the Exchange simulator with an EWS profile reading from it; and, for modules that
scan in this process, one simulator per module, emptied for each test (`sim_server`, `fresh_sim`).

Loaded for every test module through `pytest_plugins` in tests/conftest.py; a module's own fixture of the
same name wins.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from syncadmin.devtools.simulators.server import Simulator
from syncadmin.devtools.simulators.store import MailStore
from tests import rq_helpers as h
from tracking.models import EmailServerProfile


@pytest.fixture
def clean_redis() -> Iterator[None]:
    h.redis().flushdb()
    yield
    h.redis().flushdb()


@pytest.fixture
def sim(transactional_db: None, clean_redis: None, tmp_path: Path) -> Iterator[Simulator]:
    """The simulator in this process, on a database that workers in other processes see (transactional)."""
    with Simulator(MailStore(), cert_dir=tmp_path / "sim", credentials=h.SIM_CREDENTIALS) as simulator:
        yield simulator


@pytest.fixture
def ews(sim: Simulator) -> EmailServerProfile:
    return h.add_sim_profile(sim, "ews")


@pytest.fixture(scope="module")
def sim_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Simulator]:
    """One simulator for a whole module (starting one per test would cost its TLS set-up each time)."""
    cert_dir = tmp_path_factory.mktemp("sim")
    with Simulator(MailStore(), cert_dir=cert_dir, credentials=h.SIM_CREDENTIALS) as simulator:
        yield simulator


@pytest.fixture
def fresh_sim(sim_server: Simulator) -> Iterator[Simulator]:
    """The module's simulator with no mail, no faults and an empty request log; faults left by the test are
    cleared after it, so that a request still in flight cannot take them."""
    sim_server.store = MailStore()
    sim_server.faults.clear()
    sim_server.clear_requests()
    yield sim_server
    sim_server.faults.clear()
