"""`chargeback serve`: the Chargeback page and its JSON API on the standard library's HTTP server.

Routes (docs/dashboard.md): `/` the page, `/static/…` its CSS and JS, `GET /api/table`,
`GET /api/export.csv`, `GET /api/clusters`, `GET /api/rates`, `POST /api/rates`.

Safety: bad input is a JSON 400 with one line; a store that cannot be read a 409; anything else a
500 with one line (the traceback goes to the log only). Writes need `Content-Type:
application/json`, an `Origin` (when sent) equal to the server's own, and the bearer token when
one is configured. Bound to a loopback address, requests naming any other host are refused, which
stops DNS-rebinding pages from reading the API.
"""

import hmac
import ipaddress
import json
import logging
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, quote, urlsplit

from chargeback.errors import ChargebackError, UsageError
from dashboard.api import (
    InputError,
    Settings,
    clusters_json,
    csv_export,
    rates_json,
    set_rates,
    table_json,
)
from views.store import first_line

log = logging.getLogger("chargeback.dashboard")
STATIC = Path(__file__).parent / "static"
FILES = {  # the only files served: name -> content type
    "index.html": "text/html; charset=utf-8",
    "app.js": "text/javascript; charset=utf-8",
    "app.css": "text/css; charset=utf-8",
}
MAX_BODY = 16 * 1024
MAX_FIELDS = 20
LOOPBACK_NAMES = ("localhost", "127.0.0.1", "[::1]")


class HttpError(Exception):
    def __init__(self, status: HTTPStatus, message: str) -> None:
        super().__init__(message)
        self.status = status


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def check_bind(host: str, token: str | None) -> None:
    """Refuse to serve rates changes to a network without a token."""
    if not is_loopback(host) and not token:
        raise UsageError(
            f"--host {host} is not a loopback address: set --token (or CHARGEBACK_TOKEN) so that"
            " only holders of it can change rates"
        )


class DashboardServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, host: str, port: int, settings: Settings) -> None:
        check_bind(host, settings.token)
        self.settings = settings
        self.loopback_only = is_loopback(host)
        super().__init__((host, port), Handler)

    @property
    def url(self) -> str:
        host, port = str(self.server_address[0]), self.server_address[1]
        shown = f"[{host}]" if ":" in host else host
        return f"http://{shown}:{port}/"


