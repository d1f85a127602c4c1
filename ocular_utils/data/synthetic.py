"""The embedded default dataset: synthetic periocular images written in VISOB's exact layout.

Identity lives in stable traits (iris texture and colour, eye and eyelid shape, eyebrow shape and
thickness, skin tone and texture, marks); every image adds nuisance (lighting, phone, session,
pose, gaze, eyelid opening, left/right eye). Images are deterministic functions of
``(seed, subject, visit, phone, light, image, eye)`` so generation is reproducible and parallel.

Synthetic subject groups (:func:`synthetic_groups`: skin-tone group and eyelid opening, read off
the traits that draw the images) go to ``subject_attributes.csv`` at the root, so the "who pays"
chapter has groups to compare; a synthetic group effect says nothing about people.

Layout (as VISOB is distributed, folder names deliberately inconsistent)::

    <root>/<phone>_<light>_short/<phone>_<light>_short/{enrollments_rgb,verifications_rgb}/
        <subject>_<image>_<l|r>_c.png
"""
from __future__ import annotations

import hashlib
import json
import multiprocessing
import os
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image
from scipy.ndimage import gaussian_filter

from ..core.atomic import atomic_write_bytes, atomic_write_json
from .attributes import ATTRIBUTE_FILE

PHONES = ("iphone", "samsung", "oppo")
LIGHTS = ("office", "dim_light", "day_light")
VISIT_FOLDERS = {1: "enrollments_rgb", 2: "verifications_rgb"}

# Folder names as they appear in distributed copies of VISOB: not one consistent pattern.
FOLDER_NAMES = {
    ("iphone", "office"): "iphone_office_short",
    ("iphone", "dim_light"): "iphone_dim_light_short",
    ("iphone", "day_light"): "iphone_day_light_short",
    ("samsung", "office"): "samsung_office_light_short",
    ("samsung", "dim_light"): "samsung_dim_light_short",
    ("samsung", "day_light"): "samsung_daylight_short",
    ("oppo", "office"): "oppo_office_light_short",
    ("oppo", "dim_light"): "oppo_dim_short",
    ("oppo", "day_light"): "oppo_day_light_short",
}

# Phone characteristics: colour cast (RGB gains), sensor noise, optical blur, effective resolution.
PHONE_MODELS = {
    "iphone": dict(cast=(1.03, 1.00, 0.95), noise=0.010, blur=0.5, resolution=1.00, gamma=1.00),
    "samsung": dict(cast=(0.96, 1.02, 1.06), noise=0.018, blur=0.8, resolution=0.75, gamma=0.92),
    "oppo": dict(cast=(1.07, 0.98, 0.90), noise=0.026, blur=1.1, resolution=0.55, gamma=1.08),
}

# Lighting: brightness gain, colour temperature, strength of a directional gradient, pupil size,
# noise amplification (phones raise gain in the dark).
LIGHT_MODELS = {
    "office": dict(gain=0.90, temperature=(1.00, 1.00, 0.97), gradient=0.12, pupil=0.38, noise=1.0),
    "dim_light": dict(gain=0.45, temperature=(1.12, 0.96, 0.78), gradient=0.06, pupil=0.52, noise=2.6),
    "day_light": dict(gain=1.18, temperature=(0.94, 1.00, 1.10), gradient=0.35, pupil=0.26, noise=0.7),
}

IRIS_COLOURS = np.array(
    [
        (0.30, 0.17, 0.08),  # dark brown
        (0.45, 0.28, 0.12),  # brown
        (0.50, 0.42, 0.20),  # hazel
        (0.30, 0.45, 0.30),  # green
        (0.35, 0.50, 0.65),  # blue
        (0.45, 0.50, 0.55),  # grey
    ]
)
SKIN_TONES = np.array(
    [
        (0.95, 0.80, 0.70),
        (0.88, 0.70, 0.58),
        (0.78, 0.58, 0.44),
        (0.66, 0.46, 0.33),
        (0.50, 0.34, 0.23),
        (0.36, 0.24, 0.16),
    ]
)


