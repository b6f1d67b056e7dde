"""Animation and free-viewpoint rendering of a (possibly edited) avatar (paper Sec. 4.2, Fig. 1/11).

* :func:`run_animate`: track a driver video (``styletalker.preprocess.track_video``), drive the
  avatar with the driver's 52 expression coefficients and head motion, write an mp4.
* :func:`render_orbit`: a turntable video around the head; :func:`render_view` one frame.

Head motion is *retargeted*, not copied: the driver's pose of frame t relative to its reference
pose (the mean rotation / translation over the driver clip) is applied to the avatar's own
reference pose (the mean pose of its training frames), see :func:`retarget_poses`. So the avatar
stays framed like its training video whatever the driver's distance, position or camera.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from .errors import InputError
from .safeload import MAX_IMAGE_SIDE, check, reading
from .workdir import is_complete, log, progress
from .workfolder import RENDERS

from .animate_options import ORBIT_DEGREES, POSE_MODES, DriveOptions, OrbitOptions, ViewOptions  # noqa: F401

_D, _O, _V = DriveOptions, OrbitOptions, ViewOptions  # the defaults, in one place


# ---------------------------------------------------------------------------------------------
# which avatar


@dataclass
class AvatarScene:
    """An avatar plus what is needed to frame it: intrinsics, image size, reference pose."""

    avatar: object
    K: torch.Tensor  # (3,3)
    width: int
    height: int
    ref_pose: torch.Tensor  # (4,4) world_to_cam of the avatar's reference view
    neutral_expression: torch.Tensor  # (E,)
    background: tuple[float, float, float]
    source: str
    work: Path | None = None
    info: dict = field(default_factory=dict)
    frozen: object = field(default=None, repr=False, compare=False)  # avatar.FrozenAvatar of ``avatar``
    lod: object = field(default=None, repr=False, compare=False)  # lod.LiveLOD, made by live driving

    def __post_init__(self):
        if self.frozen is None or self.frozen.avatar is not self.avatar:
            from .avatar import FrozenAvatar

            self.frozen = FrozenAvatar(self.avatar)

    def camera(self, world_to_cam: torch.Tensor, scale: float = 1.0):
        """The camera at pose ``world_to_cam``: :func:`styletalker.render.view_camera`, the
        training views' builder (a training frame's pose gives that view's camera)."""
        from .render import view_camera

        return view_camera(self.K, world_to_cam, self.width, self.height, scale)

    def frozen_for(self, world_to_cam, scale: float = 1.0, live: bool = False):
        """The FrozenAvatar that draws this view: ``frozen``, or with ``live`` the live level of
        detail's pruned avatar (``lod``, :mod:`styletalker.lod`) when it covers the view."""
        from .avatar import FrozenAvatar

        if self.frozen.avatar is not self.avatar:
            self.frozen = FrozenAvatar(self.avatar)
        if live and self.lod is not None and self.lod.avatar is self.avatar:
            from .render import scale_intrinsics

            if self.lod.covers(scale_intrinsics(self.K, scale), world_to_cam):
                return self.lod.frozen
        return self.frozen

    def render(self, expression, world_to_cam, scale: float = 1.0, live: bool = False, with_alpha: bool = False):
        """(H,W,3) float image as a CPU numpy array (and its (H,W) alpha with ``with_alpha``);
        the inputs go to the avatar's device.

        Renders through ``frozen``, a :class:`~styletalker.avatar.FrozenAvatar` (the same
        Gaussians as the avatar's forward, with the expression-independent work done once), made
        with the scene: after changing the avatar's parameters, make a new one. ``live``: live
        driving's level of detail where it applies (:meth:`frozen_for`)."""
        dev = next(self.avatar.parameters()).device
        frozen = self.frozen_for(world_to_cam, scale, live)
        bg = torch.tensor(self.background, dtype=torch.float32, device=dev)
        with torch.no_grad():
            out = frozen.render(torch.as_tensor(expression, dtype=torch.float32).to(dev),
                                self.camera(world_to_cam, scale).to(dev), background=bg)
        img = out.image.clamp(0, 1).cpu().numpy()
        return (img, out.alpha[..., 0].clamp(0, 1).cpu().numpy()) if with_alpha else img


def mean_rotation(R: np.ndarray) -> np.ndarray:
    """Chordal L2 mean of rotations (N,3,3): SVD projection of the average matrix."""
    M = np.asarray(R, np.float64).mean(axis=0)
    U, _, Vt = np.linalg.svd(M)
    D = np.diag([1.0, 1.0, np.sign(np.linalg.det(U @ Vt))])
    return U @ D @ Vt


