"""The deployment's intake writer (``web/intake.py``): webhooks sent over a Unix socket by the web
processes, committed in batches by one process, each answered only after its commit."""

from __future__ import annotations

import json
import os
import shutil
import socket
import sqlite3
import subprocess
import sys
import threading
import time

import pytest

from bridge.storage.group_commit import WriteTimeout
from bridge.storage.stores import StoreRegistry
from bridge.storage.wake import Listener
from bridge.web import intake
from bridge.web.database import INTAKE_ADDRESS
from bridge.web.intake import FACTS_LENGTH, HEADER, IntakeClient, IntakeFailed, IntakeRequest, IntakeServer, WriterUnreachable, store_event
from bridge.web.webhooks import parse_envelope
from tests.conftest import WEBHOOK_SECRET, post_webhook, status_updated


class Running:
    """An IntakeServer serving on a thread until the test ends."""

    def __init__(self, settings, *, busy_timeout: float = 2.0):
        stores = StoreRegistry(settings)
        self.server = IntakeServer(
            str(settings.database.path),
            lambda db, request: store_event(db, stores, settings.webhooks.secret, request),
            busy_timeout=busy_timeout,
        )
        self.address = self.server.address
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self.server.serve, args=(lambda: not self._stop.is_set(),), daemon=True)
        self._thread.start()

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5)
        self.server.close()


@pytest.fixture
def connect_to():
    """IntakeClient(address), closed at the end of the test."""
    made: list[IntakeClient] = []

    def make(address: str) -> IntakeClient:
        made.append(IntakeClient(address))
        return made[-1]

    yield make
    for client in made:
        client.close()


@pytest.fixture
def writer(settings, db):  # db: the database is migrated before the writer's first commit
    running = Running(settings)
    yield running
    running.close()


def _request(order_id: int, *, token: str | None = WEBHOOK_SECRET, created_at: int = 1_700_000_000) -> IntakeRequest:
    payload = status_updated(order_id, 11)
    payload["created_at"] = created_at
    body = json.dumps(payload)
    return IntakeRequest(envelope=parse_envelope(json.loads(body)), body=body, token=token, signed=False, received_at=time.time())


def _orders(path) -> list[int]:
    with sqlite3.connect(path) as conn:
        return sorted(row[0] for row in conn.execute("SELECT order_id FROM events"))


def test_webhooks_from_many_threads_are_each_answered_after_the_commit_that_stored_them(writer, settings, connect_to):
    blocker = sqlite3.connect(settings.database.path, isolation_level=None)
    blocker.execute("BEGIN IMMEDIATE")  # the writer cannot commit until this ends
    client = connect_to(writer.address)
    answers: dict[int, tuple] = {}

    def send(order_id: int) -> None:
        answers[order_id] = (client.store(_request(order_id), timeout=5), time.monotonic())

    threads = [threading.Thread(target=send, args=(order_id,)) for order_id in range(1, 21)]
    for thread in threads:
        thread.start()
    time.sleep(0.3)
    assert answers == {}  # nothing is answered while nothing can be committed
    released = time.monotonic()
    blocker.execute("COMMIT")
    for thread in threads:
        thread.join(5)
    assert _orders(settings.database.path) == list(range(1, 21))
    assert all(at >= released for _, at in answers.values())
    event_ids = {stored[0] for stored, _ in answers.values()}
    assert len(event_ids) == 20 and None not in event_ids
    assert all(stored[1] is True for stored, _ in answers.values())  # the configured store is known


def test_a_redelivery_is_answered_as_one_and_a_token_the_store_does_not_send_stores_nothing(writer, settings, connect_to):
    client = connect_to(writer.address)
    first = client.store(_request(7), timeout=5)
    assert first is not None and first[0] is not None
    assert client.store(_request(7), timeout=5) == (None, True)  # the same event again
    assert client.store(_request(8, token=WEBHOOK_SECRET + "x"), timeout=5) is None
    assert _orders(settings.database.path) == [7]


