"""Part-swap composite identities built from real base faces.

An identity is a *recipe*: which base supplies the canvas (hair, head outline, ears, neck,
clothes and the person matte), the face skin, the eyes with brows, the nose and the mouth,
plus identity-specific landmark edits (caricature strength, eye spacing and size, brow
height, nose length and width, mouth width and height, jaw width, chin length). Composition
warps every donor onto the recipe's target landmark shape with a piecewise-affine mesh,
matches the part's tone to the face it lands on, and blends it with multi-band (Laplacian)
blending and wide feathered masks, so there are no visible seams around the eyes. Hair is
never recoloured and the background is never swapped here (no halo): backgrounds change per
picture in :mod:`.render`, through the canvas base's person matte.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import cv2
import numpy as np
from scipy.spatial import Delaunay

from . import imaging
from .faces import CANVAS_H, CANVAS_W, AlignedFace, align_to_canvas, detect_landmarks
from .sources import BaseFace, Photo

JAW = np.arange(0, 17)
BROWS = np.arange(17, 27)
NOSE = np.arange(27, 36)
EYES = np.arange(36, 48)
MOUTH = np.arange(48, 68)
PART_INDEX = {"eyes": np.concatenate([BROWS, EYES]), "nose": NOSE, "mouth": MOUTH}


# --------------------------------------------------------------------------------------
# control points and the mesh
# --------------------------------------------------------------------------------------


def face_frame(lm: np.ndarray) -> tuple[np.ndarray, float]:
    """A face's up direction (unit vector, mouth to eyes) and inter-ocular distance, from its
    68 landmarks."""
    eyes = (lm[36:42].mean(0) + lm[42:48].mean(0)) / 2
    mouth = lm[48:68].mean(0)
    up = eyes - mouth
    up /= np.linalg.norm(up) + 1e-9
    iod = float(np.linalg.norm(lm[42:48].mean(0) - lm[36:42].mean(0)))
    return up, iod


_BORDER = np.array([[x, y] for y in (-2.0, CANVAS_H / 3, 2 * CANVAS_H / 3, CANVAS_H + 1.0)
                    for x in (-2.0, CANVAS_W / 3, 2 * CANVAS_W / 3, CANVAS_W + 1.0)
                    if y in (-2.0, CANVAS_H + 1.0) or x in (-2.0, CANVAS_W + 1.0)])


def control_points(lm: np.ndarray) -> np.ndarray:
    """68 landmarks + forehead/crown points derived from them + fixed canvas border points."""
    up, iod = face_frame(lm)
    brow = lm[[17, 19, 21, 22, 24, 26]]
    forehead = brow + up * 0.75 * iod
    centre = lm[BROWS].mean(0)
    crown = centre + up * 1.7 * iod
    side = np.array([up[1], -up[0]])
    temples = np.stack([lm[0] + up * 0.9 * iod - side * 0.25 * iod,
                        lm[16] + up * 0.9 * iod + side * 0.25 * iod])
    neck = lm[8] - up * 0.7 * iod
    return np.vstack([lm, forehead, crown[None], temples, neck[None], _BORDER])


def build_mesh(reference_lm: np.ndarray) -> imaging.MeshWarper:
    pts = control_points(reference_lm)
    tri = np.sort(Delaunay(pts).simplices, axis=1)
    tri = tri[np.lexsort(tri.T[::-1])]
    mesh = imaging.MeshWarper(tri, (CANVAS_H, CANVAS_W))
    mesh.ref_area = _signed_areas(pts, tri)
    return mesh


def _signed_areas(pts: np.ndarray, tri: np.ndarray) -> np.ndarray:
    a, b, c = pts[tri[:, 0]], pts[tri[:, 1]], pts[tri[:, 2]]
    return 0.5 * ((b[:, 0] - a[:, 0]) * (c[:, 1] - a[:, 1]) - (b[:, 1] - a[:, 1]) * (c[:, 0] - a[:, 0]))


def folds(mesh: imaging.MeshWarper, lm: np.ndarray) -> int:
    """Number of mesh triangles flipped or collapsed (below 15 % of the reference area)."""
    area = _signed_areas(control_points(lm), mesh.tris)
    return int(np.sum(area / mesh.ref_area < 0.15))


# --------------------------------------------------------------------------------------
# base faces
# --------------------------------------------------------------------------------------


@dataclass
class Base:
    spec: BaseFace
    image: np.ndarray          # canvas float32 RGB
    lm: np.ndarray             # 68x2 in the canvas
    matte: np.ndarray | None   # person alpha (canvas bases only)
    source: dict

    @property
    def key(self) -> str:
        return self.spec.key


def person_matte(img: np.ndarray, lm: np.ndarray) -> np.ndarray:
    """Soft person (head, hair, neck, shoulders) matte: GrabCut seeded by the landmarks,
    run at half resolution, refined by a guided filter at full resolution."""
    h, w = img.shape[:2]
    up, iod = face_frame(lm)
    side = np.array([up[1], -up[0]])
    gc = np.full((h, w), cv2.GC_PR_BGD, np.uint8)
    centre = lm[BROWS].mean(0) + up * 0.2 * iod
    jaw_half = np.linalg.norm(lm[16] - lm[0]) / 2
    ang = float(np.degrees(np.arctan2(side[1], side[0])))

    def ellipse(val: int, sx: float, sy: float, c=centre) -> None:
        cv2.ellipse(gc, (int(c[0]), int(c[1])), (int(sx), int(sy)), ang, 0, 360, int(val), -1)

    chin = lm[8]
    # definite background: far outside the head, above the shoulders
    bgd = np.zeros((h, w), np.uint8)
    yy = np.arange(h)[:, None]
    shoulder_y = chin[1] + 0.35 * iod
    bgd[(yy < shoulder_y).repeat(w, 1)] = 1
    far = np.zeros((h, w), np.uint8)
    cv2.ellipse(far, (int(centre[0]), int(centre[1])), (int(jaw_half * 1.9), int(2.4 * iod)), ang,
                0, 360, 1, -1)
    gc[(bgd == 1) & (far == 0)] = cv2.GC_BGD
    ellipse(cv2.GC_PR_FGD, jaw_half * 1.15, 1.75 * iod)
    body = np.array([lm[4] - up * 0.3 * iod, lm[12] - up * 0.3 * iod,
                     [min(w - 1, chin[0] + 2.3 * iod), h - 1], [max(0, chin[0] - 2.3 * iod), h - 1]])
    cv2.fillConvexPoly(gc, np.round(body).astype(np.int32), cv2.GC_PR_FGD)
    face = np.vstack([lm[JAW], lm[BROWS][::-1] + up * 0.35 * iod])
    face = imaging.scale_about(face, 0.92)
    cv2.fillPoly(gc, [np.round(face).astype(np.int32)], cv2.GC_FGD)
    neck = np.array([lm[6], lm[10], lm[10] - up * 0.8 * iod, lm[6] - up * 0.8 * iod])
    cv2.fillConvexPoly(gc, np.round(neck).astype(np.int32), cv2.GC_FGD)

    small = cv2.resize((img * 255).astype(np.uint8), (w // 2, h // 2), interpolation=cv2.INTER_AREA)
    gcs = cv2.resize(gc, (w // 2, h // 2), interpolation=cv2.INTER_NEAREST)
    bgm = np.zeros((1, 65), np.float64)
    fgm = np.zeros((1, 65), np.float64)
    cv2.setRNGSeed(12345)
    cv2.grabCut(cv2.cvtColor(small, cv2.COLOR_RGB2BGR), gcs, None, bgm, fgm, 4, cv2.GC_INIT_WITH_MASK)
    hard = ((gcs == cv2.GC_FGD) | (gcs == cv2.GC_PR_FGD)).astype(np.uint8)
    # keep the component that holds the face; fill holes
    n, lab = cv2.connectedComponents(hard)
    if n > 2:
        c = lab[int(lm[30][1]) // 2, int(lm[30][0]) // 2]
        if c > 0:
            hard = (lab == c).astype(np.uint8)
    hard = cv2.morphologyEx(hard, cv2.MORPH_CLOSE, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (7, 7)))
    soft = cv2.resize(hard.astype(np.float32), (w, h), interpolation=cv2.INTER_LINEAR)
    soft = cv2.erode(soft, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (3, 3)))
    gray = cv2.cvtColor(img.astype(np.float32), cv2.COLOR_RGB2GRAY)
    return imaging.guided_filter(gray, soft, radius=4, eps=2e-3).astype(np.float32)


_PREPARED: dict[tuple, Base] = {}   # in-process memo: (spec, photo sha256) -> Base


def prepare_bases(specs: list[BaseFace], photos: list[Photo]) -> list[Base]:
    """Detect, align and (for canvas bases) matte every base face (memoised per process;
    the result is a pure function of the spec and the photo's bytes)."""
    out = []
    dets_cache: dict = {}
    for spec, photo in zip(specs, photos):
        memo = (spec, photo.source.get("sha256"))
        if memo in _PREPARED:
            out.append(_PREPARED[memo])
            continue
        lm = detect_landmarks(photo.image, spec.pick, spec.aligned_crop, spec.key, dets_cache)
        al: AlignedFace = align_to_canvas(photo.image, lm)
        img = imaging.to_gray3(al.image) if spec.gray else al.image
        # a matte is only needed where pictures put the person on new backgrounds
        matte = (person_matte(img, al.lm) if "canvas" in spec.roles and spec.clean_background
                 else None)
        base = Base(spec, img.astype(np.float32), al.lm, matte, photo.source)
        if memo[1]:
            _PREPARED[memo] = base
        out.append(base)
    return out


# --------------------------------------------------------------------------------------
# recipes
# --------------------------------------------------------------------------------------

SHAPE_RANGES = {            # identity shape edits, in interocular units (or scale factors)
    "caricature": (0.0, 0.35),
    "eye_dx": (-0.05, 0.05),
    "eye_scale": (0.9, 1.15),
    "brow_dy": (-0.07, 0.07),
    "nose_len": (-0.08, 0.08),
    "nose_w": (0.85, 1.2),
    "mouth_w": (0.87, 1.15),
    "mouth_dy": (-0.07, 0.07),
    "jaw_w": (0.92, 1.08),
    "chin_dy": (-0.08, 0.1),
}


@dataclass
class Recipe:
    canvas: str
    face: str
    eyes: str
    nose: str
    mouth: str
    jaw_from: str                      # "canvas" or "face"
    shape: dict[str, float] = field(default_factory=dict)

    def donors(self) -> dict[str, str]:
        return {"canvas": self.canvas, "face": self.face, "eyes": self.eyes, "nose": self.nose,
                "mouth": self.mouth}

    def to_json(self) -> dict:
        d = asdict(self)
        d["shape"] = {k: round(float(v), 4) for k, v in self.shape.items()}
        return d


def sample_recipe(rng: np.random.Generator, bases: list[Base], canvas: Base,
                  p_same: float = 0.15) -> Recipe:
    donors = {"canvas": canvas.key}
    for role in ("face", "eyes", "nose", "mouth"):
        if role in canvas.spec.locked:
            donors[role] = canvas.key
            continue
        pool = [b for b in bases if role in b.spec.roles
                and (canvas.spec.gray or not b.spec.gray or role in ("face", "nose"))]
        others = [b for b in pool if b.key != canvas.key]
        if canvas in pool and (not others or rng.random() < p_same):
            donors[role] = canvas.key
        else:
            donors[role] = others[int(rng.integers(len(others)))].key
    shape = {k: float(rng.uniform(lo, hi)) for k, (lo, hi) in SHAPE_RANGES.items()}
    jaw_from = "face" if rng.random() < 0.5 else "canvas"
    return Recipe(jaw_from=jaw_from, shape=shape, **donors)


def target_shape(recipe: Recipe, by_key: dict[str, Base], mean_lm: np.ndarray) -> np.ndarray:
    t = by_key[recipe.canvas].lm.copy()
    if recipe.jaw_from == "face":
        t[JAW] = by_key[recipe.face].lm[JAW]
    for role, idx in PART_INDEX.items():
        t[idx] = by_key[getattr(recipe, role)].lm[idx]
    s = recipe.shape
    # caricature: exaggerate what differs from the average face
    t = t + s["caricature"] * (t - mean_lm)
    up, iod = face_frame(t)
    side = np.array([up[1], -up[0]])          # image-right direction
    mid = (t[36:42].mean(0) + t[42:48].mean(0)) / 2
    right_eye = np.r_[np.arange(22, 27), np.arange(42, 48)]
    left_eye = np.r_[np.arange(17, 22), np.arange(36, 42)]
    t[right_eye] += side * s["eye_dx"] * iod
    t[left_eye] -= side * s["eye_dx"] * iod
    for eye in (np.arange(36, 42), np.arange(42, 48)):
        t[eye] = imaging.scale_about(t[eye], s["eye_scale"])
    t[BROWS] += up * s["brow_dy"] * iod
    t[[30, 31, 32, 33, 34, 35]] -= up * s["nose_len"] * iod
    t[29] -= up * 0.5 * s["nose_len"] * iod
    t[31:36] = _scale_along(t[31:36], side, s["nose_w"], t[33])
    t[MOUTH] = _scale_along(t[MOUTH], side, s["mouth_w"], t[MOUTH].mean(0))
    t[MOUTH] -= up * s["mouth_dy"] * iod
    t[JAW] = _scale_along(t[JAW], side, s["jaw_w"], mid)
    w = np.exp(-((np.arange(17) - 8) / 2.5) ** 2)
    t[JAW] -= np.outer(w, up) * s["chin_dy"] * iod
    return t


def _scale_along(pts: np.ndarray, axis: np.ndarray, factor: float, centre: np.ndarray) -> np.ndarray:
    d = pts - centre
    along = d @ axis
    return pts + np.outer(along * (factor - 1), axis)


# --------------------------------------------------------------------------------------
# composition
# --------------------------------------------------------------------------------------


@dataclass
class Identity:
    image: np.ndarray          # canvas float32 RGB
    lm: np.ndarray             # 68x2
    matte: np.ndarray          # person alpha
    gray: bool
    swap_background: bool      # the matte is clean enough to put the person on new backgrounds


def part_masks(t: np.ndarray) -> dict[str, np.ndarray]:
    up, iod = face_frame(t)
    shape = (CANVAS_H, CANVAS_W)
    face_poly = np.vstack([t[JAW], t[BROWS][::-1] + up * 0.12 * iod])
    face = imaging.polygon_mask(shape, imaging.scale_about(face_poly, 0.9), hull=False)
    eyes = np.zeros(shape, np.float32)
    for idx in (np.r_[17:22, 36:42], np.r_[22:27, 42:48]):
        pts = imaging.scale_about(t[idx], (1.3, 1.45))
        eyes = np.maximum(eyes, imaging.polygon_mask(shape, pts))
    nose_pts = np.vstack([t[27:36], t[[31, 35]] - up * 0.08 * iod])
    nose = imaging.polygon_mask(shape, imaging.scale_about(nose_pts, (1.45, 1.1)))
    mouth = imaging.polygon_mask(shape, imaging.scale_about(t[48:60], (1.3, 1.6)))
    return {
        "face": imaging.feather(face, 0.12 * iod),
        "eyes": imaging.feather(eyes, 0.08 * iod),
        "nose": imaging.feather(nose, 0.08 * iod),
        "mouth": imaging.feather(mouth, 0.08 * iod),
        "face_core": imaging.polygon_mask(shape, imaging.scale_about(face_poly, 0.75), hull=False),
    }


def _paste(comp: np.ndarray, part: np.ndarray, mask: np.ndarray, tone_mask: np.ndarray,
           levels: int) -> np.ndarray:
    """Tone-match ``part`` to ``comp`` and multi-band blend it in, inside the mask's box."""
    ys, xs = np.nonzero(mask > 0.002)
    if len(ys) == 0:
        return comp
    step = 1 << levels
    pad = 2 * step
    y0, x0 = max(0, ys.min() - pad) // step * step, max(0, xs.min() - pad) // step * step
    y1 = min(comp.shape[0], -(-(ys.max() + pad) // step) * step)
    x1 = min(comp.shape[1], -(-(xs.max() + pad) // step) * step)
    win = (slice(y0, y1), slice(x0, x1))
    p = imaging.match_tone(part[win], comp[win], np.asarray(tone_mask, np.float32)[win])
    out = comp.copy()
    out[win] = imaging.laplacian_blend(comp[win], p, mask[win], levels=levels)
    return out


def compose(recipe: Recipe, by_key: dict[str, Base], mesh: imaging.MeshWarper,
            mean_lm: np.ndarray) -> Identity:
    canvas = by_key[recipe.canvas]
    t = target_shape(recipe, by_key, mean_lm)
    for _ in range(4):  # a folded mesh tears the picture: pull the shape towards the canvas
        if folds(mesh, t) == 0:
            break
        t = canvas.lm + 0.6 * (t - canvas.lm)
    tc = control_points(t)
    mx, my = mesh.maps(control_points(canvas.lm), tc)
    comp = cv2.remap(canvas.image, mx, my, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    matte = (cv2.remap(canvas.matte, mx, my, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
             if canvas.matte is not None else np.ones(comp.shape[:2], np.float32))
    masks = part_masks(t)
    warped: dict[str, np.ndarray] = {canvas.key: comp}

    def donor_img(key: str) -> np.ndarray:
        if key not in warped:
            b = by_key[key]
            warped[key] = mesh.warp(b.image, control_points(b.lm), tc, border=cv2.BORDER_REPLICATE)
        return warped[key]

    if recipe.face != recipe.canvas:
        comp = _paste(comp, donor_img(recipe.face), masks["face"], masks["face_core"], levels=5)
    under = recipe.face  # whose pixels are now inside the face
    for role in ("nose", "eyes", "mouth"):
        key = getattr(recipe, role)
        if key == under:
            continue
        comp = _paste(comp, donor_img(key), masks[role], masks[role] > 0.5, levels=4)
    gray = canvas.spec.gray
    if gray:
        comp = imaging.to_gray3(comp)
    return Identity(comp.astype(np.float32), t, matte.astype(np.float32), gray,
                    canvas.spec.clean_background)