def mean_pose(world_to_cam: np.ndarray) -> np.ndarray:
    W = np.asarray(world_to_cam, np.float64)
    out = np.eye(4)
    out[:3, :3] = mean_rotation(W[:, :3, :3])
    out[:3, 3] = W[:, :3, 3].mean(axis=0)
    return out


def _find_work_for_avatar(path: Path) -> Path | None:
    """work/reconstruct/avatar.pt or work/edits/<name>/avatar.pt -> work (if it has preprocess/)."""
    from .workfolder import WorkFolder

    for up in (path.parent.parent, path.parent.parent.parent):
        if WorkFolder(up).preprocess.is_dir():
            return up
    return None


def resolve_avatar_path(target, edit: str | None = None) -> tuple[Path, Path | None]:
    """``target`` is a work folder or an avatar .pt file. Returns (avatar_path, work_or_None).

    In a work folder the reconstructed avatar is used, or the edit ``edit``
    (:meth:`styletalker.workfolder.WorkFolder.avatar`: complete and up to date).
    """
    from .workfolder import WorkFolder

    target = Path(target)
    if not target.exists():
        raise InputError(f"{target}: no such work folder or avatar file")
    if target.is_file():
        if edit:
            raise InputError("--edit NAME needs a work folder, not an avatar file")
        return target, _find_work_for_avatar(target.resolve())
    return WorkFolder(target).avatar(edit), target


def _background(avatar, work: Path | None) -> tuple[float, float, float]:
    from .avatar import AvatarExtra
    from .workfolder import WorkFolder

    bg = AvatarExtra.of(avatar).background
    if bg is None and work is not None:
        bg = WorkFolder(work).data_options().get("background")
    return (1.0, 1.0, 1.0) if bg is None else tuple(float(x) for x in bg)


def load_scene(target, edit: str | None = None, device: str = "cpu") -> AvatarScene:
    """Load the avatar named by ``target``/``edit`` and how to frame it.

    Framing comes from the work folder's preprocessed clip (intrinsics and size of the neutral
    frame, mean head pose, neutral expression). For a bare avatar file without a work folder it
    comes from ``avatar.extra`` (edited avatars store it) or a default 30-degree camera 5.6 dm
    in front of the face.
    """
    from .avatar import GaussianAvatar
    from .device import resolve_device

    path, work = resolve_avatar_path(target, edit)
    avatar = GaussianAvatar.load(path).to(resolve_device(device))  # device: auto | cpu | cuda
    avatar.eval()
    for p in avatar.parameters():
        p.requires_grad_(False)
    with reading(path, "StyleTalker avatar (its extra or the work folder's config.json)"):
        return _frame_scene(avatar, path, work)


def _frame_scene(avatar, path: Path, work: Path | None) -> AvatarScene:
    from .avatar import AvatarExtra
    from .workfolder import WorkFolder

    c = AvatarExtra.of(avatar).camera
    n_expr = int(avatar.config["n_expr"])
    bg = _background(avatar, work)
    if work is not None and is_complete(WorkFolder(work).preprocess):
        from .preprocess import load_dataset

        from .reconstruct.data import view_framing

        ds = load_dataset(work)
        nf = int(ds.neutral_frame)
        if not avatar.config.get("expression_range"):  # format-1 avatar: range of its own clip
            avatar.set_expression_range(ds.expression, ds.expression[nf])
        # framed as the training views were: their K and image size (the data option ``size``)
        K, W, H = view_framing(ds.K[nf], ds.width, ds.height, WorkFolder(work).data_options(avatar).get("size"))
        return AvatarScene(avatar, K, W, H,
                           torch.from_numpy(mean_pose(ds.world_to_cam.numpy())).float(),
                           ds.expression[nf].clone(), bg, str(path), work,
                           {"expression_names": ds.expression_names})
    if c is not None:
        check(0 < int(c["width"]) <= MAX_IMAGE_SIDE and 0 < int(c["height"]) <= MAX_IMAGE_SIDE, path,
              "StyleTalker avatar", f"camera size {c['width']}x{c['height']} out of range")
        return AvatarScene(avatar, torch.tensor(c["K"], dtype=torch.float32), int(c["width"]), int(c["height"]),
                           torch.tensor(c["ref_pose"], dtype=torch.float32),
                           torch.tensor(c.get("neutral_expression", [0.0] * n_expr), dtype=torch.float32), bg, str(path))
    from .render import Camera

    cam = Camera.from_fov(256, 256, 30.0)
    pose = torch.eye(4)
    pose[2, 3] = 5.6
    return AvatarScene(avatar, cam.K, 256, 256, pose, torch.zeros(n_expr), bg, str(path))