@dataclass(frozen=True)
class SyntheticConfig:
    """Parameters of the synthetic VISOB-layout dataset."""

    subjects: int = 100
    seed: int = 0
    width: int = 120
    height: int = 80
    images_per_visit: int = 1
    phones: tuple[str, ...] = PHONES
    lights: tuple[str, ...] = LIGHTS
    difficulty: float = 1.0
    workers: int = field(default=0, compare=False)

    def __post_init__(self):
        if self.subjects < 2:
            raise ValueError(f"subjects must be at least 2 (got {self.subjects})")
        if self.images_per_visit < 1:
            raise ValueError(f"images_per_visit must be at least 1 (got {self.images_per_visit})")
        if self.width < 16 or self.height < 16:
            raise ValueError(f"image size {self.width}x{self.height} is too small (at least 16x16)")
        for phone in self.phones:
            if phone not in PHONE_MODELS:
                raise ValueError(f"unknown phone {phone!r}; expected one of {sorted(PHONE_MODELS)}")
        for light in self.lights:
            if light not in LIGHT_MODELS:
                raise ValueError(f"unknown lighting {light!r}; expected one of {sorted(LIGHT_MODELS)}")
        if not 0 <= self.difficulty <= 3:
            raise ValueError(f"difficulty must be in [0, 3] (got {self.difficulty})")

    def fingerprint(self) -> str:
        """A short hash of every parameter that changes the images."""
        params = {k: v for k, v in asdict(self).items() if k != "workers"}
        return hashlib.sha256(json.dumps(params, sort_keys=True).encode()).hexdigest()[:16]


def subject_ids(config: SyntheticConfig) -> list[str]:
    """Four-digit subject IDs, unique and non-contiguous like VISOB's."""
    rng = np.random.default_rng([config.seed, 7919])
    pool = rng.permutation(np.arange(1000, 10000))[: config.subjects]
    return [f"{int(s):04d}" for s in sorted(pool)]


def sample_traits(seed: int, subject: int) -> dict:
    """Stable identity traits of one subject (both eyes share most of them)."""
    rng = np.random.default_rng([seed, subject, 1])
    iris_base = IRIS_COLOURS[rng.integers(len(IRIS_COLOURS))] * rng.uniform(0.8, 1.2, 3)
    skin_index = int(rng.integers(len(SKIN_TONES)))
    skin_base = SKIN_TONES[skin_index] * rng.uniform(0.92, 1.08, 3)
    hair = np.clip(rng.uniform(0.04, 0.35) * np.array([1.0, 0.8, 0.6]) * rng.uniform(0.8, 1.2, 3), 0, 1)
    traits = {
        "skin": np.clip(skin_base, 0, 1),
        "skin_index": skin_index,
        "skin_waves": rng.normal(0, 1, (6, 4)),  # frequency x, frequency y, phase, amplitude
        "eye_width": rng.uniform(0.85, 1.2),
        "upper_lid": rng.uniform(0.32, 0.52),
        "lower_lid": rng.uniform(0.16, 0.32),
        "lid_power": rng.uniform(0.6, 1.4),
        "skew": rng.uniform(-0.3, 0.3),
        "tilt": rng.uniform(-0.18, 0.18),
        "crease": rng.uniform(0.08, 0.22),
        "crease_dark": rng.uniform(0.1, 0.45),
        "lash": rng.uniform(0.02, 0.08),
        "iris_radius": rng.uniform(0.27, 0.36),
        "iris_colour": np.clip(iris_base, 0, 1),
        "iris_harmonics": rng.normal(0, 1, (8, 2)),
        "iris_rings": rng.uniform(4, 14),
        "brow_height": rng.uniform(0.50, 0.70),
        "brow_arch": rng.uniform(0.05, 0.25),
        "brow_thickness": rng.uniform(0.08, 0.22),
        "brow_length": rng.uniform(1.0, 1.45),
        "brow_tilt": rng.uniform(-0.2, 0.2),
        "brow_shift": rng.uniform(-0.25, 0.25),
        "hair": hair,
        "marks": rng.uniform([-1.4, -0.9, 0.025, 0.2], [1.4, 0.9, 0.07, 0.6], (rng.integers(0, 4), 4)),
        "sclera": np.clip(np.array([0.93, 0.90, 0.86]) * rng.uniform(0.9, 1.02, 3), 0, 1),
    }
    return traits


# Synthetic subject groups, read off traits that shape the images (labels of synthetic faces, not of people).
SKIN_GROUPS = ("lighter", "lighter", "medium", "medium", "darker", "darker")  # by index into SKIN_TONES
EYELID_SPLIT = 0.42  # upper-lid height (uniform in [0.32, 0.52]) below which the eye reads "narrow"


