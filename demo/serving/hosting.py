"""What a public Space needs beyond Gradio's defaults, in one place.

- ``GuardedBlocks`` checks the file payloads of every event before Gradio touches them: a
  payload naming a path that is not an upload in Gradio's cache (or an example photo) is
  refused with one message, whichever event it is sent to and whether or not it carries
  Gradio's ``meta`` marker. Errors raised while an input is read quote it at most
  ``QUOTE_CHARS`` long.
- Limits per client (waiting requests, sessions, evaluations) are in ``clients``.
- ``RequestLimits`` caps the bodies of requests: events, uploaded images, other uploads.
- ``remove_on_exit`` deletes the app's temporary files when it exits or gets SIGTERM.
- ``ShortLogRecords`` keeps log records short whatever they quote.
"""
from __future__ import annotations

import atexit
import contextvars
import inspect
import json
import logging
import os
import re
import signal
import threading
from pathlib import Path
from typing import Any, Callable

import gradio as gr
from gradio import components

from .clients import REPLACED, client_address, upload_ledger
from .files import UPLOAD_REFUSED, SessionFiles, UploadRefused, remove_temporary_files, uploaded_path
from .sessions import lean
from ..ui.messages import QUOTE_CHARS, quote

log = logging.getLogger("demo")

# Inputs whose payloads name files. Gradio's own check covers payloads with the ``meta`` marker;
# these are checked whatever they carry.
FILE_INPUTS = (components.Image, components.File, components.Gallery, components.Video, components.Audio,
               components.Model3D, components.ImageEditor, components.UploadButton,
               components.MultimodalTextbox)
_session: contextvars.ContextVar[str | None] = contextvars.ContextVar("poster_session", default=None)
_PROCESS_API = inspect.signature(gr.Blocks.process_api)