def camera_extra(scene_or_data) -> dict:
    """What :func:`load_scene` needs to frame a bare avatar file (stored in ``avatar.extra``)."""
    d = scene_or_data
    return {"camera": {"K": d.K.tolist(), "width": int(d.width), "height": int(d.height),
                       "ref_pose": d.ref_pose.tolist(), "neutral_expression": d.neutral_expression.tolist()}}


# ---------------------------------------------------------------------------------------------
# poses


def _check_pose(mode: str) -> None:
    if mode not in POSE_MODES:
        raise InputError(f"unknown --pose {mode!r}; choose from {', '.join(POSE_MODES)}")


def retarget_poses(driver_w2c: np.ndarray, avatar_ref: np.ndarray, mode: str = "relative") -> np.ndarray:
    """Driver head poses (T,4,4) -> avatar head poses (T,4,4).

    ``relative``: R_a(t) = R_d(t) R_d_ref^T R_a_ref and
    t_a(t) = t_a_ref + (t_d(t) - t_d_ref) * z_a_ref / z_d_ref (equal angular motion seen by the
    camera); ``rotation``: rotation only; ``none``: the avatar's reference pose in every frame.
    The driver reference is the mean pose of the driver clip.
    """
    _check_pose(mode)
    D = np.asarray(driver_w2c, np.float64)
    A = np.asarray(avatar_ref, np.float64)
    T = D.shape[0]
    out = np.repeat(A[None], T, axis=0)
    if mode == "none":
        return out
    ref = mean_pose(D)
    R_rel = D[:, :3, :3] @ ref[:3, :3].T
    out[:, :3, :3] = R_rel @ A[:3, :3]
    if mode == "relative":
        s = A[2, 3] / ref[2, 3] if abs(ref[2, 3]) > 1e-6 else 1.0
        out[:, :3, 3] = A[:3, 3] + (D[:, :3, 3] - ref[:3, 3]) * s
    return out


def orbit_poses(ref_pose: np.ndarray, pivot: np.ndarray, frames: int = 60, degrees: float = ORBIT_DEGREES,
                mode: str = "swing") -> np.ndarray:
    """Head poses turning about the vertical axis through ``pivot`` (canonical space).

    ``swing``: yaw(k) = degrees/2 * sin(2 pi k / frames) (a seamless back-and-forth loop);
    ``turn``: yaw goes linearly from -degrees/2 to +degrees/2.
    """
    out = []
    P = np.asarray(ref_pose, np.float64)
    c = np.asarray(pivot, np.float64)
    for k in range(frames):
        if mode == "turn":
            yaw = -degrees / 2 + degrees * k / max(frames - 1, 1)
        else:
            yaw = degrees / 2 * math.sin(2 * math.pi * k / frames)
        a = math.radians(yaw)
        Ry = np.array([[math.cos(a), 0, math.sin(a)], [0, 1, 0], [-math.sin(a), 0, math.cos(a)]])
        M = np.eye(4)
        M[:3, :3] = Ry
        M[:3, 3] = c - Ry @ c
        out.append(P @ M)
    return np.stack(out)


def head_pivot(avatar) -> np.ndarray:
    """Centre of the head: middle of the bounding box of the opaque neutral Gaussians."""
    with torch.no_grad():
        g = avatar(torch.zeros(avatar.config["n_expr"]))
    m = g.means[g.opacities.reshape(-1) > 0.2]
    if m.shape[0] < 10:
        m = g.means
    lo, hi = torch.quantile(m, 0.02, dim=0), torch.quantile(m, 0.98, dim=0)
    return ((lo + hi) / 2).cpu().numpy()


# ---------------------------------------------------------------------------------------------
# commands


