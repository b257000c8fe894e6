"""Microsoft Graph change notifications: subscriptions (POST, GET, PATCH, DELETE /v1.0/subscriptions), the
validation handshake, notifications of created messages and lifecycle events, as Microsoft documents them
(change-notifications-delivery-webhooks, change-notifications-lifecycle-events,
subscription-post-subscriptions).

Creating a subscription POSTs `notificationUrl?validationToken=…` and `lifecycleNotificationUrl?…` and
refuses the subscription unless each answers 200 with the token as its body within 10 seconds. A message
created in (or moved into) a subscribed folder is POSTed to its notificationUrl by a delivery thread, in
order, each answer awaited 3 seconds. Faults (protocol "graph", operation "notification"):
notification_dropped (that notification is never sent) and subscription_expired (the subscription
expires then: Graph deletes it, and nothing more is sent for it). Plain http is accepted for loopback
hosts only, where the tests' web app listens; Graph itself sends only to https.
"""

from __future__ import annotations

import contextlib
import ipaddress
import json
import logging
import queue
import re
import threading
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, urlsplit

import requests

from syncadmin.devtools.simulators.http import SimRequest, SimResponse

if TYPE_CHECKING:
    from syncadmin.devtools.simulators.server import Simulator
    from syncadmin.devtools.simulators.store import SimMessage

log = logging.getLogger(__name__)

MAX_MINUTES = 10_080  # Outlook message subscriptions (subscription resource type, "Subscription lifetime")
VALIDATION_TIMEOUT = 10.0
DELIVERY_TIMEOUT = 3.0
CHANGE_TYPES = frozenset({"created", "updated", "deleted"})
LIFECYCLE_EVENTS = frozenset({"reauthorizationRequired", "subscriptionRemoved", "missed"})
_RESOURCE = re.compile(
    r"^/?users/(?P<user>[^/]+)/(?:mailfolders\('(?P<folder>[^']+)'\)/|mailfolders/(?P<folder2>[^/]+)/)?messages$",
    re.IGNORECASE,
)
_FRACTION = re.compile(r"(\.\d{6})\d+")


@dataclass
class Subscription:
    id: str
    resource: str
    mailbox: str
    folder: str | None  # the store's folder key; None: the whole mailbox's messages
    change_type: str
    notification_url: str
    lifecycle_url: str
    client_state: str
    expires_at: datetime
    application_id: str
    tenant_id: str
    creator_id: str
    needs_reauthorization: bool = False

    def json(self, base: str, *, entity: bool = True) -> dict[str, Any]:
        body: dict[str, Any] = {}
        if entity:
            body["@odata.context"] = f"{base}/v1.0/$metadata#subscriptions/$entity"
        body.update(
            {
                "id": self.id,
                "resource": self.resource,
                "applicationId": self.application_id,
                "changeType": self.change_type,
                "clientState": self.client_state,
                "notificationUrl": self.notification_url,
                "notificationQueryOptions": None,
                "lifecycleNotificationUrl": self.lifecycle_url or None,
                "expirationDateTime": _iso(self.expires_at),
                "creatorId": self.creator_id,
                "includeResourceData": None,
                "latestSupportedTlsVersion": "v1_2",
                "encryptionCertificate": None,
                "encryptionCertificateId": None,
                "notificationUrlAppId": None,
            }
        )
        return body


@dataclass(frozen=True)
class Delivery:
    """One POST the simulator made: to whom, what for, and the answer's status (0: none)."""

    subscription_id: str
    kind: str  # validation, notification, lifecycle:<event>
    url: str
    status: int


def _iso(when: datetime) -> str:
    return when.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f") + "0Z"


def _parse_time(text: object) -> datetime | None:
    if not isinstance(text, str):
        return None
    try:
        parsed = datetime.fromisoformat(_FRACTION.sub(r"\1", text.strip().replace("Z", "+00:00")))
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def _allowed_url(url: object) -> bool:
    """https anywhere; http only to loopback (the tests' web app)."""
    if not isinstance(url, str):
        return False
    parts = urlsplit(url)
    if parts.scheme == "https" and parts.hostname:
        return True
    if parts.scheme != "http" or not parts.hostname:
        return False
    if parts.hostname == "localhost":
        return True
    try:
        return ipaddress.ip_address(parts.hostname).is_loopback
    except ValueError:
        return False