class GuardedBlocks(gr.Blocks):
    """``gr.Blocks`` that never lets an event open a file no visitor uploaded.

    ``session_files`` records which uploads each session used, so they can be deleted when
    the session ends. Sessions' state is kept by a ``LeanStateHolder`` (``demo.serving.sessions``):
    a session hash costs nothing until the session has state of its own.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.session_files = SessionFiles()
        self._shared: frozenset[Path] | None = None

    @property
    def state_holder(self) -> Any:
        return self._state_holder

    @state_holder.setter
    def state_holder(self, holder: Any) -> None:
        # Gradio's app makes a plain StateHolder and hands it over here before it serves a request.
        self._state_holder = lean(holder)

    async def process_api(self, *args: Any, **kwargs: Any) -> dict[str, Any]:
        bound = _PROCESS_API.bind(self, *args, **kwargs)
        token = _session.set(bound.arguments.get("session_hash"))
        try:
            return await super().process_api(*args, **kwargs)
        finally:
            _session.reset(token)

    async def call_function(self, *args: Any, **kwargs: Any) -> dict[str, Any]:
        # A handler that fails outside its own checks still answers with a sentence (Gradio would
        # send ``error: null``); the server logs the failure, short.
        try:
            return await super().call_function(*args, **kwargs)
        except (gr.Error, StopIteration, StopAsyncIteration):
            raise
        except Exception as exc:  # noqa: BLE001 - the server must keep serving
            log.warning("an event failed: %s", quote(f"{type(exc).__name__}: {exc}"))
            raise gr.Error(f"This request could not be handled ({type(exc).__name__}); check what it sends. "
                           "The app is still running.", print_exception=False) from None

    def shared_files(self) -> frozenset[Path]:
        """Files Gradio keeps in its cache for every visitor (the examples' copies)."""
        if self._shared is None:
            kept = set().union(*(getattr(b, "keep_in_cache", set()) for b in self.blocks.values()))
            self._shared = frozenset(Path(p).resolve() for p in kept)
        return self._shared

    async def preprocess_data(self, block_fn: Any, inputs: list[Any], state: Any, explicit_call: bool = False):
        for block, value in zip(block_fn.inputs, inputs):
            if not getattr(block, "stateful", False):
                for path in checked_files(block, value):
                    if path not in self.shared_files():
                        self.session_files.add(_session.get(), path)
                        upload_ledger().used(path)
        try:
            return await super().preprocess_data(block_fn, inputs, state, explicit_call)
        except gr.Error as exc:
            if len(exc.message) <= 2 * QUOTE_CHARS:
                raise
            raise gr.Error(quote(exc.message, 2 * QUOTE_CHARS), print_exception=False) from None
        except Exception as exc:  # noqa: BLE001 - Gradio's messages may quote the whole input
            log.warning("an event's input was refused: %s", quote(f"{type(exc).__name__}: {exc}"))
            raise gr.Error("The request was refused: its input does not fit this event.",
                           print_exception=False) from None


def checked_files(block: Any, value: Any) -> list:
    """The uploaded files a component's payload names; raises ``gr.Error`` (always with the
    message ``UPLOAD_REFUSED``) when it names anything else."""
    found = []
    try:
        _walk(value, found, is_file_input=isinstance(block, FILE_INPUTS), top=True)
    except UploadRefused:
        raise gr.Error(UPLOAD_REFUSED, print_exception=False) from None
    return found


def _walk(value: Any, found: list, is_file_input: bool, top: bool = False) -> None:
    if value is None or isinstance(value, (bool, int, float)):
        return
    if isinstance(value, dict):
        if "path" in value and value["path"] is not None:
            found.append(uploaded_path(value))
        elif is_file_input and _is_file_dict(value) and not _is_data_url(value.get("url")):
            raise UploadRefused()  # a url alone would be fetched or opened by Gradio
        for key, item in value.items():
            if key not in ("path", "url", "meta"):
                _walk(item, found, is_file_input)
        return
    if isinstance(value, (list, tuple)):
        for item in value:
            _walk(item, found, is_file_input)
        return
    if is_file_input and top and not isinstance(value, (dict, list)):
        raise UploadRefused()  # a bare path string, say


def _is_file_dict(value: dict) -> bool:
    return "url" in value or "orig_name" in value or "meta" in value


def _is_data_url(url: Any) -> bool:
    """The browser's webcam sends frames as data URLs: pixels, not a name of a file."""
    return isinstance(url, str) and url.startswith("data:image/")


# --- request bodies -----------------------------------------------------------------------

IMAGE_NAME = re.compile(rb'filename="[^"]*\.(jpe?g|png|gif|webp|bmp|tiff?|heic|heif|avif)"', re.IGNORECASE)
IMAGE_TYPE = re.compile(rb"content-type:\s*image/", re.IGNORECASE)
MULTIPART_SLACK = 64 * 1024  # boundaries and part headers around a file


class RequestLimits:
    """ASGI middleware: refuse (413) request bodies larger than the limit of their route.

    Uploads whose first file is an image (by name or content type) may be ``max_image``
    bytes, other uploads ``max_file``; any other request ``max_body``. An upload is refused
    from its declared length before the app reads it, so nothing of it reaches the cache;
    other bodies without a declared length are cut off once they pass their limit.
    """

    def __init__(self, app: Callable, max_body: int, max_image: int, max_file: int) -> None:
        self.app = app
        self.max_body, self.max_image, self.max_file = max_body, max_image, max_file

    async def __call__(self, scope: dict, receive: Callable, send: Callable) -> None:
        if scope["type"] != "http" or scope.get("method") not in ("POST", "PUT", "PATCH"):
            return await self.app(scope, receive, send)
        declared = _content_length(scope)
        if not scope.get("path", "").rstrip("/").endswith("/upload"):
            if declared is not None and declared > self.max_body:
                return await _too_large(send, self.max_body)
            return await self.app(scope, _counting(receive, self.max_body), send)
        head, buffered = await _read_head(receive)
        limit = self.max_image if _first_part_is_image(head) else self.max_file
        if declared is not None and declared > limit + MULTIPART_SLACK:
            return await _too_large(send, limit)
        address = client_address(scope)
        ledger = upload_ledger()
        refusal = ledger.refusal(address, declared or 0)
        if refusal is not None:
            return await _refuse(send, 429, refusal)

        async def replay() -> dict:
            return buffered.pop(0) if buffered else await receive()

        answer = bytearray()

        async def recorded(message: dict) -> None:
            # The answer lists the cached files' paths: they are this address's until used or swept.
            if message["type"] == "http.response.body" and len(answer) < 1 << 20:
                answer.extend(message.get("body", b""))
                if not message.get("more_body"):
                    ledger.add(address, _paths_in(bytes(answer)))
            await send(message)

        return await self.app(scope, replay, recorded)


async def _read_head(receive: Callable, size: int = 8192) -> tuple[bytes, list[dict]]:
    """The first bytes of a body (enough for the first part's headers) and the messages read."""
    head, messages = b"", []
    while True:
        message = await receive()
        messages.append(message)
        head += message.get("body", b"")
        if (message["type"] != "http.request" or not message.get("more_body")
                or len(head) >= size or head.count(b"\r\n\r\n") >= 1):
            return head, messages


def _content_length(scope: dict) -> int | None:
    for name, value in scope.get("headers", ()):
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None


def _first_part_is_image(head: bytes) -> bool:
    part = head[:8192].split(b"\r\n\r\n", 1)[0]  # the first part's headers
    return bool(IMAGE_NAME.search(part) or IMAGE_TYPE.search(part))


def _counting(receive: Callable, limit: int) -> Callable:
    seen = 0

    async def counted() -> dict:
        nonlocal seen
        message = await receive()
        seen += len(message.get("body", b""))
        if seen > limit:
            return {"type": "http.disconnect"}
        return message

    return counted


def _paths_in(body: bytes) -> list[str]:
    try:
        paths = json.loads(body)
    except ValueError:
        return []
    return [p for p in paths if isinstance(p, str)] if isinstance(paths, list) else []


async def _too_large(send: Callable, limit: int) -> None:
    await _refuse(send, 413, f"Request too large: at most {limit / 2**20:.0f} MB here.")


async def _refuse(send: Callable, status: int, text: str) -> None:
    body = text.encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"text/plain; charset=utf-8"), (b"content-length", str(len(body)).encode()),
                            (b"connection", b"close")]})
    await send({"type": "http.response.body", "body": body})


