"""Class-activation maps turned into pictures and words, for the page: the colour map, the overlay, the reading.

The maps themselves are computed inside the model's ``tf.function`` (``tumor_ai.core.inference``) by the
method its metadata names, and placed in the upload's frame (``tumor_ai.core.cam``); this module only
draws them and puts them into words, so nothing the model needs depends on how the page looks.
"""

from __future__ import annotations

import numpy as np
from PIL import Image

from tumor_ai import NOT_A_DIAGNOSIS
from tumor_ai.model.labels import describe, display_name

DEFAULT_OPACITY = 0.45
DISPLAY_SIDE = 768  # overlays are drawn at most this large: the app never shows them bigger


def display_copy(pixels: np.ndarray, side: int = DISPLAY_SIDE) -> np.ndarray:
    """The image at most ``side`` pixels on its longer edge, for drawing (the models see their own copy)."""
    height, width = pixels.shape[:2]
    if max(height, width) <= side:
        return pixels
    image = Image.fromarray(pixels)
    image.thumbnail((side, side), Image.Resampling.LANCZOS)
    return np.asarray(image)


def jet(values: np.ndarray) -> np.ndarray:
    """Jet-like colour map, 0 -> dark blue, 1 -> dark red, as ``uint8`` RGB."""
    values = np.clip(values, 0.0, 1.0)[..., None]
    centres = np.array([0.75, 0.5, 0.25])  # red, green, blue peaks
    rgb = np.clip(1.5 - np.abs(4.0 * (values - centres)), 0.0, 1.0)
    return (rgb * 255).astype(np.uint8)


def _resized(picture: np.ndarray, size: tuple[int, int], mode: str | None = None) -> Image.Image:
    height, width = size
    return Image.fromarray(picture, mode).resize((width, height), Image.Resampling.BILINEAR)


def heatmap(cam: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """The CAM as a colour picture at ``size`` = (height, width): coloured at its own grid, then resized (in C)."""
    return np.asarray(_resized(jet(cam), size))


def overlay(pixels: np.ndarray, cam: np.ndarray, opacity: float = DEFAULT_OPACITY) -> np.ndarray:
    """Blend the coloured CAM over the RGB input at the input's resolution.

    Opacity scales with the CAM itself, so regions the model ignored keep the original image.
    Colour and opacity are computed on the CAM's own grid and resized by PIL, which blends them
    (``Image.composite``): a 768-px overlay costs a millisecond or two.
    """
    size = pixels.shape[:2]
    alpha = (np.clip(opacity, 0.0, 1.0) * np.sqrt(np.clip(cam, 0.0, 1.0)) * 255).astype(np.uint8)
    blended = Image.composite(_resized(jet(cam), size), Image.fromarray(pixels), _resized(alpha, size, "L"))
    return np.asarray(blended)


def focus_region(cam: np.ndarray) -> str:
    """Where the strongest evidence lies, in words ("upper left of the image", "centre")."""
    if cam.size == 0 or float(cam.max()) <= 0.0:
        return "nowhere in particular (the map is flat)"
    weights = np.where(cam >= 0.6 * cam.max(), cam, 0.0)
    rows, cols = np.indices(cam.shape)
    row = float((rows * weights).sum() / weights.sum()) / max(cam.shape[0] - 1, 1)
    col = float((cols * weights).sum() / weights.sum()) / max(cam.shape[1] - 1, 1)
    vertical = "upper" if row < 0.4 else "lower" if row > 0.6 else ""
    horizontal = "left" if col < 0.4 else "right" if col > 0.6 else ""
    if not vertical and not horizontal:
        place = "centre"
    else:
        place = " ".join(word for word in (vertical, horizontal) if word)
        if vertical and not horizontal:
            place += " middle"
    spread = float((cam >= 0.5 * cam.max()).mean())
    extent = "a small, focused area" if spread < 0.12 else "a broad area" if spread > 0.35 else "an area"
    return f"{extent} in the {place} of the image"


def listed(names: list[str]) -> str:
    """Names as a sentence lists them: "a", "a and b", "a, b and c"."""
    return " and ".join(names) if len(names) < 3 else f"{', '.join(names[:-1])} and {names[-1]}"


def confidence_words(confidence: float) -> str:
    if confidence >= 0.9:
        return "high"
    if confidence >= 0.7:
        return "moderate"
    return "low"


def reading(
    label: str,
    confidence: float,
    cam: np.ndarray,
    model_name: str = "The model",
    evidence: str | None = None,
    caveat: str = "",
    plausible: str = "",
    reminder: str = NOT_A_DIAGNOSIS,
) -> str:
    """A short plain-language reading of one prediction, ending with the not-a-diagnosis ``reminder``.

    The page shows the full disclaimer once in its header, so a reading ends with the short one;
    an agent's tool result has no header around it and passes the full ``DISCLAIMER``.

    ``evidence`` is the class the map shows when it is not the model's answer; ``caveat`` says how far
    the map can be trusted (``tumor_ai.publish.card.map_trust``); ``plausible`` is the conformal set's sentence.
    """
    text = (
        f"{model_name} reads this slice as **{display_name(label)}** ({describe(label)}), "
        f"with {confidence_words(confidence)} confidence ({confidence:.0%}). "
    )
    flat = cam.size == 0 or float(cam.max()) <= 0.0
    if (evidence is None or evidence == label) and flat:
        text += "The map is empty: the model's layer holds no positive evidence for its answer anywhere in this slice. "
    elif evidence is None or evidence == label:
        text += f"The evidence for that class came mostly from {focus_region(cam)} (red on the overlay). "
    elif flat:
        text += f"The model found no evidence for **{display_name(evidence)}** anywhere in this slice (the map is empty). "
    else:
        text += (
            f"The overlay shows the evidence for **{display_name(evidence)}** instead, which is not the model's "
            f"answer: it lay mostly in {focus_region(cam)}. "
        )
    if confidence < 0.7:
        text += "The classes are close: treat this reading as uncertain. "
    if plausible:
        text += f"**{plausible}** "
    return text + caveat + reminder
