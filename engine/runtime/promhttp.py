"""`engine serve`'s HTTP server: bounded against slow and many clients, with TLS and basic
auth from a Prometheus exporter web config file.

One asyncio loop on one thread: while a request arrives, a connection costs a socket and a
buffer, not a thread. The bounds (`Limits`, set from the command line):

- `request_timeout`: the TLS handshake, then each request's head (request line and headers),
  must arrive within it, and each answer be taken within it; otherwise the connection is
  closed. An idle keep-alive connection waits at most as long for its next request.
- `max_header_bytes`: a longer head is answered 431 and the connection closed.
- `max_connections`: at most this many connections are open. One more closes the connection
  that has waited longest for its request (a slow client, or an idle keep-alive one), never
  one being answered; when every one is being answered, the new one is closed.

Each bound reached is counted by reason (`Stats`, served as
engine_http_connections_closed_total{reason}). Metrics are read in a worker thread, one read
at a time: scrapes that arrive while a read runs wait for it and get its answer, so any
number of concurrent scrapes cost one read (a snapshot), rendered once.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import concurrent.futures
import contextlib
import gzip
import hashlib
import os
import socket
import ssl
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable

from engine.errors import Location, Problem, SpecError, did_you_mean
from engine.spec.loader import load_document

METRICS_CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
REASONS = (
    "timeout",
    "header_too_large",
    "evicted",
    "over_limit",
    "bad_request",
    "tls_error",
)


@dataclass(frozen=True)
class Limits:
    """How long and how much one client may take (see the module's docstring)."""

    request_timeout: float = 10.0
    max_header_bytes: int = 8192
    max_connections: int = 64


@dataclass
class Stats:
    """What the server did about misbehaving clients; read by the scrape's collector."""

    open: int = 0
    closed: dict[str, int] = field(default_factory=lambda: dict.fromkeys(REASONS, 0))


# --- the web config file (exporter-toolkit's --web.config.file format) -----------------------

CLIENT_AUTH = {
    "NoClientCert": ssl.CERT_NONE,
    "VerifyClientCertIfGiven": ssl.CERT_OPTIONAL,
    "RequireAndVerifyClientCert": ssl.CERT_REQUIRED,
}
TLS_VERSIONS = {
    "TLS10": ssl.TLSVersion.TLSv1,
    "TLS11": ssl.TLSVersion.TLSv1_1,
    "TLS12": ssl.TLSVersion.TLSv1_2,
    "TLS13": ssl.TLSVersion.TLSv1_3,
}
TLS_KEYS = (
    "cert_file",
    "key_file",
    "client_auth_type",
    "client_ca_file",
    "min_version",
    "max_version",
)
# exporter-toolkit keys Python's ssl module cannot honour as Go does: refused, not ignored.
TLS_UNSUPPORTED = (
    "cipher_suites",
    "curve_preferences",
    "prefer_server_cipher_suites",
    "client_allowed_sans",
    "cert",
    "key",
)
TOP_KEYS = ("tls_server_config", "basic_auth_users")
TOP_UNSUPPORTED = ("http_server_config", "rate_limit")
BCRYPT_PREFIXES = ("$2a$", "$2b$", "$2y$")


@dataclass
class WebConfig:
    """TLS (an ssl context) and basic-auth users (name -> bcrypt hash); both optional."""

    tls: ssl.SSLContext | None = None
    users: dict[str, bytes] = field(default_factory=dict)


def load_web_config(path: str) -> WebConfig:
    """The web config file at `path`; SpecError with every problem, located. Relative file
    names are relative to the config file's folder, as in exporter-toolkit."""
    import yaml

    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    except OSError as exc:
        raise SpecError([_problem(path, f"cannot read the web config: {exc.strerror}")]) from None
    try:
        if yaml.safe_load(text) is None:
            return WebConfig()  # an empty file: plain HTTP, no auth (as exporter-toolkit)
    except yaml.YAMLError:
        pass  # load_document says where
    document = load_document(path)
    data = document.data
    problems: list[Problem] = []

    def problem(message: str, at: tuple[str, ...], key: bool = False) -> None:
        problems.append(Problem(message, document.locate(at, key=key)))

    if not isinstance(data, dict):
        problem("a web config is a mapping: tls_server_config, basic_auth_users", ())
        raise SpecError(problems)
    for key in data:
        if key in TOP_UNSUPPORTED:
            problem(f"'{key}' is not supported by engine serve", (key,), key=True)
        elif key not in TOP_KEYS:
            problem(
                f"unknown key '{key}'; keys: {', '.join(TOP_KEYS)}{did_you_mean(key, TOP_KEYS)}",
                (key,),
                key=True,
            )
    base = os.path.dirname(os.path.abspath(path))
    config = WebConfig()
    tls = data.get("tls_server_config")
    if tls is not None:
        config.tls = _tls_context(tls, base, problem)
    users = data.get("basic_auth_users")
    if users is not None:
        config.users = _users(users, problem)
    if problems:
        raise SpecError(problems)
    return config


def _problem(path: str, message: str) -> Problem:
    return Problem(message, Location(path))


def _tls_context(tls: Any, base: str, problem: Callable[..., None]) -> ssl.SSLContext | None:
    at = ("tls_server_config",)
    if not isinstance(tls, dict):
        problem("tls_server_config is a mapping: cert_file, key_file, ...", at)
        return None
    for key in tls:
        if key in TLS_UNSUPPORTED:
            problem(
                f"tls_server_config: '{key}' is not supported by engine serve", (*at, key), True
            )
        elif key not in TLS_KEYS:
            problem(
                f"tls_server_config: unknown key '{key}'; keys: {', '.join(TLS_KEYS)}"
                f"{did_you_mean(key, TLS_KEYS)}",
                (*at, key),
                True,
            )
    for key in ("cert_file", "key_file"):
        if not isinstance(tls.get(key), str) or not tls.get(key):
            problem(f"tls_server_config: '{key}' is required (a file name)", at, True)
            return None
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2  # exporter-toolkit's default
    for key, attr in (("min_version", "minimum_version"), ("max_version", "maximum_version")):
        if key in tls:
            version = TLS_VERSIONS.get(str(tls[key]))
            if version is None:
                problem(f"tls_server_config: {key} is one of {', '.join(TLS_VERSIONS)}", (*at, key))
            else:
                setattr(context, attr, version)
    cert, key_file = (os.path.join(base, tls[k]) for k in ("cert_file", "key_file"))
    try:
        context.load_cert_chain(cert, key_file)
    except (OSError, ssl.SSLError) as exc:
        why = getattr(exc, "strerror", None) or getattr(exc, "reason", None) or str(exc)
        problem(f"tls_server_config: cannot load {cert} with {key_file}: {why}", (*at, "cert_file"))
    auth = tls.get("client_auth_type", "NoClientCert")
    mode = CLIENT_AUTH.get(str(auth))
    if mode is None:
        problem(
            f"tls_server_config: client_auth_type is one of {', '.join(CLIENT_AUTH)} "
            "(Python's ssl verifies every client certificate it asks for)",
            (*at, "client_auth_type"),
        )
        return context
    ca = tls.get("client_ca_file")
    if mode != ssl.CERT_NONE and not ca:
        problem(
            f"tls_server_config: client_auth_type {auth} needs client_ca_file",
            (*at, "client_auth_type"),
        )
    if ca:
        try:
            context.load_verify_locations(os.path.join(base, str(ca)))
        except (OSError, ssl.SSLError) as exc:
            why = getattr(exc, "strerror", None) or getattr(exc, "reason", None) or str(exc)
            problem(
                f"tls_server_config: cannot load client_ca_file {ca}: {why}",
                (*at, "client_ca_file"),
            )
    context.verify_mode = mode
    return context


def _users(users: Any, problem: Callable[..., None]) -> dict[str, bytes]:
    at = ("basic_auth_users",)
    if not isinstance(users, dict):
        problem("basic_auth_users is a mapping: user name -> bcrypt hash", at)
        return {}
    try:
        import bcrypt
    except ImportError:
        problem(
            "basic_auth_users needs the Python module bcrypt (Debian: python3-bcrypt)", at, True
        )
        return {}
    out = {}
    for name, hashed in users.items():
        text = hashed if isinstance(hashed, str) else ""
        ok = text.startswith(BCRYPT_PREFIXES)
        if ok:
            try:
                bcrypt.checkpw(b"", text.encode())
            except ValueError:
                ok = False
        if not ok or ":" in str(name):
            what = "a user name has no ':'" if ":" in str(name) else "a bcrypt hash ($2y$...)"
            problem(f"basic_auth_users: '{name}': expected {what}", (*at, str(name)))
            continue
        out[str(name)] = text.encode()
    return out


class BasicAuth:
    """Checks `Authorization: Basic` against bcrypt hashes. bcrypt is slow by design, so a
    checked (user, password, hash) is remembered by its SHA-256, as exporter-toolkit does:
    `known` answers on the event loop, and only a new one costs a bcrypt check in a worker
    thread. Right answers are kept apart from wrong ones, so a flood of wrong passwords (whose
    memory is bounded) never makes a right one slow again. An unknown user costs one bcrypt
    check too, so timing does not tell which users exist."""

    WRONG_KEPT = 1024

    def __init__(self, users: dict[str, bytes]) -> None:
        import bcrypt

        self.users = users
        self.right: set[bytes] = set()
        self.wrong: set[bytes] = set()
        self.dummy = bcrypt.hashpw(b"engine", bcrypt.gensalt(rounds=10))

    def parse(self, header: str) -> tuple[str, str, bytes] | None:
        """(user, password, digest) of a Basic header, None if it is not one."""
        scheme, _, encoded = header.partition(" ")
        if scheme.lower() != "basic":
            return None
        try:
            decoded = base64.b64decode(encoded.strip(), validate=True).decode()
        except (binascii.Error, UnicodeDecodeError):
            return None
        user, sep, password = decoded.partition(":")
        if not sep:
            return None
        hashed = self.users.get(user, self.dummy)
        digest = hashlib.sha256(b"\0".join((user.encode(), password.encode(), hashed))).digest()
        return user, password, digest

    def known(self, digest: bytes) -> bool | None:
        return True if digest in self.right else False if digest in self.wrong else None

    def check(self, user: str, password: str, digest: bytes) -> bool:
        """The bcrypt check (slow: run it in a worker thread), remembered."""
        import bcrypt

        ok = bcrypt.checkpw(password.encode(), self.users.get(user, self.dummy))
        ok = ok and user in self.users
        if ok:
            self.right.add(digest)
        else:
            if len(self.wrong) >= self.WRONG_KEPT:
                self.wrong.clear()
            self.wrong.add(digest)
        return ok

    async def allows(self, header: str, pool: concurrent.futures.Executor) -> bool:
        parsed = self.parse(header)
        if parsed is None:
            return False
        known = self.known(parsed[2])
        if known is not None:
            return known
        return await asyncio.get_running_loop().run_in_executor(pool, self.check, *parsed)


# --- concurrent scrapes share one read -------------------------------------------------------


class Snapshots:
    """`read()` (blocking: map reads and rendering) in a worker thread, one at a time; a
    scrape arriving while one runs waits for it and shares its body (and its gzip)."""

    def __init__(self, read: Callable[[], bytes], pool: concurrent.futures.Executor) -> None:
        self.read = read
        self.pool = pool
        self.pending: asyncio.Future[tuple[bytes, bytes]] | None = None
        self.reads = 0

    def _take(self) -> tuple[bytes, bytes]:
        self.reads += 1
        body = self.read()
        return body, gzip.compress(body, compresslevel=6)

    async def get(self) -> tuple[bytes, bytes]:
        if self.pending is None or self.pending.done():
            self.pending = asyncio.get_running_loop().run_in_executor(self.pool, self._take)
        return await asyncio.shield(self.pending)


# --- the server ------------------------------------------------------------------------------


@dataclass
class _Conn:
    client: socket.socket
    task: asyncio.Task[None] | None = None
    transport: asyncio.Transport | None = None
    waiting: bool = True  # for the handshake or a request: may be evicted
    started: bool = False  # its task runs: asyncio may hold the socket's fd
    evicted: bool = False
    since: float = field(default_factory=time.monotonic)

    def abort(self) -> None:
        """Close at once (a reset). A socket asyncio is taking over (a task started, no
        transport yet) is left to the task's cancellation: closing it here would free its
        fd number while asyncio still watches it, and the next connection may get it."""
        if self.transport is not None:
            self.transport.abort()
        elif not self.started:
            self.client.close()


class _Closed(Exception):
    """End this connection, counted under `reason` ("" for a normal end)."""

    def __init__(self, reason: str = "") -> None:
        self.reason = reason


STATUS = {
    200: "OK",
    400: "Bad Request",
    401: "Unauthorized",
    404: "Not Found",
    405: "Method Not Allowed",
    408: "Request Timeout",
    431: "Request Header Fields Too Large",
    500: "Internal Server Error",
    503: "Service Unavailable",
}


class HttpServer:
    """/metrics (from `read`, shared by concurrent scrapes), /healthz, 404 otherwise."""

    def __init__(
        self,
        read: Callable[[], bytes],
        healthy: Callable[[], bool],
        limits: Limits | None = None,
        web: WebConfig | None = None,
        stats: Stats | None = None,
    ) -> None:
        self.limits = limits or Limits()
        self.web = web or WebConfig()
        self.stats = stats or Stats()
        self.healthy = healthy
        self.pool = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="engine-scrape")
        self.auth_pool = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="engine-auth")
        self.snapshots = Snapshots(read, self.pool)
        self.auth = BasicAuth(self.web.users) if self.web.users else None
        self.conns: dict[int, _Conn] = {}
        self.loop = asyncio.new_event_loop()
        self.thread: threading.Thread | None = None
        self.sock: socket.socket | None = None
        self._next = 0

    # lifecycle

    def start(self, host: str, port: int) -> int:
        """Bind (OSError to the caller) and serve on a thread; the bound port."""
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        # [::] takes IPv4 too, as it did with the standard library's HTTP server.
        dual = host == "::" and socket.has_dualstack_ipv6()
        self.sock = socket.create_server(
            (host, port), family=family, backlog=128, dualstack_ipv6=dual
        )
        self.sock.setblocking(False)
        self.thread = threading.Thread(
            target=self.loop.run_forever, name="engine-http", daemon=True
        )
        self.thread.start()
        asyncio.run_coroutine_threadsafe(self._accept(self.sock), self.loop)
        return int(self.sock.getsockname()[1])

    def stop(self) -> None:
        if self.thread is None:
            return

        async def _stop() -> None:
            for conn in list(self.conns.values()):
                conn.abort()  # a task not started yet would never close its socket
                if conn.task is not None:
                    conn.task.cancel()
            current = asyncio.current_task()
            tasks = [t for t in asyncio.all_tasks() if t is not current]
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

        with contextlib.suppress(Exception):
            asyncio.run_coroutine_threadsafe(_stop(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        if self.sock is not None:
            self.sock.close()
        self.pool.shutdown(wait=False)
        self.auth_pool.shutdown(wait=False)
        self.loop.close()
        self.thread = None

    # connections

    async def _accept(self, sock: socket.socket) -> None:
        loop = asyncio.get_running_loop()
        while True:
            try:
                client, _ = await loop.sock_accept(sock)
            except OSError:  # EMFILE and friends: wait a little rather than spin
                await asyncio.sleep(0.1)
                continue
            if len(self.conns) >= self.limits.max_connections and not self._evict():
                self.stats.closed["over_limit"] += 1
                client.close()
                continue
            self._next += 1
            key = self._next
            conn = _Conn(client)
            self.conns[key] = conn
            self.stats.open = len(self.conns)
            conn.task = loop.create_task(self._serve(key, conn, client))
            # Let it read its request before the next accept: an accept that finds a
            # connection ready does not yield, and a burst of them would otherwise find only
            # unread (so evictable) connections.
            await asyncio.sleep(0)

    def _evict(self) -> bool:
        """Close the connection that has waited longest for its request; False if none waits."""
        waiting = [(c.since, k) for k, c in self.conns.items() if c.waiting]
        if not waiting:
            return False
        _, key = min(waiting)
        conn = self.conns.pop(key)
        self.stats.open = len(self.conns)
        self.stats.closed["evicted"] += 1
        conn.evicted = True
        conn.abort()
        if conn.task is not None:
            conn.task.cancel()
        return True

    async def _serve(self, key: int, conn: _Conn, client: socket.socket) -> None:
        loop = asyncio.get_running_loop()
        timeout = self.limits.request_timeout
        reason = ""
        conn.started = True
        try:
            reader = asyncio.StreamReader(limit=self.limits.max_header_bytes)
            protocol = asyncio.StreamReaderProtocol(reader)
            tls: dict[str, Any] = {}
            if self.web.tls is not None:
                tls = {"ssl": self.web.tls, "ssl_handshake_timeout": timeout}
            try:
                transport, _ = await asyncio.wait_for(
                    loop.connect_accepted_socket(lambda: protocol, client, **tls), timeout
                )
            except asyncio.TimeoutError:
                raise _Closed("timeout") from None
            except ssl.SSLError:
                raise _Closed("tls_error") from None
            except ConnectionAbortedError:  # asyncio's own handshake timeout
                raise _Closed("timeout") from None
            conn.transport = transport
            writer = asyncio.StreamWriter(transport, protocol, reader, loop)
            answered = 0
            # Evicted: its task is cancelled, but a cancel that meets a finished wait_for is
            # lost (Python 3.11), so the flag is checked too.
            while not conn.evicted:
                conn.waiting, conn.since = True, time.monotonic()
                head = await self._head(reader, writer, idle_ok=answered > 0)
                answered += 1
                conn.waiting = False
                keep = await self._answer(head, writer)
                if not keep:
                    break
        except _Closed as closed:
            reason = closed.reason
        except (ConnectionError, OSError, ssl.SSLError):
            pass
        except asyncio.CancelledError:
            reason = "stopped"  # evicted (counted there) or the server stopping
        finally:
            # This task closes its connection on every path (an eviction closes it too when
            # the task had not started yet; closing twice is harmless).
            if conn.transport is None:
                client.close()
            elif reason or conn.evicted:
                conn.transport.abort()
            else:
                conn.transport.close()  # a normal end: the answer is flushed first
            if reason in self.stats.closed and not conn.evicted:
                self.stats.closed[reason] += 1
            if self.conns.get(key) is conn:
                del self.conns[key]
                self.stats.open = len(self.conns)

    async def _head(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, idle_ok: bool
    ) -> bytes:
        """The next request's head, all of it within the request timeout. `idle_ok`: a
        keep-alive connection that sends nothing more is closed quietly at the timeout (it
        is Prometheus between scrapes, not a slow client)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.limits.request_timeout
        try:
            try:
                first = await asyncio.wait_for(reader.readexactly(1), deadline - loop.time())
            except asyncio.TimeoutError:
                raise _Closed("" if idle_ok else "timeout") from None
            rest = await asyncio.wait_for(
                reader.readuntil(b"\r\n\r\n"), max(deadline - loop.time(), 0.0)
            )
            return first + rest
        except asyncio.TimeoutError:
            raise _Closed("timeout") from None
        except asyncio.LimitOverrunError:
            await self._send(writer, 431, b"request head too large\n", close=True)
            raise _Closed("header_too_large") from None
        except asyncio.IncompleteReadError as exc:
            if exc.partial:
                raise _Closed("bad_request") from None
            raise _Closed() from None  # the client closed between requests

    async def _send(
        self,
        writer: asyncio.StreamWriter,
        status: int,
        body: bytes,
        *,
        close: bool,
        head_only: bool = False,
        headers: tuple[tuple[str, str], ...] = (),
        content_type: str = "text/plain; charset=utf-8",
    ) -> None:
        lines = [
            f"HTTP/1.1 {status} {STATUS[status]}",
            f"Content-Type: {content_type}",
            f"Content-Length: {len(body)}",
            f"Connection: {'close' if close else 'keep-alive'}",
            *(f"{k}: {v}" for k, v in headers),
        ]
        writer.write(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1"))
        if not head_only:
            writer.write(body)
        try:
            await asyncio.wait_for(writer.drain(), self.limits.request_timeout)
        except asyncio.TimeoutError:
            raise _Closed("timeout") from None

    async def _answer(self, head: bytes, writer: asyncio.StreamWriter) -> bool:
        """Answer one request; whether the connection stays open for another."""
        lines = head.decode("latin-1").split("\r\n")
        parts = lines[0].split(" ")
        if len(parts) != 3 or parts[2] not in ("HTTP/1.0", "HTTP/1.1"):
            await self._send(writer, 400, b"bad request line\n", close=True)
            raise _Closed("bad_request")
        method, target, version = parts
        headers: dict[str, str] = {}
        for line in lines[1:]:
            if not line:
                continue
            name, sep, value = line.partition(":")
            if not sep or not name or name != name.strip():
                await self._send(writer, 400, b"bad header line\n", close=True)
                raise _Closed("bad_request")
            headers[name.lower()] = value.strip()
        if headers.get("content-length", "0") != "0" or "transfer-encoding" in headers:
            await self._send(writer, 400, b"requests have no body here\n", close=True)
            raise _Closed("bad_request")
        connection = headers.get("connection", "").lower()
        keep = version == "HTTP/1.1" and connection != "close"
        head_only = method == "HEAD"
        if method not in ("GET", "HEAD"):
            await self._send(
                writer, 405, b"GET or HEAD\n", close=not keep, headers=(("Allow", "GET, HEAD"),)
            )
            return keep
        path = target.split("?", 1)[0]
        if path == "/healthz":  # open without auth: it tells only whether a spec is served
            ok = self.healthy()
            body = b"ok\n" if ok else b"no spec loaded\n"
            await self._send(writer, 200 if ok else 503, body, close=not keep, head_only=head_only)
            return keep
        if self.auth is not None:
            given = headers.get("authorization", "")
            if not await self.auth.allows(given, self.auth_pool):
                await self._send(
                    writer,
                    401,
                    b"unauthorized\n",
                    close=not keep,
                    head_only=head_only,
                    headers=(("WWW-Authenticate", 'Basic realm="engine"'),),
                )
                return keep
        if path != "/metrics":
            await self._send(
                writer, 404, b"engine serve: /metrics and /healthz\n", close=not keep,
                head_only=head_only,
            )  # fmt: skip
            return keep
        try:
            body, zipped = await self.snapshots.get()
        except Exception as exc:  # a failing read must not end the server
            await self._send(writer, 500, f"{exc}\n".encode(), close=not keep)
            return keep
        extra: tuple[tuple[str, str], ...] = ()
        if "gzip" in headers.get("accept-encoding", ""):
            body, extra = zipped, (("Content-Encoding", "gzip"),)
        await self._send(
            writer,
            200,
            body,
            close=not keep,
            head_only=head_only,
            headers=extra,
            content_type=METRICS_CONTENT_TYPE,
        )
        return keep
