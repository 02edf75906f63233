"""Entry point for Hugging Face Spaces and local use: `python app.py` serves the app.

Local: http://127.0.0.1:7860 (set GRADIO_SERVER_NAME=0.0.0.0 to serve your network).
Checkpoints are looked up in checkpoints/, $POSTER_CHECKPOINT_DIR and the Hub repository in
$POSTER_HUB_REPO; without any, faces are still detected and the app says how to add one.
"""
from __future__ import annotations

import logging

from demo import build_demo, launch_kwargs
from demo.gpu import available as zero_gpu
from demo.state import get_store

logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
logging.getLogger("demo").setLevel(logging.INFO)

store = get_store()
default = store.default_key()
if zero_gpu():
    # ZeroGPU runs handlers in a forked worker: load the model here so every worker has it.
    store.try_predictor(default)
else:
    store.warm_up(default)  # load in the background; the server starts at once

demo = build_demo(store)

if __name__ == "__main__":
    demo.launch(**launch_kwargs())
