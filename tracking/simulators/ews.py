"""EWS SOAP for the simulator (to be written: GetFolder, SyncFolderItems, GetItem, FindItem, faults)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from tracking.simulators.http import Described, SimRequest, SimResponse

if TYPE_CHECKING:
    from tracking.simulators.server import Simulator


def describe(request: SimRequest) -> Described:
    return Described("ews")


def handle(sim: Simulator, request: SimRequest, described: Described) -> SimResponse:
    return SimResponse(status=501, body=b"not implemented", content_type="text/plain")
