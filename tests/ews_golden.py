"""What the EWS golden tests share: an exchangelib account on the simulator that builds the requests and
parses the answers, the raw POST of what exchangelib would send, and the shape of an XML answer."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import requests
from exchangelib import BASIC, DELEGATE, Account, Build, Configuration, Credentials, FailFast, Version
from exchangelib import UTC as EWS_UTC

from syncadmin.devtools.simulators.server import Simulator
from tracking.sources.ews import CaBundleAdapter

EWS_DATA = Path(__file__).parent / "data" / "ews"
MAILBOX = "sales@vendor.example"


def golden_account(sim: Simulator) -> Account:
    """An exchangelib account of MAILBOX on the simulator (basic auth, Exchange 2016, no retries)."""
    CaBundleAdapter.trust(sim.url, str(sim.ca_file))
    config = Configuration(
        service_endpoint=f"{sim.url}/EWS/Exchange.asmx",
        credentials=Credentials("svc-golden", "pw"),
        auth_type=BASIC,
        version=Version(build=Build(15, 1), api_version="Exchange2016"),
        retry_policy=FailFast(),
    )
    return Account(MAILBOX, config=config, autodiscover=False, access_type=DELEGATE, default_timezone=EWS_UTC)


def post(sim: Simulator, service: Any, payload: Any, **kwargs: Any) -> requests.Response:
    """Send what exchangelib would send for `payload`, and hand back the raw HTTP response."""
    return requests.post(
        f"{sim.url}/EWS/Exchange.asmx",
        data=service.wrap(payload, api_version="Exchange2016"),
        auth=("svc-golden", "pw"),
        headers={"Content-Type": "text/xml; charset=utf-8", "X-AnchorMailbox": MAILBOX},
        verify=str(sim.ca_file),
        timeout=10,
        **kwargs,
    )


def skeleton(elem: ET.Element) -> tuple[Any, ...]:
    """An element's tags and attribute names, all the way down: the shape two answers must share."""
    return (elem.tag, tuple(sorted(elem.attrib)), tuple(skeleton(child) for child in elem))


def ews_sample(name: str) -> bytes:
    return (EWS_DATA / name).read_bytes()


def assert_same_structure(response: bytes, sample_name: str) -> None:
    assert skeleton(ET.fromstring(response)) == skeleton(ET.fromstring(ews_sample(sample_name)))