def synthetic_groups(config: SyntheticConfig) -> list[dict]:
    """Rows ``subject, attribute, value`` of the synthetic groups: skin-tone group and eyelid opening."""
    rows = []
    for index, subject in enumerate(subject_ids(config)):
        traits = sample_traits(config.seed, index)
        rows.append({"subject": subject, "attribute": "skin tone (synthetic)",
                     "value": SKIN_GROUPS[traits["skin_index"]]})
        rows.append({"subject": subject, "attribute": "eyelid opening (synthetic)",
                     "value": "narrow" if traits["upper_lid"] < EYELID_SPLIT else "wide"})
    return rows


def write_synthetic_groups(root: Path, config: SyntheticConfig) -> Path:
    """Write the synthetic groups as ``<root>/subject_attributes.csv`` (the generic attribute table)."""
    lines = ["subject,attribute,value"] + [f"{r['subject']},{r['attribute']},{r['value']}"
                                           for r in synthetic_groups(config)]
    return atomic_write_bytes(root / ATTRIBUTE_FILE, ("\n".join(lines) + "\n").encode())


def eye_traits(traits: dict, seed: int, subject: int, eye: str) -> dict:
    """The traits of one eye: the subject's traits with small left/right asymmetries."""
    rng = np.random.default_rng([seed, subject, 2, 0 if eye == "l" else 1])
    own = dict(traits)
    for key, spread in (("eye_width", 0.03), ("upper_lid", 0.03), ("brow_height", 0.03), ("brow_arch", 0.03)):
        own[key] = traits[key] + rng.normal(0, spread)
    own["iris_harmonics"] = traits["iris_harmonics"] + rng.normal(0, 0.6, traits["iris_harmonics"].shape)
    own["marks"] = rng.uniform([-1.4, -0.9, 0.025, 0.2], [1.4, 0.9, 0.07, 0.6], (rng.integers(0, 3), 4))
    return own


def sample_nuisance(seed: int, subject: int, visit: int, phone: str, light: str, image: int, eye: str,
                    difficulty: float) -> dict:
    """Per-image nuisance: pose, gaze, eyelid opening, visit-level appearance and capture noise."""
    key = [seed, subject, 3, visit, PHONES.index(phone), LIGHTS.index(light), image, 0 if eye == "l" else 1]
    rng = np.random.default_rng(key)
    visit_rng = np.random.default_rng([seed, subject, 4, visit])
    d = difficulty
    return {
        "rotation": rng.normal(0, 0.07 * d),
        "scale": float(np.exp(rng.normal(0, 0.07 * d))),
        "shift": rng.normal(0, 0.08 * d, 2),
        "gaze": rng.normal(0, [0.18 * d, 0.07 * d]),
        "opening": float(np.clip(rng.normal(0.9, 0.12 * d), 0.45, 1.1)),
        "visit_skin": 1 + visit_rng.normal(0, 0.04 * d),
        "visit_brow": 1 + visit_rng.normal(0, 0.10 * d),
        "visit_liner": max(0.0, visit_rng.normal(0.1, 0.2 * d)),
        "light_angle": rng.uniform(0, 2 * np.pi),
        "gain_jitter": float(np.exp(rng.normal(0, 0.12 * d))),
        "noise_seed": int(rng.integers(2**31)),
    }


def _smoothstep(edge: np.ndarray, width: float) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-edge / max(width, 1e-4)))


