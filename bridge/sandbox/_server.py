"""What both sandbox servers share: a werkzeug server on 127.0.0.1 in a daemon thread,
a record of every request, per-request latency and injectable failures."""

from __future__ import annotations

import json
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from werkzeug import Request, Response
from werkzeug.serving import WSGIRequestHandler, make_server

HOST = "127.0.0.1"


def json_response(data: Any, status: int = 200, headers: dict | None = None) -> Response:
    return Response(json.dumps(data), status=status, headers=headers, content_type="application/json")


def empty_response(status: int = 204, headers: dict | None = None) -> Response:
    return Response(b"", status=status, headers=headers)


def read_json(request: Request) -> Any:
    """The request's JSON body, or None when it is empty or not JSON."""
    raw = request.get_data(cache=True)
    if not raw:
        return None
    try:
        return json.loads(raw)
    except ValueError:
        return None


@dataclass
class Recorded:
    """One request as it crossed the wire, and the status it was answered with."""

    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: bytes
    at: float = field(default_factory=time.time)
    status: int | None = None

    @property
    def json(self) -> Any:
        try:
            return json.loads(self.body) if self.body else None
        except ValueError:
            return None


@dataclass
class Injection:
    """A canned answer served instead of the normal one, ``times`` times, to matching requests.

    ``status`` None means "answer normally, only after ``delay``" (slowness). ``respond``
    (a function of the werkzeug request returning a Response) answers instead of the canned
    status and body; ``match`` (a predicate on the request) narrows which requests it takes.
    """

    status: int | None
    body: str | bytes = ""
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0
    times: int = 1
    method: str | None = None
    path: str | None = None  # a regex searched in the request path
    respond: Callable[[Request], Response] | None = None
    match: Callable[[Request], bool] | None = None

    def matches(self, request: Request) -> bool:
        if self.times <= 0:
            return False
        if self.method and request.method.upper() != self.method.upper():
            return False
        if self.path and not re.search(self.path, request.path):
            return False
        return self.match is None or bool(self.match(request))


class _QuietHandler(WSGIRequestHandler):
    """No access log on stderr: the demo's terminal and the test output stay readable."""

    def log(self, type: str, message: str, *args) -> None:
        pass


class LocalServer:
    """A WSGI app that can serve itself on 127.0.0.1 (``start``/``stop``/``url``)."""

    def __init__(self, *, latency: float = 0.0):
        self.latency = latency  # seconds slept before every answer
        self._initial_latency = latency
        self.requests: list[Recorded] = []
        self.injections: list[Injection] = []
        self._lock = threading.RLock()
        self._server = None
        self._thread: threading.Thread | None = None

    # --- Serving ----------------------------------------------------------------------

    def start(self, port: int = 0):
        """Serve on 127.0.0.1 (``port`` 0: any free port) in a daemon thread; returns self."""
        if self._server is not None:
            return self
        self._server = make_server(HOST, port, self, threaded=True, request_handler=_QuietHandler)
        self._thread = threading.Thread(target=self._server.serve_forever, args=(0.05,), name=type(self).__name__, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is None:
            return
        self._server.shutdown()
        self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._server = self._thread = None

    @property
    def port(self) -> int:
        if self._server is None:
            raise RuntimeError(f"{type(self).__name__} is not started")
        return self._server.server_port

    @property
    def url(self) -> str:
        """``http://127.0.0.1:PORT`` (no trailing slash)."""
        return f"http://{HOST}:{self.port}"

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    # --- Failure injection --------------------------------------------------------------

    def fail_next(
        self,
        status: int,
        *,
        times: int = 1,
        body: str | bytes | dict | list | None = None,
        headers: dict[str, str] | None = None,
        delay: float = 0.0,
        method: str | None = None,
        path: str | None = None,
    ) -> Injection:
        """Answer the next ``times`` matching requests with ``status``, ``body`` and ``headers``
        (after ``delay`` seconds). ``path`` is a regex searched in the request path."""
        if body is None:
            body = self.default_error_body(status)
        if isinstance(body, (dict, list)):
            body = json.dumps(body)
        injection = Injection(status, body, dict(headers or {}), delay, times, method, path)
        with self._lock:
            self.injections.append(injection)
        return injection

    def slow_next(self, delay: float, *, times: int = 1, method: str | None = None, path: str | None = None) -> Injection:
        """Answer the next ``times`` matching requests normally, but only after ``delay`` seconds."""
        injection = Injection(None, delay=delay, times=times, method=method, path=path)
        with self._lock:
            self.injections.append(injection)
        return injection

    def respond_next(
        self,
        respond: Callable[[Request], Response],
        *,
        times: int = 1,
        match: Callable[[Request], bool] | None = None,
        delay: float = 0.0,
        method: str | None = None,
        path: str | None = None,
    ) -> Injection:
        """Answer the next ``times`` matching requests with ``respond(request)`` (a werkzeug
        Response), for answers no status and body can describe: a hang, a wrong content type, a
        change to the store while the request is in flight. ``match`` is a predicate on the request."""
        injection = Injection(None, delay=delay, times=times, method=method, path=path, respond=respond, match=match)
        with self._lock:
            self.injections.append(injection)
        return injection

    def clear_failures(self) -> None:
        with self._lock:
            self.injections.clear()

    def default_error_body(self, status: int) -> str:
        return json.dumps({"status": status, "title": "Injected failure"})

    # --- Records -------------------------------------------------------------------------

    def calls(self, path: str | None = None, method: str | None = None) -> list[Recorded]:
        """Recorded requests, optionally those whose path matches the regex ``path``."""
        with self._lock:
            return [
                r
                for r in self.requests
                if (path is None or re.search(path, r.path)) and (method is None or r.method.upper() == method.upper())
            ]

    def reset_records(self) -> None:
        with self._lock:
            self.requests.clear()

    def reset(self) -> None:
        """Back to the state it was created in (data, records, failures, latency), still serving."""
        with self._lock:
            self.requests.clear()
            self.injections.clear()
            self.latency = self._initial_latency

    # --- WSGI ---------------------------------------------------------------------------

    def dispatch(self, request: Request) -> Response:  # pragma: no cover - overridden
        raise NotImplementedError

    def __call__(self, environ, start_response):
        request = Request(environ)
        request.max_content_length = 2 * 1024 * 1024
        try:
            body = request.get_data(cache=True)
        except Exception:  # too large or a broken stream: answer, never crash the thread
            body = b""
        recorded = Recorded(request.method, request.path, dict(request.args.items()), dict(request.headers.items()), body)
        injection = None
        with self._lock:
            self.requests.append(recorded)
            for candidate in self.injections:
                if candidate.matches(request):
                    candidate.times -= 1
                    injection = candidate
                    break
            self.injections = [i for i in self.injections if i.times > 0]
        delay = self.latency + (injection.delay if injection else 0.0)
        if delay > 0:  # outside the lock: a slow answer never holds up the others
            time.sleep(delay)
        if injection is not None and injection.status is not None:
            response = Response(injection.body, status=injection.status, headers=injection.headers, content_type="application/json")
        else:
            answer = injection.respond if injection is not None and injection.respond is not None else self.dispatch
            try:
                response = answer(request)
            except Exception as error:  # a sandbox bug must show as a 500, not a dropped connection
                response = json_response({"status": 500, "title": f"Sandbox error: {type(error).__name__}"}, 500)
        recorded.status = response.status_code
        return response(environ, start_response)
