"""Load an ECG image and turn it into CLIP pixels exactly as GEM does.

GEM uses `image_aspect_ratio="ori"`, i.e. HF `CLIPImageProcessor` with shortest_edge = crop = 336:
RGB, bicubic resize of the shortest edge (PIL), center crop, x 1/255, CLIP mean/std, channels first.
A landscape printout therefore loses its left and right edges, as it did in training.
"""

from __future__ import annotations

import os
import warnings

import numpy as np
from PIL import Image

from gem_runtime.constants import CLIP_MEAN, CLIP_STD
from gem_runtime.errors import EcgReadError

MAX_IMAGE_BYTES = 50 * 1024 * 1024   # larger files are refused before decoding
MAX_IMAGE_SIDE = 20000               # px; larger sides are refused before decoding

_MEAN = np.array(CLIP_MEAN, dtype=np.float32)[:, None, None]   # (3, 1, 1)
_STD = np.array(CLIP_STD, dtype=np.float32)[:, None, None]     # (3, 1, 1)


def load_image(path) -> Image.Image:
    """Open and fully decode an image file, or raise `EcgReadError` naming the file and problem."""
    if not os.path.exists(path):
        raise EcgReadError(path, "image file not found")
    if not os.path.isfile(path):
        raise EcgReadError(path, "image path is not a file")
    n_bytes = os.path.getsize(path)
    if n_bytes > MAX_IMAGE_BYTES:
        raise EcgReadError(path, f"image file is {n_bytes / 2**20:.0f} MB, limit is "
                                 f"{MAX_IMAGE_BYTES // 2**20} MB")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as img:
                width, height = img.size
                if max(width, height) > MAX_IMAGE_SIDE:
                    raise EcgReadError(path, f"image is {width}x{height} px, limit is "
                                             f"{MAX_IMAGE_SIDE} px a side")
                img.load()   # decode now so truncated files fail here, not in preprocessing
                return img.copy()
    except EcgReadError:
        raise
    except Image.UnidentifiedImageError:
        raise EcgReadError(path, "not an image file Pillow can read") from None
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as err:
        raise EcgReadError(path, f"image is too large to decode ({err})") from None
    except (OSError, SyntaxError, ValueError) as err:
        raise EcgReadError(path, f"cannot decode image: {err}") from None


def preprocess_image(img: Image.Image, size: int) -> np.ndarray:
    """CLIP pixels (3, size, size) float32 from any PIL image, matching HF CLIPImageProcessor."""
    if size < 1:
        raise ValueError(f"size={size} must be a positive number of pixels")
    rgb = _to_rgb(img)
    width, height = rgb.size
    short, long = min(width, height), max(width, height)
    new_long = int(size * long / short)    # HF truncates the long edge
    new_size = (size, new_long) if width <= height else (new_long, size)   # (W, H)
    resized = rgb.resize(new_size, resample=Image.Resampling.BICUBIC, reducing_gap=None)
    left, top = (new_size[0] - size) // 2, (new_size[1] - size) // 2
    pixels = np.asarray(resized)[top:top + size, left:left + size]   # (size, size, 3) uint8
    # HF order and precision: float64 rescale, cast to float32, then float32 normalize
    scaled = (pixels.transpose(2, 0, 1).astype(np.float64) * (1 / 255)).astype(np.float32)
    return (scaled - _MEAN) / _STD   # (3, size, size)


def _to_rgb(img: Image.Image) -> Image.Image:
    """RGB; transparency is composited on white (equal to GEM's `.convert("RGB")` when opaque)."""
    if "A" in img.getbands() or img.info.get("transparency") is not None:
        rgba = img.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(white, rgba).convert("RGB")
    return img.convert("RGB")
