"""Moving bytes: one HTTP(S) URL into a ``.partial`` file, resumable, with a progress bar.

Knows nothing about checkpoints: the caller names the partial file, verifies it and renames it
into place. A dropped connection leaves the partial file for the next attempt to resume.
"""
from __future__ import annotations

import itertools
import os
import re
import time
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from urllib.parse import urlsplit

import requests
from tqdm.auto import tqdm

from ..errors import DownloadError
from .sources import confirmation_url

ProgressFn = Callable[[int, "int | None"], None]  # (bytes done, bytes in all or None when unknown)

CONNECT_TIMEOUT_S = 10.0   # no network should be reported at once, not after minutes
READ_TIMEOUT_S = 60.0      # a stalled transfer
CHUNK = 1 << 20
HTML_LIMIT = 2 << 20       # an HTML answer is read this far to say what it is
RETRY_PAUSE_S = 1.0
USER_AGENT = "poster-download/1 (+python-requests)"


class Unreachable(DownloadError):
    """The server could not be reached at all: no network, name lookup failed, refused, no answer."""


class HtmlAnswer(DownloadError):
    """A web page came back instead of the file (a warning, quota, sign-in or error page)."""

    def __init__(self, page: str, url: str) -> None:
        super().__init__(f"{url} answered with an HTML page, not a file")
        self.page = page
        self.url = url


# What a connection that breaks while the body is read looks like through requests.
_DROPS = (requests.exceptions.ChunkedEncodingError, requests.exceptions.ConnectionError,
          requests.exceptions.Timeout)


class _Dropped(Exception):
    def __init__(self, done: int, total: int | None, why: str) -> None:
        super().__init__(why)
        self.done, self.total, self.why = done, total, why


def fetch(url: str, partial: Path, *, headers: Mapping[str, str] | None = None,
          progress: ProgressFn | None = None, label: str | None = None, quiet: bool = False,
          retries: int = 2, timeout: tuple[float, float] = (CONNECT_TIMEOUT_S, READ_TIMEOUT_S)) -> int:
    """Complete ``partial`` from ``url`` (resuming from its current size); returns its size in bytes.

    Follows one Google Drive confirmation form. A dropped connection is resumed up to ``retries``
    times, then reported with the partial file kept. An exception raised by ``progress`` stops the
    transfer (the partial file stays for a later resume).
    """
    partial = Path(partial)
    confirmed = False
    attempt = 0
    with requests.Session() as session:
        # identity: byte offsets for Range must count the bytes on disk, not compressed ones.
        session.headers.update({"User-Agent": USER_AGENT, "Accept-Encoding": "identity", **(headers or {})})
        while True:
            offset = partial.stat().st_size if partial.is_file() else 0
            response = _get(session, url, offset, timeout)
            with response:
                if response.status_code == 416 and offset:  # the partial file is as long as the file, or longer
                    partial.unlink()
                    continue
                if response.status_code >= 400:
                    raise DownloadError(_http_error(response, url))
                start, total = _byte_range(response, offset, partial)
                chunks = response.iter_content(CHUNK)
                try:
                    try:
                        first = next(chunks, b"")
                    except _DROPS as exc:
                        raise _Dropped(start, total, _drop_reason(exc)) from None
                    if _is_html(response, first, start):
                        page = _read_page(response, first, chunks)
                        next_url = None if confirmed else confirmation_url(page, response.url or url)
                        if next_url is None:
                            raise HtmlAnswer(page, url)
                        url, confirmed = next_url, True
                        continue
                    return _write(itertools.chain([first], chunks), partial, start, total, progress,
                                  label, quiet)
                except _Dropped as exc:
                    if attempt >= retries:
                        size = f"{exc.done:,} of {exc.total:,}" if exc.total else f"{exc.done:,}"
                        raise DownloadError(
                            f"the connection to {_host(url)} dropped after {size} bytes ({exc.why}); "
                            "run the download again to resume") from None
                    attempt += 1
                    time.sleep(RETRY_PAUSE_S * attempt)


