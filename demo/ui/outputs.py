"""Named outputs: a handler returns a small dataclass, and its fields name the components it fills.

A tab declares its view once (``@dataclass class PhotoView: annotated: ...; summary: str``), its
handlers return ``PhotoView(...)``, and the event is wired with ``outputs_of(PhotoView, ui)`` and
``returning(PhotoView, handler)``: the field order is the output order, so no handler counts
positions and a test reads ``view.summary`` instead of ``result[1]``.
"""
from __future__ import annotations

import functools
import inspect
from dataclasses import fields, is_dataclass
from typing import Any, Callable, Mapping

import gradio as gr


def keep() -> dict:
    """The value of an output that stays as it is (``gr.update()`` with nothing in it)."""
    return gr.update()


def values(view: Any) -> tuple:
    """The view's field values in field order (shallow: arrays and states are passed as they are)."""
    return tuple(getattr(view, f.name) for f in fields(view))


def outputs_of(view_type: type, ui: Mapping[str, Any] | Any) -> list:
    """The components a view fills, in field order, taken by field name from ``ui`` (a mapping
    or an object with those attributes)."""
    if not is_dataclass(view_type):
        raise TypeError(f"{view_type!r} is not a dataclass")
    pick = ui.__getitem__ if isinstance(ui, Mapping) else functools.partial(getattr, ui)
    return [pick(f.name) for f in fields(view_type)]


def unchanged(view_type: type) -> Any:
    """A view that leaves every component as it is."""
    return view_type(**{f.name: keep() for f in fields(view_type)})


def returning(view_type: type, handler: Callable[..., Any]) -> Callable[..., Any]:
    """``handler`` as Gradio calls it: its view becomes the tuple of output values.

    The signature stays visible to Gradio (``functools.wraps``), so ``gr.Request`` and
    ``gr.Progress`` parameters keep working.
    """
    single = len(fields(view_type)) == 1  # Gradio takes a lone output's value bare, not in a tuple

    @functools.wraps(handler)
    def event(*args: Any, **kwargs: Any) -> Any:
        view = handler(*args, **kwargs)
        if not isinstance(view, view_type):
            raise TypeError(f"{handler.__name__} returned {type(view).__name__}, not {view_type.__name__}")
        out = values(view)
        return out[0] if single else out

    return event


def bound(handler: Callable[..., Any], **fixed: Any) -> Callable[..., Any]:
    """``handler`` with the keyword arguments ``fixed`` (a tab's model store) filled in, as Gradio sees it:
    the same name, a signature without them (Gradio passes only the event's inputs, and ``gr.Progress``
    or ``gr.Request`` by position), and still a generator function when ``handler`` is one (Gradio
    streams those)."""
    signature = inspect.signature(handler)
    unknown = set(fixed) - set(signature.parameters)
    if unknown:
        raise TypeError(f"{handler.__name__} takes no {', '.join(sorted(unknown))}")
    if any(p.kind in (p.VAR_POSITIONAL, p.POSITIONAL_ONLY) for p in signature.parameters.values()):
        raise TypeError(f"{handler.__name__}: bound handlers take their arguments by name")
    reduced = signature.replace(parameters=[p for name, p in signature.parameters.items() if name not in fixed])

    def arguments(args: tuple, kwargs: dict) -> dict[str, Any]:
        # By name: a fixed parameter may stand before ones Gradio fills by position (progress=gr.Progress()).
        return {**reduced.bind_partial(*args, **kwargs).arguments, **fixed}

    if inspect.isgeneratorfunction(handler):  # Gradio streams what a generator function yields
        @functools.wraps(handler)
        def event(*args: Any, **kwargs: Any) -> Any:
            yield from handler(**arguments(args, kwargs))
    else:
        @functools.wraps(handler)
        def event(*args: Any, **kwargs: Any) -> Any:
            return handler(**arguments(args, kwargs))

    event.__signature__ = reduced  # type: ignore[attr-defined]
    return event
