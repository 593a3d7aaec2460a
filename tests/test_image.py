"""CLIP preprocessing matches HF CLIPImageProcessor; bad image files raise one-line EcgReadErrors."""

import numpy as np
import pytest
from PIL import Image

from gem_runtime.constants import CLIP_MEAN, CLIP_STD
from gem_runtime.errors import EcgReadError
from gem_runtime.image import load_image, preprocess_image
from gem_runtime.render import render_ecg_image


def hf_processor(size):
    """The PIL (slow) CLIP processor: GEM's path. transformers 5 names it CLIPImageProcessorPil."""
    transformers = pytest.importorskip("transformers")
    cls = getattr(transformers, "CLIPImageProcessorPil", None) or transformers.CLIPImageProcessor
    return cls(size={"shortest_edge": size}, crop_size={"height": size, "width": size})


def noise_image(width, height, mode, seed=0):
    rng = np.random.default_rng(seed)
    channels = {"L": 1, "RGB": 3, "RGBA": 4}[mode]
    array = rng.integers(0, 256, (height, width, channels), dtype=np.uint8)
    return Image.fromarray(array.squeeze(-1) if channels == 1 else array, mode)


def ecg_render():
    t = np.arange(5000) / 500
    signal = np.sin(2 * np.pi * 1.2 * t)[None] * np.linspace(0.2, 1.5, 12)[:, None]
    return render_ecg_image(signal, 500)   # 1060 x 840 landscape


def transparent_image():
    image = noise_image(250, 180, "RGBA", seed=3)
    alpha = np.asarray(image).copy()
    alpha[..., 3] = np.linspace(0, 255, 250, dtype=np.uint8)[None]   # fades in left to right
    return Image.fromarray(alpha, "RGBA")


IMAGES = {
    "ecg_landscape": ecg_render,
    "portrait_rgb": lambda: noise_image(301, 517, "RGB"),
    "odd_grayscale": lambda: noise_image(333, 129, "L", seed=1),
    "palette": lambda: noise_image(97, 401, "RGB", seed=2).convert("P"),
    "transparent_rgba": transparent_image,
    "smaller_than_crop": lambda: noise_image(120, 90, "RGB", seed=4),
}


@pytest.mark.parametrize("size", [336, 224])
@pytest.mark.parametrize("name", sorted(IMAGES))
def test_matches_hf_clip_image_processor(name, size):
    image = IMAGES[name]()
    expected = hf_processor(size)(images=image, return_tensors="np")["pixel_values"][0]
    got = preprocess_image(image, size)
    assert got.shape == (3, size, size) and got.dtype == np.float32
    assert expected.shape == got.shape
    assert np.abs(got - expected).max() <= 1e-5


def test_solid_colour_normalizes_to_clip_statistics():
    rgb = (200, 30, 120)
    got = preprocess_image(Image.new("RGB", (640, 480), rgb), 336)
    expected = (np.array(rgb) / 255 - np.array(CLIP_MEAN)) / np.array(CLIP_STD)
    np.testing.assert_allclose(got.reshape(3, -1), np.repeat(expected[:, None], 336 * 336, 1),
                               atol=1e-5)


def test_landscape_crop_keeps_the_middle():
    # a black stripe in the left 10% of a 2:1 image is cut away; one in the centre is kept
    array = np.full((100, 200, 3), 255, np.uint8)
    array[:, :20] = 0
    array[:, 95:105] = 0
    got = preprocess_image(Image.fromarray(array), 50)
    white = (1 - CLIP_MEAN[0]) / CLIP_STD[0]
    assert np.allclose(got[0, :, :5], white, atol=1e-5)     # left edge of the crop: white paper
    assert got[0, :, 23:27].max() < 0                        # centre stripe survives


def save(image, path):
    image.save(path)
    return path


def test_load_image_reads_a_valid_file(tmp_path):
    image = noise_image(64, 48, "RGB")
    loaded = load_image(save(image, tmp_path / "ok.png"))
    assert loaded.size == (64, 48) and np.array_equal(np.asarray(loaded), np.asarray(image))


def make_missing(tmp_path):
    return tmp_path / "missing.png"


def make_directory(tmp_path):
    return tmp_path


def make_text(tmp_path):
    path = tmp_path / "notes.png"
    path.write_text("this is not an image\n")
    return path


def make_truncated(tmp_path):
    path = save(noise_image(300, 200, "RGB"), tmp_path / "full.png")
    cut = tmp_path / "truncated.png"
    cut.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    return cut


def make_huge_file(tmp_path):
    path = save(noise_image(8, 8, "RGB"), tmp_path / "huge.png")
    with open(path, "r+b") as f:
        f.truncate(51 * 2**20)   # sparse: cheap to make, 51 MB by size
    return path


def make_wide(tmp_path):
    return save(Image.new("L", (20001, 1)), tmp_path / "wide.png")


@pytest.mark.parametrize("make, problem", [
    (make_missing, "not found"),
    (make_directory, "not a file"),
    (make_text, "not an image"),
    (make_truncated, "cannot decode"),
    (make_huge_file, "51 MB"),
    (make_wide, "20001x1 px"),
])
def test_load_image_errors_name_file_and_problem(tmp_path, make, problem):
    path = make(tmp_path)
    with pytest.raises(EcgReadError) as info:
        load_image(path)
    message = str(info.value)
    assert message.startswith(str(path)) and problem in message
    assert "\n" not in message


@pytest.mark.parametrize("size", [224, 336])
def test_two_thread_resize_equals_one_pillow_resize(size):
    """The page (840 px tall) is resized as two halves on two threads; Pillow's one resize gives the same bytes."""
    from gem_runtime.image import _halves_are_exact, _resize_bicubic

    rng = np.random.default_rng(0)
    page = Image.fromarray(rng.integers(0, 256, (840, 1060, 3), dtype=np.uint8), "RGB")
    new = (int(size * 1060 / 840), size)
    assert _halves_are_exact(840, size, size // 2)
    want = page.resize(new, resample=Image.Resampling.BICUBIC, reducing_gap=None)
    np.testing.assert_array_equal(np.asarray(_resize_bicubic(page, new)), np.asarray(want))


def test_resize_of_other_heights_is_one_pillow_call():
    from gem_runtime.image import _halves_are_exact

    assert not _halves_are_exact(1000, 224, 112)       # 1000/224 is no exact binary fraction: not split


def test_two_thread_resize_works_in_a_forked_child():
    """The resize thread pool is per process: a fork after first use must not inherit a pool without a thread."""
    import multiprocessing

    page = render_ecg_image(np.zeros((12, 5000), np.float32))
    want = preprocess_image(page, 224)                      # creates the pool in this process
    with multiprocessing.get_context("fork").Pool(1) as pool:
        got = pool.apply_async(preprocess_image, (page, 224)).get(timeout=60)
    np.testing.assert_array_equal(got, want)