def _get(session: requests.Session, url: str, offset: int, timeout: tuple[float, float]) -> requests.Response:
    headers = {"Range": f"bytes={offset}-"} if offset else {}
    try:
        return session.get(url, headers=headers, stream=True, timeout=timeout)
    except requests.exceptions.ConnectionError as exc:  # includes connect timeouts, DNS, refusals
        raise Unreachable(f"cannot reach {_host(url)} ({_why(exc, timeout[0])})") from None
    except requests.exceptions.Timeout:
        raise DownloadError(f"{_host(url)} did not answer within {timeout[1]:.0f} s") from None
    except requests.exceptions.RequestException as exc:
        raise DownloadError(f"cannot request {url} ({type(exc).__name__})") from None


def _byte_range(response: requests.Response, offset: int, partial: Path) -> tuple[int, int | None]:
    """(where this response's body starts in the file, the file's size or None)."""
    length = response.headers.get("Content-Length")
    length = int(length) if length and length.isdigit() else None
    if response.status_code != 206:
        return 0, length  # a full answer (the server ignored Range): start over
    match = re.fullmatch(r"bytes (\d+)-(\d+)/(\d+|\*)", response.headers.get("Content-Range", "").strip())
    if match is None or int(match[1]) != offset:
        partial.unlink(missing_ok=True)  # so that the next run starts over instead of asking again
        raise DownloadError(f"{_host(response.url)} answered a byte range other than the one asked for; "
                            "run the download again to start over")
    return offset, int(match[3]) if match[3] != "*" else int(match[2]) + 1


def _is_html(response: requests.Response, first: bytes, start: int) -> bool:
    if response.headers.get("Content-Type", "").lower().startswith(("text/html", "application/xhtml")):
        return True
    # Weight files start with "PK" (zip), 0x80 (pickle) or a length (safetensors), never "<".
    return start == 0 and first.lstrip()[:1] == b"<"


def _read_page(response: requests.Response, first: bytes, chunks: Iterator[bytes]) -> str:
    data = bytearray(first)
    for chunk in chunks:
        data += chunk
        if len(data) >= HTML_LIMIT:
            break
    return bytes(data[:HTML_LIMIT]).decode(response.encoding or "utf-8", errors="replace")


def _write(chunks: Iterator[bytes], partial: Path, start: int, total: int | None,
           progress: ProgressFn | None, label: str | None, quiet: bool) -> int:
    done = start
    bar = tqdm(total=total, initial=start, unit="B", unit_scale=True, unit_divisor=1024,
               desc=label, disable=quiet, dynamic_ncols=True)
    with bar, open(partial, "ab" if start else "wb") as fh:
        try:
            for chunk in chunks:
                fh.write(chunk)
                done += len(chunk)
                bar.update(len(chunk))
                if progress is not None:
                    progress(done, total)
        except _DROPS as exc:
            raise _Dropped(done, total, _drop_reason(exc)) from None
        finally:
            fh.flush()
            os.fsync(fh.fileno())
    if total is not None and done < total:
        raise _Dropped(done, total, "the server closed the connection early")
    return done


def _drop_reason(exc: Exception) -> str:
    if isinstance(exc, requests.exceptions.Timeout):
        return "no data for too long"
    if isinstance(exc, requests.exceptions.ChunkedEncodingError):
        return "the answer ended early"
    return "connection lost"


def _http_error(response: requests.Response, url: str) -> str:
    code = response.status_code
    hint = {401: " (needs a token: set HF_TOKEN for a private Hub repository)",
            403: " (access refused: a gated or private file?)", 404: " (no such file there)"}.get(code, "")
    return f"HTTP {code} {response.reason or ''}{hint} for {url}".replace("  ", " ")


def _why(exc: Exception, connect_timeout: float) -> str:
    text = str(exc)
    if isinstance(exc, requests.exceptions.ConnectTimeout):
        return f"no answer within {connect_timeout:.0f} s"
    if isinstance(exc, requests.exceptions.SSLError):
        return "TLS certificate problem"
    if isinstance(exc, requests.exceptions.ProxyError):
        return "proxy error"
    if any(s in text for s in ("NameResolution", "Name or service not known", "getaddrinfo",
                               "Temporary failure in name resolution", "nodename nor servname")):
        return "name lookup failed"
    if "refused" in text.lower():
        return "connection refused"
    return type(exc).__name__


def _host(url: str | None) -> str:
    return urlsplit(url or "").netloc or str(url)
