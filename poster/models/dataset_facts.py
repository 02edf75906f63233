"""Facts about the datasets the released checkpoints were trained on, shared by the architectures'
weights records (POSTER++, POSTER and ARM all published a RAF-DB checkpoint)."""
from __future__ import annotations

from typing import Any

# RAF-DB basic's label order (labels 1-7 in its list file, the class folder names of the ImageFolder layout).
RAF_DB_CLASS_NAMES = ("Surprise", "Fear", "Disgust", "Happiness", "Sadness", "Anger", "Neutral")
RAF_DB_FOLDER_NAMES = ("1", "2", "3", "4", "5", "6", "7")


def raf_db_meta(**extra: Any) -> dict[str, Any]:
    """What a RAF-DB checkpoint's record says about its images (a fresh dict for each record)."""
    return {"images": "RAF-DB basic, aligned 100x100 faces", "test_images": 3068, **extra}
