"""Photos out: one RGB picture written atomically in the format its extension names (the photo
side of the encode stage; see :mod:`pipeline.stages.video_out`)."""
from __future__ import annotations

import os
from pathlib import Path

import cv2
import numpy as np

from pipeline.errors import OutputError
from pipeline.media.atomic import atomic_output, check_destination


def write_image(dst: str | os.PathLike, pixels: np.ndarray, *, overwrite: bool = False) -> Path:
    """Save ``pixels`` [H, W, 3] uint8 RGB as an image in the format its extension names, atomically.

    Raises:
        OutputError: the file exists (without ``overwrite``), the folder is missing or not
            writable, the extension is not an image format, or the disk is full.
    """
    target = check_destination(dst, overwrite)
    if not cv2.haveImageWriter(str(target)):
        raise OutputError(f"{target}: {target.suffix or 'no extension'} is not an image format I can write")
    with atomic_output(target, overwrite) as tmp:
        ok = cv2.imwrite(str(tmp), np.ascontiguousarray(pixels[:, :, ::-1]))
        if not ok or tmp.stat().st_size == 0:
            raise OutputError(f"{target}: could not write the image (disk full or not writable?)")
    return target
