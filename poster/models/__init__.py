from .poster_v2 import PosterOutput, PosterV2

__all__ = ["PosterV2", "PosterOutput"]
