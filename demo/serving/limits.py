"""Queue and concurrency settings, for a 2-vCPU CPU Space and a GPU Space alike.

Model work (photos, explanations, comparisons) shares one concurrency group; each live webcam
holds a camera slot of its own for up to ``webcam_seconds``, so other visitors get their turn. Every
number can be overridden with an environment variable.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

ENV_RUNS_DIR = "POSTER_RUNS_DIR"
ENV_MAX_UPLOAD_MB = "POSTER_MAX_UPLOAD_MB"
ENV_MAX_IMAGE_MB = "POSTER_MAX_IMAGE_MB"
ENV_UPLOAD_MEMORY_MB = "POSTER_UPLOAD_MEMORY_MB"
DEFAULT_MAX_UPLOAD_MB = 1024  # released checkpoints with optimizer state are ~0.5-0.7 GB
DEFAULT_MAX_IMAGE_MB = 25
DEFAULT_UPLOAD_MEMORY_MB = 1024  # a loaded POSTER++ is ~0.2 GB: about five uploads at once
MAX_IMAGE_PIXELS = 40_000_000
EVALUATION_GROUP = "evaluate"  # the concurrency group of evaluations of uploaded sets


def env_number(name: str, default: float) -> float:
    """The number in environment variable ``name``, or ``default`` when it is unset or not a number."""
    try:
        return float(os.environ.get(name, default))
    except ValueError:
        return default


@dataclass(frozen=True)
class Limits:
    on_gpu: bool
    model_concurrency: int      # photo analyses, explanations, comparisons running at once
    webcam_streams: int         # webcams streaming at once
    webcam_seconds: int         # a visitor's camera session ends after this long (press Start camera again)
    light_concurrency: int      # cheap events (tables, clicks)
    queue_size: int             # requests waiting before new ones are refused
    session_waiting: int = 3    # requests one client may keep waiting per group (the newest replace)
    max_body_mb: float = 2.0    # request bodies of events (webcam frames are ~30-60 KB)
    sessions_per_address: int = 10  # open sessions (tabs, API clients) of one client address
    max_sessions: int = 1000    # open sessions in all
    evaluations: int = 1        # evaluations of uploaded sets running at once (others wait their turn)
    camera_waiting: int = 32    # clients waiting for a camera slot; one place per address

    # Events are private (not callable by API clients) unless made public. "always_last": an input
    # that changes while its event is still running (or queued) runs once more with the newest
    # value afterwards, instead of being dropped (Gradio's default for clicks and chained steps).
    def model_event(self, public: bool = False) -> dict:
        return {"concurrency_id": "model", "concurrency_limit": self.model_concurrency,
                "api_visibility": "public" if public else "private", "trigger_mode": "always_last"}

    def evaluation_event(self) -> dict:
        """Evaluations have a group of their own: they never hold the slots photos and explanations use."""
        return {"concurrency_id": EVALUATION_GROUP, "concurrency_limit": self.evaluations, "api_visibility": "public",
                "trigger_mode": "multiple"}

    def light_event(self) -> dict:
        return {"concurrency_id": "light", "concurrency_limit": self.light_concurrency,
                "show_progress": "hidden", "api_visibility": "private", "trigger_mode": "always_last"}


def limits_for(on_gpu: bool) -> Limits:
    """Defaults: on a CPU two model calls at once (each uses every core), one webcam at a time
    for 2 minutes; on a GPU more of both."""
    return Limits(
        on_gpu=on_gpu,
        model_concurrency=int(env_number("POSTER_CONCURRENCY", 4 if on_gpu else 2)),
        webcam_streams=int(env_number("POSTER_WEBCAM_STREAMS", 16 if on_gpu else 1)),  # GPU: streams micro-batched
        webcam_seconds=int(env_number("POSTER_WEBCAM_SECONDS", 300 if on_gpu else 120)),
        light_concurrency=int(env_number("POSTER_LIGHT_CONCURRENCY", 8)),
        queue_size=int(env_number("POSTER_QUEUE_SIZE", 64)),
        session_waiting=max(1, int(env_number("POSTER_SESSION_WAITING", 3))),
        max_body_mb=env_number("POSTER_MAX_BODY_MB", 2.0),
        sessions_per_address=max(1, int(env_number("POSTER_SESSIONS_PER_ADDRESS", 10))),
        max_sessions=max(1, int(env_number("POSTER_MAX_SESSIONS", 1000))),
        evaluations=max(1, int(env_number("POSTER_EVALUATIONS", 1))),
        camera_waiting=max(1, int(env_number("POSTER_CAMERA_WAITING", 32))),
    )


def _megabytes(name: str, default: float) -> int:
    return int(env_number(name, default) * 1024 * 1024)


def max_upload_bytes() -> int:
    """The largest checkpoint file accepted (and the upload route's limit)."""
    return _megabytes(ENV_MAX_UPLOAD_MB, DEFAULT_MAX_UPLOAD_MB)


def max_image_bytes() -> int:
    """The largest photo file accepted: photos get a much smaller limit than checkpoints."""
    return min(_megabytes(ENV_MAX_IMAGE_MB, DEFAULT_MAX_IMAGE_MB), max_upload_bytes())


def upload_memory_bytes() -> int:
    return _megabytes(ENV_UPLOAD_MEMORY_MB, DEFAULT_UPLOAD_MEMORY_MB)


def runs_dir() -> Path:
    return Path(os.environ.get(ENV_RUNS_DIR) or "runs")
