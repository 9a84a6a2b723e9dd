"""Running the bridge: gunicorn for the web half, the worker loop, and both together."""

from __future__ import annotations

import contextlib
import ctypes
import errno
import logging
import os
import signal
import socket
import subprocess
import sys
import threading
import time

from gunicorn import glogging
from gunicorn.app.base import BaseApplication
from gunicorn.workers.gthread import TConn, ThreadWorker

from bridge.config import Settings
from bridge.worker.loop import Worker

log = logging.getLogger(__name__)

PR_SET_PDEATHSIG = 1  # prctl option: the signal a process gets when its parent dies
STOP_TIMEOUT = 30.0  # seconds each half gets to finish what it holds after SIGTERM

LISTEN_FIXES = {
    errno.EADDRINUSE: "the address is already in use; stop the other program or choose another port with --port or server.port",
    errno.EACCES: "permission denied; choose a port above 1023 with --port or server.port",
    errno.EADDRNOTAVAIL: "no interface of this machine has that address; choose another with --host or server.host",
}

# Threads per web worker: each connection that has sent something holds one until its request
# is answered or it stalls for CLIENT_TIMEOUT, so this many slow clients per worker can hang
# at once without delaying a webhook. Several dozen mostly idle threads cost little memory.
WEB_THREADS = 64
# Seconds a connection may stall mid-request (between two reads or writes) before it is dropped.
# A real webhook arrives whole in well under a second.
CLIENT_TIMEOUT = float(os.environ.get("WEB_CLIENT_TIMEOUT", "10"))


class _Connection(TConn):
    """gthread's connection, with CLIENT_TIMEOUT on every socket read and write, closed off
    the worker's main loop.

    gthread itself reads a request on a blocking socket with no timeout, so a client that
    sends half a request and stalls would keep its thread until it hangs up (and hold up a
    graceful stop for ``graceful_timeout``). ``handle()`` calls ``init()`` right before it
    reads each request, new or kept alive.
    """

    def init(self):
        super().init()  # makes a new connection's socket blocking
        self.sock.settimeout(CLIENT_TIMEOUT)

    def close(self, graceful=False):
        if graceful:
            # gthread closes on its main loop, and a graceful close waits up to 2 s for the
            # client to hang up: done there, each stalled client would stop the worker from
            # accepting (or answering) anything for 2 s.
            threading.Thread(target=super().close, args=(True,), name="close", daemon=True).start()
        else:
            super().close()


class _StalledClients(logging.Filter):
    """gthread logs a read timeout as a socket error with a traceback; one line will do."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.exc_info and isinstance(record.exc_info[1], TimeoutError):
            record.msg, record.args = "Dropped a connection that stalled for %.0f s mid-request", (CLIENT_TIMEOUT,)
            record.exc_info = record.exc_text = None
            record.levelno, record.levelname = logging.INFO, "INFO"
        return True


class BridgeThreadWorker(ThreadWorker):
    """gunicorn's gthread worker, dropping connections that stall mid-request."""

    def init_process(self):
        self.log.error_log.addFilter(_StalledClients())
        super().init_process()

    def accept(self, listener):
        try:
            client_sock, client_addr = listener.accept()
        except (BlockingIOError, ConnectionAbortedError):  # another worker took it; the client left
            return
        self.nr_conns += 1
        self.enqueue_req(_Connection(self.cfg, client_sock, client_addr, listener.getsockname()))


ACCESS_LOG_FORMAT = '%(h)s %(t)s "%(m)s %(U)s %(H)s" %(s)s %(B)s %(M)sms'
WEBHOOK_PATH = "/webhooks/bigcommerce"


class BridgeLogger(glogging.Logger):
    """gunicorn's logger, leaving out the access line of each webhook answered 200.

    A webhook the bridge stored is logged once, by the worker, when it acts on the order;
    an access line for every one cost the intake more than its own work. Every other
    request, and every webhook answered otherwise (401, 400, 503…), is logged as before.
    """

    def access(self, resp, req, environ, request_time):
        if environ.get("PATH_INFO") == WEBHOOK_PATH and str(resp.status).startswith("200"):
            return
        super().access(resp, req, environ, request_time)


