"""Exceptions with one-line messages meant to be shown to a person as they are."""


class PosterError(Exception):
    """Base class of every error this project raises on purpose."""


class ImageError(PosterError):
    """The input is not a usable image (unreadable, empty, truncated, too large, ...)."""


class CheckpointError(PosterError):
    """A checkpoint file is missing, corrupt, unsafe or does not fit the model."""


class DatasetError(PosterError):
    """A dataset folder or label file cannot be used."""


class DownloadError(PosterError):
    """A weight file could not be downloaded or did not verify."""


class VideoError(PosterError):
    """A video file cannot be used (not a video, no picture, damaged, truncated, too large or too long)."""
