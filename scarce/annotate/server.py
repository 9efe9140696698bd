"""The annotation page's local web server (Flask, ``pip install "scarce[annotate]"``).

Why these guards on a local page: a page served on 127.0.0.1 is still reachable from any web
site the same browser opens. Writes need the token embedded in the page (a cross-site request
cannot read it, and a custom header cannot be sent cross-site without a CORS answer, which this
server never gives); requests naming another host than the one served are refused (DNS
rebinding); the page loads nothing from outside (Content-Security-Policy ``'self'``), so it works
offline. Images are named by stem only (:meth:`AnnotationSession.path`).

Routes: ``/`` the page; ``/api/state``; ``/api/item/<stem>``; ``/api/image/<stem>`` (PNG);
``/api/scribble/<stem>`` (GET / PUT raw H×W bytes); ``/api/prediction/<stem>`` (raw H×W label
bytes, ``--run`` only).
"""
from __future__ import annotations

import secrets
import sys
import threading
from pathlib import Path
from typing import Any, Callable

from scarce.annotate.session import AnnotationSession
from scarce.data.types import DataError
from scarce.errors import ConfigError

PAGE = Path(__file__).with_name("page.html")
LOCAL_HOSTS = frozenset({"127.0.0.1", "localhost", "::1"})
CSP = ("default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; img-src 'self' blob: data:; "
       "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'")
FLASK_MISSING = 'scarce annotate needs Flask: pip install "scarce[annotate]" (or pip install flask)'


def _flask() -> Any:
    try:
        import flask
    except ImportError:
        raise ConfigError(FLASK_MISSING) from None
    return flask


def create_app(session: AnnotationSession, token: str | None = None, hosts: frozenset[str] | None = LOCAL_HOSTS) -> Any:
    """The Flask app of ``session``. ``token``: the write token embedded in the page (random when
    None); ``hosts``: host names requests may name (None = any, for ``--host 0.0.0.0``)."""
    flask = _flask()
    app = flask.Flask("scarce.annotate")
    token = token or secrets.token_urlsafe(24)
    page = PAGE.read_text(encoding="utf-8").replace("__SCARCE_TOKEN__", token)

    def error(status: int, message: str) -> Any:
        return flask.jsonify({"error": message}), status

    def raw(data: bytes, **headers: str) -> Any:
        return flask.Response(data, mimetype="application/octet-stream", headers=headers)

    @app.before_request
    def _check_host() -> Any:
        host = (flask.request.host or "").rpartition(":")[0] or flask.request.host or ""
        host = host.strip("[]")
        if hosts is not None and host not in hosts:
            return error(403, f"host {host!r} is not served here; open the address scarce annotate printed")
        if flask.request.method not in ("GET", "HEAD") and flask.request.headers.get("X-Scarce-Token") != token:
            return error(403, "missing or wrong page token: reload the page")
        return None

    @app.after_request
    def _headers(resp: Any) -> Any:
        resp.headers["Content-Security-Policy"] = CSP
        resp.headers["Cache-Control"] = "no-store"
        resp.headers["X-Content-Type-Options"] = "nosniff"
        return resp

    @app.errorhandler(KeyError)
    def _unknown(e: KeyError) -> Any:
        return error(404, str(e.args[0]) if e.args else "not found")

    @app.errorhandler(DataError)
    def _bad(e: DataError) -> Any:
        return error(400, str(e))

    @app.errorhandler(ConfigError)
    def _config(e: ConfigError) -> Any:
        return error(400, str(e))

    @app.get("/")
    def index() -> Any:
        return flask.Response(page, mimetype="text/html")

    @app.get("/api/state")
    def state() -> Any:
        return flask.jsonify(session.state())

    @app.get("/api/item/<stem>")
    def item(stem: str) -> Any:
        return flask.jsonify(session.item(stem))

    @app.get("/api/image/<stem>")
    def image(stem: str) -> Any:
        return flask.Response(session.image_png(stem), mimetype="image/png")

    @app.get("/api/scribble/<stem>")
    def scribble(stem: str) -> Any:
        if not session.scribble_path(stem).is_file():
            return error(404, f"{stem!r} has no scribble yet")
        return raw(session.scribble_bytes(stem))

    @app.put("/api/scribble/<stem>")
    def save(stem: str) -> Any:
        n = session.save(stem, flask.request.get_data(cache=False))
        return flask.jsonify({"saved": f"{session.scribble_dir.name}/{stem}.png", "annotated": n,
                              "total": len(session.order)})

    @app.get("/api/prediction/<stem>")
    def prediction(stem: str) -> Any:
        pred = session.prediction(stem)
        return raw(pred.labels.tobytes(), **{"X-Confidence": f"{pred.confidence:.6f}"})

    return app


class PageServer:
    """The page served by werkzeug in a background thread (threaded: the image, scribble and
    prediction requests of one page load run side by side). ``port`` 0 = any free port;
    :attr:`url` says where it is."""

    def __init__(self, session: AnnotationSession, host: str = "127.0.0.1", port: int = 8765,
                 token: str | None = None) -> None:
        from werkzeug.serving import make_server

        _flask()
        hosts = None if host in ("0.0.0.0", "::", "") else LOCAL_HOSTS | {host}
        app = create_app(session, token, hosts)
        try:
            self.server = make_server(host, int(port), app, threaded=True)
        except OSError as e:
            raise ConfigError(f"cannot serve the page on {host}:{port} ({e.strerror or e}); pass another --port "
                              f"(0 = any free port)") from None
        self.host, self.port = host, int(self.server.server_port)
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        shown = "127.0.0.1" if self.host in ("0.0.0.0", "::", "") else self.host
        return f"http://{'[' + shown + ']' if ':' in shown else shown}:{self.port}/"

    def start(self) -> "PageServer":
        self._thread = threading.Thread(target=self.server.serve_forever, name="scarce-annotate", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)


def serve(session: AnnotationSession, host: str = "127.0.0.1", port: int = 8765,
          log: Callable[[str], None] = lambda m: print(m, file=sys.stderr, flush=True)) -> None:
    """Serve the page until Ctrl-C (``scarce annotate``); one line per request is not logged
    (saves and errors show in the page)."""
    import logging

    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    server = PageServer(session, host, port)
    done = len(session.annotated())
    log(f"scarce annotate: {session.name} ({done} of {len(session.order)} images annotated); open {server.url} "
        f"in a browser (Ctrl-C stops; every save is written at once)")
    if host not in LOCAL_HOSTS:
        log(f"scarce: warning: the page has no login and listens on {host}: anyone who reaches it can see the "
            f"images and change the scribbles")
    try:
        server.server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server.server_close()


__all__ = ["PageServer", "create_app", "serve"]
