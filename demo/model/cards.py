"""The Model tab's cards: one per architecture (paper, size, cost, published figures, colour order,
caveats), the released checkpoints, and the limits every visitor should read.

Every figure comes from ``poster.weights.registry``; nothing here restates a number.
"""
from __future__ import annotations

from poster.models.weights_api import Weights
from poster.weights.registry import ARCHITECTURES, Architecture, get_weights, list_weights

from ..serving.store import checkpoint_label

ABOUT = {
    "poster-v2": "Two streams read the same aligned face: an **IR-50** image backbone and a frozen "
                 "**MobileFaceNet** landmark backbone. At three scales the landmark features *query* the "
                 "image features through window cross-attention; the fused maps become 147 tokens for a "
                 "small vision transformer whose class token gives the expression.",
    "poster-v1": "POSTER++'s predecessor: the same two backbones on a 112-pixel input, each giving 49 tokens "
                 "(MobileFaceNet's tokens are the 7x7 positions; IR-50's are groups of channels, with no "
                 "position), fused by eight pyramid blocks of cross-attention in both directions at three "
                 "widths.",
    "arm": "A ResNet-18 whose 512x7x7 map is pixel-shuffled to 112x112 and amended by one shared 32x32 "
           "\"de-albino\" convolution to an 11x11 map, which a linear layer reads.",
}

LIMITS = """
### Limits — please read
- **Not for decisions about people.** An expression is not an emotion, and a model's guess is not a
  fact about a person. Do not use it for hiring, grading, policing, health, security or any other
  decision that affects someone.
- Trained on RAF-DB, AffectNet and CAER-S: posed and in-the-wild photos scraped from the web and TV,
  with their biases in age, skin tone, gender presentation, culture and photo style. Accuracy is
  lower on faces, expressions and conditions those datasets hold few of.
- The labels are a small fixed set of categories; real expressions are mixed, subtle and
  context-dependent. Low confidence usually means "none of these fits well".
- Explanations (Grad-CAM, attention) show what the network's computation depends on, not *why* a
  person feels something, and they can be misleading on their own.
- Photos and webcam frames are processed in memory to answer your request and are not stored.
"""

COLOUR_ORDER = {
    "RGB": "RGB, as the photo is",
    "BGR": "BGR: the original test script read images with OpenCV and never converted them, so the "
           "released checkpoint saw blue-green-red images (normalized with the RGB ImageNet constants); "
           "the app swaps the channels for it on every path",
}


def architecture_card(spec: Architecture) -> str:
    """Markdown for one architecture: what it is and the facts that decide its numbers."""
    facts = spec.facts
    weights = list_weights(spec.name)
    lines = [f"#### {spec.title}", f"*{spec.paper}*", "", ABOUT.get(spec.name, ""), ""]
    lines.append(f"- **Parameters used**: {facts['parameters_used'] / 1e6:.2f} M"
                 + (f" (the released file stores {facts['parameters_stored'] / 1e6:.2f} M; the rest never reaches "
                    "the logits)" if "parameters_stored" in facts else ""))
    if "multiply_adds" in facts:
        lines.append(f"- **Multiply-adds**: {facts['multiply_adds'] / 1e9:.2f} G per face")
    lines.append(f"- **Colour order**: {COLOUR_ORDER.get(facts['colour_order'], facts['colour_order'])}")
    if "batch_caveat" in facts:
        lines.append(f"- **Why each face is classified alone**: this model {facts['batch_caveat']}.")
    lines += ["", "| Published figure | Meaning |", "| --- | --- |"]
    lines += [f"| {value:.2f} % | {meaning} |" for value, meaning in published_figures(spec, weights)]
    return "\n".join(lines)


def published_figures(spec: Architecture, weights: list[Weights]) -> list[tuple[float, str]]:
    """Each published figure of an architecture with what it means (released checkpoints first)."""
    out: list[tuple[float, str]] = []
    for w in weights:
        if w.published_metrics:
            out += [(m.value, m.meaning) for m in w.published_metrics]
        elif w.published_accuracy is not None:
            out.append((w.published_accuracy, f"{w.title} test accuracy of the released checkpoint"))
    released = {w.dataset_key for w in weights}
    for dataset, value in spec.facts.get("published", {}).items():
        if dataset not in released:
            out.append((value, f"{dataset_title(dataset)} test accuracy reported in the paper (no checkpoint released)"))
    return out


def dataset_title(key: str) -> str:
    try:
        return get_weights(dataset=key).title
    except KeyError:
        return {"ferplus": "FERPlus"}.get(key, key)


def checkpoint_table() -> str:
    rows = [f"| {checkpoint_label(w)} | {', '.join(w.class_names)} | "
            + (f"{w.published_accuracy:.2f} %" if w.published_accuracy is not None else "—") + " |"
            for w in list_weights()]
    return "\n".join(["| Checkpoint | Classes | Published accuracy |", "| --- | --- | --- |", *rows])


def model_card() -> str:
    """The whole Model tab text: the three architectures, the released checkpoints, the limits."""
    cards = "\n\n".join(architecture_card(spec) for spec in ARCHITECTURES.values())
    return (f"### The models\nThis app detects faces with MTCNN, aligns each one to a 224×224 crop and classifies "
            f"it with the checkpoint you choose: POSTER++ or one of its two predecessors.\n\n{cards}\n\n"
            f"### Released checkpoints\n{checkpoint_table()}\n{LIMITS}")
