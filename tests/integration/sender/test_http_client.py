"""The hardened HTTP client against real receivers on 127.0.0.1 (these tests open sockets)."""

from __future__ import annotations

import datetime
import gzip
import http.server
import socket
import ssl
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from ipaddress import IPv4Address, IPv6Address, ip_address, ip_network
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from functions import __version__
from functions.core.egress import EgressPolicy
from functions.egress_http import HttpErrorCode, PinnedHttpClient

pytestmark = pytest.mark.integration

IPAddress = IPv4Address | IPv6Address
PORTS = frozenset({80, 443, 8080, 8443})
LOOPBACK = EgressPolicy(allowed_ports=PORTS, allow_private=(ip_network("127.0.0.0/8"), ip_network("::1/128")))
DEFAULT = EgressPolicy(allowed_ports=PORTS)
GZIP_BOMB = gzip.compress(b"\0" * (20 * 1024 * 1024), compresslevel=9)


@dataclass
class Seen:
    path: str
    headers: dict[str, str]
    raw_header_names: list[str]


@dataclass
class Receiver:
    port: int
    requests: list[Seen] = field(default_factory=list)
    connections: int = 0
    sni: list[str | None] = field(default_factory=list)


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def log_message(self, format: str, *args: object) -> None:  # quiet
        return

    def _send(self, status: int, body: bytes = b"", headers: dict[str, str] | None = None) -> None:
        self.send_response(status)
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:
        receiver = self.server.receiver
        receiver.requests.append(Seen(self.path, dict(self.headers.items()), list(self.headers.keys())))
        path = self.path.split("?", 1)[0]
        if path == "/ok":
            self._send(200, b"ok")
        elif path.startswith("/status/"):
            self._send(int(path.rsplit("/", 1)[1]), b"status body")
        elif path == "/redirect":
            self._send(301, headers={"Location": f"http://127.0.0.1:{receiver.port}/ok"})
        elif path == "/throttle":
            self._send(429, b"slow down", headers={"Retry-After": "120"})
        elif path == "/slow":
            time.sleep(1.5)
            self._send(200, b"late")
        elif path == "/drip":
            self.send_response(200)
            self.send_header("Content-Length", "1000")
            self.end_headers()
            self.wfile.flush()
            try:
                for _ in range(1000):
                    self.wfile.write(b"x")
                    self.wfile.flush()
                    time.sleep(0.05)
            except OSError:
                return
        elif path == "/big":
            size = 10 * 1024 * 1024
            self.send_response(200)
            self.send_header("Content-Length", str(size))
            self.end_headers()
            block = b"a" * 65536
            try:
                for _ in range(size // len(block)):
                    self.wfile.write(block)
            except OSError:
                return
        elif path == "/gzip":
            self._send(200, GZIP_BOMB, headers={"Content-Encoding": "gzip"})
        else:
            self._send(404)


class _Server(http.server.ThreadingHTTPServer):
    daemon_threads = True
    receiver: Receiver

    def get_request(self) -> tuple[socket.socket, object]:
        connection, address = super().get_request()
        self.receiver.connections += 1
        return connection, address

    def handle_error(self, request: object, client_address: object) -> None:
        return  # the client hanging up early is expected in these tests


def _serve(server: _Server) -> Iterator[Receiver]:
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield server.receiver
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    server = _Server(("127.0.0.1", 0), _Handler)
    server.receiver = Receiver(port=server.server_address[1])
    yield from _serve(server)


def _client(
    policy: EgressPolicy = LOOPBACK,
    resolver: object = None,
    *,
    read_timeout: float = 0.3,
    total_timeout: float = 2.0,
    max_bytes: int = 65536,
    ssl_context: ssl.SSLContext | None = None,
) -> PinnedHttpClient:
    return PinnedHttpClient(
        policy,
        connect_timeout=0.5,
        read_timeout=read_timeout,
        total_timeout=total_timeout,
        max_response_bytes=max_bytes,
        resolver=resolver,  # type: ignore[arg-type]
        ssl_context=ssl_context,
    )


class StubResolver:
    """Answers from a script, one list per call, and counts the calls."""

    def __init__(self, *answers: list[str]) -> None:
        self._answers = list(answers)
        self.calls: list[str] = []

    def __call__(self, host: str, port: int) -> list[IPAddress]:
        self.calls.append(host)
        answer = self._answers[min(len(self.calls), len(self._answers)) - 1]
        return [ip_address(a) for a in answer]


def test_200_is_returned_with_body(receiver: Receiver) -> None:
    outcome = _client().get(f"http://127.0.0.1:{receiver.port}/ok?x=1")
    assert outcome.status_code == 200
    assert outcome.error is None
    assert outcome.body_excerpt == b"ok"
    assert outcome.resolved_address == "127.0.0.1"
    assert receiver.requests[0].path == "/ok?x=1"


@pytest.mark.parametrize("status", [500, 404, 410])
def test_error_statuses_are_returned_as_received(receiver: Receiver, status: int) -> None:
    outcome = _client().get(f"http://127.0.0.1:{receiver.port}/status/{status}")
    assert outcome.status_code == status
    assert outcome.error is None
    assert outcome.body_excerpt == b"status body"


def test_redirect_is_not_followed(receiver: Receiver) -> None:
    outcome = _client().get(f"http://127.0.0.1:{receiver.port}/redirect")
    assert outcome.status_code == 301
    assert outcome.headers["location"] == f"http://127.0.0.1:{receiver.port}/ok"
    assert [seen.path for seen in receiver.requests] == ["/redirect"]


def test_429_passes_retry_after_through(receiver: Receiver) -> None:
    outcome = _client().get(f"http://127.0.0.1:{receiver.port}/throttle")
    assert outcome.status_code == 429
    assert outcome.headers["Retry-After"] == "120"


def test_slow_receiver_times_out_on_read(receiver: Receiver) -> None:
    outcome = _client(read_timeout=0.3).get(f"http://127.0.0.1:{receiver.port}/slow")
    assert outcome.status_code is None
    assert outcome.error == HttpErrorCode.READ_TIMEOUT
    assert outcome.duration_ms < 1000


def test_slow_drip_body_is_cut_at_the_total_deadline(receiver: Receiver) -> None:
    started = time.monotonic()
    outcome = _client(read_timeout=0.3, total_timeout=0.8).get(f"http://127.0.0.1:{receiver.port}/drip")
    elapsed = time.monotonic() - started
    assert outcome.error == HttpErrorCode.DEADLINE_EXCEEDED
    assert outcome.status_code == 200
    # The body would take 50 s; anything near the 0.8 s deadline shows the cut (slack for a busy machine).
    assert elapsed < 5.0


def test_large_body_is_read_only_up_to_the_limit(receiver: Receiver) -> None:
    started = time.monotonic()
    outcome = _client(max_bytes=65536).get(f"http://127.0.0.1:{receiver.port}/big")
    assert outcome.status_code == 200
    assert outcome.error is None
    assert len(outcome.body_excerpt) == 65536
    assert time.monotonic() - started < 1.0


def test_gzip_bomb_is_neither_decoded_nor_read_past_the_limit(receiver: Receiver) -> None:
    outcome = _client(max_bytes=1024).get(f"http://127.0.0.1:{receiver.port}/gzip")
    assert outcome.status_code == 200
    assert outcome.headers["Content-Encoding"] == "gzip"
    assert len(outcome.body_excerpt) == 1024
    assert outcome.body_excerpt == GZIP_BOMB[:1024]


def test_closed_port_is_connection_refused() -> None:
    probe = socket.socket()
    probe.bind(("127.0.0.1", 0))
    port = probe.getsockname()[1]
    probe.close()
    outcome = _client().get(f"http://127.0.0.1:{port}/ok")
    assert outcome.error == HttpErrorCode.CONNECTION_REFUSED
    assert outcome.status_code is None


def test_name_is_resolved_once_per_get_and_the_checked_address_is_used(receiver: Receiver) -> None:
    resolver = StubResolver(["127.0.0.1"], ["10.0.0.1"])
    client = _client(resolver=resolver)
    first = client.get(f"http://receiver.test:{receiver.port}/ok")
    assert first.status_code == 200
    assert first.resolved_address == "127.0.0.1"
    assert resolver.calls == ["receiver.test"]
    second = client.get(f"http://receiver.test:{receiver.port}/ok")
    assert second.error == HttpErrorCode.BLOCKED_DESTINATION
    assert second.resolved_address == "10.0.0.1"
    assert resolver.calls == ["receiver.test", "receiver.test"]
    assert receiver.connections == 1


@pytest.mark.parametrize(
    ("policy", "answer"),
    [(LOOPBACK, ["127.0.0.1", "10.0.0.1"]), (DEFAULT, ["93.184.215.14", "127.0.0.1"])],
)
def test_any_disallowed_answer_blocks_without_connecting(
    receiver: Receiver, policy: EgressPolicy, answer: list[str]
) -> None:
    outcome = _client(policy, StubResolver(answer)).get(f"http://receiver.test:{receiver.port}/ok")
    assert outcome.error == HttpErrorCode.BLOCKED_DESTINATION
    assert outcome.status_code is None
    assert receiver.connections == 0


def test_failed_resolution_is_a_dns_error() -> None:
    def failing(host: str, port: int) -> list[IPAddress]:
        raise socket.gaierror(socket.EAI_NONAME, "not found")

    assert _client(DEFAULT, failing).get("https://tracker.example.com/cb").error == HttpErrorCode.DNS_ERROR
    assert _client(DEFAULT, StubResolver([])).get("https://tracker.example.com/cb").error == HttpErrorCode.DNS_ERROR


@pytest.mark.parametrize(
    "url",
    [
        "http://10.0.0.1/",
        "http://127.1/",
        "http://2130706433/",
        "http://0x7f.0.0.1/",
        "http://017700000001/",
        "http://[::1]/",
        "http://[::ffff:127.0.0.1]/",
        "http://169.254.169.254/latest/meta-data/",
        "http://[fd00:ec2::254]/",
        "http://localhost/",
        "http://foo.internal/",
        "ftp://x/",
        "http://u:p@example.com/",
        "http://example.com:22/",
        "http://127.0.0.1:{port}/ok",
    ],
)
def test_literal_vectors_are_blocked_at_send_time(receiver: Receiver, url: str) -> None:
    resolver = StubResolver(["127.0.0.1"])
    outcome = _client(DEFAULT, resolver).get(url.format(port=receiver.port))
    assert outcome.error == HttpErrorCode.BLOCKED_DESTINATION
    assert receiver.connections == 0
    assert resolver.calls in ([], ["example.com"])


def test_malformed_url_is_invalid() -> None:
    assert _client().get("not a url").error == HttpErrorCode.INVALID_URL


def test_host_header_is_the_name_while_the_connection_goes_to_the_pinned_address(receiver: Receiver) -> None:
    outcome = _client(resolver=StubResolver(["127.0.0.1"])).get(f"http://receiver.test:{receiver.port}/ok")
    assert outcome.status_code == 200
    assert receiver.requests[0].headers["Host"] == f"receiver.test:{receiver.port}"


def test_only_our_headers_are_sent(receiver: Receiver) -> None:
    _client().get(f"http://127.0.0.1:{receiver.port}/ok")
    seen = receiver.requests[0]
    assert seen.headers["User-Agent"] == f"postbacks/{__version__}"
    assert seen.headers["Accept-Encoding"] == "identity"
    assert sorted(name.lower() for name in seen.raw_header_names) == ["accept-encoding", "host", "user-agent"]


def test_proxy_environment_is_ignored(receiver: Receiver, monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("HTTP_PROXY", "http_proxy", "HTTPS_PROXY", "https_proxy", "ALL_PROXY"):
        monkeypatch.setenv(name, "http://127.0.0.1:9")
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)
    outcome = _client().get(f"http://127.0.0.1:{receiver.port}/ok")
    assert outcome.status_code == 200


def test_connections_are_reused_and_safe_across_threads(receiver: Receiver) -> None:
    client = _client()
    results: list[int | None] = []
    lock = threading.Lock()

    def fire() -> None:
        for _ in range(5):
            outcome = client.get(f"http://127.0.0.1:{receiver.port}/ok")
            with lock:
                results.append(outcome.status_code)

    threads = [threading.Thread(target=fire) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert results == [200] * 40
    assert receiver.connections <= 8
    client.close()


# HTTPS: a certificate for `receiver.test` served on 127.0.0.1, trusted by the client's context.


@dataclass(frozen=True)
class Certificate:
    cert_file: Path
    key_file: Path
    pem: bytes


def _certificate(tmp_path: Path, name: str) -> Certificate:
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(name)]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    pem = cert.public_bytes(serialization.Encoding.PEM)
    cert_file = tmp_path / f"{name}.pem"
    key_file = tmp_path / f"{name}.key"
    cert_file.write_bytes(pem)
    key_file.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return Certificate(cert_file, key_file, pem)


@pytest.fixture
def tls_receiver(tmp_path: Path) -> Iterator[tuple[Receiver, Certificate]]:
    certificate = _certificate(tmp_path, "receiver.test")
    server = _Server(("127.0.0.1", 0), _Handler)
    receiver = Receiver(port=server.server_address[1])
    server.receiver = receiver
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(certificate.cert_file, certificate.key_file)

    def remember_sni(sock: ssl.SSLObject | ssl.SSLSocket, server_name: str | None, _ctx: ssl.SSLContext) -> None:
        receiver.sni.append(server_name)

    context.sni_callback = remember_sni
    server.socket = context.wrap_socket(server.socket, server_side=True)
    yield from ((r, certificate) for r in _serve(server))


def _trusting(certificate: Certificate) -> ssl.SSLContext:
    context = ssl.create_default_context()
    context.load_verify_locations(cadata=certificate.pem.decode())
    return context


def test_https_is_pinned_with_sni_and_certificate_bound_to_the_name(
    tls_receiver: tuple[Receiver, Certificate],
) -> None:
    receiver, certificate = tls_receiver
    client = _client(resolver=StubResolver(["127.0.0.1"]), ssl_context=_trusting(certificate))
    outcome = client.get(f"https://receiver.test:{receiver.port}/ok")
    assert outcome.error is None
    assert outcome.status_code == 200
    assert outcome.resolved_address == "127.0.0.1"
    assert receiver.sni == ["receiver.test"]
    assert receiver.requests[0].headers["Host"] == f"receiver.test:{receiver.port}"


def test_https_certificate_for_another_name_is_a_tls_error(tls_receiver: tuple[Receiver, Certificate]) -> None:
    receiver, certificate = tls_receiver
    client = _client(resolver=StubResolver(["127.0.0.1"]), ssl_context=_trusting(certificate))
    outcome = client.get(f"https://other.test:{receiver.port}/ok")
    assert outcome.error == HttpErrorCode.TLS_ERROR
    assert receiver.requests == []


def test_https_untrusted_certificate_is_a_tls_error(tls_receiver: tuple[Receiver, Certificate]) -> None:
    receiver, _certificate = tls_receiver
    outcome = _client(resolver=StubResolver(["127.0.0.1"])).get(f"https://receiver.test:{receiver.port}/ok")
    assert outcome.error == HttpErrorCode.TLS_ERROR
