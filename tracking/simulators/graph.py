"""Microsoft Graph and the OAuth token endpoint for the simulator (to be written)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from tracking.simulators.http import Described, SimRequest, SimResponse

if TYPE_CHECKING:
    from tracking.simulators.server import Simulator


def describe(request: SimRequest) -> Described:
    return Described("graph")


def handle(sim: Simulator, request: SimRequest, described: Described) -> SimResponse:
    return SimResponse(status=501, body=b'{"error": {"code": "NotImplemented"}}')


def describe_token(request: SimRequest) -> Described:
    return Described("token")


def handle_token(sim: Simulator, request: SimRequest, described: Described) -> SimResponse:
    return SimResponse(status=501, body=b'{"error": "not_implemented"}')