class Handler(BaseHTTPRequestHandler):
    server: DashboardServer
    server_version = "chargeback"
    sys_version = ""

    # --- dispatch ------------------------------------------------------------------------------

    def do_GET(self) -> None:
        self._handle(self._get)

    def do_HEAD(self) -> None:
        self._handle(self._get)

    def do_POST(self) -> None:
        self._handle(self._post)

    def _not_allowed(self) -> None:
        self._json(HTTPStatus.METHOD_NOT_ALLOWED, {"error": f"{self.command} is not supported"})

    do_PUT = do_DELETE = do_PATCH = do_OPTIONS = _not_allowed

    def _handle(self, route: Any) -> None:
        try:
            self._check_host()
            route(urlsplit(self.path))
        except HttpError as error:
            self._json(error.status, {"error": str(error)})
        except InputError as error:
            self._json(HTTPStatus.BAD_REQUEST, {"error": first_line(error)})
        except ChargebackError as error:
            self._json(HTTPStatus.CONFLICT, {"error": first_line(error), "state": state_of(error)})
        except (BrokenPipeError, ConnectionResetError):
            pass
        except Exception as error:
            log.exception("dashboard: %s %s failed", self.command, self.path[:200])
            self._json(
                HTTPStatus.INTERNAL_SERVER_ERROR,
                {"error": f"internal error ({type(error).__name__}); see the server's log"},
            )

    def _check_host(self) -> None:
        if not self.server.loopback_only:
            return
        host = (self.headers.get("Host") or "").lower()
        name = host.rsplit(":", 1)[0] if not host.endswith("]") else host
        if name not in LOOPBACK_NAMES:
            raise HttpError(HTTPStatus.FORBIDDEN, f"unexpected Host header {host[:80]!r}")

    def _get(self, url: Any) -> None:
        settings = self.server.settings
        path = url.path
        if path in ("/", "/index.html"):
            return self._file("index.html")
        if path.startswith("/static/"):
            return self._file(path.removeprefix("/static/"))
        if path == "/api/table":
            return self._json(HTTPStatus.OK, table_json(self._params(url), settings))
        if path == "/api/export.csv":
            name, text = csv_export(self._params(url), settings)
            body = text.encode("utf-8")
            disposition = f"attachment; filename=\"{name}\"; filename*=UTF-8''{quote(name)}"
            return self._send(
                HTTPStatus.OK,
                body,
                "text/csv; charset=utf-8",
                {"Content-Disposition": disposition},
            )
        if path == "/api/clusters":
            self._no_params(url)
            return self._json(HTTPStatus.OK, clusters_json(settings))
        if path == "/api/rates":
            self._no_params(url)
            return self._json(HTTPStatus.OK, rates_json(settings))
        raise HttpError(HTTPStatus.NOT_FOUND, f"no such page: {path[:80]}")

    def _post(self, url: Any) -> None:
        if url.path != "/api/rates":
            raise HttpError(HTTPStatus.METHOD_NOT_ALLOWED, "only /api/rates takes POST")
        self._check_write()
        length_text = self.headers.get("Content-Length")
        if length_text is None or not length_text.isdigit():
            raise HttpError(HTTPStatus.LENGTH_REQUIRED, "a POST needs a Content-Length")
        length = int(length_text)
        if length > MAX_BODY:
            raise HttpError(HTTPStatus.REQUEST_ENTITY_TOO_LARGE, f"body above {MAX_BODY} bytes")
        raw = self.rfile.read(length)
        try:
            body = json.loads(raw.decode("utf-8"))
        except (UnicodeDecodeError, ValueError):
            raise InputError("the body is not valid JSON") from None
        self._json(HTTPStatus.OK, set_rates(body, self.server.settings))

    def _check_write(self) -> None:
        """Same-origin JSON only, with the token when one is set."""
        content_type = (self.headers.get("Content-Type") or "").split(";")[0].strip().lower()
        if content_type != "application/json":
            raise HttpError(HTTPStatus.FORBIDDEN, "a POST must have Content-Type: application/json")
        origin = self.headers.get("Origin")
        own = f"http://{self.headers.get('Host', '')}"
        if origin is not None and origin != own:
            raise HttpError(
                HTTPStatus.FORBIDDEN, f"cross-site request refused (Origin {origin[:80]})"
            )
        if self.headers.get("Sec-Fetch-Site", "same-origin") not in ("same-origin", "none"):
            raise HttpError(HTTPStatus.FORBIDDEN, "cross-site request refused (Sec-Fetch-Site)")
        token = self.server.settings.token
        if token is None:
            return
        given = self.headers.get("Authorization") or ""
        if not given.startswith("Bearer "):
            raise HttpError(HTTPStatus.UNAUTHORIZED, "this server needs its token to change rates")
        if not hmac.compare_digest(given.removeprefix("Bearer ").encode(), token.encode()):
            raise HttpError(HTTPStatus.UNAUTHORIZED, "wrong token")

    # --- helpers -------------------------------------------------------------------------------

    def _params(self, url: Any) -> list[tuple[str, str]]:
        try:
            return parse_qsl(
                url.query, keep_blank_values=True, max_num_fields=MAX_FIELDS, errors="strict"
            )
        except (ValueError, UnicodeDecodeError):
            raise InputError(
                f"the query string is not valid (at most {MAX_FIELDS} UTF-8 fields)"
            ) from None

    def _no_params(self, url: Any) -> None:
        if url.query:
            raise InputError("this endpoint takes no parameters")

    def _file(self, name: str) -> None:
        if name not in FILES:
            raise HttpError(HTTPStatus.NOT_FOUND, f"no such file: {name[:80]}")
        self._send(HTTPStatus.OK, (STATIC / name).read_bytes(), FILES[name], {})

    def _json(self, status: HTTPStatus, payload: dict[str, Any]) -> None:
        body = json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
        self._send(status, body, "application/json; charset=utf-8", {})

    def _send(
        self, status: HTTPStatus, body: bytes, content_type: str, extra: dict[str, str]
    ) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.send_header("X-Content-Type-Options", "nosniff")
        self.send_header("X-Frame-Options", "DENY")
        self.send_header(
            "Content-Security-Policy",
            "default-src 'self'; img-src 'self' data:; frame-ancestors 'none'",
        )
        for key, value in extra.items():
            self.send_header(key, value)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("%s %s", self.address_string(), format % args)


def state_of(error: ChargebackError) -> str:
    """A word the page uses to pick its empty state."""
    text = str(error)
    if text.startswith("no store at"):
        return "no_store"
    if "published no read copy" in text:
        return "no_copy"
    return "error"


def serve(host: str, port: int, settings: Settings, say: Any = print) -> None:
    server = DashboardServer(host, port, settings)
    say(f"store: {settings.db} (read copy: beside it while `chargeback ingest` runs)")
    say(f"serving the Chargeback page at {server.url} (Ctrl-C stops)")
    try:
        server.serve_forever()
    finally:
        server.server_close()
