"""gunicorn for the web half: its threaded worker, dropping connections that stall, its
access log without the webhooks answered 200, and the app served (``bridge.serving.run_web``)."""

from __future__ import annotations

import logging
import os

from gunicorn import glogging
from gunicorn.app.base import BaseApplication
from gunicorn.workers.gthread import TConn, ThreadWorker

from bridge.config import Settings
from bridge.web.app import create_app
from bridge.web.closing import Closer
from bridge.web.database import INTAKE_ADDRESS

# Threads per web worker: each connection that has sent something holds one until its request
# is answered or it stalls for CLIENT_TIMEOUT, so this many slow clients per worker can hang
# at once without delaying a webhook. Several dozen mostly idle threads cost little memory.
WEB_THREADS = 64
# Seconds a connection may stall mid-request (between two reads or writes) before it is dropped.
# A real webhook arrives whole in well under a second.
CLIENT_TIMEOUT = float(os.environ.get("WEB_CLIENT_TIMEOUT", "10"))


CLOSER = Closer()


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
            # accepting (or answering) anything for 2 s. The closer waits for all of them at once.
            CLOSER.close(self.sock)
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

    def __init__(self, settings: Settings, host: str, port: int, intake_address: str | None = None):
        self.settings = settings
        self.intake_address = intake_address
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
        app = create_app(self.settings)
        app.config[INTAKE_ADDRESS] = self.intake_address
        return app