class WebServer(BaseApplication):
    """gunicorn, configured from the bridge's settings instead of its command line.

    Threaded workers: a sync worker serves one connection at a time, so two clients that
    connect and send nothing (or half a request) held up every webhook. A gthread worker
    waits for a new connection's first bytes on a thread for up to 5 s, then hands it to its
    poller; a connection that is idle in the poller longer than ``keepalive`` is closed.
    """

    def __init__(self, settings: Settings, host: str, port: int):
        self.settings = settings
        self.options = {
            "bind": f"{host}:{port}",
            "workers": int(os.environ.get("WEB_CONCURRENCY", "2")),
            "worker_class": f"{__name__}.BridgeThreadWorker",
            "threads": int(os.environ.get("WEB_THREADS", str(WEB_THREADS))),
            # Seconds an idle connection (kept alive, or never sending a byte) stays open.
            "keepalive": 5,
            # A gthread worker that does not check in for this long is restarted; its main
            # loop checks in every second, so this only catches a worker that is wedged.
            "timeout": 30,
            "graceful_timeout": 20,
            "accesslog": "-",
            # The path without its query: the app callbacks carry a signed JWT or an OAuth code
            # there, and gunicorn's default line (the request line, referrer, agent) would log them.
            "access_log_format": ACCESS_LOG_FORMAT,
            "logger_class": f"{__name__}.BridgeLogger",
            "errorlog": "-",
            "loglevel": "info",
            "proc_name": "bridge-web",
            # gunicorn's runtime control socket is one fixed path per user: two bridges
            # on one host would fight over it, and nothing here uses it.
            "control_socket_disable": True,
        }
        super().__init__()

    def load_config(self):
        for key, value in self.options.items():
            self.cfg.set(key, value)

    def load(self):
        # Imported here, not at the top: the worker process imports this module too, and Flask
        # and the web's blueprints would cost it about 11 MiB it never uses (issue 11).
        from bridge.web.app import create_app

        return create_app(self.settings)


def listen_problem(host: str, port: int) -> str | None:
    """Why gunicorn could not listen on ``host:port``, in one line; None when it can.

    Binds (and closes) a socket with SO_REUSEADDR as gunicorn does, so a port that only
    has connections in TIME_WAIT counts as free.
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    try:
        with socket.socket(family, socket.SOCK_STREAM) as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind((host, port))
    except socket.gaierror:
        reason = "no such host name; choose another with --host or server.host"
    except OSError as error:
        reason = LISTEN_FIXES.get(error.errno, f"{error.strerror}; choose another --host/--port or server.host/server.port")
    else:
        return None
    return f"cannot listen on {f'[{host}]' if family == socket.AF_INET6 else host}:{port}: {reason}"


def run_web(settings: Settings, host: str, port: int) -> None:
    WebServer(settings, host, port).run()


M_ARENA_MAX = -8  # glibc's mallopt option


def _few_malloc_arenas() -> None:
    """Two malloc arenas for the worker's threads: glibc gives each busy thread an arena of its
    own (up to eight per core), and with dozens of lanes the worker's memory grew by half for
    nothing. Python's own allocator does most of the work anyway. No-op off glibc."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6").mallopt(M_ARENA_MAX, 2)


def run_worker(settings: Settings) -> None:
    """Run the worker until SIGTERM or SIGINT, then finish the item in hand and exit."""
    stop = threading.Event()

    def request_stop(signum, frame):
        log.info("Worker received %s: stopping after the current item", signal.Signals(signum).name)
        stop.set()

    signal.signal(signal.SIGTERM, request_stop)
    signal.signal(signal.SIGINT, request_stop)
    _few_malloc_arenas()
    worker = Worker(settings)
    try:
        worker.run(stop)
    finally:
        worker.close()


def _die_with_parent() -> None:
    """In a child of ``bridge serve``: get SIGTERM when the parent dies, even by SIGKILL.

    Otherwise a killed ``bridge serve`` leaves its web half holding the port, and the
    supervisor's restart fails. Linux only (prctl); elsewhere children outlive a SIGKILL.
    """
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    except (OSError, AttributeError):
        pass


def run_both(config_path: str | None, host: str, port: int) -> int:
    """``bridge serve``: the web half and the worker as two child processes.

    Stops both on SIGTERM/SIGINT; if either dies, stops the other and fails, so a
    process supervisor notices and restarts the whole bridge.
    """
    base = [sys.executable, "-m", "bridge"] + (["--config", config_path] if config_path else [])
    stop = threading.Event()
    received: list[str] = []

    def request_stop(signum, frame):
        received.append(signal.Signals(signum).name)
        stop.set()

    signal.signal(signal.SIGTERM, request_stop)
    signal.signal(signal.SIGINT, request_stop)
    children = {
        "web": subprocess.Popen([*base, "web", "--host", host, "--port", str(port)], preexec_fn=_die_with_parent),
        "worker": subprocess.Popen([*base, "worker"], preexec_fn=_die_with_parent),
    }
    log.info("Bridge serving on http://%s:%s (web pid %s, worker pid %s)", host, port, children["web"].pid, children["worker"].pid)
    failed = None
    while not stop.wait(0.2):
        for name, child in children.items():
            if child.poll() is not None:
                failed = name
                log.error("The %s process exited with status %s; stopping the bridge", name, child.returncode)
                stop.set()
                break
    if received:
        log.info("Received %s: stopping", received[0])
    for child in children.values():
        if child.poll() is None:
            child.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + STOP_TIMEOUT
    for name, child in children.items():
        try:
            child.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            log.error("The %s process did not stop in %.0f s; killing it", name, STOP_TIMEOUT)
            child.kill()
            child.wait()
    if failed:
        return 1
    return 0 if all(child.returncode in (0, -signal.SIGTERM, -signal.SIGINT) for child in children.values()) else 1
