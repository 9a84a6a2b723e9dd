"""Running the bridge: the web half (gunicorn, see web/server.py), the worker loop, and both together."""

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
    """``bridge web``: gunicorn in a child process, and in this one the intake writer that
    commits every web process's webhooks (``web/intake.py``). Where no writer can be made,
    gunicorn runs here and each web process commits its own."""
    writer = _intake_writer(settings)
    if writer is None:
        _run_gunicorn(settings, host, port, None)
        return
    parent = os.getpid()
    child = os.fork()  # before this process starts any thread: the child has only the one forking
    if child == 0:
        _run_child(lambda: _run_gunicorn(settings, host, port, writer.address), writer, parent)
    status = _serve_intake(writer, child)
    if os.WIFSIGNALED(status):
        # gunicorn died of a signal (one passed on before it could handle it): this process
        # does too, as bridge web did before it had a writer (bridge serve counts SIGTERM as a stop).
        signum = os.WTERMSIG(status)
        signal.signal(signum, signal.SIG_DFL)
        os.kill(os.getpid(), signum)
        sys.exit(128 + signum)
    if os.WEXITSTATUS(status):
        sys.exit(os.WEXITSTATUS(status))


def _run_gunicorn(settings: Settings, host: str, port: int, intake_address: str | None) -> None:
    # Imported here: gunicorn and Flask would cost the worker process, which imports this
    # module too, about 13 MiB it never uses (issue 11), and the intake writer as much.
    from bridge.web.server import WebServer

    WebServer(settings, host, port, intake_address).run()


def _intake_writer(settings: Settings):
    """The intake writer's listening end, or None when this system cannot make one."""
    from bridge.storage.stores import StoreRegistry
    from bridge.web.database import REQUEST_BUSY_TIMEOUT
    from bridge.web.intake import IntakeServer, store_event

    stores, secret = StoreRegistry(settings), settings.webhooks.secret
    try:
        return IntakeServer(
            str(settings.database.path),
            lambda db, request: store_event(db, stores, secret, request),
            busy_timeout=REQUEST_BUSY_TIMEOUT,
        )
    except OSError as error:  # no abstract sockets (not Linux): each web process commits its own webhooks
        log.info("No intake writer (%s): each web process commits its own webhooks", error)
        return None


def _run_child(run, writer, parent: int) -> None:
    """In the forked child: run gunicorn, then exit with its status, never returning to the caller."""
    code = 0
    try:
        writer.close()  # the parent's listening end: the child only connects
        # Killed outright when the writer dies: bridge serve kills the writer only once gunicorn
        # has not stopped in time after SIGTERM, so gunicorn must not outlive it holding the port.
        # Its workers see their master gone and stop within a second, committing their own
        # webhooks meanwhile.
        _die_with_parent(signal.SIGKILL)
        if os.getppid() != parent:
            code = 1  # the writer died before the line above
        else:
            run()
    except SystemExit as exit_:
        if isinstance(exit_.code, str):
            print(exit_.code, file=sys.stderr)
            code = 1
        else:
            code = exit_.code or 0
    except BaseException:
        log.exception("The web server failed")
        code = 1
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)


# What gunicorn's master acts on: stop (TERM, INT, QUIT), reload (HUP), reopen its log files
# (USR1), one worker more or fewer (TTIN, TTOU). Not USR2: gunicorn's binary upgrade would run
# a second bridge web beside this one.
FORWARDED_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGQUIT, signal.SIGHUP, signal.SIGUSR1, signal.SIGTTIN, signal.SIGTTOU)


def _serve_intake(writer, child: int) -> int:
    """Commit the web processes' webhooks until gunicorn (``child``) exits; its wait status.

    Signals are passed on to gunicorn, and the writer keeps serving while gunicorn stops, so
    the requests it finishes are still stored. Should the writer fail, gunicorn is stopped
    gracefully, its web processes committing their own webhooks meanwhile.
    """

    def forward(signum, frame):
        with contextlib.suppress(ProcessLookupError):
            os.kill(child, signum)

    def refuse_upgrade(signum, frame):
        log.warning("SIGUSR2 (gunicorn's binary upgrade) is not supported by bridge web: restart it instead")

    for signum in FORWARDED_SIGNALS:
        signal.signal(signum, forward)
    signal.signal(signal.SIGUSR2, refuse_upgrade)
    status: list[int] = []
    checked = [0.0]

    def running() -> bool:
        now = time.monotonic()
        if not status and now - checked[0] >= CHILD_CHECK_SECONDS:
            checked[0] = now
            pid, code = os.waitpid(child, os.WNOHANG)
            if pid:
                status.append(code)
        return not status

    log.info("One intake writer (pid %s) commits the webhooks of every web process", os.getpid())
    try:
        writer.serve(running)
    except BaseException:
        log.exception("The intake writer failed: stopping the web server")
        writer.close()  # refused from now on: the web processes commit their own webhooks
        if not status:
            forward(signal.SIGTERM, None)
            with contextlib.suppress(ChildProcessError):
                os.waitpid(child, 0)
        raise
    writer.close()
    return status[0]


CHILD_CHECK_SECONDS = 0.2


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


def _die_with_parent(signum: int = signal.SIGTERM) -> None:
    """In a child of ``bridge serve`` (or of the intake writer): get ``signum`` when the parent
    dies, even by SIGKILL.

    Otherwise a killed ``bridge serve`` leaves its web half holding the port, and the
    supervisor's restart fails. Linux only (prctl); elsewhere children outlive a SIGKILL.
    """
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signum)
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
