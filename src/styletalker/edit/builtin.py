"""The built-in offline editor: a deterministic, image-space stand-in for Instruct-Pix2Pix.

It understands a small documented vocabulary of style prompts (docs/edit.md, :data:`VOCABULARY`)
and applies them to landmark-derived face regions (:mod:`styletalker.edit.regions`) so that the
whole edit loop runs on a CPU without model weights.

It deliberately *models the failure modes the paper attributes to diffusion editors* (Sec. 3.3),
so that the landmark-driven loss has something real to fix. With ``s = clip(b, 0, 1)``:

* edit amount inside the target region   ``a(s) = min(1, s / 0.7)``        (low b: weak edit)
* spill beyond the target region        ``beta(s) = clip((s - 0.4) / 0.5, 0, 1)``: the target
  mask grows by ``0.12 * beta * face_width`` and the main style is applied to everything else
  (hair, clothing, background) with amount ``0.7 * beta * a``
* identity wash-out                      ``omega(s) = clip((s - 0.6) / 0.4, 0, 1)``, made of
  - a *systematic* part: the contrast of eyes, brows and lips against the local skin tone is
    scaled by ``1 - 0.35 * omega`` and the features are blurred (sigma ``0.02 * omega * face_width``);
  - a *stochastic* part drawn from ``seed`` (different in every call, like the "re-imagined" face
    of a high-noise diffusion sample): per feature a random contrast gain ``exp(N(0, 0.4 omega))``
    and colour shift ``N(0, 0.08 omega)``, and a smooth random warp of the face with amplitude
    ``0.05 * omega * face_width``

So b = 0.2 gives a faint edit, b = 0.5 a clean but partial one, b = 0.7 a full edit with some
spill and mild wash-out, b >= 0.9 a full edit that bleeds onto clothing and background and loses
identity detail. The editor reads ``original`` (the training image C_gt, as in the paper's
description of Instruct-Pix2Pix); ``render`` is ignored.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from ..errors import InputError
from .editors import Editor, as_float_image
from .regions import NOSE_TIP, FaceInfo, dilate, feather

# ---------------------------------------------------------------------------------------------
# vocabulary

COLOURS: dict[str, tuple[float, float, float]] = {
    "red": (0.85, 0.12, 0.10), "green": (0.20, 0.70, 0.25), "blue": (0.15, 0.35, 0.90),
    "yellow": (0.95, 0.85, 0.15), "orange": (0.95, 0.50, 0.10), "purple": (0.55, 0.20, 0.75),
    "violet": (0.55, 0.25, 0.85), "pink": (0.98, 0.55, 0.72), "magenta": (0.90, 0.15, 0.75),
    "cyan": (0.15, 0.80, 0.90), "teal": (0.10, 0.55, 0.55), "white": (0.96, 0.96, 0.96),
    "black": (0.06, 0.06, 0.07), "grey": (0.50, 0.50, 0.52), "gray": (0.50, 0.50, 0.52),
    "silver": (0.78, 0.80, 0.84), "gold": (0.95, 0.75, 0.25), "golden": (0.95, 0.75, 0.25),
    "brown": (0.40, 0.24, 0.12), "blonde": (0.93, 0.80, 0.50), "blond": (0.93, 0.80, 0.50),
    "platinum": (0.90, 0.90, 0.85), "ginger": (0.80, 0.35, 0.10),
}

# statue materials: dark -> bright ramp (+ a highlight colour)
METALS: dict[str, tuple[tuple[float, float, float], tuple[float, float, float]]] = {
    "bronze": ((0.20, 0.11, 0.04), (0.90, 0.62, 0.32)),
    "copper": ((0.22, 0.08, 0.04), (0.95, 0.55, 0.38)),
    "gold": ((0.30, 0.20, 0.02), (1.00, 0.86, 0.40)),
    "golden": ((0.30, 0.20, 0.02), (1.00, 0.86, 0.40)),
    "silver": ((0.22, 0.23, 0.26), (0.95, 0.96, 0.98)),
    "metal": ((0.16, 0.17, 0.19), (0.85, 0.86, 0.88)),
    "metallic": ((0.16, 0.17, 0.19), (0.85, 0.86, 0.88)),
    "iron": ((0.10, 0.10, 0.11), (0.62, 0.62, 0.64)),
    "steel": ((0.14, 0.16, 0.19), (0.80, 0.83, 0.87)),
}
STONES = ("marble", "stone", "plaster")

ALIASES = {
    "hulk": "green skin", "smurf": "blue skin", "avatar": "blue skin", "na'vi": "blue skin",
    "tanned": "tan", "sunburn": "sunburnt", "sunburned": "sunburnt",
}

VOCABULARY = [
    "<colour> skin  |  make his/her skin <colour>     (skin of face and neck)",
    "<colour> hair  |  dye his/her hair <colour>      (hair)",
    "<colour> eyes                                    (irises)",
    "[<colour>] lipstick                              (lips; red by default)",
    "<metal> statue  (metal: " + ", ".join(sorted(set(METALS))) + ")",
    "marble statue | stone statue | plaster statue | statue",
    "clown make-up | clown                            (white face paint, red nose and lips)",
    "zombie | vampire | tan | sunburnt | pale",
    "aliases: hulk (green skin), smurf / avatar (blue skin)",
    "colours: " + ", ".join(sorted(COLOURS)),
    "clauses can be combined with 'and' or ',' (e.g. 'blue skin and blonde hair')",
]


def vocabulary_text() -> str:
    return "\n".join("  " + v for v in VOCABULARY)


# ---------------------------------------------------------------------------------------------
# styles


@dataclass
class Layer:
    """Apply ``op`` to the image inside ``region`` (a region name or a mask function)."""

    region: str | Callable[[dict, FaceInfo, np.ndarray], np.ndarray]  # (regions, face, img) -> mask
    op: Callable[[np.ndarray, np.ndarray, FaceInfo], np.ndarray]  # (img, mask, face) -> img
    name: str = ""

    def mask(self, regions: dict, face: FaceInfo, img: np.ndarray) -> np.ndarray:
        if callable(self.region):
            return np.clip(self.region(regions, face, img), 0, 1).astype(np.float32)
        return regions[self.region]


@dataclass
class Style:
    prompt: str
    layers: list[Layer] = field(default_factory=list)
    description: list[str] = field(default_factory=list)


def _lum(img: np.ndarray) -> np.ndarray:
    return img @ np.array([0.299, 0.587, 0.114], np.float32)


def _ref_lum(lum: np.ndarray, mask: np.ndarray) -> float:
    sel = lum[mask > 0.5]
    if sel.size < 4:
        sel = lum.reshape(-1)
    return float(max(np.median(sel), 0.05))


def recolour(colour) -> Callable:
    """Keep the shading of the region (luminance relative to its median), replace the colour."""
    c = np.asarray(colour, np.float32)

    def op(img, mask, face):
        lum = _lum(img)
        shade = np.clip(lum / _ref_lum(lum, mask), 0.0, 1.8)[..., None]
        return np.clip(c * shade, 0, 1)

    return op


def material(dark, bright) -> Callable:
    """Metal statue: luminance re-mapped onto a dark -> bright ramp with a contrasty curve."""
    d, br = np.asarray(dark, np.float32), np.asarray(bright, np.float32)

    def op(img, mask, face):
        lum = _lum(img)
        sel = lum[mask > 0.5] if (mask > 0.5).sum() > 16 else lum.reshape(-1)
        lo, hi = np.percentile(sel, 2), np.percentile(sel, 98)
        t = np.clip((lum - lo) / max(hi - lo, 1e-3), 0, 1)
        t = t * t * (3 - 2 * t)  # smoothstep: metallic contrast
        out = d + (br - d) * t[..., None]
        spec = np.clip((t - 0.8) / 0.2, 0, 1)[..., None]
        return np.clip(out + 0.35 * spec * (1 - out), 0, 1)

    return op


def marble(kind: str) -> Callable:
    base_dark = {"marble": 0.62, "stone": 0.38, "plaster": 0.7}[kind]
    base_bright = {"marble": 0.97, "stone": 0.72, "plaster": 0.98}[kind]
    tint = np.array({"marble": (1.0, 0.99, 0.96), "stone": (0.95, 0.93, 0.88), "plaster": (1, 1, 1)}[kind], np.float32)

    def op(img, mask, face):
        H, W = img.shape[:2]
        lum = _lum(img)
        sel = lum[mask > 0.5] if (mask > 0.5).sum() > 16 else lum.reshape(-1)
        lo, hi = np.percentile(sel, 2), np.percentile(sel, 98)
        t = np.clip((lum - lo) / max(hi - lo, 1e-3), 0, 1)
        out = (base_dark + (base_bright - base_dark) * t)[..., None] * tint
        if kind == "marble":
            # deterministic veins in face-relative coordinates (they move with the face)
            fw = max(face.face_width, 1.0)
            c = face.landmarks[NOSE_TIP]
            ys, xs = np.mgrid[0:H, 0:W].astype(np.float32) + 0.5
            u, v = (xs - c[0]) / fw, (ys - c[1]) / fw
            phase = 7.0 * u + 4.0 * v + 1.6 * np.sin(5.0 * v + 2.0 * u) + 0.8 * np.sin(11.0 * u - 3.0 * v)
            vein = np.exp(-((np.sin(phase) ** 2) / 0.02))
            out = out * (1 - 0.22 * vein[..., None])
        return np.clip(out, 0, 1)

    return op


def paint(colour, keep_shading: float = 0.5) -> Callable:
    """Opaque-ish face paint: flat colour modulated by part of the original shading."""
    c = np.asarray(colour, np.float32)

    def op(img, mask, face):
        lum = _lum(img)
        shade = np.clip(lum / _ref_lum(lum, mask), 0.0, 1.6)[..., None]
        return np.clip(c * ((1 - keep_shading) + keep_shading * shade), 0, 1)

    return op


def darken(f: float, tint=(1.0, 1.0, 1.0)) -> Callable:
    t = np.asarray(tint, np.float32)

    def op(img, mask, face):
        return np.clip(img * f * t, 0, 1)

    return op


def _nose_ball(regions, face: FaceInfo, img):
    from .regions import fill_circle

    return fill_circle(img.shape[:2], face.landmarks[NOSE_TIP], 0.085 * face.face_width)


def _hair(regions, face: FaceInfo, img):
    """Hair = the geometric hair region minus pixels that look like the face's skin (forehead, ears):
    skin-like = chromaticity within 0.035 of the median face skin and at least 0.7x its luminance."""
    skin = regions["skin"] * regions["face"]
    if skin.sum() < 16:
        return regions["hair"]
    chroma = img / np.maximum(img.sum(-1, keepdims=True), 1e-3)
    ref_c = np.median(chroma[skin > 0.5], axis=0)
    lum = _lum(img)
    ref_l = float(np.median(lum[skin > 0.5]))
    skin_like = (np.linalg.norm(chroma - ref_c, axis=-1) < 0.035) & (lum > 0.7 * ref_l)
    return regions["hair"] * (~skin_like).astype(np.float32)


def _eye_patches(regions, face: FaceInfo, img):
    grown = dilate(regions["eyes"], 0.07 * face.face_width)
    return np.clip(grown - regions["eyes"] - regions["brows"], 0, 1) * regions["face"]


def _under_eyes(regions, face: FaceInfo, img):
    grown = dilate(regions["eyes"], 0.06 * face.face_width)
    shift = int(round(0.03 * face.face_width))
    grown = np.roll(grown, shift, axis=0)
    return np.clip(grown - regions["eyes"], 0, 1) * regions["skin"]


def _colour_word(word: str, clause: str) -> tuple[float, float, float]:
    if word not in COLOURS:
        raise InputError(
            f"unknown colour {word!r} in prompt clause {clause!r}; known colours: {', '.join(sorted(COLOURS))}"
        )
    return COLOURS[word]


_FILLER = r"(?:his|her|their|the|its|a|an|to|into|be|colou?r(?:ed)?|of)"


def _find_colour(clause: str, noun: str) -> str | None:
    """'<colour> <noun>' or '<noun> ... <colour>' (e.g. 'make his skin blue', 'skin colour to red')."""
    m = re.search(rf"\b([a-z']+)[- ]{noun}\b", clause)
    if m and m.group(1) in COLOURS:
        return m.group(1)
    m = re.search(rf"\b{noun}\b((?:\s+{_FILLER})*)\s+([a-z']+)", clause)
    if m and m.group(2) in COLOURS:
        return m.group(2)
    if m and not re.fullmatch(_FILLER, m.group(2)):
        return m.group(2)  # reported as unknown colour by the caller
    m = re.search(rf"\b([a-z']+)[- ]{noun}\b", clause)
    if m and not re.fullmatch(_FILLER, m.group(1)) and m.group(1) not in ("make", "dye", "paint", "turn", "give"):
        return m.group(1)
    return None


def parse_prompt(prompt: str) -> Style:
    """Turn a prompt into a :class:`Style`; raise :class:`InputError` listing the vocabulary."""
    if not isinstance(prompt, str) or not prompt.strip():
        raise InputError("the edit prompt is empty. The built-in editor understands:\n" + vocabulary_text())
    text = prompt.lower().replace("make-up", "makeup").replace("make up", "makeup")
    text = re.sub(r"[^a-z' ,;&+-]", " ", text)
    clauses = [c.strip() for c in re.split(r",|;|&|\+|\band\b|\bwith\b", text) if c.strip()]
    style = Style(prompt)
    for clause in clauses:
        for alias, repl in ALIASES.items():
            if re.search(rf"\b{re.escape(alias)}\b", clause):
                clause = re.sub(rf"\b{re.escape(alias)}\b", repl, clause)
        n_before = len(style.layers)
        _parse_clause(clause, style)
        if len(style.layers) == n_before:
            raise InputError(
                f"the built-in editor does not understand {clause!r} (prompt {prompt!r}). It understands:\n"
                + vocabulary_text()
                + "\nFor free-form prompts use --editor ip2p --editor-model PATH (a local Instruct-Pix2Pix model)."
            )
    return style


def _parse_clause(clause: str, style: Style) -> None:
    m = re.search(r"\b([a-z]+)\s+statue\b|\bstatue\s+(?:made\s+)?of\s+([a-z]+)\b|\bmade\s+of\s+([a-z]+)\b", clause)
    if m:
        mat = next(g for g in m.groups() if g)
        if re.fullmatch(_FILLER + r"|into|as|like|turn|make|greek|roman|classical|ancient", mat):
            mat = "marble"  # "turn him into a statue"
        if mat in METALS:
            style.layers.append(Layer("head", material(*METALS[mat]), f"{mat} statue"))
            style.description.append(f"{mat} statue: head (face, hair, neck) re-mapped to a {mat} ramp")
            return
        if mat in STONES:
            style.layers.append(Layer("head", marble(mat), f"{mat} statue"))
            style.description.append(f"{mat} statue: head desaturated to {mat}")
            return
        if "statue" in clause:
            raise InputError(
                f"unknown statue material {mat!r}; known: {', '.join(sorted(set(METALS) | set(STONES)))}"
            )
    if re.search(r"\bclown\b", clause):
        style.layers += [
            Layer("skin", paint((0.97, 0.96, 0.94), 0.35), "white face paint"),
            Layer(_eye_patches, paint((0.15, 0.35, 0.90), 0.3), "blue eye patches"),
            Layer("lips", paint((0.88, 0.06, 0.08), 0.4), "red lips"),
            Layer(_nose_ball, paint((0.92, 0.05, 0.05), 0.5), "red nose"),
        ]
        style.description.append("clown make-up: white skin, blue eye patches, red lips and nose")
        return
    if re.search(r"\bzombie\b", clause):
        style.layers += [
            Layer("skin", paint((0.55, 0.66, 0.50), 0.7), "grey-green skin"),
            Layer(_under_eyes, darken(0.55, (0.9, 0.8, 1.0)), "dark eye sockets"),
            Layer("lips", paint((0.35, 0.20, 0.30), 0.6), "dark lips"),
        ]
        style.description.append("zombie: grey-green skin, dark eye sockets and lips")
        return
    if re.search(r"\bvampire\b", clause):
        style.layers += [
            Layer("skin", recolour((0.93, 0.91, 0.90)), "pale skin"),
            Layer("lips", paint((0.50, 0.02, 0.05), 0.5), "dark red lips"),
        ]
        style.description.append("vampire: very pale skin, dark red lips")
        return
    if re.search(r"\blipstick\b", clause):
        m = re.search(r"\b([a-z]+)\s+lipstick\b", clause)
        colour = (0.85, 0.05, 0.12)
        if m and m.group(1) in COLOURS:
            colour = COLOURS[m.group(1)]
        style.layers.append(Layer("lips", paint(colour, 0.5), "lipstick"))
        style.description.append("lipstick on the lips")
        return
    for noun, region in (("skin", "skin"), ("hair", _hair), ("eyes?", "iris")):
        if re.search(rf"\b{noun}\b", clause):
            word = _find_colour(clause, noun)
            if word is None:
                raise InputError(f"no colour given for {noun.rstrip('s?')} in {clause!r}; known colours: {', '.join(sorted(COLOURS))}")
            colour = _colour_word(word, clause)
            part = noun.rstrip("s?")
            style.layers.append(Layer(region, recolour(colour), f"{word} {part}"))
            style.description.append(f"{word} {part}")
            return
    if re.search(r"\btan\b", clause):
        style.layers.append(Layer("skin", recolour((0.70, 0.47, 0.32)), "tan"))
        style.description.append("tanned skin")
        return
    if re.search(r"\bsunburnt\b", clause):
        style.layers.append(Layer("skin", recolour((0.92, 0.45, 0.38)), "sunburnt"))
        style.description.append("sunburnt skin")
        return
    if re.search(r"\bpale\b", clause):
        style.layers.append(Layer("skin", recolour((0.93, 0.88, 0.84)), "pale"))
        style.description.append("pale skin")
        return


# ---------------------------------------------------------------------------------------------
# strength model


def edit_amount(s: float) -> float:
    return float(min(1.0, max(s, 0.0) / 0.7))


def spill_amount(s: float) -> float:
    return float(np.clip((s - 0.4) / 0.5, 0.0, 1.0))


def washout_amount(s: float) -> float:
    return float(np.clip((s - 0.6) / 0.4, 0.0, 1.0))


def _random_warp(img: np.ndarray, amp: float, mask: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    import cv2

    H, W = img.shape[:2]
    grid = rng.standard_normal((2, 5, 5)).astype(np.float32)
    dx = cv2.resize(grid[0], (W, H), interpolation=cv2.INTER_CUBIC) * amp * mask
    dy = cv2.resize(grid[1], (W, H), interpolation=cv2.INTER_CUBIC) * amp * mask
    ys, xs = np.mgrid[0:H, 0:W].astype(np.float32)
    return cv2.remap(img, xs + dx, ys + dy, interpolation=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)


class BuiltinEditor(Editor):
    """Offline, deterministic stand-in for a diffusion editor (see module docstring)."""

    name = "builtin"
    needs_render = False  # edits the training image; the current render is not used

    def __init__(self):
        self._styles: dict[str, Style] = {}

    def style(self, prompt: str) -> Style:
        if prompt not in self._styles:
            self._styles[prompt] = parse_prompt(prompt)
        return self._styles[prompt]

    def check_prompt(self, prompt: str) -> None:
        self.style(prompt)

    def describe(self) -> dict:
        return {"editor": self.name, "model": "builtin image-space stand-in (docs/edit.md)"}

    def edit(self, render, original, prompt, b, face: FaceInfo, seed=None) -> np.ndarray:
        import cv2

        style = self.style(prompt)
        orig = as_float_image(original)
        H, W = orig.shape[:2]
        s = float(np.clip(b, 0.0, 1.0))
        a, beta, omega = edit_amount(s), spill_amount(s), washout_amount(s)
        reg = face.regions((H, W))
        fw = max(face.face_width, 4.0)
        soft = 0.015 * fw

        # 1. target style at full strength, layer by layer; union of (grown) layer masks
        styled = orig.copy()
        union = np.zeros((H, W), np.float32)
        for layer in style.layers:
            m = layer.mask(reg, face, styled)
            if beta > 0:
                m = dilate(m, 0.12 * beta * fw)
            m = feather(m, soft)
            styled = styled * (1 - m[..., None]) + layer.op(styled, m, face) * m[..., None]
            union = np.maximum(union, m)
        out = orig + a * union[..., None] * (styled - orig)

        # 2. spill: the main style bleeds onto everything else (hair, clothing, background)
        if beta > 0 and a > 0:
            main = style.layers[0]
            g = main.op(orig, main.mask(reg, face, orig), face)
            k = (0.7 * beta * a) * (1 - union)[..., None]
            out = out + k * (g - out)

        # 3. identity wash-out (high b): systematic flattening + stochastic "re-imagined" features
        if omega > 0:
            rng = np.random.default_rng(seed)
            local_skin = cv2.GaussianBlur(out, (0, 0), 0.12 * fw)
            for part in ("eyes", "brows", "lips"):
                m = feather(dilate(reg[part] + (reg["iris"] if part == "eyes" else 0), 0.03 * fw), soft)[..., None]
                gain = 1.0 - 0.35 * omega  # systematic: contrast towards the local skin tone
                gain *= float(np.exp(rng.normal(0.0, 0.4 * omega)))  # stochastic: random feature contrast
                shift = rng.normal(0.0, 0.08 * omega, 3).astype(np.float32)  # stochastic: random feature colour
                feat_img = local_skin + gain * (out - local_skin) + shift
                out = out + m * (feat_img - out)
            feat = feather(dilate(np.clip(reg["features"] + reg["iris"], 0, 1), 0.03 * fw), soft)[..., None]
            blurred = cv2.GaussianBlur(out, (0, 0), max(0.02 * omega * fw, 0.3))
            out = out + feat * (blurred - out)
            face_m = feather(dilate(reg["face"], 0.05 * fw), 0.05 * fw)
            out = _random_warp(np.clip(out, 0, 1).astype(np.float32), 0.05 * omega * fw, face_m, rng)
        return np.clip(out, 0, 1).astype(np.float32)
