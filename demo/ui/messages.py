"""The messages a visitor sees when something goes wrong, and the checks on what a click sends.

Every tab's handlers are wrapped in ``friendly``: bad input raises ``gr.Error`` with a one-line
message (the browser shows it as a notice, an API client gets it as an error) and the server
keeps serving. Whatever a visitor sent is quoted short (``quote``), never echoed in full.
"""
from __future__ import annotations

import functools
import inspect
import logging
import traceback
from typing import Any, Callable

import gradio as gr
import numpy as np

from poster.errors import PosterError

log = logging.getLogger("demo")

QUOTE_CHARS = 200  # user input is quoted at most this long in messages and logs
MESSAGE_CHARS = 600


def friendly(action: str) -> Callable:
    """Turn any failure of a handler into a one-line ``gr.Error`` (no traceback reaches a page).

    Our own errors (``PosterError``) carry messages meant for people; anything else is logged
    with its traceback on the server and shown as "``action`` failed (TypeName)". A generator
    handler (Gradio streams what it yields) stays a generator function.
    """
    def wrap(fn: Callable) -> Callable:
        if inspect.isgeneratorfunction(fn):
            @functools.wraps(fn)
            def stream(*args: Any, **kwargs: Any) -> Any:
                try:
                    yield from fn(*args, **kwargs)
                except Exception as exc:  # noqa: BLE001 - the server must keep serving
                    raise _page_error(action, exc) from None
            return stream

        @functools.wraps(fn)
        def inner(*args: Any, **kwargs: Any) -> Any:
            try:
                return fn(*args, **kwargs)
            except Exception as exc:  # noqa: BLE001 - the server must keep serving
                raise _page_error(action, exc) from None
        return inner
    return wrap


def _page_error(action: str, exc: Exception) -> gr.Error:
    if isinstance(exc, gr.Error):
        return exc
    if isinstance(exc, PosterError):
        return gr.Error(sentence(str(exc)), print_exception=False)
    # The frames without the message: a message may quote whatever the visitor sent.
    log.error("%s failed: %s\n%s", action, quote(f"{type(exc).__name__}: {exc}", MESSAGE_CHARS),
              "".join(traceback.format_tb(exc.__traceback__)))
    return gr.Error(f"{action} failed ({type(exc).__name__}); the app is still running, please try again",
                    print_exception=False)


def sentence(text: str) -> str:
    """One line, at most ``MESSAGE_CHARS`` long; a leading plain word is capitalized (file
    names are left as they are)."""
    text = quote(text, MESSAGE_CHARS)
    if not text:
        return "Something went wrong"
    first = text.split(" ", 1)[0]
    return text[:1].upper() + text[1:] if first.isalpha() else text


def quote(value: Any, limit: int = QUOTE_CHARS) -> str:
    """``value`` as one line of at most ``limit`` characters (longer ones end in "…"), so that
    whatever a visitor sends is never echoed or logged in full."""
    text = " ".join(str(value).split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


class ClickError(PosterError):
    """A click event whose position is not two numbers."""


def cell_index(index: Any) -> tuple[int, int]:
    """The (row, column) of a table's select event; raises ``ClickError`` for anything else."""
    try:
        row, col = list(index)[:2]
        if isinstance(row, bool) or isinstance(col, bool) or int(row) != row or int(col) != col:
            raise ValueError
    except (TypeError, ValueError, OverflowError):
        raise ClickError(f"a table cell is given as [row, column], got {quote(repr(index), 60)}") from None
    return int(row), int(col)


def click_point(index: Any) -> tuple[float, float]:
    """The (x, y) of a select event's ``index``; raises ``ClickError`` for anything else."""
    try:
        x, y = (float(v) for v in list(index)[:2])
    except (TypeError, ValueError):
        raise ClickError(f"the click position must be two numbers, got {quote(repr(index), 60)}") from None
    if not (np.isfinite(x) and np.isfinite(y)):
        raise ClickError("the click position must be two finite numbers")
    return x, y
