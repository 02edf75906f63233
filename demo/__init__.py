"""The Gradio app: photo, live webcam, explanations, error explorer and model tabs.

``build_demo()`` returns the ``gr.Blocks``; ``launch_kwargs()`` the settings to launch it with.
Depends on ``poster``, ``explain`` and ``data_explorer``; nothing there imports ``demo``.
"""
from .app import build_demo, free_port, launch_kwargs, served_demo, served_on_loopback

__all__ = ["build_demo", "free_port", "launch_kwargs", "served_demo", "served_on_loopback"]
