"""Real-world photos (issue 13, item 3): decoding to 8-bit RGB, EXIF orientation, photos of any
size up to tens of megapixels, several faces, and the pixel limit.

Real photos from installed packages (see face_photos.py): insightface's ``t1.jpg`` (1280x886,
6 faces) and scikit-image's ``astronaut`` (512x512, one face).

Tolerance for "the same crop": mean absolute difference of the 112x112x3 aligned crops
< 3/255 (CROP_TOL; measured 1.0-1.1/255 for t1.jpg at 12 and 40 megapixels, at most 2.6/255 over
the face_recognition photos), and landmarks within 1 pixel of the original picture.
"""

from __future__ import annotations

import struct
import zlib

import cv2
import numpy as np
import pandas as pd
import pytest
from PIL import Image

import face_photos
from cloakbench.data.align import FaceAligner
from cloakbench.data.prepare import prepare_dataset
from cloakbench.errors import DataError
from cloakbench.io import PictureTooLarge, read_rgb

CROP_TOL = 3.0  # mean |difference| in 0..255 levels


def _t1_path():
    return face_photos._package_dir("insightface") / "data" / "images" / "t1.jpg"


@pytest.fixture(scope="module")
def t1() -> np.ndarray:
    return np.asarray(Image.open(_t1_path()).convert("RGB"))


@pytest.fixture(scope="module")
def astronaut() -> np.ndarray:
    from skimage import data as skdata
    return skdata.astronaut()


@pytest.fixture(scope="module")
def aligner() -> FaceAligner:
    return FaceAligner()


def _mad(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.abs(a.astype(np.float64) - b.astype(np.float64)).mean())


def _crop(aligner: FaceAligner, path) -> tuple[np.ndarray, object]:
    rgb = read_rgb(path)
    det = aligner.detect(rgb)
    assert det is not None, f"no face in {path}"
    return aligner.align(rgb, det), det


# --- decoding -----------------------------------------------------------------------------

def test_sixteen_bit_grey_is_scaled_not_white(astronaut, tmp_path):
    grey = np.asarray(Image.fromarray(astronaut).convert("L"))
    rng = np.random.default_rng(0)
    g16 = (grey.astype(np.uint32) * 257 + rng.integers(-128, 129, grey.shape)).clip(0, 65535)
    g16 = g16.astype(np.uint16)
    expected = np.rint(g16 / 257.0).astype(np.uint8)
    Image.fromarray(g16).save(tmp_path / "g16.png")
    assert Image.open(tmp_path / "g16.png").mode == "I;16"
    # what Pillow's own convert does (the bug this guards against): clipped to an almost white picture
    assert (np.asarray(Image.open(tmp_path / "g16.png").convert("RGB")) == 255).mean() > 0.8
    Image.frombytes("I;16B", grey.shape[::-1], g16.astype(">u2").tobytes()).save(tmp_path / "g16b.tif")
    Image.fromarray(g16.astype(np.int32)).save(tmp_path / "gi.tif")
    Image.fromarray((g16 / 65535.0).astype(np.float32)).save(tmp_path / "gf.tif")
    for name, mode in [("g16.png", "I;16"), ("g16b.tif", "I;16B"), ("gi.tif", "I"), ("gf.tif", "F")]:
        assert Image.open(tmp_path / name).mode == mode
        rgb = read_rgb(tmp_path / name)
        assert rgb.dtype == np.uint8 and rgb.shape == grey.shape + (3,), name
        assert (rgb == rgb[:, :, :1]).all(), name
        assert np.abs(rgb[:, :, 0].astype(int) - expected).max() <= 1, name
        assert np.abs(rgb[:, :, 0].astype(int) - grey).max() <= 1, name


def test_sixteen_bit_rgb_png(astronaut, tmp_path):
    rng = np.random.default_rng(1)
    rgb16 = (astronaut.astype(np.int64) * 257 + rng.integers(0, 200, astronaut.shape)).clip(0, 65535)
    rgb16 = rgb16.astype(np.uint16)
    cv2.imwrite(str(tmp_path / "rgb16.png"), rgb16[:, :, ::-1])  # OpenCV writes 16-bit PNG, BGR
    out = read_rgb(tmp_path / "rgb16.png")
    assert out.dtype == np.uint8 and np.abs(out.astype(int) - astronaut).max() <= 1