def render_eye(traits: dict, nuisance: dict, phone: str, light: str, eye: str, height: int, width: int,
               difficulty: float = 1.0) -> np.ndarray:
    """Render one periocular crop as an ``(height, width, 3)`` uint8 RGB array."""
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float64)
    x = (xs + 0.5) / width * 3.0 - 1.5
    y = (ys + 0.5) / height * 2.0 - 1.0
    # Pose: inverse similarity transform of the pixel grid; the right eye is the mirror image.
    c, s = np.cos(nuisance["rotation"]), np.sin(nuisance["rotation"])
    x0, y0 = x - nuisance["shift"][0], y - nuisance["shift"][1]
    x, y = (c * x0 + s * y0) / nuisance["scale"], (-s * x0 + c * y0) / nuisance["scale"]
    if eye == "r":
        x = -x
    edge = 3.0 / width  # anti-aliasing width in normalized units

    # Skin with identity-specific low-frequency texture.
    waves = traits["skin_waves"]
    texture = sum(0.035 * w[3] * np.sin(2.2 * w[0] * x + 2.2 * w[1] * y + 3 * w[2]) for w in waves)
    skin = traits["skin"] * nuisance["visit_skin"]
    image = skin[None, None, :] * (1 + texture)[..., None]

    # Eyebrow: an arched band above the eye, tapered at the ends, with hair strokes.
    bx = x - traits["brow_shift"]
    along = bx / traits["brow_length"]
    centre = -traits["brow_height"] - traits["brow_arch"] * (1 - along**2) + traits["brow_tilt"] * bx
    thickness = traits["brow_thickness"] * nuisance["visit_brow"] * np.clip(1 - 0.6 * along**2, 0.2, 1)
    brow = _smoothstep(thickness / 2 - np.abs(y - centre), edge) * _smoothstep(1 - np.abs(along), 0.05)
    strokes = 0.75 + 0.25 * np.sin(60 * bx + 25 * y)
    image = image * (1 - (brow * strokes)[..., None]) + traits["hair"] * (brow * strokes)[..., None]

    # Eye opening between two lid curves, with canthal tilt and skew.
    ct, st = np.cos(traits["tilt"]), np.sin(traits["tilt"])
    ex, ey = ct * x + st * y, -st * x + ct * y
    u = ex / traits["eye_width"]
    inside = np.clip(1 - u**2, 0, None)
    peak = 1 + traits["skew"] * u
    opening = nuisance["opening"]
    upper = -traits["upper_lid"] * opening * inside ** traits["lid_power"] * peak
    lower = traits["lower_lid"] * opening * inside ** (traits["lid_power"] * 0.8)
    eye_mask = _smoothstep(ey - upper, edge) * _smoothstep(lower - ey, edge) * (np.abs(u) < 1)

    # Crease and lashes/eyeliner above the upper lid.
    crease_line = np.exp(-(((ey - (upper - traits["crease"] * inside)) / 0.025) ** 2)) * (np.abs(u) < 0.95)
    image = image * (1 - traits["crease_dark"] * crease_line)[..., None]
    lash = np.exp(-(((ey - upper) / (traits["lash"] + 0.03 * nuisance["visit_liner"])) ** 2)) * (np.abs(u) < 1)
    image = image * (1 - 0.8 * np.clip(lash, 0, 1))[..., None]

    # Sclera, iris with radial texture, pupil, limbus, specular highlight.
    gx, gy = nuisance["gaze"]
    ix, iy = ex - gx, ey - gy
    rho, phi = np.hypot(ix, iy), np.arctan2(iy, ix)
    r_iris = traits["iris_radius"]
    harmonics = traits["iris_harmonics"]
    radial = sum(0.10 * h[0] * np.cos((k + 3) * phi + h[1]) for k, h in enumerate(harmonics))
    rings = 0.08 * np.sin(traits["iris_rings"] * rho / r_iris * np.pi)
    iris_tex = np.clip(1 + radial * (rho / r_iris) + rings, 0.4, 1.6)
    iris = _smoothstep(r_iris - rho, edge)
    pupil = _smoothstep(r_iris * LIGHT_MODELS[light]["pupil"] - rho, edge)
    limbus = np.exp(-(((rho - r_iris) / 0.03) ** 2))
    eye_rgb = traits["sclera"][None, None, :] * (1 - 0.15 * np.clip(np.abs(u), 0, 1))[..., None]
    iris_rgb = traits["iris_colour"][None, None, :] * iris_tex[..., None]
    eye_rgb = eye_rgb * (1 - iris[..., None]) + iris_rgb * iris[..., None]
    eye_rgb = eye_rgb * (1 - 0.9 * pupil[..., None]) * (1 - 0.35 * limbus[..., None])
    angle = nuisance["light_angle"]
    glint = np.exp(-(((ix - 0.35 * r_iris * np.cos(angle)) ** 2 + (iy - 0.35 * r_iris * np.sin(angle)) ** 2) / 0.002))
    eye_rgb = eye_rgb + 0.6 * glint[..., None]
    image = image * (1 - eye_mask[..., None]) + eye_rgb * eye_mask[..., None]

    # Marks (moles) on the skin.
    for mx, my, radius, darkness in traits["marks"]:
        mole = _smoothstep(radius - np.hypot(x - mx, y - my), edge) * (1 - eye_mask)
        image = image * (1 - darkness * mole)[..., None]

    # Lighting: gain, colour temperature, directional gradient.
    lm, pm = LIGHT_MODELS[light], PHONE_MODELS[phone]
    gradient = 1 + lm["gradient"] * difficulty * (np.cos(angle) * x / 1.5 + np.sin(angle) * y)
    image = image * gradient[..., None] * (lm["gain"] * nuisance["gain_jitter"])
    image = image * np.array(lm["temperature"]) * np.array(pm["cast"])

    # Phone optics and sensor: blur, reduced resolution, noise, tone curve.
    blur = pm["blur"] * (0.5 + 0.5 * difficulty) * width / 120
    image = gaussian_filter(image, sigma=(blur, blur, 0))
    if pm["resolution"] < 1:
        small_h = max(8, int(round(height * pm["resolution"])))
        small_w = max(8, int(round(width * pm["resolution"])))
        tmp = Image.fromarray(np.clip(image * 255, 0, 255).astype(np.uint8))
        tmp = tmp.resize((small_w, small_h), Image.BILINEAR).resize((width, height), Image.BILINEAR)
        image = np.asarray(tmp, dtype=np.float64) / 255
    noise_rng = np.random.default_rng(nuisance["noise_seed"])
    sigma = pm["noise"] * lm["noise"] * difficulty
    image = image + noise_rng.normal(0, sigma, image.shape)
    image = np.clip(image, 0, 1) ** pm["gamma"]
    return (image * 255 + 0.5).astype(np.uint8)


