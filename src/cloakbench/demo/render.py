"""One photo of an identity: the per-picture nuisances.

Order (as a camera would produce them): expression-like local warp of the landmarks,
background (a new scene behind the person when the matte allows it), small head pose as a
perspective warp, crop and scale jitter, illumination gradient and exposure/white balance,
optical blur (defocus or motion), resolution loss, sensor noise, JPEG re-encoding. The
final JPEG quality is returned so the writer encodes once more, as a platform would.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import cv2
import numpy as np

from . import imaging
from .compose import Identity, face_frame, control_points
from .faces import five_points


@dataclass(frozen=True)
class Nuisances:
    """Ranges of the per-picture nuisances (the dataset card records them)."""

    expression: float = 1.3             # strength of smile / mouth / brow / squint warps
    yaw_deg: float = 22.0
    pitch_deg: float = 12.0
    roll_deg: float = 12.0
    window: tuple[float, float] = (205.0, 310.0)   # crop width in canvas pixels (IOD = 64)
    shift: float = 0.07                 # crop centre jitter, fraction of the crop width
    out_width: tuple[int, int] = (200, 300)
    aspect: tuple[float, float] = (1.0, 1.3)       # height / width
    p_background: float = 0.75          # new background (identities with a clean matte)
    p_plain_background: float = 0.25    # of those: a plain studio backdrop
    background_blur: tuple[float, float] = (1.5, 5.0)
    light_gradient: float = 0.8         # max relative brightness change across the picture
    exposure: tuple[float, float] = (0.62, 1.35)
    gamma: tuple[float, float] = (0.8, 1.25)
    white_balance: float = 0.08
    contrast: tuple[float, float] = (0.8, 1.15)
    saturation: tuple[float, float] = (0.7, 1.2)
    p_gray: float = 0.04
    p_blur: float = 0.5
    blur_sigma: tuple[float, float] = (0.3, 1.8)
    p_motion: float = 0.15
    motion_len: tuple[int, int] = (3, 8)
    p_lowres: float = 0.4
    lowres: tuple[float, float] = (0.35, 0.8)
    noise: tuple[float, float] = (0.004, 0.04)
    p_jpeg_mid: float = 0.5
    jpeg_mid: tuple[int, int] = (25, 85)
    jpeg: tuple[int, int] = (70, 95)

    def to_json(self) -> dict:
        return asdict(self)


def _u(rng: np.random.Generator, r: tuple[float, float]) -> float:
    return float(rng.uniform(r[0], r[1]))


def expression_shape(lm: np.ndarray, rng: np.random.Generator, strength: float) -> np.ndarray:
    up, iod = face_frame(lm)
    side = np.array([up[1], -up[0]])
    d = np.zeros_like(lm)
    smile = rng.uniform(-0.35, 1.0) * strength
    d[48] += (-side * 0.05 + up * 0.06) * smile * iod
    d[54] += (side * 0.05 + up * 0.06) * smile * iod
    d[[49, 59, 60]] += (-side * 0.02 + up * 0.03) * smile * iod
    d[[53, 55, 64]] += (side * 0.02 + up * 0.03) * smile * iod
    d[[1, 2, 3]] += -side * 0.015 * smile * iod       # cheeks widen a little
    d[[13, 14, 15]] += side * 0.015 * smile * iod
    opening = rng.uniform(0, 1) ** 2 * 0.07 * strength
    d[[56, 57, 58, 65, 66, 67]] -= up * opening * iod
    d[[55, 59]] -= up * 0.5 * opening * iod
    jaw_w = np.exp(-((np.arange(17) - 8) / 3.0) ** 2)
    d[:17] -= np.outer(jaw_w, up) * 0.6 * opening * iod
    brow = rng.uniform(-0.5, 1.0) * 0.06 * strength
    d[17:22] += up * brow * rng.uniform(0.6, 1.4) * iod
    d[22:27] += up * brow * rng.uniform(0.6, 1.4) * iod
    squint = rng.uniform(0, 1) * 0.025 * strength
    d[[37, 38, 43, 44]] -= up * squint * iod
    d[[40, 41, 46, 47]] += up * 0.5 * squint * iod
    return lm + d


def _rot(yaw: float, pitch: float, roll: float) -> np.ndarray:
    cy, sy = np.cos(yaw), np.sin(yaw)
    cp, sp = np.cos(pitch), np.sin(pitch)
    cr, sr = np.cos(roll), np.sin(roll)
    ry = np.array([[cy, 0, sy], [0, 1, 0], [-sy, 0, cy]])
    rx = np.array([[1, 0, 0], [0, cp, -sp], [0, sp, cp]])
    rz = np.array([[cr, -sr, 0], [sr, cr, 0], [0, 0, 1]])
    return rz @ rx @ ry


def pose_crop_homography(centre: np.ndarray, yaw: float, pitch: float, roll: float,
                         focal: float, window_centre: np.ndarray, scale: float,
                         out_size: tuple[int, int]) -> np.ndarray:
    """Canvas -> output picture: a planar head rotated in 3-D, seen by a pinhole camera,
    then cropped and scaled."""
    r = _rot(yaw, pitch, roll)
    k = np.diag([focal, focal, 1.0])
    m = k @ np.column_stack([r[:, 0], r[:, 1], [0.0, 0.0, focal]])
    t_in = np.array([[1, 0, -centre[0]], [0, 1, -centre[1]], [0, 0, 1]])
    t_back = np.array([[1, 0, centre[0]], [0, 1, centre[1]], [0, 0, 1]])
    pose = t_back @ m @ t_in
    pose /= pose[2, 2]
    w, h = out_size
    crop = np.array([[scale, 0, w / 2 - scale * window_centre[0]],
                     [0, scale, h / 2 - scale * window_centre[1]], [0, 0, 1]])
    return crop @ pose


def _background(rng: np.random.Generator, backgrounds: list[np.ndarray], shape: tuple[int, int],
                nz: Nuisances) -> np.ndarray:
    h, w = shape
    if not backgrounds or rng.random() < nz.p_plain_background:
        c0 = rng.uniform(0.15, 0.9, 3).astype(np.float32)
        c1 = np.clip(c0 * rng.uniform(0.6, 1.2), 0, 1).astype(np.float32)
        ramp = np.linspace(0, 1, h, dtype=np.float32)[:, None, None]
        bg = c0 * (1 - ramp) + c1 * ramp
        return np.broadcast_to(bg, (h, w, 3)).copy()
    src = backgrounds[int(rng.integers(len(backgrounds)))]
    sh, sw = src.shape[:2]
    frac = rng.uniform(0.35, 0.9)
    ch = int(min(sh, sw * h / w) * frac)
    cw = int(ch * w / h)
    y0 = int(rng.integers(0, sh - ch + 1))
    x0 = int(rng.integers(0, sw - cw + 1))
    bg = cv2.resize(src[y0:y0 + ch, x0:x0 + cw], (w, h), interpolation=cv2.INTER_AREA)
    if rng.random() < 0.5:
        bg = bg[:, ::-1]
    bg = cv2.GaussianBlur(bg, (0, 0), _u(rng, nz.background_blur))
    return np.clip(bg * rng.uniform(0.7, 1.15), 0, 1).astype(np.float32)


def render_picture(ident: Identity, mesh: imaging.MeshWarper, rng: np.random.Generator,
                   backgrounds: list[np.ndarray], nz: Nuisances) -> tuple[np.ndarray, int]:
    """One photo (uint8 RGB) of ``ident`` and the JPEG quality to store it with."""
    # 1. expression
    lm2 = expression_shape(ident.lm, rng, nz.expression)
    mx, my = mesh.maps(control_points(ident.lm), control_points(lm2))
    img = cv2.remap(ident.image, mx, my, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    # 2. background
    if ident.swap_background and rng.random() < nz.p_background:
        alpha = cv2.remap(ident.matte, mx, my, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
        bg = _background(rng, backgrounds, img.shape[:2], nz)
        if ident.gray:
            bg = imaging.to_gray3(bg)
        img = alpha[..., None] * img + (1 - alpha[..., None]) * bg
    # 3. pose, crop, scale
    up, iod = face_frame(lm2)
    centre = five_points(lm2).mean(0)
    out_w = int(rng.integers(nz.out_width[0], nz.out_width[1] + 1))
    out_h = int(round(out_w * _u(rng, nz.aspect)))
    window = _u(rng, nz.window)
    scale = out_w / window
    wc = centre - up * 0.25 * iod + rng.uniform(-nz.shift, nz.shift, 2) * window
    hmat = pose_crop_homography(
        centre, np.radians(rng.uniform(-nz.yaw_deg, nz.yaw_deg)),
        np.radians(rng.uniform(-nz.pitch_deg, nz.pitch_deg)),
        np.radians(rng.uniform(-nz.roll_deg, nz.roll_deg)), 3.0 * window, wc, scale, (out_w, out_h))
    if scale < 0.9:
        img = cv2.GaussianBlur(img, (0, 0), 0.5 * np.sqrt(1 / scale ** 2 - 1))
    out = cv2.warpPerspective(img, hmat, (out_w, out_h), flags=cv2.INTER_LINEAR,
                              borderMode=cv2.BORDER_REPLICATE)
    # 4. illumination and colour
    h, w = out.shape[:2]
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    xx = xx / w * 2 - 1
    yy = yy / h * 2 - 1
    phi = rng.uniform(0, 2 * np.pi)
    proj = xx * np.cos(phi) + yy * np.sin(phi)
    a = rng.uniform(0, nz.light_gradient)
    gain = 1 + a * (np.tanh(proj * rng.uniform(0.8, 3.0)) if rng.random() < 0.5 else proj)
    out = out * gain[..., None] * _u(rng, nz.exposure)
    if not ident.gray:
        out = out * (1 + rng.uniform(-nz.white_balance, nz.white_balance, 3)).astype(np.float32)
    out = np.clip(out, 0, 1) ** _u(rng, nz.gamma)
    m = out.mean()
    out = (out - m) * _u(rng, nz.contrast) + m
    g = out.mean(axis=2, keepdims=True)
    sat = 0.0 if (ident.gray or rng.random() < nz.p_gray) else _u(rng, nz.saturation)
    out = np.clip(g + (out - g) * sat, 0, 1).astype(np.float32)
    # 5. optics
    if rng.random() < nz.p_blur:
        out = cv2.GaussianBlur(out, (0, 0), _u(rng, nz.blur_sigma))
    if rng.random() < nz.p_motion:
        n = int(rng.integers(nz.motion_len[0], nz.motion_len[1] + 1))
        k = np.zeros((n, n), np.float32)
        k[n // 2, :] = 1.0 / n
        rot = cv2.getRotationMatrix2D(((n - 1) / 2, (n - 1) / 2), float(rng.uniform(0, 180)), 1.0)
        k = cv2.warpAffine(k, rot, (n, n))
        out = cv2.filter2D(out, -1, k / max(k.sum(), 1e-6), borderType=cv2.BORDER_REFLECT)
    if rng.random() < nz.p_lowres:
        f = _u(rng, nz.lowres)
        small = cv2.resize(out, (max(8, int(w * f)), max(8, int(h * f))), interpolation=cv2.INTER_AREA)
        out = cv2.resize(small, (w, h), interpolation=cv2.INTER_LINEAR)
    # 6. sensor noise (signal-dependent luminance noise + weaker chroma noise)
    sigma = _u(rng, nz.noise)
    lum = rng.standard_normal((h, w, 1), dtype=np.float32)
    chroma = rng.standard_normal((h, w, 3), dtype=np.float32)
    scale_map = sigma * (0.5 + np.sqrt(np.clip(out, 0, 1)))
    noise = (lum * 0.8 + (0 if ident.gray else 0.4) * chroma) * scale_map
    out = np.clip(out + noise, 0, 1)
    u8 = (out * 255 + 0.5).astype(np.uint8)
    # 7. an earlier JPEG generation (re-shared photo)
    if rng.random() < nz.p_jpeg_mid:
        ok, buf = cv2.imencode(".jpg", u8[..., ::-1], [cv2.IMWRITE_JPEG_QUALITY,
                                                       int(rng.integers(nz.jpeg_mid[0], nz.jpeg_mid[1] + 1))])
        u8 = cv2.imdecode(buf, cv2.IMREAD_COLOR)[..., ::-1]
    quality = int(rng.integers(nz.jpeg[0], nz.jpeg[1] + 1))
    return np.ascontiguousarray(u8), quality
