"""One intake writer for the whole web half: every web process's webhooks committed together.

Each gunicorn worker process used to commit its own webhooks (``storage/group_commit.py``),
the two taking turns at SQLite's write lock. A writer thread inside a web process competes for
the process's GIL with dozens of request threads, even while it holds the lock, and each
process's batch paid an fsync of its own. ``bridge web`` now runs the writer in a process of
its own, gunicorn's parent (``serving.run_web``): a web process sends each authentic,
well-formed webhook over a Unix socket, the writer commits everything that arrived while it
committed the previous batch in one transaction, and answers each request after that commit.
Nothing is acknowledged before it is on disk.

Without the writer (none was started: ``bridge demo``, the tests' app, a system without
Linux's abstract sockets; or it is gone: its process was killed, its name perhaps taken by
another user) a web process commits through its own group commit, as before. No Flask here: the writer process never loads it.
"""

from __future__ import annotations

import contextlib
import errno
import hmac
import json
import logging
import os
import secrets
import selectors
import socket
import sqlite3
import struct
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from sqlite_utils import Database

from bridge.core.hooks import hook_token
from bridge.storage.group_commit import MAX_BATCH, BatchWriter, Write, WriteTimeout
from bridge.storage.inbox import Envelope, insert_event
from bridge.storage.stores import APP, StoreRegistry

log = logging.getLogger(__name__)

HEADER = struct.Struct("!I")  # each message: its length, then that many bytes
FACTS_LENGTH = struct.Struct("!I")  # a request: the length of its facts (JSON), the facts, the body
MAX_MESSAGE = 512 * 1024  # a webhook's body is 64 KiB at most, its facts (the token too) a few KiB
# Bytes asked of each read: a message is about a kilobyte, and asking for much more costs (a
# 256 KiB read took ten times as long as a 64 KiB one, for the allocation); larger ones take several reads.
READ_SIZE = 64 * 1024
POLL_SECONDS = 0.2  # how often an idle writer looks whether it should stop
PEER_CREDENTIALS = struct.Struct("3i")  # SO_PEERCRED: pid, uid, gid


@dataclass(frozen=True)
class IntakeRequest:
    """A webhook to store: what the web process learnt of it, and how it was authenticated."""

    envelope: Envelope
    body: str
    token: str | None  # the X-Bridge-Token header, checked against the store the body names
    signed: bool  # a valid Standard Webhooks signature: no token needed
    received_at: float

    def to_bytes(self) -> bytes:
        """The request as sent to the writer: its facts as a short JSON array, then the body as
        it came (JSON-escaping the body again would cost more than everything else here).

        The envelope's ``data`` is not sent: the writer stores the body, which holds it, and
        needs only the hash of it, sent as ``hash``.
        """
        envelope = self.envelope
        facts = [
            envelope.scope, envelope.store_hash, envelope.content_hash, envelope.created_at, envelope.order_id,
            envelope.cart_id, envelope.refund_id, envelope.nonce, self.token, self.signed, self.received_at,
        ]  # fmt: skip
        encoded = json.dumps(facts, separators=(",", ":")).encode("utf-8")
        return FACTS_LENGTH.pack(len(encoded)) + encoded + self.body.encode("utf-8")

    @classmethod
    def from_bytes(cls, data: bytes) -> IntakeRequest:
        (length,) = FACTS_LENGTH.unpack_from(data)
        start = FACTS_LENGTH.size
        scope, store_hash, content_hash, created_at, order_id, cart_id, refund_id, nonce, token, signed, received_at = json.loads(
            data[start : start + length]
        )
        envelope = Envelope(
            scope=scope, store_hash=store_hash, data={}, hash=content_hash, created_at=created_at, order_id=order_id,
            cart_id=cart_id, refund_id=refund_id, nonce=nonce,
        )  # fmt: skip
        body = data[start + length :].decode("utf-8")
        return cls(envelope=envelope, body=body, token=token, signed=bool(signed), received_at=float(received_at))


Stored = tuple[int | None, bool]  # the event's id (None for a re-delivery), whether the store is known


