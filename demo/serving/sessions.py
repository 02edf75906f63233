"""Per-session state that costs nothing until a session has something of its own.

Gradio keeps a ``SessionState`` per session hash, made the first time a request names the hash:
joining the queue looks the event up in it, a component's server function its component. A
session hash is whatever the client sends, so an attacker makes as many as it likes. Gradio 6.31's
``SessionState`` copies the app's ``BlocksConfig`` and renders every block's config (props, API
info) for deep links when it is made: about 0.5 MB for this app's ~290 blocks, for every made-up
hash, kept until 10,000 newer sessions push it out (ending a session only empties its
``gr.State`` values; the ``SessionState`` itself stays).

``LeanSessionState`` keeps only what the session has of its own: the values of its ``gr.State``s
(a default that cannot change in place is not copied) and the components an event updated for it;
until then it shares the app's config. It records no values for deep links: the app has no
``gr.DeepLinkButton``, and ``/deep_link`` sees the components as built and updated.

``LeanStateHolder`` makes these, ends a session's state on request (``end``), and forgets the
sessions that hold nothing of their own and have no event queued or running, and closed sessions
once Gradio's hour for reopening them has passed.
"""
from __future__ import annotations

import datetime
import os
from collections import ChainMap
from copy import copy, deepcopy
from typing import Any, Iterator

from gradio.blocks import BlocksConfig
from gradio.components import State
from gradio.state_holder import SessionState, StateHolder

# Sessions untouched this long, holding nothing, go (a request that is about to queue an event has
# touched its session a moment ago).
IDLE_SECONDS = 60.0
# Values a ``gr.State`` default can have that no handler can change in place: never copied per session.
IMMUTABLE = (type(None), bool, int, float, complex, str, bytes, frozenset)


class LeanSessionState(SessionState):
    """A ``SessionState`` that shares the app's config until one of the session's components is
    updated, and keeps no deep-link values. (Gradio's ``__init__`` is skipped on purpose: it is
    what builds the per-session copies.)"""

    def __init__(self, blocks: Any) -> None:  # noqa: D107 - see the class
        self._default = blocks.default_config
        self._own: BlocksConfig | None = None
        self.state_data: dict[int, Any] = {}
        self._state_ttl: dict[int, tuple[float, datetime.datetime]] = {}
        self.is_closed = False
        self.STATE_TTL_WHEN_CLOSED = 1 if os.getenv("GRADIO_IS_E2E_TEST", None) else 3600

    @property
    def blocks_config(self) -> BlocksConfig:
        return self._own if self._own is not None else self._default

    @blocks_config.setter
    def blocks_config(self, value: BlocksConfig) -> None:  # Gradio's reload sets a fresh copy
        self._own = value

    def _own_config(self) -> BlocksConfig:
        if self._own is None:
            if self._default.renderables:  # gr.render changes a session's blocks and events: Gradio's copy
                self._own = copy(self._default)
            else:
                # Only the components updated for this session are its own; the rest, and the events
                # (which only gr.render changes), stay the app's.
                own = BlocksConfig(self._default.root_block)
                own.blocks = ChainMap({}, self._default.blocks)  # type: ignore[assignment]
                own.fns, own.fn_id = self._default.fns, self._default.fn_id
                self._own = own
        return self._own

    def own_components(self) -> dict[int, Any]:
        """The components an event updated for this session (id -> its copy)."""
        if self._own is None:
            return {}
        blocks = self._own.blocks
        if isinstance(blocks, ChainMap):
            return dict(blocks.maps[0])
        return {k: v for k, v in blocks.items() if self._default.blocks.get(k) is not v}

    def __getitem__(self, key: int) -> Any:
        block = self.blocks_config.blocks[key]
        if not block.stateful:
            return block
        if key not in self.state_data:
            value = getattr(block, "value", None)
            if callable(value):
                value = value()
            elif isinstance(value, IMMUTABLE):
                return value  # the same for every session; nothing to keep
            self.state_data[key] = deepcopy(value)
        return self.state_data[key]

    def __setitem__(self, key: int, value: Any) -> None:
        block = self.blocks_config.blocks.get(key)
        if isinstance(block, State):
            self._state_ttl[key] = (block.time_to_live, datetime.datetime.now())
            self.state_data[key] = value
        elif block is not value:  # a component updated for this session: it gets its own config
            self._own_config().blocks[key] = value

    def _update_config(self, key: int) -> None:
        """Gradio keeps each block's config with its latest value for deep links; nothing here."""

    def _update_value_in_config(self, key: int, value: Any) -> None:
        """As ``_update_config``: values are not kept twice."""

    @property
    def config_values(self) -> dict[int, dict]:
        """The session's components' configs, built when asked (``/deep_link`` asks)."""
        return {k: self.blocks_config.config_for_block(k, [], v) for k, v in self.blocks_config.blocks.items()}

    @property
    def components(self) -> Iterator[dict]:
        return (config for config in self.config_values.values() if config)

    def holds_nothing(self) -> bool:
        """True when dropping this session loses nothing: no component of its own, no ``gr.State``
        set by an event, and only unchanged empty copies of ``gr.State`` defaults."""
        return self._own is None and not self._state_ttl and all(
            _unchanged_empty_default(self._default.blocks.get(key), value) for key, value in self.state_data.items())


