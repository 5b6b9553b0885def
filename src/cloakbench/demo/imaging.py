"""Image operations of the demo generator: mesh warps, multi-band blending, tone matching,
guided-filter matting. Images are float32 HxWx3 RGB in [0, 1] unless said otherwise."""

from __future__ import annotations

import cv2
import numpy as np


# --------------------------------------------------------------------------------------
# geometry
# --------------------------------------------------------------------------------------


def similarity(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """Least-squares similarity transform (2x3) mapping ``src`` points onto ``dst`` (Umeyama)."""
    src = np.asarray(src, np.float64)
    dst = np.asarray(dst, np.float64)
    ms, md = src.mean(0), dst.mean(0)
    s0, d0 = src - ms, dst - md
    cov = d0.T @ s0 / len(src)
    u, sig, vt = np.linalg.svd(cov)
    d = np.ones(2)
    if np.linalg.det(u) * np.linalg.det(vt) < 0:
        d[1] = -1
    r = u @ np.diag(d) @ vt
    var = (s0 ** 2).sum() / len(src)
    scale = (sig * d).sum() / var
    t = md - scale * r @ ms
    return np.hstack([scale * r, t[:, None]])


def apply_affine(m: np.ndarray, pts: np.ndarray) -> np.ndarray:
    return pts @ m[:, :2].T + m[:, 2]


def apply_homography(h: np.ndarray, pts: np.ndarray) -> np.ndarray:
    p = np.hstack([pts, np.ones((len(pts), 1))]) @ h.T
    return p[:, :2] / p[:, 2:3]


class MeshWarper:
    """Piecewise-affine warps over a fixed triangulation of control points.

    ``warp(img, src, dst)`` returns the image whose content at ``src`` points has moved to
    ``dst`` points (backward mapping, one ``cv2.remap``)."""

    def __init__(self, triangles: np.ndarray, size: tuple[int, int], step: int = 2):
        self.tris = np.asarray(triangles, np.int64)
        self.h, self.w = size
        # the maps are affine inside each triangle: compute them on a grid ``step`` times
        # coarser and interpolate (4x less work, sub-pixel differences at triangle edges)
        self.step = step
        self.hs, self.ws = -(-self.h // step), -(-self.w // step)
        yy, xx = np.mgrid[0:self.hs, 0:self.ws].astype(np.float32)
        off = (step - 1) / 2.0
        self._xx = xx * step + off
        self._yy = yy * step + off

    def maps(self, src: np.ndarray, dst: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        st = self.step
        off = (st - 1) / 2.0
        idx = np.full((self.hs, self.ws), -1, np.int32)
        dpts = np.round((np.asarray(dst) - off) / st * 16).astype(np.int32)
        for t, tri in enumerate(self.tris):
            cv2.fillConvexPoly(idx, dpts[tri], t, lineType=cv2.LINE_8, shift=4)
        d = np.asarray(dst, np.float64)[self.tris]           # T,3,2
        s = np.asarray(src, np.float64)[self.tris]
        dh = np.concatenate([d, np.ones((len(d), 3, 1))], axis=2)  # T,3,3
        det = np.linalg.det(dh)
        bad = np.abs(det) < 1e-6
        dh[bad] = np.eye(3)
        coef = np.linalg.solve(dh, s)                          # T,3,2 : [x y 1] @ coef
        coef[bad] = np.array([[1, 0], [0, 1], [0, 0]], np.float64)
        coef = np.concatenate([coef, np.array([[[1, 0], [0, 1], [0, 0]]], np.float64)])
        c = coef.astype(np.float32)[idx]                       # -1 -> identity (last)
        mx = self._xx * c[..., 0, 0] + self._yy * c[..., 1, 0] + c[..., 2, 0]
        my = self._xx * c[..., 0, 1] + self._yy * c[..., 1, 1] + c[..., 2, 1]
        if st > 1:
            mx = cv2.resize(mx, (self.w, self.h), interpolation=cv2.INTER_LINEAR)
            my = cv2.resize(my, (self.w, self.h), interpolation=cv2.INTER_LINEAR)
        return mx, my

    def warp(self, img: np.ndarray, src: np.ndarray, dst: np.ndarray,
             border: int = cv2.BORDER_REFLECT101) -> np.ndarray:
        mx, my = self.maps(src, dst)
        return cv2.remap(img, mx, my, cv2.INTER_LINEAR, borderMode=border)


# --------------------------------------------------------------------------------------
# blending and tone
# --------------------------------------------------------------------------------------


def laplacian_blend(a: np.ndarray, b: np.ndarray, mask: np.ndarray, levels: int = 5) -> np.ndarray:
    """Multi-band blend: ``b`` where ``mask`` is 1, ``a`` where it is 0 (no visible seam)."""
    m = mask.astype(np.float32)
    if m.ndim == 2:
        m = m[..., None]
    ga, gb, gm = [a.astype(np.float32)], [b.astype(np.float32)], [m]
    for _ in range(levels):
        ga.append(cv2.pyrDown(ga[-1]))
        gb.append(cv2.pyrDown(gb[-1]))
        gm.append(cv2.pyrDown(gm[-1]))
        if gm[-1].ndim == 2:
            gm[-1] = gm[-1][..., None]
    out = ga[-1] * (1 - gm[-1]) + gb[-1] * gm[-1]
    for lvl in range(levels - 1, -1, -1):
        size = (ga[lvl].shape[1], ga[lvl].shape[0])
        la = ga[lvl] - cv2.pyrUp(ga[lvl + 1], dstsize=size)
        lb = gb[lvl] - cv2.pyrUp(gb[lvl + 1], dstsize=size)
        band = la * (1 - gm[lvl]) + lb * gm[lvl]
        out = cv2.pyrUp(out, dstsize=size) + band
    return np.clip(out, 0, 1)


def to_lab(img: np.ndarray) -> np.ndarray:
    return cv2.cvtColor(np.clip(img, 0, 1).astype(np.float32), cv2.COLOR_RGB2LAB)


def from_lab(lab: np.ndarray) -> np.ndarray:
    return np.clip(cv2.cvtColor(lab.astype(np.float32), cv2.COLOR_LAB2RGB), 0, 1)


def match_tone(src: np.ndarray, ref: np.ndarray, mask: np.ndarray,
               std_clip: tuple[float, float] = (0.7, 1.4)) -> np.ndarray:
    """Shift ``src``'s Lab mean/std inside ``mask`` to ``ref``'s inside the same mask."""
    w = mask.astype(np.float32)
    if w.sum() < 16:
        return src
    ls, lr = to_lab(src), to_lab(ref)
    wsum = w.sum()
    out = ls.copy()
    for ch in range(3):
        ms = (ls[..., ch] * w).sum() / wsum
        mr = (lr[..., ch] * w).sum() / wsum
        ss = np.sqrt(((ls[..., ch] - ms) ** 2 * w).sum() / wsum) + 1e-3
        sr = np.sqrt(((lr[..., ch] - mr) ** 2 * w).sum() / wsum) + 1e-3
        k = float(np.clip(sr / ss, *std_clip))
        out[..., ch] = (ls[..., ch] - ms) * k + mr
    return from_lab(out)


def to_gray3(img: np.ndarray) -> np.ndarray:
    g = cv2.cvtColor(img.astype(np.float32), cv2.COLOR_RGB2GRAY)
    return np.repeat(g[..., None], 3, axis=2)


def polygon_mask(shape: tuple[int, int], pts: np.ndarray, hull: bool = True) -> np.ndarray:
    m = np.zeros(shape, np.uint8)
    p = np.round(np.asarray(pts) * 16).astype(np.int32)
    if hull:
        p = cv2.convexHull(p)
    cv2.fillPoly(m, [p.reshape(-1, 2)], 255, lineType=cv2.LINE_AA, shift=4)
    return m.astype(np.float32) / 255.0


def feather(mask: np.ndarray, sigma: float) -> np.ndarray:
    if sigma <= 0:
        return mask
    return cv2.GaussianBlur(mask, (0, 0), sigma)


def scale_about(pts: np.ndarray, factor: float | tuple[float, float],
                center: np.ndarray | None = None) -> np.ndarray:
    c = pts.mean(0) if center is None else center
    return (pts - c) * np.asarray(factor, np.float64) + c


def guided_filter(guide: np.ndarray, src: np.ndarray, radius: int, eps: float) -> np.ndarray:
    """He et al.'s guided filter with a gray guide: edge-aware smoothing of a matte."""
    i = guide.astype(np.float32)
    p = src.astype(np.float32)
    k = (2 * radius + 1, 2 * radius + 1)
    box = lambda x: cv2.boxFilter(x, -1, k, borderType=cv2.BORDER_REFLECT)  # noqa: E731
    mi, mp = box(i), box(p)
    cov = box(i * p) - mi * mp
    var = box(i * i) - mi * mi
    a = cov / (var + eps)
    b = mp - a * mi
    return np.clip(box(a) * i + box(b), 0, 1)