def store_event(db: Database, stores: StoreRegistry, secret: str, request: IntakeRequest) -> Stored | None:
    """Store a webhook (call in a transaction): what became of it, or None when its token is not
    one the named store's hooks send (nothing stored).

    The store's state and the event's insert are in one transaction, so an install or an
    uninstall cannot slip between the token check and the insert.
    """
    envelope = request.envelope
    mode = stores.mode_of(db, envelope.store_hash)
    if not request.signed and not store_token_valid(secret, request.token, envelope.store_hash, mode):
        return None
    # An uninstall is recorded and applied in the same transaction: no BigCommerce call here.
    event_id = insert_event(db, envelope, request.body, known_store=mode is not None, now=request.received_at, app_install=mode == APP)
    return event_id, mode is not None


def token_valid(secret: str | None, token: str | None) -> bool:
    """``token`` equals ``secret`` (constant-time compare)."""
    return bool(secret) and token is not None and hmac.compare_digest(token.encode(), secret.encode())


def store_token_valid(secret: str, token: str | None, store_hash: str, mode: str | None) -> bool:
    """The token is one the named store's hooks may send: its own app-store token (also after an
    uninstall, for a late retry), or ``webhooks.secret`` unless the store is served as an app."""
    # The shared secret first: it is the configured store's token, and needs no HMAC worked out.
    return (mode != APP and token_valid(secret, token)) or token_valid(hook_token(secret, store_hash, app=True), token)


class WriterUnreachable(Exception):
    """No writer took the request (none listening, or the connection broke before it was sent
    whole): nothing was stored, and the caller may store it another way."""


class IntakeFailed(Exception):
    """The writer failed to store the request, or went away before answering (then it may
    have stored it): either way nothing may be acknowledged."""


class IntakeClient:
    """A web process's end: ``store(request)`` from any thread, over a connection of that thread's own."""

    def __init__(self, address: str):
        self.address = address
        self._local = threading.local()
        self._open: set[socket.socket] = set()  # every thread's, for close()
        self._lock = threading.Lock()

    def store(self, request: IntakeRequest, *, timeout: float) -> Stored | None:
        """The writer's answer, once the request is committed (see ``store_event``).

        Raises ``WriterUnreachable`` when nothing was sent, ``WriteTimeout`` when no answer
        came within ``timeout`` seconds, ``IntakeFailed`` when the writer failed or went away.
        """
        message = request.to_bytes()
        sock = self._send(HEADER.pack(len(message)) + message, timeout)
        try:
            answer = json.loads(_receive_message(sock))
        except TimeoutError:
            self._drop()  # a late answer must not be read as the next request's
            raise WriteTimeout(f"the intake writer did not answer within {timeout:.1f} s") from None
        except (OSError, EOFError, ValueError) as error:
            self._drop()
            raise IntakeFailed(f"the intake writer went away before answering ({error})") from None
        if "error" in answer:
            raise IntakeFailed(f"the intake writer could not store the event: {answer['error']}")
        stored = answer["stored"]
        return None if stored is None else (stored[0], bool(stored[1]))

    def _send(self, frame: bytes, timeout: float) -> socket.socket:
        """The thread's connection, the frame sent whole on it; reconnects once when a kept
        connection turns out to be broken (the writer was restarted)."""
        for attempt in range(2):
            sock = getattr(self._local, "sock", None)
            if sock is not None and sock.fileno() < 0:
                sock = None  # closed by close()
            kept = sock is not None
            if sock is None:
                sock = self._connect(timeout)
            sock.settimeout(timeout)
            try:
                sock.sendall(frame)
                return sock
            except OSError as error:
                self._drop()
                # A frame only partly sent is never read: the writer acts on whole messages.
                if not kept or attempt:
                    raise WriterUnreachable(f"the intake writer's socket broke ({error})") from None
        raise AssertionError("unreachable")

    def _connect(self, timeout: float) -> socket.socket:
        """A new connection for this thread, to a writer run by this process's own user."""
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(timeout)
        try:
            sock.connect(self.address)
            writer_uid = peer_uid(sock)
        except OSError as error:
            sock.close()
            raise WriterUnreachable(f"no intake writer at the socket ({error})") from None
        if writer_uid != os.getuid():
            # The writer is gone and another user took its name (every local user can read it
            # in /proc/net/unix): it must be sent no webhook, and its answers are worthless.
            sock.close()
            log.warning("The intake writer's socket is held by another user (uid %d): webhooks are committed here", writer_uid)
            raise WriterUnreachable("the intake writer's socket is held by another user")
        self._local.sock = sock
        with self._lock:
            self._open.add(sock)
        return sock

    def _drop(self) -> None:
        sock = getattr(self._local, "sock", None)
        self._local.sock = None
        if sock is not None:
            with self._lock:
                self._open.discard(sock)
            sock.close()

    def close(self) -> None:
        """Close every thread's connection (a thread still using one gets an error)."""
        with self._lock:
            for sock in self._open:
                sock.close()
            self._open.clear()


