"""Class-activation maps turned into pictures, for the page and the agents: the colour map, the overlay.

The maps themselves are computed inside the model's ``tf.function`` (``tumor_ai.core.inference``) by the
method its metadata names, and placed in the upload's frame (``tumor_ai.core.cam``); this module only
draws them (``tumor_ai.core.wording`` puts them into words), so nothing the model needs depends on how the page looks.
"""

from __future__ import annotations

import numpy as np
from PIL import Image

from tumor_ai.core.wording import LEGEND_ENDS, confidence_words, focus_region, listed, reading  # noqa: F401 - moved to wording; for one release

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


def coloured(cam: np.ndarray, size: tuple[int, int]) -> Image.Image:
    """The CAM in the colour map at ``size`` = (height, width): coloured at its own grid, then resized (in C).

    It is the heatmap, and the colour layer of every overlay of the same map, so an answer colours and
    resizes its map once (``overlay``'s ``colours``), whatever the pictures and opacities drawn from it.
    """
    return _resized(jet(cam), size)


def heatmap(cam: np.ndarray, size: tuple[int, int], colours: Image.Image | None = None) -> np.ndarray:
    """The CAM as a colour picture at ``size`` = (height, width) (``colours``: ``coloured(cam, size)``, if made)."""
    return np.asarray(colours if colours is not None else coloured(cam, size))


def drawn_strength(cam: np.ndarray, probability: float, is_answer: bool) -> np.ndarray:
    """The map as the page draws it: the answer's own map at full strength (as every tab draws it), the map of
    another class as faint as the model finds that class likely, so weak evidence never looks like strong evidence."""
    return cam if is_answer else cam * float(np.clip(probability, 0.0, 1.0))


def overlay(
    pixels: np.ndarray, cam: np.ndarray, opacity: float = DEFAULT_OPACITY, colours: Image.Image | None = None
) -> np.ndarray:
    """Blend the coloured CAM over the RGB input at the input's resolution.

    Opacity scales with the CAM itself, so regions the model ignored keep the original image.
    Colour and opacity are computed on the CAM's own grid and resized by PIL, which blends them
    (``Image.composite``): a 768-px overlay costs a millisecond or two. ``colours``, the map already
    coloured at the picture's size (``coloured``), saves colouring it again.
    """
    size = pixels.shape[:2]
    if colours is None or colours.size != (size[1], size[0]):
        colours = coloured(cam, size)
    alpha = (np.clip(opacity, 0.0, 1.0) * np.sqrt(np.clip(cam, 0.0, 1.0)) * 255).astype(np.uint8)
    blended = Image.composite(colours, Image.fromarray(pixels), _resized(alpha, size, "L"))
    return np.asarray(blended)


def legend_html(words: str, peak: float | None = None) -> str:
    """The colour bar under a map: the colour map's own colours from weak to strong evidence, a mark where this map's
    strongest point lies (``peak``, 0..1, as drawn), and ``words`` saying what that means (plain text, escaped)."""
    import html

    values = np.linspace(0.0, 1.0, 9)  # jet is piecewise linear between eighths: nine stops draw it exactly
    stops = ", ".join(f"rgb({r}, {g}, {b}) {value:.1%}" for value, (r, g, b) in zip(values, jet(values)))
    mark = ""
    if peak is not None:
        left = 100 * float(np.clip(peak, 0.0, 1.0))
        mark = f'<span class="evidence-peak" style="left: {left:.1f}%" title="this map\'s strongest point"></span>'
    weak, strong = (html.escape(end) for end in LEGEND_ENDS)
    return (
        f'<div class="evidence-legend" data-peak="{"" if peak is None else f"{float(peak):.4f}"}">'
        f'<div class="evidence-scale"><span class="evidence-end">{weak}</span>'
        f'<span class="evidence-bar" style="background: linear-gradient(to right, {stops})">{mark}</span>'
        f'<span class="evidence-end">{strong}</span></div>'
        f'<p class="evidence-words">{html.escape(words)}</p></div>'
    )


OUTLINE_COLOUR = (255, 255, 255)  # white with a dark rim: on grey tissue and on every colour of the map


def outlined(picture: np.ndarray, mask: np.ndarray | None) -> np.ndarray:
    """``picture`` with the edge of ``mask`` (a tumour outline at the picture's size) drawn over it; unchanged without one.

    The line is about 1/250 of the picture's longer side (2 px on a 512-px slice), white with a one-pixel dark rim.
    """
    if mask is None or not mask.any():
        return picture
    from scipy import ndimage

    if mask.shape != picture.shape[:2]:
        resized = Image.fromarray(mask.astype(np.uint8) * 255).resize(picture.shape[1::-1], Image.Resampling.NEAREST)
        mask = np.asarray(resized) > 127
    width = max(1, round(max(picture.shape[:2]) / 250))
    ring = mask & ~ndimage.binary_erosion(mask, iterations=width, border_value=1)
    rim = ndimage.binary_dilation(ring, iterations=1) & ~ring
    drawn = np.array(picture, copy=True)
    drawn[rim] = drawn[rim] // 3
    drawn[ring] = OUTLINE_COLOUR
    return drawn
