"""Fixtures of the outbound tests: scripted loopback servers, a network log, fake time and DNS.

Nothing here reaches beyond loopback: `network` records every connect and lookup (and can
refuse connects before they happen), on top of the repository-wide loopback guard.
"""

from __future__ import annotations

import datetime
import http.server
import socket
import ssl
import threading
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from strongroom.outbound import OutboundClient, RetryPolicy

PUBLIC_V4 = "93.184.215.14"
PUBLIC_V6 = "2606:2800:21f:cb07:6820:80da:af6b:8b2c"
START = 1_700_000_000.0


# --- recorded network --------------------------------------------------------------------


@dataclass
class NetworkLog:
    """Every socket connect (host, port) and getaddrinfo host of the test, in order."""

    connects: list[tuple[str, int]] = field(default_factory=list)
    lookups: list[str] = field(default_factory=list)
    refuse_all: bool = False
    refuse_next: int = 0
    time_out_next: int = 0

    def names_looked_up(self) -> list[str]:
        """Lookups of anything but an IP literal: the client must make none itself."""
        return [host for host in self.lookups if not _is_ip(host)]


def _is_ip(host: str) -> bool:
    for family in (socket.AF_INET, socket.AF_INET6):
        try:
            socket.inet_pton(family, host.split("%", 1)[0])
        except OSError:
            continue
        return True
    return False


@pytest.fixture
def network(monkeypatch: pytest.MonkeyPatch) -> NetworkLog:
    log = NetworkLog()
    guarded_connect = socket.socket.connect
    real_getaddrinfo = socket.getaddrinfo

    def connect(sock: socket.socket, address: Any) -> None:
        log.connects.append((str(address[0]), int(address[1])))
        if log.refuse_all or log.refuse_next:
            log.refuse_next = max(0, log.refuse_next - 1)
            raise ConnectionRefusedError(111, "Connection refused")
        if log.time_out_next:
            log.time_out_next -= 1
            raise TimeoutError("timed out")
        guarded_connect(sock, address)

    def getaddrinfo(host: Any, *args: Any, **kwargs: Any) -> Any:
        log.lookups.append(str(host))
        return real_getaddrinfo(host, *args, **kwargs)

    monkeypatch.setattr(socket.socket, "connect", connect)
    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    return log


# --- fake DNS and time --------------------------------------------------------------------


class FakeResolver:
    """Answers from a table: a name's answers, or per call in turn (the last one repeats)."""

    def __init__(self, table: dict[str, list[str]] | None = None) -> None:
        self.table = dict(table or {})
        self.turns: dict[str, list[list[str]]] = {}
        self.calls: list[tuple[str, int]] = []

    def add_turns(self, name: str, *answers: list[str]) -> None:
        self.turns[name] = list(answers)

    def __call__(self, host: str, port: int) -> list[str]:
        self.calls.append((host, port))
        if host in self.turns:
            turn = sum(1 for name, _ in self.calls if name == host) - 1
            return list(self.turns[host][min(turn, len(self.turns[host]) - 1)])
        if host in self.table:
            return list(self.table[host])
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")


class FakeClock:
    """Epoch time that moves only when the client sleeps."""

    def __init__(self, now: float = START) -> None:
        self.now = now
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        assert seconds >= 0
        self.sleeps.append(seconds)
        self.now += seconds


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def make_client(clock: FakeClock) -> Iterator[Callable[..., OutboundClient]]:
    """An OutboundClient with fake time and no DNS unless given; closed at teardown."""
    clients: list[OutboundClient] = []

    def make(**overrides: Any) -> OutboundClient:
        options: dict[str, Any] = {
            "resolver": FakeResolver(),
            "sleep": clock.sleep,
            "clock": clock,
            "random": lambda: 0.5,
            "connect_timeout": 2.0,
            "read_timeout": 2.0,
            "retry": RetryPolicy(max_attempts=3, base_delay=1.0, max_delay=8.0, max_wait=60.0),
        }
        options.update(overrides)
        client = OutboundClient(**options)
        clients.append(client)
        return client

    yield make
    for client in clients:
        client.close()


# --- scripted loopback servers ----------------------------------------------------------


@dataclass(frozen=True)
class Reply:
    """What a scripted server answers. `chunks` sends a chunked body instead of `body`."""

    status: int = 200
    headers: tuple[tuple[str, str], ...] = ()
    body: bytes = b""
    chunks: Iterable[bytes] | None = None
    # Send headers (and body) and then keep the connection open until the test ends.
    hold_open: bool = False


@dataclass(frozen=True)
class Received:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes


Script = Callable[[Received], Reply]


@dataclass
class Server:
    port: int
    host: str
    requests: list[Received]
    sni_names: list[str | None]
    bytes_streamed: list[int]
    handler_done: threading.Event
    scheme: str = "http"

    @property
    def allow(self) -> tuple[str, int]:
        return self.host.strip("[]"), self.port

    def url(self, path: str = "/") -> str:
        return f"{self.scheme}://{self.host}:{self.port}{path}"