def _unchanged_empty_default(block: Any, value: Any) -> bool:
    default = getattr(block, "value", None)
    return (isinstance(value, (list, dict, set, tuple)) and not value and type(value) is type(default)
            and not default)


class LeanStateHolder(StateHolder):
    """Gradio's ``StateHolder``, handing out ``LeanSessionState``s and forgetting sessions that hold
    nothing (see the module)."""

    idle_seconds = IDLE_SECONDS

    def __getitem__(self, session_id: str) -> SessionState:
        with self.lock:
            state = self.session_data.get(session_id)
            if state is None:
                state = self.session_data[session_id] = LeanSessionState(self.blocks)
        self.update(session_id)
        self.time_last_used[session_id] = datetime.datetime.now()
        return state

    def end(self, session_id: str) -> None:
        """The session is over: every ``gr.State`` value of it goes through its delete callback, and
        the session is forgotten."""
        with self.lock:
            state = self.session_data.pop(session_id, None)
            self.time_last_used.pop(session_id, None)
        if state is None:
            return
        blocks = state.blocks_config.blocks
        for key, value in list(state.state_data.items()):
            block = blocks.get(key)
            if isinstance(block, State):
                block.delete_callback(value)
        state.state_data.clear()

    def delete_all_expired_state(self) -> None:
        """Gradio calls this every second: expired ``gr.State`` values go (Gradio's part), then the
        sessions that are idle and hold nothing, and the closed ones past their hour."""
        super().delete_all_expired_state()
        self.sweep(self.idle_seconds)

    def sweep(self, idle_seconds: float) -> list[str]:
        """Forget sessions idle ``idle_seconds`` with no event queued or running that hold nothing
        (with their unread queue messages), and those closed ``STATE_TTL_WHEN_CLOSED`` ago. Returns them."""
        now = datetime.datetime.now()
        blocks = getattr(self, "blocks", None)
        busy = busy_sessions(blocks)
        gone = []
        for session_id, state in list(self.session_data.items()):
            last = self.time_last_used.get(session_id)
            idle = (now - last).total_seconds() if last is not None else float("inf")
            if session_id in busy or idle < idle_seconds:
                continue
            if isinstance(state, LeanSessionState) and state.holds_nothing():
                with self.lock:
                    if self.session_data.get(session_id) is state:
                        del self.session_data[session_id]
                        self.time_last_used.pop(session_id, None)
                        gone.append(session_id)
                # A browser's session is never empty (the page's load event sets its checkpoint): this
                # is an API client's, or a made-up one, whose finished events' messages nobody reads.
                forget_queue_messages(blocks, session_id, busy)
            elif state.is_closed and idle > state.STATE_TTL_WHEN_CLOSED:
                self.end(session_id)
                forget_queue_messages(blocks, session_id, busy)
                gone.append(session_id)
        return gone


def busy_sessions(blocks: Any) -> set[str]:
    """Sessions with an event in ``blocks``'s queue or running: their state is in use."""
    queue = getattr(blocks, "_queue", None)
    if queue is None:
        return set()
    events = list(getattr(queue, "event_ids_to_events", {}).values())
    events += [event for job in getattr(queue, "active_jobs", []) if job for event in job]
    return {event.session_hash for event in events if getattr(event, "session_hash", None)}


def forget_queue_messages(blocks: Any, session_id: str, busy: set[str] | None = None) -> bool:
    """Drop what ``blocks``'s queue keeps for a session that has no event queued or running: the
    messages nobody read (a made-up session never reads them) and the ids of its finished events.
    Returns whether it did (``busy``: ``busy_sessions(blocks)``, when the caller has it)."""
    queue = getattr(blocks, "_queue", None)
    if queue is None or session_id in (busy if busy is not None else busy_sessions(blocks)):
        return False  # a running event still sends its messages there
    queue.pending_messages_per_session.pop(session_id, None)
    queue.pending_event_ids_session.pop(session_id, None)
    return True


def lean(holder: StateHolder) -> StateHolder:
    """``holder`` made a ``LeanStateHolder`` (in place: Gradio's app and its routes keep it). Its
    sessions made so far stay as they are."""
    if type(holder) is StateHolder:
        holder.__class__ = LeanStateHolder
    return holder


__all__ = ["IDLE_SECONDS", "LeanSessionState", "LeanStateHolder", "busy_sessions", "forget_queue_messages", "lean"]