def test_float_and_int_ranges(tmp_path):
    ramp = np.linspace(0, 1, 256, dtype=np.float32).reshape(16, 16)
    Image.fromarray(ramp).save(tmp_path / "unit.tif")                    # F in [0, 1]
    Image.fromarray(ramp * 255).save(tmp_path / "eight.tif")             # F in [0, 255]
    Image.fromarray((ramp * 255).astype(np.int32)).save(tmp_path / "i8.tif")  # I in [0, 255]
    expected = np.rint(ramp * 255).astype(np.uint8)
    for name in ["unit.tif", "eight.tif", "i8.tif"]:
        assert np.abs(read_rgb(tmp_path / name)[:, :, 0].astype(int) - expected).max() <= 1, name
    Image.fromarray(ramp - 0.5).save(tmp_path / "negative.tif")
    with pytest.raises(ValueError, match="negative"):
        read_rgb(tmp_path / "negative.tif")


def test_palette_la_rgba_cmyk(astronaut, tmp_path):
    pal = Image.fromarray(astronaut).quantize(256)
    pal.save(tmp_path / "p.png")
    out = read_rgb(tmp_path / "p.png")
    assert np.array_equal(out, np.asarray(pal.convert("RGB")))     # the palette's own colours
    assert _mad(out, astronaut) < 4                                 # 256 colours of the original

    # palette with a transparent index: transparent pixels come out white
    p2 = pal.copy()
    idx = np.asarray(p2).copy()
    idx[:100, :100] = 0
    p2 = Image.fromarray(idx, "P")
    p2.putpalette(pal.getpalette())
    p2.info["transparency"] = 0
    p2.save(tmp_path / "pt.png", transparency=0)
    assert Image.open(tmp_path / "pt.png").info.get("transparency") == 0
    out = read_rgb(tmp_path / "pt.png")
    transparent = idx == 0
    assert (out[transparent] == 255).all()
    assert np.array_equal(out[~transparent], np.asarray(pal.convert("RGB"))[~transparent])

    grey = np.asarray(Image.fromarray(astronaut).convert("L"))
    alpha = np.full(grey.shape, 255, np.uint8)
    alpha[:, :128] = 0
    Image.fromarray(np.stack([grey, alpha], axis=2), "LA").save(tmp_path / "la.png")
    assert Image.open(tmp_path / "la.png").mode == "LA"
    out = read_rgb(tmp_path / "la.png")
    assert (out[:, :128] == 255).all() and np.array_equal(out[:, 128:, 1], grey[:, 128:])

    half = np.dstack([astronaut, np.full(grey.shape, 128, np.uint8)])
    Image.fromarray(half, "RGBA").save(tmp_path / "rgba.png")
    out = read_rgb(tmp_path / "rgba.png")
    expected = astronaut * (128 / 255) + 255 * (127 / 255)
    assert np.abs(out - expected).max() <= 1.0

    opaque = np.dstack([astronaut, np.full(grey.shape, 255, np.uint8)])
    Image.fromarray(opaque, "RGBA").save(tmp_path / "opaque.png")
    assert np.array_equal(read_rgb(tmp_path / "opaque.png"), astronaut)

    Image.fromarray(astronaut).convert("CMYK").save(tmp_path / "cmyk.jpg", quality=95)
    Image.fromarray(astronaut).save(tmp_path / "rgb.jpg", quality=95)
    assert Image.open(tmp_path / "cmyk.jpg").mode == "CMYK"
    out = read_rgb(tmp_path / "cmyk.jpg")
    assert out.shape == astronaut.shape and _mad(out, astronaut) < 3
    assert _mad(out, astronaut) < 2 * _mad(read_rgb(tmp_path / "rgb.jpg"), astronaut) + 1


# --- EXIF orientation ---------------------------------------------------------------------

# What is stored for each EXIF orientation so that a viewer shows ``a`` (EXIF 2.3, tag 0x0112).
STORED = {1: lambda a: a, 2: lambda a: a[:, ::-1], 3: lambda a: a[::-1, ::-1],
          4: lambda a: a[::-1], 5: lambda a: a.transpose(1, 0, 2), 6: lambda a: np.rot90(a, 1),
          7: lambda a: a[::-1, ::-1].transpose(1, 0, 2), 8: lambda a: np.rot90(a, -1)}


def _save_oriented(upright: np.ndarray, orientation: int, path, **kw) -> None:
    im = Image.fromarray(np.ascontiguousarray(STORED[orientation](upright)))
    exif = im.getexif()
    exif[0x0112] = orientation
    im.save(path, exif=exif, **kw)


def test_exif_orientation_all_eight(astronaut, tmp_path):
    pic = astronaut[:300, :200]  # not square: a missed rotation changes the shape
    for o in STORED:
        _save_oriented(pic, o, tmp_path / f"o{o}.png")
        assert np.array_equal(read_rgb(tmp_path / f"o{o}.png"), pic), f"orientation {o}"


