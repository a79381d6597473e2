"""``mjq metrics``: every queue of a database as a Prometheus endpoint, ``/metrics``.

The standard library's threading HTTP server in front of ``prometheus_client``'s exposition
of one collector (live/collector.py), which reads the database at each scrape and at no
other time. As ``mjq dashboard``, it listens on 127.0.0.1 unless told otherwise and asks for
a credential on every interface (127.0.0.1 is shared by every user of the machine): a bearer
token of 192 bits made at each start, or given in ``$MJQ_METRICS_TOKEN`` or a file, never on
a command line. A made one goes to a file only the user can read, whose path is printed (the
token never is), for Prometheus's ``credentials_file``. Each request is checked in this
order, before anything is read: its ``Host`` header (a name a web page can't borrow through
DNS rebinding: localhost, an address, or one given with ``--allow-host``; else 403), then its
token (else 401), then its path (else 404).
"""

from __future__ import annotations

import hmac
import http.server
import importlib.util
import ipaddress
import logging
import os
import socket
import sys
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import DashboardError
from ..signals import StopFlag, handling_stop_signals
from .web.access import LOCAL_NAMES, is_local, new_token, url_folder

if TYPE_CHECKING:
    from prometheus_client import CollectorRegistry
    from pymongo.database import Database

TOKEN_ENV = "MJQ_METRICS_TOKEN"
DEFAULT_PORT = 9464  # the port OpenTelemetry's Prometheus exporters use
PATH = "/metrics"
INSTALL = "pip install 'mjq-notebook[metrics]'"
NO_TOKEN_WARNING = (
    "mjq metrics: --no-token: anyone who can reach this port -- every user of this machine "
    "on 127.0.0.1 -- reads every queue's counts"
)

log = logging.getLogger("mjq_notebook.metrics")


def require_library() -> None:
    """SystemExit in one line when ``prometheus_client`` is missing."""
    if importlib.util.find_spec("prometheus_client") is None:
        raise SystemExit(f"mjq metrics: needs prometheus_client, which is not installed: {INSTALL}")


def check(host: str, no_token: bool, allow_hosts: list[str] | None) -> list[str]:
    """The host names to answer (beside addresses), once the options agree; else
    :class:`DashboardError` in one line."""
    if no_token and not is_local(host):
        raise DashboardError(
            f"--no-token: not with --host {host}, which the network reaches: give a token "
            f"(${TOKEN_ENV} or --token-file) or none and one is made"
        )
    names = [name.strip().lower() for name in allow_hosts or [] if name.strip()]
    return [*LOCAL_NAMES, *names]


def host_allowed(header: str | None, names: list[str]) -> bool:
    """Whether a request's ``Host`` header names this server: an IP address (a page can't
    make a browser send one of its own), or one of ``names``; the port is not checked."""
    if not header:
        return False
    host = header.strip().lower()
    if host.startswith("["):  # [::1]:9464
        host = host[1 : host.find("]")] if "]" in host else host
    elif host.count(":") == 1:
        host = host.split(":", 1)[0]
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return host.rstrip(".") in names
    return True


def token_path(port: int) -> Path:
    """Where a token made at start goes: ``metrics-<port>.token`` in the user's own folder."""
    return url_folder() / f"metrics-{port}.token"