def _fill_timeline(track: dict) -> tuple[np.ndarray, np.ndarray]:
    """Indices into the tracked frames for every decoded frame of the window (dropped frames, where
    no face was found, hold the nearest tracked frame). Returns (src_index (T,), is_dropped (T,))."""
    kept_t = np.asarray(track["time"], np.float64)
    times = [(float(t), k, False) for k, t in enumerate(kept_t)]
    for d in track.get("dropped", []) or []:
        k = int(np.argmin(np.abs(kept_t - float(d["time"]))))
        times.append((float(d["time"]), k, True))
    times.sort(key=lambda x: x[0])
    return np.array([k for _, k, _ in times], np.int64), np.array([d for _, _, d in times], bool)


def _fit_height(img: np.ndarray, h: int) -> np.ndarray:
    import cv2

    if img.shape[0] == h:
        return img
    w = max(1, int(round(img.shape[1] * h / img.shape[0])))
    return cv2.resize(img, (w, h), interpolation=cv2.INTER_AREA if img.shape[0] > h else cv2.INTER_CUBIC)


def driving_sequence(scene: AvatarScene, track: dict, pose: str = "relative", retarget: str = "auto",
                     expression_gain: float = 1.0) -> dict:
    """What the avatar shows for each frame of a tracked driver (``track_video`` output).

    Returns ``expression`` (T,E) for the avatar (retargeted, :mod:`styletalker.retarget`),
    ``driver_expression`` (T,E) as tracked (in the avatar's channel order), ``poses`` (T,4,4)
    retargeted head poses, ``src`` (index of the tracked frame shown at each output frame; frames
    without a face hold the nearest one) and ``held`` (bool per output frame).
    """
    from .retarget import avatar_range, retarget_expressions

    _check_pose(pose)
    names = track.get("expression_names")
    want = scene.info.get("expression_names")
    expr = np.asarray(track["expression"], np.float32)
    if names and want and list(names) != list(want):
        idx = {n: k for k, n in enumerate(names)}
        expr = np.stack([expr[:, idx[n]] if n in idx else np.zeros(len(expr), np.float32) for n in want], 1)
    n_expr = int(scene.avatar.config["n_expr"])
    if expr.shape[1] != n_expr:
        raise InputError(f"driver has {expr.shape[1]} expression coefficients, the avatar expects {n_expr}")
    src_range = avatar_range(scene.avatar)
    if src_range is None and retarget != "raw":
        log("note: this avatar file stores no expression range; the driver's expressions are used raw")
    out = retarget_expressions(expr, src_range, retarget, expression_gain)
    poses = retarget_poses(track["world_to_cam"], scene.ref_pose.numpy(), pose)
    src, held = _fill_timeline(track)
    return {"expression": out[src], "driver_expression": expr[src], "poses": poses[src], "src": src, "held": held,
            "expression_names": list(want or names or [])}


def run_animate(target, driver, output=None, *, edit: str | None = None, device: str = "cpu", start: float = _D.start,
                duration: float | None = _D.duration, max_frames: int | None = _D.max_frames,
                fps: float | None = _D.fps, pose: str = _D.pose, side_by_side: bool = _D.side_by_side,
                scale: float = _D.scale, retarget: str = _D.retarget, expression_gain: float = _D.expression_gain,
                show_progress: bool = True) -> dict:
    """Drive the avatar with ``driver``; write an mp4. Returns a summary dict (path, frames, fps, ...).

    ``retarget`` / ``expression_gain``: how the driver's expressions are mapped onto the avatar's
    (:mod:`styletalker.retarget`)."""
    from .preprocess import track_video
    from .retarget import check_options
    from .video import write_video

    _check_pose(pose)
    check_options(retarget, expression_gain)  # before the driver is tracked
    if scale <= 0:
        raise InputError("--scale must be positive")
    scene = load_scene(target, edit, device)
    driver = Path(driver)
    output = _video_output(scene, output, f"animate_{driver.stem}", edit, "the output")
    track = track_video(driver, start=start, duration=duration, fps=fps, max_frames=max_frames,
                        size=max(128, int(round(scene.height * scale))), progress=show_progress,
                        return_frames=side_by_side)
    seq = driving_sequence(scene, track, pose, retarget, expression_gain)
    src, dropped = seq["src"], seq["held"]
    out_fps = float(track.get("fps") or fps or 25.0)

    def frames():
        bar = progress(total=len(src), desc="animate", unit="fr", **({} if show_progress else {"disable": True}))
        try:
            for t, k in enumerate(src):
                img = scene.render(seq["expression"][t], torch.from_numpy(seq["poses"][t]).float(), scale)
                if side_by_side:
                    drv = track["frames"][k].astype(np.float32) / 255.0
                    img = np.concatenate([_fit_height(drv, img.shape[0]), img], axis=1)
                bar.update(1)
                yield img
        finally:
            bar.close()

    n = write_video(output, frames(), out_fps)
    if show_progress:
        log(f"wrote {output} ({n} frames at {out_fps:g} fps, avatar {scene.source}, driver {driver.name}"
            f"{f', {int(dropped.sum())} frames without a face held' if dropped.any() else ''})")
    names = seq["expression_names"]
    jaw = names.index("jawOpen") if "jawOpen" in names else None
    return {"output": str(output), "frames": int(n), "fps": out_fps, "avatar": scene.source,
            "tracked_frames": int(len(track["expression"])), "held_frames": int(dropped.sum()),
            "jaw_open": seq["driver_expression"][:, jaw].tolist() if jaw is not None else None,
            "poses": seq["poses"], "expression": seq["expression"], "driver_expression": seq["driver_expression"]}


