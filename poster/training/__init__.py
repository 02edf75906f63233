"""Training and fine-tuning with the published recipe: the loop, one step, the starting weights, the run folder, the recipe, sharpness-aware minimization."""
from .loop import TrainResult, run_training
from .recipe import RECIPES, TrainConfig, resume_config
from .sharpness_aware import SAM

__all__ = ["run_training", "TrainResult", "TrainConfig", "RECIPES", "resume_config", "SAM"]
