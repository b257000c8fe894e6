"""The simulator's HTTPS server: routing, its own CA, generic faults, the request log, the control API.

Run it with `manage.py exchange_simulator`, or in-process from tests:

    with Simulator.from_directory(path) as sim:
        sim.url          # https://127.0.0.1:PORT
        sim.ca_file      # the CA to trust (a profile's "CA bundle")
        sim.faults.add(Fault("server_busy", protocol="ews", back_off_ms=1500))
        sim.requests     # what was asked, in order
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import socket
import ssl
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import TracebackType

import trustme

from syncadmin.devtools.simulators.ews_streaming import StreamingHub
from syncadmin.devtools.simulators.faults import GENERIC_KINDS, Fault, FaultPlan
from syncadmin.devtools.simulators.graph_push import PushService, lifecycle_control
from syncadmin.devtools.simulators.http import Described, SimRequest, SimResponse
from syncadmin.devtools.simulators.store import MailStore, StoreEvent

log = logging.getLogger(__name__)

MAX_BODY = 10 * 1024 * 1024


@dataclass(frozen=True)
class LoggedRequest:
    protocol: str
    operation: str
    mailbox: str
    method: str
    path: str
    status: int
    peer: str = ""


Handler = Callable[["Simulator", SimRequest, Described], SimResponse]


class Simulator:
    def __init__(
        self,
        store: MailStore,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        cert_dir: Path | None = None,
        credentials: dict[str, str] | None = None,
    ) -> None:
        """`credentials` maps user names and OAuth client ids to passwords or secrets; None accepts any."""
        # EWS streaming subscriptions (connection_timeout, heartbeat, expire(): see ews_streaming.py)
        self.ews_streaming = StreamingHub()
        self.store = store
        self.host = host
        self.faults = FaultPlan()
        self.credentials = credentials
        # ids (uti) of access tokens refused from now on, as an expired or revoked token is
        self.revoked_tokens: set[str] = set()
        self.requests: list[LoggedRequest] = []
        self._requests_lock = threading.Lock()
        self._cert_dir = Path(cert_dir) if cert_dir else Path(tempfile.mkdtemp(prefix="syncadmin-sim-"))
        self._cert_dir.mkdir(parents=True, exist_ok=True)
        self.ca_file = self._cert_dir / "simulator-ca.pem"
        ca = trustme.CA()
        ca.cert_pem.write_to_path(str(self.ca_file))
        server_cert = ca.issue_cert(host, "localhost", "127.0.0.1")
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        server_cert.configure_cert(context)
        self._httpd = _Server((host, port), _RequestHandler, self)
        self._httpd.socket = context.wrap_socket(self._httpd.socket, server_side=True)
        self._thread: threading.Thread | None = None
        self.push = PushService(self)
        store.created_listeners.append(self.push.message_created)

    @property
    def store(self) -> MailStore:
        return self._store

    @store.setter
    def store(self, store: MailStore) -> None:
        """Tests swap in fresh mail; the new store's changes feed the subscriptions from then on."""
        self._store = store
        store.listeners.append(self._on_store_event)
        push = getattr(self, "push", None)  # None while __init__ runs: it adds the listener itself
        if push is not None:
            store.created_listeners.append(push.message_created)

    def _on_store_event(self, event: StoreEvent) -> None:
        self.ews_streaming.on_store_event(self, event)

    @classmethod
    def from_directory(cls, data_dir: Path, **kwargs: object) -> Simulator:
        return cls(MailStore.from_directory(data_dir), **kwargs)  # type: ignore[arg-type]

    @property
    def port(self) -> int:
        return int(self._httpd.server_address[1])

    @property
    def url(self) -> str:
        return f"https://{self.host}:{self.port}"

    def start(self) -> Simulator:
        self._thread = threading.Thread(
            target=self._httpd.serve_forever,
            kwargs={"poll_interval": 0.05},
            name="exchange-simulator",
            daemon=True,
        )
        self._thread.start()
        self.push.start()
        return self

    def serve_forever(self) -> None:
        self.push.start()
        self._httpd.serve_forever()

    def stop(self) -> None:
        self.push.stop()
        self.ews_streaming.close()
        self._httpd.shutdown()
        self._httpd.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def __enter__(self) -> Simulator:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def check_secret(self, name: str, secret: str) -> bool:
        if self.credentials is None:
            return bool(name)
        return self.credentials.get(name) == secret

    def record(self, described: Described, request: SimRequest, status: int) -> None:
        with self._requests_lock:
            self.requests.append(
                LoggedRequest(
                    described.protocol,
                    described.operation,
                    described.mailbox,
                    request.method,
                    request.path,
                    status,
                    request.peer,
                )
            )

    def count(
        self, protocol: str | None = None, operation: str | None = None, mailbox: str | None = None
    ) -> int:
        with self._requests_lock:
            return sum(
                1
                for r in self.requests
                if (protocol is None or r.protocol == protocol)
                and (operation is None or r.operation == operation)
                and (mailbox is None or r.mailbox == mailbox.lower())
            )

    def clear_requests(self) -> None:
        with self._requests_lock:
            self.requests.clear()

    # -- dispatch ------------------------------------------------------------------------------

    def describe(self, request: SimRequest) -> tuple[Described, Handler]:
        from syncadmin.devtools.simulators import ews, graph

        path = request.path
        if path.lower() == "/ews/exchange.asmx":
            return ews.describe(request), ews.handle
        if path.startswith("/v1.0/"):
            return graph.describe(request), graph.handle
        if path.startswith("/_simulator/"):
            return Described("control", path.rsplit("/", 1)[-1]), _control
        if (
            "/oauth2/" in path
            or "/.well-known/openid-configuration" in path
            or path.startswith("/common/discovery")
        ):
            return graph.describe_token(request), graph.handle_token
        return Described("unknown"), _not_found

    def answer(self, request: SimRequest) -> SimResponse | None:
        """The response, or None to drop the connection without one."""
        described, handler = self.describe(request)
        fault = None
        if described.protocol not in ("control", "unknown"):
            fault = self.faults.take(
                described.protocol, described.operation, described.mailbox, GENERIC_KINDS
            )
        if fault is not None and fault.kind == "slow":
            time.sleep(fault.delay)
            fault = None
            request = dataclasses.replace(request, faults_spent=True)
        if fault is not None and fault.kind == "drop":
            self.record(described, request, 0)
            return None
        if fault is not None and fault.kind == "http_status":
            response = SimResponse(status=fault.status, body=b"", content_type="text/plain")
            if fault.retry_after is not None:
                response.headers["Retry-After"] = str(int(fault.retry_after))
        elif fault is not None and fault.kind == "raw_body":
            response = SimResponse(
                status=fault.status,
                body=fault.body.encode(),
                content_type=fault.content_type,
                repeat=max(fault.repeat, 0),
                content_length=fault.content_length,
            )
        else:
            try:
                response = handler(self, request, described)
            except Exception:
                log.exception("simulator handler failed on %s %s", request.method, request.path)
                response = SimResponse(status=500, body=b"simulator error", content_type="text/plain")
            if fault is not None and fault.kind == "malformed":
                response.body = b"<<<not xml or json {" + response.body[:20]
            elif fault is not None and fault.kind == "truncated":
                response.body = response.body[: len(response.body) // 2]
        self.record(described, request, response.status)
        return response


def _not_found(sim: Simulator, request: SimRequest, described: Described) -> SimResponse:
    return SimResponse(status=404, body=b'{"error": {"code": "NotFound"}}')


def _control(sim: Simulator, request: SimRequest, described: Described) -> SimResponse:
    """POST /_simulator/faults {fault}; DELETE /_simulator/faults; GET|DELETE /_simulator/requests;
    POST /_simulator/messages?mailbox=A&folder=F with the raw message as body (answers its
    item "id" and "stored_at", Unix time); POST|DELETE
    /_simulator/folders (rename or move, delete a folder); POST /_simulator/move (move a message); POST
    /_simulator/lifecycle?subscription=ID&event=E (a Graph lifecycle event, or event=expire); DELETE
    /_simulator/subscriptions[?mailbox=A] (EWS streaming subscriptions expire)."""
    what = described.operation
    if what == "lifecycle" and request.method == "POST":
        return lifecycle_control(sim, request)
    if what == "faults":
        if request.method == "DELETE":
            sim.faults.clear()
            return SimResponse(status=204)
        try:
            sim.faults.add(Fault(**json.loads(request.body or b"{}")))
        except (TypeError, ValueError) as exc:
            return SimResponse(status=400, body=json.dumps({"error": str(exc)}).encode())
        return SimResponse(status=201, body=b"{}")
    if what == "requests":
        if request.method == "DELETE":
            sim.clear_requests()
            return SimResponse(status=204)
        return SimResponse(body=json.dumps([asdict(r) for r in sim.requests]).encode())
    mailbox = request.query.get("mailbox", [""])[0]
    if what == "subscriptions" and request.method == "DELETE":
        # EWS streaming subscriptions expire (of one mailbox, or all), as after a server restart
        ended = sim.ews_streaming.expire(mailbox or None)
        return SimResponse(body=json.dumps({"expired": ended}).encode())
    if what in ("messages", "folders", "move") and not mailbox:
        return SimResponse(status=400, body=b'{"error": "mailbox is required"}')
    if what == "messages" and request.method == "POST":
        folder = request.query.get("folder", ["inbox"])[0]
        key = sim.store.resolve(mailbox, folder) or folder.strip("/").lower()
        # when it was stored (Unix time, read as the store takes it), for arrival-to-decision latency (B10)
        stored_at = time.time()
        msg = sim.store.add_message(mailbox, key, request.body)
        return SimResponse(status=201, body=json.dumps({"id": msg.item_id, "stored_at": stored_at}).encode())
    if what == "folders" and request.method in ("POST", "DELETE"):
        return _control_folder(sim, request, mailbox)
    if what == "move" and request.method == "POST":
        return _control_move(sim, request, mailbox)
    return SimResponse(status=404, body=b'{"error": "unknown control endpoint"}')


def _error(status: int, message: str) -> SimResponse:
    return SimResponse(status=status, body=json.dumps({"error": message}).encode())


def _control_folder(sim: Simulator, request: SimRequest, mailbox: str) -> SimResponse:
    """POST /_simulator/folders?mailbox=A&folder=PATH {"name": "New name", "parent": "PATH"}: rename and/or
    move a folder (its id stays); DELETE /_simulator/folders?mailbox=A&folder=PATH: delete it and its
    sub-folders. PATH is a display path (Inbox/Projects/Contoso) or the folder's key, any case."""
    folder = request.query.get("folder", [""])[0]
    key = sim.store.resolve(mailbox, folder)
    if key is None:
        return _error(404, f"no folder {folder!r} in {mailbox}")
    if request.method == "DELETE":
        sim.store.delete_folder(mailbox, key)
        return SimResponse(status=204)
    try:
        body = json.loads(request.body or b"{}")
    except ValueError:
        return _error(400, "the body is not JSON")
    parent = None
    if body.get("parent"):
        parent = sim.store.resolve(mailbox, str(body["parent"]))
        if parent is None:
            return _error(404, f"no folder {body['parent']!r} in {mailbox}")
    sim.store.rename_folder(mailbox, key, str(body.get("name") or "") or None, parent)
    return SimResponse(body=json.dumps({"path": sim.store.path_of(mailbox, key)}).encode())


def _control_move(sim: Simulator, request: SimRequest, mailbox: str) -> SimResponse:
    """POST /_simulator/move?mailbox=A&message_id=<id>&to=PATH (or item=ITEM-ID): move a message as Exchange
    does (a new item id, the same Message-ID, a new last-modified time)."""
    to = sim.store.resolve(mailbox, request.query.get("to", [""])[0])
    if to is None:
        return _error(404, "no such target folder")
    item = request.query.get("item", [""])[0]
    wanted = request.query.get("message_id", [""])[0]
    if not item and wanted:
        with sim.store.lock:
            item = next(
                (
                    m.item_id
                    for f in sim.store.mailboxes.get(mailbox.lower(), {}).values()
                    for m in f.messages.values()
                    if m.parsed is not None and m.parsed.message_id == wanted
                ),
                "",
            )
    try:
        moved = sim.store.move_message(mailbox, item, to)
    except KeyError:
        return _error(404, "no such message")
    return SimResponse(body=json.dumps({"id": moved.item_id, "folder": to}).encode())


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(
        self, address: tuple[str, int], handler: type[BaseHTTPRequestHandler], sim: Simulator
    ) -> None:
        super().__init__(address, handler)
        self.sim = sim


class _RequestHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def log_message(self, format: str, *args: object) -> None:
        log.debug("simulator: " + format, *args)

    def _handle(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        if length > MAX_BODY:
            self.send_error(413)
            return
        body = self.rfile.read(length) if length else b""
        request = SimRequest(
            method=self.command,
            target=self.path,
            headers={k.lower(): v for k, v in self.headers.items()},
            body=body,
            peer=f"{self.client_address[0]}:{self.client_address[1]}",
        )
        response = self.server.sim.answer(request)
        if response is None:
            self.close_connection = True
            with contextlib.suppress(OSError):
                self.connection.shutdown(socket.SHUT_RDWR)
            return
        self.send_response(response.status)
        self.send_header("Content-Type", response.content_type)
        if response.stream is not None:
            self._send_stream(response)
            return
        if response.content_length:
            self.send_header("Content-Length", str(len(response.body) * response.repeat))
        else:
            self.send_header("Connection", "close")
            self.close_connection = True
        for key, value in response.headers.items():
            self.send_header(key, value)
        self.end_headers()
        if self.command != "HEAD":
            # A client that gave up (timeouts under the "slow" fault, a refused huge answer) has closed
            # its end already.
            with contextlib.suppress(OSError):
                for _ in range(response.repeat):
                    self.wfile.write(response.body)

    def _send_stream(self, response: SimResponse) -> None:
        """Chunked transfer encoding, each chunk flushed as produced; a client that hangs up ends it."""
        assert response.stream is not None
        self.send_header("Transfer-Encoding", "chunked")
        self.send_header("Connection", "close")
        self.close_connection = True
        for key, value in response.headers.items():
            self.send_header(key, value)
        self.end_headers()
        stream = response.stream
        try:
            for chunk in stream:
                self.wfile.write(f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n")
                self.wfile.flush()
            self.wfile.write(b"0\r\n\r\n")
            self.wfile.flush()
        except OSError:
            pass
        finally:
            close = getattr(stream, "close", None)
            if close is not None:
                close()

    do_GET = do_POST = do_DELETE = do_PATCH = do_HEAD = _handle