def image_filename(subject: str, image_id: int, eye: str) -> str:
    """VISOB file name: ``<subjectID>_<imageID>_<l|r>_c.png``."""
    return f"{subject}_{image_id}_{eye}_c.png"


def _generate_subject(args: tuple[SyntheticConfig, int, str, str]) -> int:
    config, index, subject, root = args
    traits = sample_traits(config.seed, index)
    per_eye = {eye: eye_traits(traits, config.seed, index, eye) for eye in ("l", "r")}
    written = 0
    for phone in config.phones:
        for light in config.lights:
            folder = FOLDER_NAMES[(phone, light)]
            for visit, visit_folder in VISIT_FOLDERS.items():
                out_dir = Path(root, folder, folder, visit_folder)
                out_dir.mkdir(parents=True, exist_ok=True)
                for k in range(config.images_per_visit):
                    image_id = 1001 + (visit - 1) * config.images_per_visit + k
                    for eye in ("l", "r"):
                        nuisance = sample_nuisance(config.seed, index, visit, phone, light, k, eye, config.difficulty)
                        pixels = render_eye(per_eye[eye], nuisance, phone, light, eye, config.height, config.width,
                                            config.difficulty)
                        Image.fromarray(pixels).save(out_dir / image_filename(subject, image_id, eye), compress_level=1)
                        written += 1
    return written


MANIFEST = "synthetic_manifest.json"


def generate_visob_like(root: str | os.PathLike, config: SyntheticConfig | None = None, progress: bool = True) -> Path:
    """Write the synthetic dataset under ``root`` in VISOB's layout; reuse it if already complete.

    A manifest with the configuration's fingerprint marks a finished dataset; a partial or
    different one is an error rather than being silently mixed.
    """
    config = config or SyntheticConfig()
    root = Path(root)
    manifest = root / MANIFEST
    if manifest.is_file():
        existing = json.loads(manifest.read_text())
        if existing.get("fingerprint") == config.fingerprint():
            if not (root / ATTRIBUTE_FILE).is_file():  # generated before the groups were written
                write_synthetic_groups(root, config)
            return root
        raise FileExistsError(
            f"{root} holds a synthetic dataset with other parameters (fingerprint "
            f"{existing.get('fingerprint')}, wanted {config.fingerprint()}); choose another folder or delete it"
        )
    if root.exists() and any(root.iterdir()):
        raise FileExistsError(f"{root} exists, is not empty and has no {MANIFEST}; refusing to write into it")
    ids = subject_ids(config)
    jobs = [(config, i, sid, str(root)) for i, sid in enumerate(ids)]
    workers = config.workers or min(4, os.cpu_count() or 1)
    from tqdm.auto import tqdm

    bar = tqdm(total=len(jobs), desc="synthetic subjects", disable=not progress)
    total = 0
    if workers > 1:
        with ProcessPoolExecutor(max_workers=workers, mp_context=multiprocessing.get_context("spawn")) as pool:
            for n in pool.map(_generate_subject, jobs, chunksize=4):
                total += n
                bar.update()
    else:
        for job in jobs:
            total += _generate_subject(job)
            bar.update()
    bar.close()
    record = {"fingerprint": config.fingerprint(), "config": asdict(config), "images": total,
              "subjects": ids, "layout": "visob", "synthetic": True}
    write_synthetic_groups(root, config)
    atomic_write_json(manifest, record)
    return root
