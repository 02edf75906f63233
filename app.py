"""Entry point for Hugging Face Spaces and local use: `python app.py` serves the app.

Local: http://127.0.0.1:7860 (set GRADIO_SERVER_NAME=0.0.0.0 to serve your network).
Checkpoints are looked up in checkpoints/, $POSTER_CHECKPOINT_DIR and the Hub repository in
$POSTER_HUB_REPO; without any, faces are still detected and the app says how to add one.

Gradio's cache gets a folder of its own (unless $GRADIO_TEMP_DIR names one), deleted with the
app's other temporary files when it exits or is stopped with SIGTERM.
"""
from __future__ import annotations

import logging
import os
import tempfile

if not os.environ.get("GRADIO_TEMP_DIR"):
    os.environ["GRADIO_TEMP_DIR"] = tempfile.mkdtemp(prefix="poster-app-gradio-")

from demo import build_demo, launch_kwargs  # noqa: E402 - Gradio reads GRADIO_TEMP_DIR when it builds
from demo.serving.files import register_temporary  # noqa: E402
from demo.serving.gpu import available as zero_gpu  # noqa: E402
from demo.serving.hosting import ShortLogRecords, remove_on_exit  # noqa: E402
from demo.serving.store import ModelStore  # noqa: E402
from demo.webcam import precision  # noqa: E402

logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
logging.getLogger("demo").setLevel(logging.INFO)
for handler in logging.getLogger().handlers:
    handler.addFilter(ShortLogRecords())

if os.path.basename(os.environ["GRADIO_TEMP_DIR"]).startswith("poster-app-gradio-"):
    register_temporary(os.environ["GRADIO_TEMP_DIR"])

store = ModelStore()
default = store.default_key()
if zero_gpu():
    # ZeroGPU runs handlers in a forked worker: load the model here so every worker has it.
    store.try_predictor(default)
else:
    # Load in the background (the server starts at once), and start building the live model's
    # compiled package in a low-priority process of its own.
    store.warm_up(default, accelerate=precision.default(store.on_gpu))

demo = build_demo(store)
remove_on_exit(demo)

if __name__ == "__main__":
    demo.launch(**launch_kwargs(store))