def test_a_message_longer_than_one_read_is_stored_whole(writer, settings, connect_to):
    request = _request(3)
    body = request.body[:-1] + ', "padding": "' + "\u00e9" * 50_000 + '"}'  # 100 KB of UTF-8, more than one read
    stored = connect_to(writer.address).store(IntakeRequest(request.envelope, body, request.token, False, request.received_at), timeout=5)
    assert stored is not None and stored[0] is not None
    with sqlite3.connect(settings.database.path) as conn:
        assert conn.execute("SELECT body FROM events").fetchone()[0] == body


def test_a_commit_that_fails_is_reported_to_its_callers_and_the_writer_goes_on(settings, db, connect_to):
    running = Running(settings, busy_timeout=0.1)
    try:
        client = connect_to(running.address)
        blocker = sqlite3.connect(settings.database.path, isolation_level=None)
        blocker.execute("BEGIN IMMEDIATE")
        with pytest.raises(IntakeFailed, match="locked"):
            client.store(_request(1), timeout=5)
        blocker.execute("ROLLBACK")
        assert _orders(settings.database.path) == []
        assert client.store(_request(2), timeout=5) is not None
        assert _orders(settings.database.path) == [2]
    finally:
        running.close()


def test_a_commit_wakes_the_worker(writer, settings, connect_to):
    listener = Listener(settings.database.path)
    try:
        assert listener.listening
        assert not listener.wait(0.05)
        connect_to(writer.address).store(_request(1), timeout=5)
        assert listener.wait(2)
    finally:
        listener.close()


def test_with_no_writer_listening_nothing_is_sent(connect_to):
    client = connect_to("\0bridge-intake-test-nobody-listens")
    with pytest.raises(WriterUnreachable):
        client.store(_request(1), timeout=1)


class SilentWriter:
    """A writer that takes each request and then answers nothing (``hang``) or hangs up."""

    def __init__(self, *, hang: bool):
        self.address = f"\0bridge-intake-test-silent-{id(self)}"
        self.listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.listener.bind(self.address)
        self.listener.listen(8)
        self.accepted = 0
        self.hang = hang
        self.held: list[socket.socket] = []
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                sock, _ = self.listener.accept()
            except OSError:
                return
            self.accepted += 1
            (length,) = HEADER.unpack(sock.recv(HEADER.size, socket.MSG_WAITALL))
            sock.recv(length, socket.MSG_WAITALL)
            if self.hang:
                self.held.append(sock)
            else:
                sock.close()

    def close(self) -> None:
        self.listener.close()
        for sock in self.held:
            sock.close()


def test_a_writer_that_does_not_answer_in_time_times_out_and_the_next_request_connects_anew(connect_to):
    silent = SilentWriter(hang=True)
    try:
        client = connect_to(silent.address)
        for _ in range(2):
            with pytest.raises(WriteTimeout):
                client.store(_request(1), timeout=0.2)
        assert silent.accepted == 2  # a late answer to the first can never be read as the second's
    finally:
        silent.close()


def test_a_kept_connection_to_a_writer_that_was_restarted_is_replaced(settings, db, connect_to):
    first = Running(settings)
    client = connect_to(first.address)
    assert client.store(_request(1), timeout=5) is not None
    first.close()  # the client's kept connection is now broken
    second = Running(settings)
    try:
        client.address = second.address
        assert client.store(_request(2), timeout=5) is not None
        assert _orders(settings.database.path) == [1, 2]
    finally:
        second.close()


def test_a_client_closed_while_threads_still_use_it_connects_anew(writer, settings, connect_to):
    client = connect_to(writer.address)
    assert client.store(_request(1), timeout=5) is not None
    client.close()  # this thread's kept connection with the others
    assert client.store(_request(2), timeout=5) is not None
    assert _orders(settings.database.path) == [1, 2]


def test_malformed_and_oversized_messages_do_not_stop_the_writer(writer, settings, connect_to):
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(5)
        sock.connect(writer.address)
        sock.sendall(HEADER.pack(9) + b"not json!")
        (length,) = HEADER.unpack(sock.recv(HEADER.size, socket.MSG_WAITALL))
        assert "not an intake request" in json.loads(sock.recv(length, socket.MSG_WAITALL))["error"]
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(5)
        sock.connect(writer.address)
        sock.sendall(HEADER.pack(intake.MAX_MESSAGE + 1) + b"x" * 100)
        assert sock.recv(16) == b""  # hung up on
    assert connect_to(writer.address).store(_request(3), timeout=5) is not None
    assert _orders(settings.database.path) == [3]