class ShortLogRecords(logging.Filter):
    """Cut log records to ``limit`` characters: a message or traceback may quote a request."""

    def __init__(self, limit: int = 4000) -> None:
        super().__init__()
        self.limit = limit

    def filter(self, record: logging.LogRecord) -> bool:
        text = record.getMessage()
        # A traceback is appended when the record is formatted: fold it in now, so it is capped too.
        if record.exc_info and record.exc_info[0] is not None:
            text += "\n" + logging.Formatter().formatException(record.exc_info)
            record.exc_info, record.exc_text = None, None
        if record.stack_info:
            text += "\n" + record.stack_info
            record.stack_info = None
        if len(text) > self.limit:
            text = text[: self.limit] + f"… ({len(text) - self.limit} more characters)"
        record.msg, record.args = text, None
        return True


# --- exit -----------------------------------------------------------------------------------

def remove_on_exit(demo: gr.Blocks) -> Callable[[], None]:
    """Delete the app's temporary files (its own folders, and what Gradio cached for it) at
    exit and on SIGTERM (the signal then ends the process as it would have). Returns the
    cleanup function."""
    done = threading.Event()

    def cleanup() -> None:
        if done.is_set():
            return
        done.set()
        cached = [name for files in getattr(demo, "temp_file_sets", []) for name in list(files)]
        remove_temporary_files(cached)

    atexit.register(cleanup)
    if threading.current_thread() is threading.main_thread():
        previous = signal.getsignal(signal.SIGTERM)

        def on_sigterm(signum: int, frame: Any) -> None:
            cleanup()
            if callable(previous):
                previous(signum, frame)
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
            os.kill(os.getpid(), signal.SIGTERM)

        signal.signal(signal.SIGTERM, on_sigterm)
    return cleanup


__all__ = ["GuardedBlocks", "RequestLimits", "ShortLogRecords", "checked_files", "remove_on_exit", "REPLACED"]
