"""Evaluation runs: running a checkpoint over a dataset, the run folder, reports, comparisons, publishing."""
from .compare import Comparison, compare_tables
from .protocol import choose_protocol, infer_dataset
from .publish import publish_run
from .report import run_report
from .run import PREDICTIONS, RUN_JSON, THUMBNAILS, evaluate, predictions_table, run_summary, staged_run_dir, write_run
from .run_files import RunFileError, read_run
from .steps import evaluate_in_steps

__all__ = [
    "evaluate", "evaluate_in_steps", "predictions_table", "run_summary", "write_run", "staged_run_dir",
    "read_run", "RunFileError", "PREDICTIONS", "RUN_JSON", "THUMBNAILS", "choose_protocol", "infer_dataset",
    "run_report", "Comparison", "compare_tables", "publish_run",
]