OTHER_USER = pytest.mark.skipif(
    os.geteuid() != 0 or shutil.which("setpriv") is None, reason="needs root and setpriv to run a process as another user"
)

INTRUDER = """
import socket, struct, sys
sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
sock.settimeout(5)
sock.connect("\\0" + sys.argv[1])
message = sys.stdin.buffer.read()
try:
    sock.sendall(struct.pack("!I", len(message)) + message)
    print(repr(sock.recv(4096)))
except OSError as error:
    print(type(error).__name__)
"""


def _as_nobody(script: str, *args: str, stdin: bytes = b"") -> subprocess.Popen:
    return subprocess.Popen(
        ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "/usr/bin/python3", "-c", script, *args],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        cwd="/",
    )


@OTHER_USER
def test_a_connection_from_another_user_is_refused(writer, settings):
    intruder = _as_nobody(INTRUDER, writer.address[1:])
    heard = intruder.communicate(_request(1).to_bytes(), timeout=10)[0].decode().strip()
    assert heard in ("b''", "ConnectionResetError", "BrokenPipeError")  # hung up on, never answered
    assert _orders(settings.database.path) == []


# --- the web process's side: the writer first, its own group commit when there is none ------


def test_the_app_stores_webhooks_through_the_writer_when_there_is_one(app, client, writer, db):
    app.config[INTAKE_ADDRESS] = writer.address
    assert post_webhook(client, status_updated(5, 11)).status_code == 200
    app.extensions["bridge_intake_client"].close()
    assert "bridge_intake" not in app.extensions  # the process's own group commit was never made
    assert db.execute("SELECT order_id FROM events").fetchall() == [(5,)]


def test_the_app_commits_its_own_webhooks_when_the_writer_cannot_be_reached(app, client, db):
    app.config[INTAKE_ADDRESS] = "\0bridge-intake-test-gone"
    assert post_webhook(client, status_updated(6, 11)).status_code == 200
    assert "bridge_intake" in app.extensions
    assert db.execute("SELECT order_id FROM events").fetchall() == [(6,)]


def test_a_writer_gone_after_taking_the_request_is_answered_503_and_the_event_not_stored_again(app, client, db):
    silent = SilentWriter(hang=False)
    try:
        app.config[INTAKE_ADDRESS] = silent.address
        response = post_webhook(client, status_updated(9, 11))
        assert response.status_code == 503
        assert "retry later" in response.get_json()["error"]
        # The writer may have stored it: storing it here too would make a second event.
        assert "bridge_intake" not in app.extensions
        assert db.execute("SELECT count(*) FROM events").fetchone()[0] == 0
    finally:
        app.extensions["bridge_intake_client"].close()
        silent.close()


@pytest.mark.parametrize("created_at", [5, None], ids=["created_at", "no-created_at"])
@pytest.mark.parametrize("bc_hash", ["c0ffee", None], ids=["hash", "no-hash"])
def test_a_request_arrives_with_everything_the_insert_needs(created_at, bc_hash):
    payload = {**status_updated(11, 11), "created_at": created_at, "hash": bc_hash}
    body = json.dumps({**payload, "note": "caf\u00e9 \u2615"}, ensure_ascii=False)  # sent as it came, not escaped
    original = IntakeRequest(envelope=parse_envelope(payload), body=body, token="t\u00e9", signed=True, received_at=1.5)
    copy = IntakeRequest.from_bytes(original.to_bytes())
    assert (copy.body, copy.token, copy.signed, copy.received_at) == (body, "t\u00e9", True, 1.5)
    for name in ("scope", "store_hash", "created_at", "order_id", "cart_id", "refund_id", "content_hash", "dedupe_key"):
        assert getattr(copy.envelope, name) == getattr(original.envelope, name), name


def test_the_writer_module_loads_no_flask():
    import subprocess
    import sys

    code = (
        "import sys, bridge.web.intake, bridge.serving\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('flask', 'gunicorn', 'werkzeug', 'jinja2')))"
    )
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip() == "[]"


# --- found in review: hostile peers, a hostile message, no descriptors left --------------------