def test_exif_rotated_photo_gives_the_same_crop(t1, aligner, tmp_path):
    Image.fromarray(t1).save(tmp_path / "upright.png")
    _save_oriented(t1, 6, tmp_path / "rot6.png")
    assert Image.open(tmp_path / "rot6.png").size == (t1.shape[0], t1.shape[1])  # stored sideways
    ref, _ = _crop(aligner, tmp_path / "upright.png")
    crop, _ = _crop(aligner, tmp_path / "rot6.png")
    assert np.array_equal(crop, ref)
    # a phone-style JPEG (rotated pixels compressed as stored)
    Image.fromarray(t1).save(tmp_path / "upright.jpg", quality=95)
    _save_oriented(t1, 8, tmp_path / "rot8.jpg", quality=95)
    ref, _ = _crop(aligner, tmp_path / "upright.jpg")
    crop, _ = _crop(aligner, tmp_path / "rot8.jpg")
    assert _mad(crop, ref) < CROP_TOL


# --- pictures up to detect_size: the original path, bit for bit ------------------------------

def test_small_pictures_take_the_unchanged_path(astronaut, aligner):
    """Pictures no longer than detect_size (every demo picture) are detected at full size and
    cropped by norm_crop directly, as before: same bytes as the plain YuNet + norm_crop path."""
    assert aligner.detection_sides(512, 512) == [None]
    det = aligner.detect(astronaut)
    assert det.n_faces == 1
    assert np.array_equal(aligner.align(astronaut, det), face_photos.aligned_faces(astronaut)[0])


# --- large photos, several faces ----------------------------------------------------------

