"""``bridge web`` as a real process: idle and half-sent connections must not hold up webhooks."""

import json
import signal
import socket
import time

import pytest
import requests

from tests.conftest import WEBHOOK_SECRET, status_updated
from tests.processes import free_port, wait_for

SLOW_CLIENTS = 50
PARTIAL_HEADERS = b"POST /webhooks/bigcommerce HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n"
PARTIAL_BODY = b'POST /webhooks/bigcommerce HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{"a": '


@pytest.fixture
def web_process(spawn):
    """Start ``bridge web`` on a free port; returns the port and the process once it answers."""

    def start(extra_environ: dict[str, str] | None = None):
        port = free_port()
        # Two workers, as deployed by default: the old sync workers were stuck after two slow clients.
        process = spawn(["web", "--port", str(port)], {"WEB_CONCURRENCY": "2", **(extra_environ or {})})

        def healthy():
            assert process.process.poll() is None, process.output
            try:
                return requests.get(f"http://127.0.0.1:{port}/healthz", timeout=1).ok
            except requests.ConnectionError:
                return False

        wait_for(healthy, timeout=30, interval=0.1)
        return port, process

    return start


def timed(call) -> tuple[float, requests.Response | None]:
    """Seconds ``call()`` took and its response (None if it timed out)."""
    started = time.monotonic()
    try:
        response = call()
    except requests.Timeout:
        response = None
    return time.monotonic() - started, response


def post_webhook(port: int) -> tuple[float, requests.Response | None]:
    """Post a real, authenticated webhook; the seconds it took and the response."""
    return timed(
        lambda: requests.post(
            f"http://127.0.0.1:{port}/webhooks/bigcommerce",
            data=json.dumps(status_updated(250, 11)),
            headers={"X-Bridge-Token": WEBHOOK_SECRET, "Content-Type": "application/json"},
            timeout=(3, 3),
        )
    )


def test_fifty_idle_or_half_sent_connections_do_not_delay_a_webhook(web_process):
    port, process = web_process()
    slow = []
    try:
        for number in range(SLOW_CLIENTS):
            sock = socket.create_connection(("127.0.0.1", port), timeout=5)
            if number % 2:  # half of them send part of a request and stall, half send nothing
                sock.sendall(PARTIAL_HEADERS if number % 4 == 1 else PARTIAL_BODY)
            slow.append(sock)
        time.sleep(0.5)  # let the server take them all in hand

        took, response = post_webhook(port)
        assert response is not None and response.status_code == 200, f"webhook: {response} after {took:.2f} s"
        assert took < 1.0, f"webhook answered after {took:.2f} s"

        took, response = timed(lambda: requests.get(f"http://127.0.0.1:{port}/healthz", timeout=(3, 3)))
        assert response is not None and response.status_code == 200, f"healthz: {response} after {took:.2f} s"
        assert took < 1.0, f"healthz answered after {took:.2f} s"
    finally:
        for sock in slow:
            sock.close()
    assert process.stop(signal.SIGTERM, timeout=30) == 0, process.output


def read_all(sock) -> bytes:
    """What the server sends until it closes the connection."""
    received = b""
    while chunk := sock.recv(4096):
        received += chunk
    return received


def test_connections_that_stall_mid_request_are_dropped_without_holding_up_others(web_process):
    # One worker: a second one could take the webhook while the first is held up.
    port, process = web_process({"WEB_CLIENT_TIMEOUT": "1", "WEB_CONCURRENCY": "1"})
    authenticated_partial_body = PARTIAL_BODY.replace(b"\r\n\r\n", f"\r\nX-Bridge-Token: {WEBHOOK_SECRET}\r\n\r\n".encode())
    sent = {"headers": PARTIAL_HEADERS, "body": authenticated_partial_body}
    stalled = {kind: [socket.create_connection(("127.0.0.1", port), timeout=10) for _ in range(8)] for kind in sent}
    try:
        for kind, socks in stalled.items():
            for sock in socks:
                sock.sendall(sent[kind])
        time.sleep(1.5)  # past WEB_CLIENT_TIMEOUT: the server is dropping them now

        took, response = post_webhook(port)
        assert response is not None and response.status_code == 200, f"webhook: {response} after {took:.2f} s"
        assert took < 1.0, f"webhook answered after {took:.2f} s"

        assert [read_all(sock) for sock in stalled["headers"]] == [b""] * 8  # closed unanswered
        assert all(read_all(sock).startswith(b"HTTP/1.1 400 ") for sock in stalled["body"])  # the body never came
    finally:
        for socks in stalled.values():
            for sock in socks:
                sock.close()
    wait_for(lambda: "Dropped a connection that stalled for 1 s mid-request" in process.output, timeout=5)
    assert "Traceback" not in process.output
    assert process.stop(signal.SIGTERM, timeout=30) == 0, process.output


def test_the_access_log_keeps_no_query_string(web_process):
    """The app callbacks carry a signed JWT or an OAuth code in the query: never in a log line."""
    port, process = web_process()
    for path in ("/bigcommerce/load?signed_payload_jwt=eyJSECRETJWT.x.y", "/bigcommerce/auth?code=SECRETCODE42&scope=x&context=stores/a"):
        requests.get(f"http://127.0.0.1:{port}{path}", timeout=5)
    wait_for(lambda: "/bigcommerce/auth" in process.output, timeout=10)
    assert '"GET /bigcommerce/load HTTP/1.1" 503' in process.output  # app installs are not set up here
    assert "SECRETJWT" not in process.output and "SECRETCODE42" not in process.output


def test_the_access_log_leaves_out_webhooks_answered_200_and_keeps_every_other(web_process):
    """A stored webhook is logged by the worker when it acts on it; a refused one keeps its line."""
    port, process = web_process()
    url = f"http://127.0.0.1:{port}/webhooks/bigcommerce"
    assert requests.post(url, json=status_updated(4242, 11), headers={"X-Bridge-Token": WEBHOOK_SECRET}, timeout=5).status_code == 200
    assert requests.post(url, json=status_updated(4243, 11), headers={"X-Bridge-Token": "wrong"}, timeout=5).status_code == 401
    requests.get(f"http://127.0.0.1:{port}/healthz", timeout=5)
    wait_for(lambda: '"GET /healthz HTTP/1.1"' in process.output, timeout=10)
    assert '"POST /webhooks/bigcommerce HTTP/1.1" 401' in process.output
    assert '"POST /webhooks/bigcommerce HTTP/1.1" 200' not in process.output