IMPOSTOR = """
import json, socket, struct, sys
header = struct.Struct("!I")
listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
listener.bind("\\0" + sys.argv[1])
listener.listen(8)
print("listening", flush=True)
sock, _ = listener.accept()
(length,) = header.unpack(sock.recv(header.size, socket.MSG_WAITALL))
print(sock.recv(length, socket.MSG_WAITALL).decode("utf-8", "replace"), flush=True)
answer = json.dumps({"stored": [1, True]}).encode()
sock.sendall(header.pack(len(answer)) + answer)
"""


@OTHER_USER
def test_a_writer_socket_another_user_took_over_is_sent_no_webhook_and_acknowledges_none(app, client, settings, db):
    # A local user may bind the name of a writer that is gone (every user can read it in
    # /proc/net/unix): that impostor must be sent no webhook, and acknowledge none.
    running = Running(settings)
    address = running.address
    with open("/proc/net/unix") as table:
        assert "@" + address[1:] in table.read()  # the name is public to every local user
    running.close()  # the writer is gone (killed, or stopped while gunicorn still stops)
    impostor = _as_nobody(IMPOSTOR, address[1:])
    try:
        assert impostor.stdout.readline() == b"listening\n"
        app.config[INTAKE_ADDRESS] = address
        assert post_webhook(client, status_updated(12, 11)).status_code == 200
        assert db.execute("SELECT order_id FROM events").fetchall() == [(12,)]  # acknowledged, so stored
    finally:
        impostor.kill()
        heard = impostor.communicate(timeout=5)[0].decode()
        if "bridge_intake_client" in app.extensions:
            app.extensions["bridge_intake_client"].close()
    assert WEBHOOK_SECRET not in heard


def test_a_message_nested_too_deep_is_refused_and_the_writer_goes_on(writer, settings, connect_to):
    # json gives up on it with a RecursionError: the message alone is refused, the writer goes on.
    facts = b"[" * 100_000
    message = FACTS_LENGTH.pack(len(facts)) + facts
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(5)
        sock.connect(writer.address)
        sock.sendall(HEADER.pack(len(message)) + message)
        (length,) = HEADER.unpack(sock.recv(HEADER.size, socket.MSG_WAITALL))
        assert "not an intake request" in json.loads(sock.recv(length, socket.MSG_WAITALL))["error"]
    assert connect_to(writer.address).store(_request(4), timeout=5) is not None
    assert _orders(settings.database.path) == [4]


OUT_OF_DESCRIPTORS = """
import os, resource, socket, sys, threading, time
from bridge.config import load_settings
from bridge.storage.stores import StoreRegistry
from bridge.web.intake import IntakeServer, store_event

settings = load_settings(None, environ=os.environ)
stores = StoreRegistry(settings)
server = IntakeServer(
    str(settings.database.path), lambda db, request: store_event(db, stores, settings.webhooks.secret, request), busy_timeout=2
)
threading.Thread(target=server.serve, args=(lambda: True,), daemon=True).start()
resource.setrlimit(resource.RLIMIT_NOFILE, (256, resource.getrlimit(resource.RLIMIT_NOFILE)[1]))
filler = []
try:
    while True:
        filler.append(os.open("/dev/null", os.O_RDONLY))
except OSError:
    pass
os.close(filler.pop())
peer = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
peer.connect(server.address)  # queued; the writer's accept() now fails with EMFILE
time.sleep(0.2)
started = time.process_time()
time.sleep(1.0)
print(time.process_time() - started)
"""


def test_a_writer_out_of_file_descriptors_does_not_spin(environ):
    # Out of descriptors, a waiting peer is hung up on: left waiting, it would keep the listener
    # ready and the writer's loop spinning.
    result = subprocess.run(
        [sys.executable, "-c", OUT_OF_DESCRIPTORS], env={**os.environ, **environ}, capture_output=True, text=True, timeout=30
    )
    assert result.returncode == 0, result.stderr[-2000:]
    cpu_seconds = float(result.stdout.split()[-1])
    assert cpu_seconds < 0.3, f"{cpu_seconds:.2f} s of CPU in 1 s idle; {result.stderr.count('could not accept')} warnings"