def test_upscaled_photo_gives_the_same_crop_12_and_40_megapixels(t1, tmp_path):
    """End to end through prepare_dataset: the original t1.jpg and copies upscaled to 12 and 40
    megapixels give the same aligned crop; all six faces are counted.

    The upscaled copies get pixel noise (uniform +-16 levels, like sensor noise): a smooth
    upscale hides aliasing, noise does not. Measured: 1.9 and 1.5/255 from the original's crop;
    norm_crop straight from the full picture (no area filter) gives 5.9/255."""
    person = tmp_path / "ds" / "t1"
    person.mkdir(parents=True)
    (person / "original.jpg").write_bytes(_t1_path().read_bytes())
    h, w = t1.shape[:2]
    noise = np.random.default_rng(0).integers(-16, 17, (1009, 997, 3), dtype=np.int16)
    for mp in (12, 40):
        f = np.sqrt(mp * 1e6 / (w * h))
        big = cv2.resize(t1, (round(w * f), round(h * f)), interpolation=cv2.INTER_CUBIC)
        assert big.shape[0] * big.shape[1] >= mp * 1e6 * 0.99
        reps = (-(-big.shape[0] // noise.shape[0]), -(-big.shape[1] // noise.shape[1]), 1)
        big = np.clip(big + np.tile(noise, reps)[:big.shape[0], :big.shape[1]], 0, 255)
        Image.fromarray(big.astype(np.uint8)).save(person / f"up{mp}.jpg", quality=95)
        del big
    manifest, rejects = prepare_dataset(tmp_path / "ds", tmp_path / "out", min_pictures=2)
    assert rejects.empty, rejects.to_dict("records")
    crops = {r.image_id.split("/")[1]: np.asarray(Image.open(tmp_path / "out" / r.path))
             for r in manifest.itertuples()}
    assert set(crops) == {"original", "up12", "up40"}
    assert manifest["n_faces"].tolist() == [6, 6, 6]
    for name in ("up12", "up40"):
        assert _mad(crops[name], crops["original"]) < CROP_TOL, name
    # the tolerance tells faces apart: every other face of the photo is far from this crop
    dists = sorted(_mad(c, crops["original"]) for c in face_photos.aligned_faces(t1))
    assert len(dists) == 6 and dists[1] > 4 * CROP_TOL


def test_upscaled_landmarks_map_back(t1, aligner):
    d0 = aligner.detect(t1)
    h, w = t1.shape[:2]
    for mp in (12, 40):
        f = np.sqrt(mp * 1e6 / (w * h))
        big = cv2.resize(t1, (round(w * f), round(h * f)), interpolation=cv2.INTER_CUBIC)
        d = aligner.detect(big)
        fx, fy = big.shape[1] / w, big.shape[0] / h
        back = (d.landmarks + 0.5) / [fx, fy] - 0.5
        assert np.abs(back - d0.landmarks).max() < 1.0, mp
        assert d.n_faces == d0.n_faces == 6


def test_small_face_in_large_picture_is_found(astronaut, aligner):
    face = astronaut[20:220, 140:310]
    small = cv2.resize(face, (face.shape[1] // 2, face.shape[0] // 2), interpolation=cv2.INTER_AREA)
    canvas = np.full((4000, 6000, 3), 120, np.uint8)
    canvas[2500:2500 + small.shape[0], 3000:3000 + small.shape[1]] = small
    assert aligner.detection_sides(6000, 4000) == [1024, 2048, 4096]
    d = aligner.detect(canvas)
    assert d is not None and d.n_faces == 1
    x, y, bw, bh = d.box
    assert 3000 <= x and x + bw <= 3000 + small.shape[1] and 2500 <= y and y + bh <= 2500 + small.shape[0]
    assert 30 < bw < 60


def test_several_faces_keep_the_largest(astronaut, t1, aligner, tmp_path):
    big_face = astronaut[0:300, 100:380]                     # astronaut's face (~90x114 px)
    x, y, bw, bh = (int(v) for v in aligner.detect(t1).box)  # a t1 face (~100x145 px) ...
    small_face = cv2.resize(t1[max(0, y - 30):y + bh + 30, max(0, x - 30):x + bw + 30], None,
                            fx=0.5, fy=0.5, interpolation=cv2.INTER_AREA)  # ... at half size

    def canvas(with_big: bool, with_small: bool) -> np.ndarray:
        c = np.full((400, 800, 3), 200, np.uint8)
        if with_big:
            c[50:50 + big_face.shape[0], 40:40 + big_face.shape[1]] = big_face
        if with_small:
            c[100:100 + small_face.shape[0], 500:500 + small_face.shape[1]] = small_face
        return c

    for name, args in {"both": (True, True), "big": (True, False), "small": (False, True)}.items():
        Image.fromarray(canvas(*args)).save(tmp_path / f"{name}.png")
    both, det = _crop(aligner, tmp_path / "both.png")
    assert det.n_faces == 2
    big, _ = _crop(aligner, tmp_path / "big.png")
    small, _ = _crop(aligner, tmp_path / "small.png")
    assert _mad(both, big) < CROP_TOL and _mad(both, small) > 20


# --- pixel limit ----------------------------------------------------------------------------

def _png_header_only(path, width: int, height: int) -> None:
    """A PNG that declares width x height RGB pixels but holds a few bytes: opening it must not
    decode (or allocate) anything."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr)
                     + chunk(b"IDAT", zlib.compress(b"\x00" * 16)) + chunk(b"IEND", b""))


def test_too_large_is_rejected_with_the_reason(astronaut, tmp_path):
    before = Image.MAX_IMAGE_PIXELS
    _png_header_only(tmp_path / "bomb.png", 100_000, 100_000)
    with pytest.raises(PictureTooLarge, match="too large: 100000x100000 = 10000000000 pixels > "
                       "dataset.max_pixels = 64000000"):
        read_rgb(tmp_path / "bomb.png", max_pixels=64_000_000)
    Image.fromarray(astronaut).save(tmp_path / "a.png")
    with pytest.raises(PictureTooLarge, match="512x512 = 262144 pixels > dataset.max_pixels = 200000"):
        read_rgb(tmp_path / "a.png", max_pixels=200_000)
    assert read_rgb(tmp_path / "a.png", max_pixels=262_144).shape == (512, 512, 3)
    assert Image.MAX_IMAGE_PIXELS == before  # Pillow's global limit restored

    # in the pipeline: a rejects row with the reason, the rest is kept
    root = tmp_path / "ds" / "someone"
    root.mkdir(parents=True)
    for k in range(2):
        Image.fromarray(astronaut).save(root / f"{k}.png")
    _png_header_only(root / "bomb.png", 100_000, 100_000)
    manifest, rejects = prepare_dataset(tmp_path / "ds", tmp_path / "out", pre_aligned=True,
                                        min_pictures=2)
    assert len(manifest) == 2
    reason = rejects.set_index("source_path").loc[str(root / "bomb.png"), "reason"]
    assert reason.startswith("too large") and "10000000000 pixels" in reason
    with pytest.raises(DataError, match="min_pictures"):  # nothing left
        prepare_dataset(tmp_path / "ds", tmp_path / "out2", pre_aligned=True, min_pictures=2,
                        max_pixels=100_000)
    rejects = pd.read_parquet(tmp_path / "out2" / "rejects.parquet")
    assert len(rejects) == 3 and rejects["reason"].str.startswith("too large").all()
