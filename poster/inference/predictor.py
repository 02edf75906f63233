"""Photos in, per-face expressions out: detection, alignment and a network in one object.

Built once around a model (``Predictor.from_checkpoint``); ``predict(image)`` then returns plain
data per face, in the checkpoint's class order. Crops are prepared as the checkpoint's weights
record says (colour order included), and every face is classified on its own, also with ARM,
whose published forward mixes the faces of a batch.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

from ..devices import pick_device
from ..weights.checkpoints import load_checkpoint
from .accelerate import EAGER, AcceleratedForward, fast_copy
from .batcher import DEFAULT_WAIT_S, MicroBatcher
from .faces import DetectorConfig, Face, FaceCrop, FaceDetector, align_face
from .graphed import GraphedForward, graphed_forward
from .images import DEFAULT_MAX_PIXELS, ImageSource, load_image
from .precision import BFLOAT16, FLOAT32, ensure_finite, finite_logits, precision_of_weights, resolve_precision
from .transforms import model_batch


@dataclass(eq=False)
class FacePrediction:
    """One face: where it is, its aligned crop, and the expression probabilities.

    A face found without a model to classify it (``FacePrediction.unclassified``) has no label,
    no probabilities and no class names.
    """

    box: tuple[float, float, float, float]
    score: float
    landmarks: np.ndarray  # (5, 2) photo pixels
    crop: FaceCrop
    label: str | None
    label_index: int | None
    probabilities: np.ndarray | None  # (num_classes,) in class_names order
    class_names: tuple[str, ...]

    @classmethod
    def unclassified(cls, face: Face, crop: FaceCrop) -> "FacePrediction":
        """A detected, aligned face that no model has classified."""
        return cls(box=face.box, score=face.score, landmarks=face.landmarks, crop=crop, label=None,
                   label_index=None, probabilities=None, class_names=())

    @property
    def classified(self) -> bool:
        return self.probabilities is not None

    @property
    def area(self) -> float:
        x1, y1, x2, y2 = self.box
        return max(0.0, x2 - x1) * max(0.0, y2 - y1)

    @property
    def confidence(self) -> float | None:
        return None if self.probabilities is None else float(self.probabilities[self.label_index])

    @property
    def caption(self) -> str:
        """"Happiness 87%", or "face" for a face that was not classified."""
        return f"{self.label} {self.confidence:.0%}" if self.probabilities is not None else "face"

    def top(self, k: int = 3) -> list[tuple[str, float]]:
        if self.probabilities is None:
            return []
        order = np.argsort(-self.probabilities)[:k]
        return [(self.class_names[i], float(self.probabilities[i])) for i in order]

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready summary (no pixels); label, confidence and probabilities are None unclassified."""
        classified = self.probabilities is not None
        return {
            "box": [round(v, 1) for v in self.box],
            "score": round(self.score, 4),
            "landmarks": np.round(self.landmarks, 1).tolist(),
            "aligned": self.crop.aligned,
            "label": self.label,
            "confidence": round(self.confidence, 4) if classified else None,
            "probabilities": ({n: round(float(p), 4) for n, p in zip(self.class_names, self.probabilities)}
                              if classified else None),
        }


class FaceList(list):
    """The faces of one image (largest first); ``dropped`` counts faces beyond the face limit."""

    dropped: int = 0