def peer_uid(sock: socket.socket) -> int:
    """The user id of the process at the other end of a Unix socket (SO_PEERCRED, Linux)."""
    _, uid, _ = PEER_CREDENTIALS.unpack(sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, PEER_CREDENTIALS.size))
    return uid


def _receive_message(sock: socket.socket) -> bytes:
    """One message's bytes: an answer is a few dozen bytes, so nearly always one read."""
    data = bytearray()
    while len(data) < HEADER.size or len(data) < HEADER.size + HEADER.unpack_from(data)[0]:
        chunk = sock.recv(4096)
        if not chunk:
            raise EOFError("the connection closed")
        data += chunk
    (length,) = HEADER.unpack_from(data)
    if len(data) != HEADER.size + length:
        raise ValueError("more than one answer")  # the writer answers each request once
    return bytes(data[HEADER.size :])


def _reserve_descriptor() -> int | None:
    """A descriptor to give up when there are none left, or None when none can be had."""
    try:
        return os.open(os.devnull, os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return None


class _Peer:
    """A web process's connection, as the writer sees it: the bytes read so far."""

    __slots__ = ("buffer", "sock")

    def __init__(self, sock: socket.socket):
        self.sock = sock
        self.buffer = bytearray()


class IntakeServer:
    """The writer: accepts the web processes' connections and commits what they send, in batches."""

    def __init__(self, database_path: str, store_event: Callable[[Database, IntakeRequest], Stored | None], *, busy_timeout: float):
        self.database_path = database_path
        self._store_event = store_event
        self._busy_timeout = busy_timeout
        # An abstract socket (Linux): no file to leave behind or to lock out of a copy, and no
        # path-length limit. Any local user could connect to one, so each peer's user is checked.
        self.address = f"\0bridge-intake-{os.getpid()}-{secrets.token_hex(8)}"
        if not hasattr(socket, "AF_UNIX") or not hasattr(socket, "SO_PEERCRED"):
            raise OSError("this system has no Unix sockets with peer credentials")
        self._listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            self._listener.bind(self.address)
            self._listener.listen(1024)
            self._listener.setblocking(False)
        except OSError:
            self._listener.close()
            raise
        self._peers: dict[int, _Peer] = {}
        self._selector = selectors.DefaultSelector()
        self._selector.register(self._listener, selectors.EVENT_READ)
        # A descriptor kept in reserve: out of descriptors, it is given up for a moment to accept
        # and hang up on a waiting peer, which would otherwise keep the listener ready forever.
        self._reserve = _reserve_descriptor()
        self._out_of_descriptors = False

    def serve(self, running: Callable[[], bool]) -> None:
        """Commit what the peers send until ``running()`` is False (checked at least every POLL_SECONDS)."""
        writer = BatchWriter(self.database_path, busy_timeout=self._busy_timeout)
        try:
            while running():
                batch: list[tuple[_Peer, Write]] = []
                for key, _ in self._selector.select(timeout=POLL_SECONDS):
                    if key.fileobj is self._listener:
                        self._accept()
                    else:
                        batch.extend(self._read(key.data))
                for start in range(0, len(batch), MAX_BATCH):
                    self._commit(writer, batch[start : start + MAX_BATCH])
        finally:
            writer.close()

    def close(self) -> None:
        """Hang up on every peer and stop listening."""
        for peer in list(self._peers.values()):
            self._drop(peer)
        self._selector.close()
        self._listener.close()
        if self._reserve is not None:
            os.close(self._reserve)
            self._reserve = None

    def _accept(self) -> None:
        while True:
            try:
                sock, _ = self._listener.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as error:
                if error.errno not in (errno.EMFILE, errno.ENFILE):
                    log.warning("The intake writer could not accept a connection: %s", error)
                    return
                if not self._refuse_one(error):
                    return
                continue
            self._out_of_descriptors = False
            uid = peer_uid(sock)
            if uid != os.getuid():
                log.warning("The intake writer refused a connection from another user (uid %d)", uid)
                sock.close()
                continue
            sock.setblocking(False)
            peer = _Peer(sock)
            self._peers[sock.fileno()] = peer
            self._selector.register(sock, selectors.EVENT_READ, peer)

    def _refuse_one(self, error: OSError) -> bool:
        """Out of descriptors: hang up on the next waiting peer (its request is answered 503, and
        BigCommerce retries it). False when none was waiting, or nothing could be done."""
        if not self._out_of_descriptors:
            self._out_of_descriptors = True
            log.warning("The intake writer is out of file descriptors (%s): webhooks are answered 503 until it has some", error)
        if self._reserve is None:
            time.sleep(POLL_SECONDS)  # nothing to give up: wait rather than spin
            self._reserve = _reserve_descriptor()
            return False
        os.close(self._reserve)
        try:
            sock, _ = self._listener.accept()
            sock.close()
            refused = True
        except OSError:  # none waiting (Linux reports EMFILE before it looks at the queue)
            refused = False
        self._reserve = _reserve_descriptor()
        return refused

    def _read(self, peer: _Peer) -> list[tuple[_Peer, Write]]:
        """The whole messages the peer has sent, as writes; the peer dropped when it hung up."""
        try:
            chunk = peer.sock.recv(READ_SIZE)
        except (BlockingIOError, InterruptedError):
            return []
        except OSError:
            chunk = b""
        if not chunk:
            self._drop(peer)
            return []
        peer.buffer += chunk
        writes = []
        while len(peer.buffer) >= HEADER.size:
            (length,) = HEADER.unpack_from(peer.buffer)
            if length > MAX_MESSAGE:
                log.warning("The intake writer dropped a connection that sent a message of %d bytes", length)
                self._drop(peer)
                return writes  # answered below or not at all: the connection is gone
            if len(peer.buffer) < HEADER.size + length:
                break
            data = bytes(peer.buffer[HEADER.size : HEADER.size + length])
            del peer.buffer[: HEADER.size + length]
            writes.append((peer, self._write(data)))
        return writes

    def _write(self, data: bytes) -> Write:
        try:
            request = IntakeRequest.from_bytes(data)
        except Exception as error:  # whatever a malformed message raises (a RecursionError too): it alone is refused
            log.warning("The intake writer was sent a message that is not a webhook to store: %s", error)
            write = Write(lambda db: None)
            write.error = ValueError(f"not an intake request: {error}")
            return write
        return Write(lambda db: self._store_event(db, request))

    def _commit(self, writer: BatchWriter, batch: list[tuple[_Peer, Write]]) -> None:
        to_run = [write for _, write in batch if write.error is None]  # a malformed message runs nothing
        stored = writer.commit(to_run) if to_run else False
        for write in to_run:
            if write.error is not None and not isinstance(write.error, sqlite3.Error):  # the web process logs the database's
                log.error("The intake writer could not store an event", exc_info=write.error)
        for peer, write in batch:
            answer = {"stored": write.result} if write.error is None else {"error": f"{type(write.error).__name__}: {write.error}"}
            self._answer(peer, json.dumps(answer).encode())
        if stored:
            writer.notify()

    def _answer(self, peer: _Peer, message: bytes) -> None:
        if peer.sock.fileno() < 0:
            return  # dropped since it sent this
        try:
            sent = peer.sock.send(HEADER.pack(len(message)) + message)
        except OSError:
            sent = -1
        if sent != HEADER.size + len(message):
            # The peer is gone, or has not read its last answer: it sees the connection close
            # and answers its request 503 (BigCommerce retries it).
            self._drop(peer)

    def _drop(self, peer: _Peer) -> None:
        if peer.sock.fileno() < 0:
            return
        with contextlib.suppress(KeyError, ValueError):
            self._selector.unregister(peer.sock)
        self._peers.pop(peer.sock.fileno(), None)
        peer.sock.close()