class PushService:
    """The subscriptions one simulator holds, and the thread that delivers their notifications."""

    def __init__(self, sim: Simulator) -> None:
        self.sim = sim
        self.lock = threading.Lock()
        self.subscriptions: dict[str, Subscription] = {}
        self.deliveries: list[Delivery] = []
        self._outbox: queue.Queue[tuple[Subscription, str, dict[str, Any]] | None] = queue.Queue()
        self._thread: threading.Thread | None = None
        self._session = requests.Session()

    # -- the delivery thread ---------------------------------------------------------------------

    def start(self) -> None:
        self._thread = threading.Thread(target=self._deliver_all, name="graph-notifications", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        if self._thread is not None:
            self._outbox.put(None)
            self._thread.join(timeout=5)
            self._thread = None

    def idle(self) -> bool:
        """Nothing waits to be delivered (for tests: `wait_for(sim.push.idle, …)`)."""
        return self._outbox.unfinished_tasks == 0

    def _deliver_all(self) -> None:
        while True:
            work = self._outbox.get()
            try:
                if work is None:
                    return
                sub, kind, payload = work
                url = sub.lifecycle_url if kind.startswith("lifecycle") else sub.notification_url
                self._post(sub.id, kind, url, payload)
            finally:
                self._outbox.task_done()

    def _post(self, subscription_id: str, kind: str, url: str, payload: dict[str, Any]) -> None:
        status = 0
        try:
            response = self._session.post(
                url,
                data=json.dumps(payload).encode(),
                headers={"Content-Type": "application/json; charset=utf-8"},
                timeout=DELIVERY_TIMEOUT,
                allow_redirects=False,
            )
            status = response.status_code
        except requests.RequestException as exc:
            log.info("notification to %s not delivered: %s", url, exc)
        with self.lock:
            self.deliveries.append(Delivery(subscription_id, kind, url, status))

    # -- events --------------------------------------------------------------------------------

    def message_created(self, mailbox: str, folder: str, msg: SimMessage) -> None:
        """Called by the store (under its lock): queue a notification per subscription watching the folder."""
        from syncadmin.devtools.simulators.graph import rest_id

        now = datetime.now(UTC)
        with self.lock:
            watching = [
                s
                for s in self.subscriptions.values()
                if s.mailbox == mailbox.lower() and s.folder in (None, folder) and "created" in s.change_type
            ]
        for sub in watching:
            fault = self.sim.faults.take(
                "graph",
                "notification",
                sub.mailbox,
                frozenset({"notification_dropped", "subscription_expired"}),
            )
            if fault is not None and fault.kind == "subscription_expired":
                sub.expires_at = now - timedelta(seconds=1)
            if sub.expires_at <= now:
                self.remove(sub.id)  # Graph deletes an expired subscription and says nothing
                continue
            if fault is not None:
                with self.lock:
                    self.deliveries.append(Delivery(sub.id, "notification", sub.notification_url, -1))
                continue
            item_id = rest_id(msg.item_id)
            user = f"Users/{sub.creator_id}@{sub.tenant_id}"
            payload = {
                "value": [
                    {
                        "id": uuid.uuid4().hex[:13],
                        "subscriptionId": sub.id,
                        "subscriptionExpirationDateTime": _iso(sub.expires_at),
                        "changeType": "created",
                        "resource": f"{user}/Messages/{item_id}",
                        "resourceData": {
                            "@odata.type": "#Microsoft.Graph.Message",
                            "@odata.id": f"{user}/Messages/{item_id}",
                            "@odata.etag": f'W/"{msg.change_key}"',
                            "id": item_id,
                        },
                        "clientState": sub.client_state,
                        "tenantId": sub.tenant_id,
                    }
                ]
            }
            self._outbox.put((sub, "notification", payload))

    def lifecycle(self, subscription_id: str, event: str) -> bool:
        """Send a lifecycle event (subscriptionRemoved also removes the subscription); False: no such one."""
        if event not in LIFECYCLE_EVENTS:
            raise ValueError(f"unknown lifecycle event {event!r}")
        with self.lock:
            sub = self.subscriptions.get(subscription_id)
        if sub is None or not sub.lifecycle_url:
            return False
        if event == "subscriptionRemoved":
            self.remove(subscription_id)
        elif event == "reauthorizationRequired":
            sub.needs_reauthorization = True
        payload = {
            "value": [
                {
                    "subscriptionId": sub.id,
                    "subscriptionExpirationDateTime": _iso(sub.expires_at),
                    "tenantId": sub.tenant_id,
                    "clientState": sub.client_state,
                    "lifecycleEvent": event,
                }
            ]
        }
        self._outbox.put((sub, f"lifecycle:{event}", payload))
        return True

    def expire(self, subscription_id: str) -> None:
        """The subscription's expiry passes now (the expired-subscription fault, from Python)."""
        with self.lock:
            sub = self.subscriptions.get(subscription_id)
            if sub is not None:
                sub.expires_at = datetime.now(UTC) - timedelta(seconds=1)

    def remove(self, subscription_id: str) -> None:
        with self.lock:
            self.subscriptions.pop(subscription_id, None)

    def active(self, mailbox: str | None = None) -> list[Subscription]:
        now = datetime.now(UTC)
        with self.lock:
            return [
                s
                for s in self.subscriptions.values()
                if s.expires_at > now and (mailbox is None or s.mailbox == mailbox.lower())
            ]

    # -- validation ------------------------------------------------------------------------------

    def _validate(self, subscription_id: str, url: str) -> tuple[int, str, str] | None:
        """POST url?validationToken=…; None if answered right, else Graph's (status, code, message)."""
        token = (
            f"Validation: Testing client application reachability for subscription Request-Id: {uuid.uuid4()}"
        )
        sep = "&" if urlsplit(url).query else "?"
        status = 0
        try:
            response = self._session.post(
                f"{url}{sep}validationToken={quote(token, safe='')}",
                headers={"Content-Type": "text/plain; charset=utf-8"},
                timeout=VALIDATION_TIMEOUT,
                allow_redirects=False,
            )
            status = response.status_code
            body = response.text
        except requests.Timeout:
            self._record(subscription_id, url, 0)
            return 400, "InvalidRequest", "Subscription validation request timed out."
        except requests.RequestException:
            self._record(subscription_id, url, 0)
            return (
                400,
                "ValidationError",
                "Subscription validation request failed. Notification endpoint must respond with 200 OK to "
                "validation request.",
            )
        self._record(subscription_id, url, status)
        if status != 200:
            return (
                400,
                "ValidationError",
                f"Subscription validation request failed. HTTP status code is '{status}'. Notification "
                "endpoint must respond with 200 OK to validation request.",
            )
        if body != token:
            return (
                400,
                "ValidationError",
                "Subscription validation request failed. Response must exactly match validationToken query "
                "parameter.",
            )
        return None

    def _record(self, subscription_id: str, url: str, status: int) -> None:
        with self.lock:
            self.deliveries.append(Delivery(subscription_id, "validation", url, status))

    # -- the API ---------------------------------------------------------------------------------

    def handle(
        self, request: SimRequest, item: str, client_id: str, tenant_id: str, base: str
    ) -> SimResponse:
        from syncadmin.devtools.simulators.graph import _json_response, graph_error

        if not item:
            if request.method == "POST":
                return self._create(request, client_id, tenant_id, base)
            if request.method == "GET":
                with self.lock:
                    value = [s.json(base, entity=False) for s in self.subscriptions.values()]
                return _json_response(
                    {"@odata.context": f"{base}/v1.0/$metadata#subscriptions", "value": value}
                )
            return graph_error(request, 405, "ErrorInvalidRequest", f"{request.method} is not supported here")
        subscription_id, _, action = item.partition("/")
        with self.lock:
            sub = self.subscriptions.get(subscription_id)
        if sub is not None and sub.expires_at <= datetime.now(UTC):
            self.remove(subscription_id)
            sub = None
        if sub is None:
            return graph_error(
                request,
                404,
                "ResourceNotFound",
                f"The object was not found. Subscription '{subscription_id}'.",
            )
        if action == "reauthorize" and request.method == "POST":
            sub.needs_reauthorization = False
            return SimResponse(status=204, body=b"")
        if action:
            return graph_error(request, 400, "BadRequest", f"Resource not found for the segment '{action}'.")
        if request.method == "GET":
            return _json_response(sub.json(base))
        if request.method == "DELETE":
            self.remove(subscription_id)
            return SimResponse(status=204, body=b"")
        if request.method == "PATCH":
            try:
                body = json.loads(request.body or b"{}")
            except ValueError:
                return graph_error(request, 400, "BadRequest", "Invalid JSON body.")
            expires = _parse_time(body.get("expirationDateTime") if isinstance(body, dict) else None)
            refusal = self._expiry_refusal(expires)
            if refusal is not None:
                return graph_error(request, 400, "ExtensionError", refusal)
            assert expires is not None
            sub.expires_at = expires
            sub.needs_reauthorization = False
            return _json_response(sub.json(base))
        return graph_error(request, 405, "ErrorInvalidRequest", f"{request.method} is not supported here")

    def _expiry_refusal(self, expires: datetime | None) -> str | None:
        now = datetime.now(UTC)
        if expires is None:
            return "expirationDateTime is required and must be an ISO 8601 date and time."
        if expires <= now:
            return "Subscription expiration can only be in the future."
        if expires > now + timedelta(minutes=MAX_MINUTES):
            return (
                "Operation: Create; Exception: [Status Code: BadRequest; Reason: Subscription expiration can "
                f"only be {MAX_MINUTES} minutes in the future.]"
            )
        return None

    def _create(self, request: SimRequest, client_id: str, tenant_id: str, base: str) -> SimResponse:
        from syncadmin.devtools.simulators.graph import _json_response, _resolve_folder, graph_error

        try:
            body = json.loads(request.body or b"{}")
        except ValueError:
            body = None
        if not isinstance(body, dict):
            return graph_error(request, 400, "BadRequest", "The request body must be a JSON object.")
        change_type = str(body.get("changeType") or "")
        if not change_type or not set(change_type.split(",")) <= CHANGE_TYPES:
            return graph_error(request, 400, "InvalidRequest", f"Invalid changeType '{change_type}'.")
        notify, lifecycle = body.get("notificationUrl"), body.get("lifecycleNotificationUrl") or ""
        if not _allowed_url(notify) or (lifecycle and not _allowed_url(lifecycle)):
            return graph_error(
                request, 400, "InvalidRequest", "The notification URL must use the HTTPS protocol."
            )
        client_state = body.get("clientState")
        if client_state is not None and (not isinstance(client_state, str) or len(client_state) > 128):
            return graph_error(
                request, 400, "InvalidRequest", "clientState must be a string of at most 128 characters."
            )
        resource = str(body.get("resource") or "")
        found = _RESOURCE.match(resource)
        if found is None:
            return graph_error(
                request,
                400,
                "ExtensionError",
                f"Operation: Create; Exception: Invalid resource '{resource}'.",
            )
        mailbox = found.group("user").lower()
        if not self.sim.store.has_mailbox(mailbox):
            return graph_error(
                request, 404, "ErrorInvalidUser", f"The requested user '{mailbox}' is invalid."
            )
        folder_ref = found.group("folder") or found.group("folder2")
        folder = _resolve_folder(self.sim, mailbox, folder_ref) if folder_ref else None
        if folder_ref and folder is None:
            return graph_error(
                request, 404, "ErrorItemNotFound", "The specified object was not found in the store."
            )
        expires = _parse_time(body.get("expirationDateTime"))
        refusal = self._expiry_refusal(expires)
        if refusal is not None:
            return graph_error(request, 400, "ExtensionError", refusal)
        assert expires is not None and isinstance(notify, str)
        sub = Subscription(
            id=str(uuid.uuid4()),
            resource=resource,
            mailbox=mailbox,
            folder=folder,
            change_type=change_type,
            notification_url=notify,
            lifecycle_url=str(lifecycle),
            client_state=client_state or "",
            expires_at=expires,
            application_id=client_id,
            tenant_id=tenant_id,
            creator_id=str(uuid.uuid5(uuid.NAMESPACE_URL, f"mailbox:{mailbox}")),
        )
        for url in filter(None, (sub.notification_url, sub.lifecycle_url)):
            refused = self._validate(sub.id, url)
            if refused is not None:
                return graph_error(request, *refused)
        with self.lock:
            self.subscriptions[sub.id] = sub
        return _json_response(sub.json(base), status=201)


def lifecycle_control(sim: Simulator, request: SimRequest) -> SimResponse:
    """POST /_simulator/lifecycle?subscription=ID&event=missed|reauthorizationRequired|subscriptionRemoved;
    POST /_simulator/lifecycle?subscription=ID&event=expire lets it expire now."""
    subscription_id = request.query.get("subscription", [""])[0]
    event = request.query.get("event", [""])[0]
    if event == "expire":
        sim.push.expire(subscription_id)
        return SimResponse(status=204)
    with contextlib.suppress(ValueError):
        if sim.push.lifecycle(subscription_id, event):
            return SimResponse(status=202, body=b"{}")
        return SimResponse(
            status=404, body=b'{"error": "no such subscription with a lifecycleNotificationUrl"}'
        )
    return SimResponse(status=400, body=json.dumps({"error": f"unknown event {event!r}"}).encode())