class Predictor:
    """Detects faces, aligns them and classifies their expressions with POSTER++, POSTER or ARM."""

    def __init__(self, model: torch.nn.Module, detector: FaceDetector | None = None, *, tta_flip: bool = False,
                 precision: str | None = None, max_pixels: int = DEFAULT_MAX_PIXELS) -> None:
        """``precision``: see ``poster.inference.precision`` (default: bfloat16 autocast on GPUs that
        run it natively, else float32); a model with converted weights runs in their format."""
        self.model = model.eval()
        self.device = next(model.parameters()).device
        self.detector = detector or FaceDetector(DetectorConfig(device=str(self.device)
                                                                if self.device.type == "cuda" else "cpu"))
        self.tta_flip = tta_flip
        converted = precision_of_weights(model)
        if converted is not None and precision not in (None, converted):
            raise ValueError(f"a model with {converted} weights cannot run in {precision}")
        self.precision = converted or resolve_precision(precision, self.device, autocast=True)
        self.max_pixels = max_pixels
        self.accelerated: AcceleratedForward | GraphedForward | None = None
        # Live streams' faces, classified together with other threads' (``classify``'s rows). Only a
        # GPU waits for more: a CPU's batch costs what its faces cost one by one, so it merges only
        # the faces that arrived while the previous batch ran.
        self.batched_classify = MicroBatcher(self.classify, max_wait_s=DEFAULT_WAIT_S if self.device.type == "cuda" else 0.0)

    @classmethod
    def from_checkpoint(cls, source: str | Path, device: str | torch.device | None = None,
                        detector_config: DetectorConfig | None = None, dataset: str | None = None,
                        arch: str | None = None, dtype: torch.dtype = torch.float32, fast: bool = True,
                        **kwargs: Any) -> "Predictor":
        """``dataset`` / ``arch``: what the file does not say itself (see ``load_checkpoint``).
        ``fast``: classify with ``fast_copy(model, dtype)`` (fused for the CPU) instead of the
        plain network, which is then not kept. ``precision="bfloat16"`` on a CPU converts the weights."""
        device = pick_device(device) if not isinstance(device, torch.device) else device
        if kwargs.get("precision") == BFLOAT16 and device.type == "cpu":  # autocast is slow on a CPU: convert
            dtype, kwargs["precision"] = torch.bfloat16, None
        model = load_checkpoint(source, device=device, dataset=dataset, arch=arch,
                                dtype=torch.float32 if fast else dtype)
        if fast:
            model = fast_copy(model, dtype)
        detector = FaceDetector(detector_config or DetectorConfig(device="cuda" if device.type == "cuda" else "cpu"))
        return cls(model, detector, **kwargs)

    @property
    def class_names(self) -> tuple[str, ...]:
        return self.model.info.class_names

    def accelerate(self, build: bool = True) -> AcceleratedForward | GraphedForward | None:
        """The live path's fast engine; calling again is free. On a CPU, the checkpoint's ahead-of-time
        package once it exists (``AcceleratedForward``; ``build`` starts the separate, low-priority
        process that builds a missing one; float32 or converted weights, not autocast), the model
        answering meanwhile. On a CUDA GPU, CUDA graphs recorded now, in a second or two
        (``GraphedForward``; not float16). Elsewhere None."""
        if self.accelerated is None and self.device.type == "cuda":
            self.accelerated = graphed_forward(self.model, self.precision)
        autocast = self.precision != FLOAT32 and precision_of_weights(self.model) is None
        if self.accelerated is None and self.device.type == "cpu" and not autocast:
            self.accelerated = AcceleratedForward(self.model, build=build)
        return self.accelerated

    @property
    def engine(self) -> str:
        """``"compiled"`` (the package answers), ``"compiling"`` (it is being built), ``"graphed"``, or ``"eager"``."""
        return self.accelerated.state if self.accelerated is not None else EAGER

    def predict(self, image: ImageSource, *, bgr: bool = False) -> FaceList:
        """Every face in one image. Raises ``ImageError`` for input that is not a usable image;
        an image without a face gives an empty list."""
        return self.predict_batch([image], bgr=bgr)[0]

    def predict_batch(self, images: Sequence[ImageSource], *, bgr: bool = False) -> list[FaceList]:
        """``predict`` for many images, with all their faces in one network batch."""
        arrays = [load_image(img, bgr=bgr, max_pixels=self.max_pixels) for img in images]
        detections = [self.detector.detect(a) for a in arrays]
        crops = [[align_face(a, f) for f in det.faces] for a, det in zip(arrays, detections)]
        probs = self.classify([c.image for group in crops for c in group])
        results, row = [], 0
        for det, group in zip(detections, crops):
            faces = FaceList(self._face(f, c, probs[row + i]) for i, (f, c) in enumerate(zip(det.faces, group)))
            faces.dropped = det.dropped
            row += len(group)
            results.append(faces)
        return results

    def predict_crop(self, crop: np.ndarray) -> np.ndarray:
        """Probabilities for an image that already is a face crop (as the datasets' images are)."""
        return self.classify([load_image(crop, max_pixels=self.max_pixels)])[0]

    def classify(self, crops: list[np.ndarray]) -> np.ndarray:
        """(N, num_classes) probabilities for face crops (HxWx3 uint8, resized to 224 if needed)."""
        if not crops:
            return np.zeros((0, len(self.class_names)), dtype=np.float32)
        batch = model_batch(crops, self.model)
        # Each face alone: ARM's published forward adds a mean over the batch to every face.
        if self.accelerated is not None:
            forward = self.accelerated  # the model until the package exists, or for what it was not built for
        else:
            forward = self.model.forward_alone
        with torch.inference_mode():
            if self.tta_flip:  # both views in one batch, so a float16 overflow redoes both
                both, used = finite_logits(forward, torch.cat([batch, batch.flip(-1)]), self.precision, self.device)
                logits = (both[:len(crops)] + both[len(crops):]) / 2
            else:
                logits, used = finite_logits(forward, batch, self.precision, self.device)
        return torch.softmax(ensure_finite(logits, used), dim=1).cpu().numpy()

    def _face(self, face: Face, crop: FaceCrop, probs: np.ndarray) -> FacePrediction:
        index = int(np.argmax(probs))
        return FacePrediction(box=face.box, score=face.score, landmarks=face.landmarks, crop=crop,
                              label=self.class_names[index], label_index=index, probabilities=probs,
                              class_names=self.class_names)
