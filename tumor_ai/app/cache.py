"""Pictures and files the app hands to Gradio, written into its cache atomically.

The page (``tumor_ai.app.handlers``), the chat (``tumor_ai.app.chat``) and the tool endpoints write through here; what
comes in (an upload's path) is ``tumor_ai.app.workspace.upload_path``.
"""

from __future__ import annotations

import io
import os
import tempfile
from pathlib import Path

import gradio as gr
import numpy as np


def cache_file(data: bytes, name: str) -> str:
    """Bytes written into Gradio's cache where Gradio itself would put them, atomically.

    Gradio's own ``save_pil_to_cache`` rewrites a file in place when two requests produce the same
    bytes, so one client can download a half-written copy; a rename never exposes one. The file is
    under the same sweep as every upload.
    """
    folder = Path(gr.utils.get_upload_folder()) / gr.processing_utils.hash_bytes(data)
    target = folder / name
    if not target.exists():
        folder.mkdir(parents=True, exist_ok=True)
        handle, staging = tempfile.mkstemp(dir=folder, prefix=f".{name}.")
        with os.fdopen(handle, "wb") as stream:
            stream.write(data)
        os.replace(staging, target)
    return str(target)


def cache_picture(pixels: np.ndarray, name: str) -> str:
    """A picture for an image output, cached (see ``cache_file``): JPEG for overlays (a tenth of PNG's encoding
    time), PNG where the pixels must survive exactly (a decoded slice shown for another request to read)."""
    from PIL import Image

    buffer = io.BytesIO()
    if name.endswith(".jpg"):
        Image.fromarray(pixels).save(buffer, format="JPEG", quality=90)
    else:
        Image.fromarray(pixels).save(buffer, format="PNG", compress_level=1)
    return cache_file(buffer.getvalue(), name)