def _video_output(scene, output, stem: str, edit: str | None, what: str) -> Path:
    """``output`` as a Path (default ``WORK/renders/<stem>[_<edit>].mp4``), checked to be an .mp4."""
    if output is None:
        base = scene.work if scene.work is not None else Path(scene.source).parent
        output = base / RENDERS / f"{stem}{'_' + edit if edit else ''}.mp4"
    output = Path(output)
    if output.suffix.lower() != ".mp4":
        raise InputError(f"{output}: {what} must be an .mp4 file")
    return output


def render_orbit(target, output=None, *, edit: str | None = None, frames: int = _O.frames,
                 degrees: float | None = _O.degrees, fps: float = _O.fps, mode: str = _O.mode, scale: float = _O.scale,
                 show_progress: bool = True, device: str = "cpu") -> dict:
    from .video import write_video

    if frames < 2:
        raise InputError("--frames must be at least 2")
    degrees = ORBIT_DEGREES if degrees is None else degrees
    if not 0 < degrees <= 360:
        raise InputError("--degrees must be in (0, 360]")
    if scale <= 0:
        raise InputError("--scale must be positive")
    scene = load_scene(target, edit, device)
    output = _video_output(scene, output, "orbit", edit, "the orbit output")
    poses = orbit_poses(scene.ref_pose.numpy(), head_pivot(scene.avatar), frames, degrees, mode)

    def gen():
        for P in progress(poses, desc="orbit", unit="fr", **({} if show_progress else {"disable": True})):
            yield scene.render(scene.neutral_expression, torch.from_numpy(P).float(), scale)

    n = write_video(output, gen(), fps)
    if show_progress:
        log(f"wrote {output} ({n} frames, {degrees:g} degrees, avatar {scene.source})")
    return {"output": str(output), "frames": n, "poses": poses}


def render_view(target, output, *, edit: str | None = None, frame: int | None = _V.frame, yaw: float = _V.yaw,
                scale: float = _V.scale, device: str = "cpu") -> dict:
    """Render one image: the pose + expression of preprocessed frame ``frame`` (default: the
    reference pose with the neutral expression), optionally turned by ``yaw`` degrees."""
    from .workdir import write_image
    from .workfolder import WorkFolder

    scene = load_scene(target, edit, device)
    output = Path(output)
    if output.suffix.lower() not in (".png", ".jpg", ".jpeg"):
        raise InputError(f"{output}: the image output must be .png or .jpg")
    pose, expr = scene.ref_pose, scene.neutral_expression
    if frame is not None:
        if scene.work is None:
            _, work = resolve_avatar_path(target, edit)
            if work is not None:  # a work folder whose preprocess/ is incomplete or damaged
                WorkFolder(work).require("preprocess")
            raise InputError("--frame needs a work folder (the avatar file alone has no video frames)")
        from .preprocess import load_dataset

        ds = load_dataset(scene.work)
        if not 0 <= frame < len(ds):
            raise InputError(f"--frame {frame} is out of range: the clip has {len(ds)} frames (0..{len(ds) - 1})")
        pose, expr = ds.world_to_cam[frame], ds.expression[frame]
        scene.K = ds.K[frame].clone()
    if yaw:
        P = orbit_poses(pose.numpy(), head_pivot(scene.avatar), 2, 2 * abs(yaw), "turn")
        pose = torch.from_numpy(P[1] if yaw > 0 else P[0]).float()
    img = scene.render(expr, pose, scale)
    write_image(output, img)
    return {"output": str(output), "image": img}
