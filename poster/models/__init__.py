from .arm import ARMWeights
from .ir50 import IR50Weights
from .mobilefacenet import MobileFaceNetWeights
from .fusions import fuse_for_cpu
from .poster_v1 import PosterV1Weights
from .outputs import GradCamLayer, ModelOutput, NamedMap
from .poster_v2 import PosterV2, PosterV2Weights
from .weights_api import Metric, Preprocessing, Weights

__all__ = ["PosterV2", "ModelOutput", "NamedMap", "GradCamLayer", "fuse_for_cpu", "PosterV2Weights", "PosterV1Weights", "ARMWeights",
           "IR50Weights", "MobileFaceNetWeights", "Weights", "Preprocessing", "Metric"]
