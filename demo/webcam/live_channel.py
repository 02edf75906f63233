"""How webcam frames reach the server: through the live view's own server function, not Gradio events.

A Gradio event costs the page 25-35 ms of main-thread work per frame in an app of this size (the
frontend refreshes the loading status of every component that ever had one), and the queue adds
another 8 ms; at ten frames a second that is a third of the time. ``gr.HTML``'s server functions
are plain POSTs answered directly. They carry no inputs and no session state, so the Start event
(an ordinary event in the visitor's Gradio session) opens a channel: it files the visitor's
``LiveSession`` under a fresh random token and hands the token to their page, which sends it with
every frame. The token is the only way to a session, and it lasts as long as the visitor's Gradio
session keeps the ``LiveSession`` (the registry holds it weakly).
"""
from __future__ import annotations

import secrets
import threading
import weakref

from .live_tracking import LiveSession

TOKEN_BYTES = 24
MAX_TOKEN_CHARS = 64


class LiveChannels:
    """Token -> the ``LiveSession`` it opens; thread-safe."""

    def __init__(self) -> None:
        self._sessions: "weakref.WeakValueDictionary[str, LiveSession]" = weakref.WeakValueDictionary()
        self._lock = threading.Lock()

    def open(self, session: LiveSession, visitor: str) -> str:
        """The session's token (a new one the first time), now naming ``session`` for ``visitor``."""
        with self._lock:
            if not session.token or self._sessions.get(session.token) is not session:
                session.token = secrets.token_urlsafe(TOKEN_BYTES)
                self._sessions[session.token] = session
            session.visitor = visitor
            return session.token

    def find(self, token: object) -> LiveSession | None:
        """The session ``token`` opens, or None (unknown, expired, or not a token at all)."""
        if not isinstance(token, str) or not token or len(token) > MAX_TOKEN_CHARS:
            return None
        with self._lock:
            return self._sessions.get(token)

    def close(self, session: LiveSession) -> None:
        """The visitor stopped: the session's token opens nothing from now on (Start opens a new one)."""
        with self._lock:
            if session.token and self._sessions.get(session.token) is session:
                del self._sessions[session.token]
            session.token = ""

    def __len__(self) -> int:
        return len(self._sessions)


__all__ = ["LiveChannels"]
