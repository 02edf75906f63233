from .packed import pack_for_cpu
from .poster_v2 import PosterOutput, PosterV2

__all__ = ["PosterV2", "PosterOutput", "pack_for_cpu"]
