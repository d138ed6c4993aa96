"""HTTP for collectors (urllib): retries with backoff on 429, 5xx and network errors.

A ``Retry-After`` header (seconds or an HTTP date) is obeyed, capped at ``MAX_WAIT``; otherwise
the wait doubles from ``first_wait``. Other 4xx answers fail at once. Error messages name the URL
and status, never a header, so credentials never reach a log line.
"""

import email.utils
import logging
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field

from chargeback.errors import ChargebackError

log = logging.getLogger("chargeback.collect")
MAX_WAIT = 300.0


class SourceError(ChargebackError):
    """The source did not answer usefully (after retries); this cycle is given up."""


@dataclass
class Http:
    headers: dict[str, str] = field(default_factory=dict)
    timeout: float = 30.0
    attempts: int = 6
    first_wait: float = 1.0
    sleep: Callable[[float], None] = time.sleep

    def request(self, url: str, body: bytes | None = None, content_type: str = "") -> bytes:
        headers = dict(self.headers)
        if content_type:
            headers["Content-Type"] = content_type
        wait = self.first_wait
        for attempt in range(1, self.attempts + 1):
            request = urllib.request.Request(url, data=body, headers=headers)
            problem, after = "", None
            try:
                with urllib.request.urlopen(request, timeout=self.timeout) as reply:
                    data: bytes = reply.read()
                    return data
            except urllib.error.HTTPError as error:
                error.close()
                if error.code != 429 and error.code < 500:
                    raise SourceError(f"{_where(url)} answered HTTP {error.code}") from None
                problem = f"HTTP {error.code}"
                after = retry_after(error.headers.get("Retry-After"))
            except (urllib.error.URLError, OSError) as error:
                reason = getattr(error, "reason", error)
                problem = f"{type(reason).__name__}: {reason}"
            if attempt == self.attempts:
                raise SourceError(f"{_where(url)}: {problem} after {attempt} attempts")
            pause = min(after if after is not None else wait, MAX_WAIT)
            log.warning("%s: %s; retrying in %.1fs", _where(url), problem, pause)
            self.sleep(pause)
            wait = min(wait * 2, MAX_WAIT)
        raise AssertionError("unreachable")  # pragma: no cover


def retry_after(value: str | None, now: Callable[[], float] = time.time) -> float | None:
    """Seconds to wait from Retry-After (delta-seconds or an HTTP date); None if absent or bad."""
    if value is None:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - now())


def _where(url: str) -> str:
    """The URL without its query string (which may carry a page token) or userinfo."""
    parts = urllib.parse.urlsplit(url)
    host = parts.hostname or ""
    port = f":{parts.port}" if parts.port else ""
    return f"{parts.scheme}://{host}{port}{parts.path}"