def write_token(path: Path, token: str) -> None:
    """Write ``token`` to ``path``: mode 0600, a new file, no link followed."""
    path.unlink(missing_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as file:
        file.write(token + "\n")


class Endpoint:
    """The server's settings: the token (never shown), the host names answered and the
    registry to expose."""

    def __init__(self, registry: CollectorRegistry, token: str, names: list[str]) -> None:
        self.registry, self.names = registry, names
        self._token = token.encode()

    def __repr__(self) -> str:  # no token in a log or a traceback
        return f"Endpoint(names={self.names!r})"

    def authorized(self, header: str | None) -> bool:
        """Whether an ``Authorization`` header carries the bearer token (constant time)."""
        if not self._token:
            return True
        scheme, _, given = (header or "").partition(" ")
        if scheme.lower() != "bearer":
            return False
        return hmac.compare_digest(given.strip().encode(), self._token)


class Handler(http.server.BaseHTTPRequestHandler):
    """GET (or HEAD) ``/metrics``: Host, then token, then path checked before any read."""

    server: Server
    server_version = "mjq-metrics"
    sys_version = ""
    timeout = 30  # seconds a connection may stay silent: an idle one doesn't hold a thread

    def do_GET(self) -> None:
        self._answer(body=True)

    def do_HEAD(self) -> None:
        self._answer(body=False)

    def _answer(self, body: bool) -> None:
        endpoint = self.server.endpoint
        if not host_allowed(self.headers.get("Host"), endpoint.names):
            return self._plain(403, "Forbidden: unknown Host header\n", body)
        if not endpoint.authorized(self.headers.get("Authorization")):
            return self._plain(401, "Unauthorized: a bearer token is required\n", body,
                               {"WWW-Authenticate": 'Bearer realm="mjq metrics"'})  # fmt: skip
        if self.path.split("?", 1)[0] != PATH:
            return self._plain(404, f"Not found: the metrics are at {PATH}\n", body)
        from prometheus_client.exposition import choose_encoder

        encoder, content_type = choose_encoder(self.headers.get("Accept") or "")
        try:
            output = encoder(endpoint.registry)
        except Exception as exc:  # the server away, a refusal: a failed scrape, said once
            log.warning("mjq metrics: a scrape failed: %s", type(exc).__name__)
            return self._plain(503, "Service Unavailable: the database could not be read\n", body)
        self.send_response(200)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(output)))
        self.end_headers()
        if body:
            self.wfile.write(output)

    def _plain(self, code: int, text: str, body: bool, headers: dict | None = None) -> None:
        data = text.encode()
        self.send_response(code)
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.send_header("Content-Type", "text/plain; charset=utf-8")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if body:
            self.wfile.write(data)

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: Prometheus scrapes every few seconds; failures are logged where they occur."""


class Server(http.server.ThreadingHTTPServer):
    """A threading HTTP server on IPv4 or IPv6, holding the endpoint's settings."""

    daemon_threads = True

    def __init__(self, host: str, port: int, endpoint: Endpoint) -> None:
        self.address_family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self.endpoint = endpoint
        super().__init__((host, port), Handler)


def serve(
    db: Database,
    *,
    host: str = "127.0.0.1",
    port: int = DEFAULT_PORT,
    token: str | None = None,
    no_token: bool = False,
    allow_hosts: list[str] | None = None,
) -> int:
    """Serve ``db``'s queues at ``http://host:port/metrics`` until SIGINT or SIGTERM; returns
    the exit code. ``token`` None makes one (written to a file of the user's own)."""
    from prometheus_client import CollectorRegistry

    from ..live.collector import QueueCollector

    names = check(host, no_token, allow_hosts)
    made = None if no_token or token else new_token()
    registry = CollectorRegistry(auto_describe=False)
    registry.register(QueueCollector(db))
    endpoint = Endpoint(registry, "" if no_token else token or made or "", names)
    try:
        server = Server(host, port, endpoint)
    except OSError as exc:
        raise DashboardError(
            f"can't listen on {host}:{port} ({exc.strerror}): pick another port with --port"
        ) from None
    path = None
    try:
        if made:
            path = token_path(server.server_address[1])
            write_token(path, made)
        _announce(host, server.server_address[1], db.name, no_token, path)
        _run(server)
    finally:
        server.server_close()
        if path is not None:
            path.unlink(missing_ok=True)
    return 0


def _announce(host: str, port: int, database: str, no_token: bool, path: Path | None) -> None:
    shown = f"[{host}]" if ":" in host else host
    if no_token:
        print(NO_TOKEN_WARNING, file=sys.stderr, flush=True)
        where = "no token"
    elif path is not None:
        where = f"bearer token in {path}, yours only"
    else:
        where = "bearer token as given"
    print(
        f"mjq: Prometheus metrics of every queue in {database} at http://{shown}:{port}{PATH} "
        f"({where}); Ctrl-C stops it",
        flush=True,
    )


def _run(server: Server) -> None:
    """Serve on a thread until a stop signal; then stop it cleanly (requests finish)."""
    stopping = StopFlag()
    with handling_stop_signals(stopping.set):
        thread = threading.Thread(target=server.serve_forever, name="mjq-metrics", daemon=True)
        thread.start()
        while not stopping.wait(0.5) and thread.is_alive():
            pass
        server.shutdown()
        thread.join(10)
