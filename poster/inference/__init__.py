"""From a photo to expressions: image loading, face detection and alignment, transforms, the predictor, drawing."""
from .draw import draw_faces, draw_predictions
from .faces import DetectorConfig, Face, FaceCrop, FaceDetector, align_face, crop_faces
from .images import DEFAULT_MAX_PIXELS, load_image
from .predictor import FaceList, FacePrediction, Predictor
from .transforms import denormalize, eval_transform, model_batch, preprocessing_of, to_batch

__all__ = [
    "Predictor", "FacePrediction", "FaceList", "FaceDetector", "DetectorConfig", "Face", "FaceCrop",
    "align_face", "crop_faces", "load_image", "DEFAULT_MAX_PIXELS", "eval_transform", "preprocessing_of",
    "model_batch", "to_batch", "denormalize", "draw_faces", "draw_predictions",
]