def replies(*sequence: Reply) -> Script:
    """A script that answers with `sequence` in order, repeating the last reply."""
    served = [0]

    def script(_: Received) -> Reply:
        index = min(served[0], len(sequence) - 1)
        served[0] += 1
        return sequence[index]

    return script


def _handler_class(
    script: Script, server: Server, stop: threading.Event
) -> type[http.server.BaseHTTPRequestHandler]:
    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def _handle(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            received = Received(
                method=self.command,
                path=self.path,
                headers={name.lower(): value for name, value in self.headers.items()},
                body=body,
            )
            server.requests.append(received)
            reply = script(received)
            try:
                self._send(reply)
            except OSError:
                self.close_connection = True
            finally:
                server.handler_done.set()

        def _send(self, reply: Reply) -> None:
            self.send_response(reply.status)
            names = {name.lower() for name, _ in reply.headers}
            for name, value in reply.headers:
                self.send_header(name, value)
            if reply.chunks is not None:
                self.send_header("Transfer-Encoding", "chunked")
            elif "content-length" not in names:
                self.send_header("Content-Length", str(len(reply.body)))
            self.end_headers()
            if reply.chunks is not None:
                sent = 0
                for chunk in reply.chunks:
                    self.wfile.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
                    self.wfile.flush()
                    sent += len(chunk)
                    server.bytes_streamed.append(sent)
                self.wfile.write(b"0\r\n\r\n")
            else:
                self.wfile.write(reply.body)
            self.wfile.flush()
            if reply.hold_open:
                stop.wait(10)
                self.close_connection = True

        do_GET = do_POST = do_PUT = do_DELETE = do_HEAD = do_PATCH = _handle

        def log_message(self, *args: Any) -> None:
            pass

    return Handler


class _QuietServer(http.server.ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # handshake failures and client aborts are the point of some tests


class _TlsServer(_QuietServer):
    context: ssl.SSLContext

    def get_request(self) -> tuple[socket.socket, Any]:
        sock, address = self.socket.accept()
        # The handshake happens on the handler thread, at the first read.
        wrapped = self.context.wrap_socket(sock, server_side=True, do_handshake_on_connect=False)
        return wrapped, address


@pytest.fixture
def serve() -> Iterator[Callable[..., Server]]:
    """Start scripted loopback servers: `serve(script, tls=context, host="127.0.0.1")`."""
    started: list[tuple[http.server.ThreadingHTTPServer, threading.Thread]] = []
    stop = threading.Event()

    def start(script: Script, *, tls: ssl.SSLContext | None = None, host: str = "127.0.0.1"):
        bind = host.strip("[]")
        server = Server(
            port=0,
            host=host,
            requests=[],
            sni_names=[],
            bytes_streamed=[],
            handler_done=threading.Event(),
            scheme="https" if tls else "http",
        )
        server_class: type[_QuietServer] = _QuietServer
        if tls is not None:

            def record_sni(_: Any, name: str | None, __: Any) -> None:
                server.sni_names.append(name)

            tls.sni_callback = record_sni
            server_class = _TlsServer
        if ":" in bind:
            server_class = type("V6", (server_class,), {"address_family": socket.AF_INET6})
        httpd = server_class((bind, 0), _handler_class(script, server, stop))
        if tls is not None:
            httpd.context = tls  # type: ignore[attr-defined]
        server.port = httpd.server_address[1]
        thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.01})
        thread.daemon = True
        thread.start()
        started.append((httpd, thread))
        return server

    yield start
    stop.set()
    for httpd, thread in started:
        httpd.shutdown()
        httpd.server_close()
        thread.join(5)


@pytest.fixture
def silent_port() -> Iterator[int]:
    """A loopback port that accepts connections (the kernel's backlog) and never answers."""
    listener = socket.create_server(("127.0.0.1", 0), backlog=8)
    yield listener.getsockname()[1]
    listener.close()


# --- TLS material, generated per test session ---------------------------------------------


@dataclass(frozen=True)
class Pki:
    ca_file: Path
    directory: Path
    ca_key: ec.EllipticCurvePrivateKey
    ca_cert: x509.Certificate

    def server_context(self, *names: str) -> ssl.SSLContext:
        """A server context whose certificate (signed by this CA) names `names`."""
        key = ec.generate_private_key(ec.SECP256R1())
        now = datetime.datetime.now(datetime.UTC)
        cert = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, names[0])]))
            .issuer_name(self.ca_cert.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(hours=1))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName(n) for n in names]), False)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), False)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), False)
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(self.ca_key.public_key()),
                False,
            )
            .sign(self.ca_key, hashes.SHA256())
        )
        stem = self.directory / names[0]
        cert_file, key_file = stem.with_suffix(".crt"), stem.with_suffix(".key")
        cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        key_file.write_bytes(
            key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        )
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(cert_file, key_file)
        return context


@pytest.fixture(scope="session")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    directory = tmp_path_factory.mktemp("pki")
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Strongroom Test CA")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(hours=2))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=False,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), False)
        .sign(key, hashes.SHA256())
    )
    ca_file = directory / "ca.pem"
    ca_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return Pki(ca_file=ca_file, directory=directory, ca_key=key, ca_cert=cert)
