"""Load an ECG image and turn it into CLIP pixels exactly as GEM does.

GEM uses `image_aspect_ratio="ori"`, i.e. HF `CLIPImageProcessor` with shortest_edge = crop = 336:
RGB, bicubic resize of the shortest edge (PIL), center crop, x 1/255, CLIP mean/std, channels first.
A landscape printout therefore loses its left and right edges, as it did in training.
"""

from __future__ import annotations

import functools
import io
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
from PIL import Image

from gem_runtime.constants import CLIP_MEAN, CLIP_STD
from gem_runtime.errors import EcgReadError
from gem_runtime.files import atomic_write
from gem_runtime.thread_warnings import caught_warnings, raise_first

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
        with caught_warnings() as caught:
            img = Image.open(path)
        with img:
            raise_first(caught, Image.DecompressionBombWarning)
            width, height = img.size
            if max(width, height) > MAX_IMAGE_SIDE:
                raise EcgReadError(path, f"image is {width}x{height} px, limit is {MAX_IMAGE_SIDE} px a side")
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
    resized = _resize_bicubic(rgb, new_size)
    left, top = (new_size[0] - size) // 2, (new_size[1] - size) // 2
    pixels = np.asarray(resized)[top:top + size, left:left + size]   # (size, size, 3) uint8
    # HF order and precision: float64 rescale, cast to float32, then float32 normalize
    scaled = (pixels.transpose(2, 0, 1).astype(np.float64) * (1 / 255)).astype(np.float32)
    return (scaled - _MEAN) / _STD   # (3, size, size)


def _resize_bicubic(img: Image.Image, size: tuple[int, int]) -> Image.Image:
    """`img.resize(size, BICUBIC, reducing_gap=None)`, as HF does, with the top and bottom halves of the output
    resized on two threads (Pillow releases the GIL while resampling: 12 -> 7 ms for a 1060 x 840 page).
    Only when `_halves_are_exact` proves that Pillow computes the very same filter taps for each half."""
    bicubic = Image.Resampling.BICUBIC
    width, height = img.size
    h1 = size[1] // 2
    if size[1] < 2 or not _halves_are_exact(height, size[1], h1):
        return img.resize(size, resample=bicubic, reducing_gap=None)
    y_split = h1 * height / size[1]
    bottom = _pool().submit(img.resize, (size[0], size[1] - h1), bicubic, (0, y_split, width, height), None)
    top = img.resize((size[0], h1), resample=bicubic, box=(0, 0, width, y_split), reducing_gap=None)
    out = Image.new(img.mode, size)
    out.paste(top, (0, 0))
    out.paste(bottom.result(), (0, h1))
    return out


@functools.lru_cache(maxsize=64)
def _halves_are_exact(in_size: int, out_size: int, h1: int) -> bool:
    """Pillow's precompute_coeffs derives each output row's taps from scale = (in1 - in0) / out and
    center = in0 + (row + 0.5) * scale, in doubles. Splitting the output at row h1 (source box edge y_split)
    gives the same taps as one resize iff both halves get the same scale and every center is equal
    (true for 840 -> 224 or 336, whose values are exact binary fractions)."""
    scale = in_size / out_size
    y_split = h1 * in_size / out_size
    top, bottom = y_split / h1, (in_size - y_split) / (out_size - h1)
    if not (top == scale == bottom):
        return False
    return all((r + 0.5) * top == (r + 0.5) * scale for r in range(h1)) and \
        all(y_split + (r + 0.5) * bottom == (r + h1 + 0.5) * scale for r in range(out_size - h1))


@functools.lru_cache(maxsize=1)
def _pool() -> ThreadPoolExecutor:
    return ThreadPoolExecutor(max_workers=1, thread_name_prefix="gem-resize")


# A forked child (a multiprocessing "fork" pool) inherits the executor but not its thread: work sent to it would
# wait forever. The child makes its own on first use.
os.register_at_fork(after_in_child=_pool.cache_clear)


def _to_rgb(img: Image.Image) -> Image.Image:
    """RGB; transparency is composited on white (equal to GEM's `.convert("RGB")` when opaque)."""
    if "A" in img.getbands() or img.info.get("transparency") is not None:
        rgba = img.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(white, rgba).convert("RGB")
    return img.convert("RGB")


def png_bytes(img) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


def save_png(img, path: Path) -> None:
    """The image as a PNG file, never seen half-written."""
    atomic_write(path, lambda tmp: img.save(tmp, format="PNG"))
