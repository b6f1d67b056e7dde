"""``styletalker view``: the avatar in the browser (viser), rendered on the server.

One :class:`Viewer` owns the viser server, the controls (shared by every browser tab) and one
render thread. Each tab has its own camera (orbit / zoom with the mouse); any change marks the
affected tabs "dirty" and the render thread redraws each dirty tab once with the newest state,
so a slider dragged quickly or a playing video costs at most one render per tab at a time and
never queues up. The image is rendered by the project's own rasterizer
(:meth:`styletalker.animate.AvatarScene.render`) at the tab's aspect ratio and sent as the
scene's background image (JPEG). Why rendering on the server rather than streaming Gaussians to
the browser's splat renderer: docs/viewer.md (measured with ``bench/viewer.py``).
"""

from __future__ import annotations

import contextlib
import dataclasses
import io
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import InputError
from ..workdir import log
from ..workfolder import RENDERS
from . import expressions as ex
from . import framing

ORIGINAL = "original"
DEFAULT_PORT = 8080
DEFAULT_HOST = "127.0.0.1"
DEFAULT_RESOLUTION = 512  # longer side of the rendered image, pixels
JPEG_QUALITY = 90
HEAD_LIMITS = {"yaw": 60.0, "pitch": 30.0, "roll": 30.0}  # head-pose sliders, +-degrees


def require_viser():
    try:
        import viser
    except ImportError:
        raise InputError("styletalker view needs the viewer extra: pip install -e \".[viewer]\" (viser)") from None
    return viser


def finished_edits(work: Path | None) -> list[str]:
    from ..workfolder import WorkFolder

    return [] if work is None else WorkFolder(work).finished_edits()


@dataclass
class Motion:
    """A frame from the training sequence or a driver: avatar expression and head pose."""

    expression: np.ndarray
    head_pose: np.ndarray  # (4,4), in the avatar's reference camera
    arrival: float | None = None  # driver frames: when the source frame arrived (perf_counter)
    label: str = ""


@dataclass
class ViewState:
    avatar: str
    expression: np.ndarray
    split: bool = False
    yaw: float = 0.0
    pitch: float = 0.0
    roll: float = 0.0
    motion: Motion | None = None
    version: int = 0


@dataclass
class ClientView:
    """What was last shown in one tab (for snapshots and tests)."""

    camera: framing.ViewCamera
    image: np.ndarray
    state: ViewState
    rendered_at: float
    seconds: float
    renders: int = 1


@dataclass
class _Playback:
    thread: threading.Thread
    stop: threading.Event = field(default_factory=threading.Event)
    drive: object = None


class Viewer:
    """The viewer of one work folder. Loading (and every error about a missing reconstruction or
    edit) happens in the constructor, before :meth:`start` opens the server."""

    def __init__(self, work, *, edit: str | None = None, host: str = DEFAULT_HOST, port: int = DEFAULT_PORT,
                 device: str = "cpu", resolution: int = DEFAULT_RESOLUTION, verbose: bool = True):
        from ..animate import head_pivot, load_scene

        if resolution < 32:
            raise InputError("--resolution must be at least 32 pixels")
        if not 0 <= int(port) <= 65535:
            raise InputError(f"--port {port}: not a port number")
        self.viser = require_viser()
        self.device = device
        self.host, self.port, self.resolution, self.verbose = host, int(port), int(resolution), verbose
        self.scenes = {ORIGINAL: load_scene(work, None, device)}  # MissingStageError without a reconstruction
        base = self.scenes[ORIGINAL]
        self.work = base.work
        if edit:
            self.scenes[edit] = load_scene(work, edit, device)  # lists the finished edits when missing
        self.avatars = [ORIGINAL] + finished_edits(self.work)
        if edit and edit not in self.avatars:
            self.avatars.append(edit)
        self.names = list(base.info.get("expression_names") or [f"e{i}" for i in range(base.avatar.config["n_expr"])])
        self.pivot = head_pivot(base.avatar)
        self.ref_pose = base.ref_pose.numpy().astype(np.float64)
        rng = base.avatar.config.get("expression_range")
        self.expr_max = base.avatar.expr_max.cpu().numpy() if rng else None
        self.expr_min = base.avatar.expr_min.cpu().numpy() if rng else None
        self.state = ViewState(edit or ORIGINAL, base.neutral_expression.numpy().astype(np.float32).copy())
        self.views: dict[int, ClientView] = {}
        self.errors: list[str] = []
        self.server = None
        self._lock = threading.RLock()
        self._cond = threading.Condition(self._lock)
        self._dirty: set[int] = set()
        self._last_rendered = -1
        self._stop = threading.Event()
        self._render_thread: threading.Thread | None = None
        self._playback: _Playback | None = None
        self._dataset = None
        self._gui: dict = {}
        self._drive_stats = None

    # ------------------------------------------------------------------ state
    def scene(self, name: str):
        with self._lock:
            if name not in self.scenes:
                from ..animate import load_scene

                self.scenes[name] = load_scene(self.work, None if name == ORIGINAL else name, self.device)
            return self.scenes[name]

    def update(self, **changes) -> None:
        """Change the shared state (any :class:`ViewState` field) and redraw every tab."""
        with self._cond:
            for k, v in changes.items():
                setattr(self.state, k, v)
            self.state.version += 1
            self._dirty.update(self._client_ids())
            self._cond.notify_all()

    def set_channel(self, index: int, value: float) -> None:
        with self._lock:
            e = self.state.expression.copy()
            e[index] = value
        self.update(expression=e)

    def _client_ids(self) -> list[int]:
        return list(self.server.get_clients()) if self.server is not None else []

    def request(self, client_id: int) -> None:
        with self._cond:
            self._dirty.add(client_id)
            self._cond.notify_all()

    # ------------------------------------------------------------------ rendering
    def _scenes(self, camera: framing.ViewCamera, state: ViewState):
        """``(scene of name -> scene framed by camera, expression, world_to_cam, live)`` of ``state``;
        ``live``: a driver frame (drawn with the live level of detail where it covers the view)."""
        import torch

        motion = state.motion
        expr = motion.expression if motion is not None else state.expression
        head = motion.head_pose if motion is not None else self.ref_pose
        w2c = framing.avatar_view(camera.world_to_cam, self.ref_pose, head,
                                  framing.head_motion(self.pivot, state.yaw, state.pitch, state.roll))
        K = torch.from_numpy(camera.K).float()

        def framed(name):
            return dataclasses.replace(self.scene(name), K=K, width=camera.width, height=camera.height)

        return framed, expr, torch.from_numpy(w2c).float(), motion is not None and motion.arrival is not None

    def render(self, camera: framing.ViewCamera, state: ViewState) -> np.ndarray:
        """The image of ``state`` seen by ``camera`` ((H,W,3) float in [0,1])."""
        framed, expr, pose, live = self._scenes(camera, state)

        def one(name):
            return framed(name).render(expr, pose, live=live)

        img = one(state.avatar)
        if state.split:
            img = framing.split_view(one(ORIGINAL), img)
        return img

    def client_camera(self, client) -> framing.ViewCamera:
        cam = client.camera
        return framing.browser_camera(cam.wxyz, cam.position, cam.fov, cam.aspect, self.resolution)

    def _render_loop(self) -> None:
        while not self._stop.is_set():
            with self._cond:
                self._cond.wait_for(lambda: self._dirty or self._stop.is_set())
                if self._stop.is_set():
                    return
                later = [c for c in self._dirty if c > self._last_rendered]  # round robin over the tabs
                cid = min(later) if later else min(self._dirty)
                self._dirty.discard(cid)
                self._last_rendered = cid
                state = dataclasses.replace(self.state)
            client = self.server.get_clients().get(cid) if self.server is not None else None
            if client is None:
                continue
            try:
                t0 = time.perf_counter()
                camera = self.client_camera(client)
                img = self.render(camera, state)
                client.scene.set_background_image((np.clip(img, 0, 1) * 255 + 0.5).astype(np.uint8), format="jpeg",
                                                  jpeg_quality=JPEG_QUALITY)
                now = time.perf_counter()
                with self._lock:
                    prev = self.views.get(cid)
                    self.views[cid] = ClientView(camera, img, state, now, now - t0, prev.renders + 1 if prev else 1)
                if state.motion is not None and state.motion.arrival is not None and self._drive_stats is not None:
                    self._drive_stats.add(state.motion.arrival, now - t0)
            except Exception as e:  # a tab that closed mid-render, a bad camera message: keep serving
                msg = f"{type(e).__name__}: {e}"
                if msg not in self.errors:
                    self.errors.append(msg)
                    if self.verbose:
                        log(f"viewer: render for tab {cid} failed ({msg})")

    # ------------------------------------------------------------------ server
    def start(self) -> str:
        """Open the server (non-blocking); returns its URL."""
        viser = self.viser
        with contextlib.redirect_stdout(io.StringIO()):  # viser's own banner; serve_forever prints the URL
            self.server = viser.ViserServer(host=self.host, port=self.port, verbose=False)
        self.port = self.server.get_port()
        self.server.scene.set_up_direction(tuple(-self.ref_pose[1, :3]))  # the avatar's "up" (-y, canonical)
        base = self.scenes[ORIGINAL]
        ref = framing.reference_view(base.K.numpy(), base.height, self.ref_pose, self.pivot)
        ic = self.server.initial_camera
        ic.position, ic.look_at, ic.up, ic.fov = ref["position"], ref["look_at"], ref["up"], ref["fov"]
        ic.near, ic.far = 0.05, 100.0
        self._reference = ref
        self._build_gui()
        self.server.on_client_connect(self._on_connect)
        self.server.on_client_disconnect(self._on_disconnect)
        self._render_thread = threading.Thread(target=self._render_loop, name="styletalker-view-render", daemon=True)
        self._render_thread.start()
        return self.url

    @property
    def url(self) -> str:
        host = "127.0.0.1" if self.host in ("0.0.0.0", "") else self.host
        return f"http://{host}:{self.port}/"

    def _on_connect(self, client) -> None:
        client.camera.on_update(lambda cam: self.request(cam.client.client_id))
        self.request(client.client_id)

    def _on_disconnect(self, client) -> None:
        with self._lock:
            self._dirty.discard(client.client_id)
            self.views.pop(client.client_id, None)

    def reset_camera(self, client) -> None:
        ref = self._reference
        client.camera.fov = ref["fov"]
        client.camera.up_direction = ref["up"]
        client.camera.position = ref["position"]
        client.camera.look_at = ref["look_at"]

    def stop(self) -> None:
        self.stop_motion()
        self._stop.set()
        with self._cond:
            self._cond.notify_all()
        if self._render_thread is not None:
            self._render_thread.join(timeout=10)
        if self.server is not None:
            self.server.stop()

    def serve_forever(self) -> None:
        url = self.start()
        try:  # the URL is printed inside: a Ctrl-C right after it (a test reads it and stops us) is caught too
            print(f"viewer: {url} (avatar {self.scenes[ORIGINAL].source}; Ctrl-C to stop)", flush=True)
            while not self._stop.is_set():
                time.sleep(0.5)
        except KeyboardInterrupt:
            pass
        finally:
            self.stop()

    # ------------------------------------------------------------------ controls
    def _build_gui(self) -> None:
        gui = self.server.gui
        gui.configure_theme(control_width="medium", show_share_button=False)  # no tunnel to viser's share server
        gui.main_panel.dock_right()  # beside the picture, not over it
        g = self._gui
        with gui.add_folder("Avatar"):
            g["avatar"] = gui.add_dropdown("avatar", tuple(self.avatars), initial_value=self.state.avatar,
                                           hint="the reconstruction or one of its finished edits")
            g["split"] = gui.add_checkbox("A/B split", False, hint="left: original, right: the chosen avatar")
            g["reset"] = gui.add_button("Reset view")
        g["avatar"].on_update(lambda e: self._choose_avatar(g["avatar"].value))
        g["split"].on_update(lambda e: self.update(split=bool(g["split"].value)))
        g["reset"].on_click(lambda e: e.client is not None and self.reset_camera(e.client))

        with gui.add_folder("Head pose"):
            for k, lim in HEAD_LIMITS.items():
                g[k] = gui.add_slider(k, min=-lim, max=lim, step=1.0, initial_value=0.0, hint="degrees")
                g[k].on_update(lambda e, k=k: self.update(**{k: float(g[k].value)}))

        with gui.add_folder("Expression"):
            g["preset"] = gui.add_button_group("preset", tuple(ex.PRESETS))
            g["preset"].on_click(lambda e: self.apply_preset(g["preset"].value))
            self._sliders = {}
            for group, channels in ex.grouped(self.names).items():
                with gui.add_folder(group, expand_by_default=group == "Jaw"):
                    for i, name in channels:
                        hint = None
                        if self.expr_max is not None:
                            hint = (f"trained range {self.expr_min[i]:.2f}-{self.expr_max[i]:.2f}; outside it only "
                                    "the face's linear model moves on, a little")
                        s = gui.add_slider(name, min=0.0, max=1.0, step=0.01,
                                           initial_value=round(float(self.state.expression[i]), 2), hint=hint)
                        s.on_update(lambda e, i=i, s=s: self.set_channel(i, float(s.value)))
                        self._sliders[i] = s

        with gui.add_folder("Play"):
            g["play"] = gui.add_button("Play training sequence", disabled=self.work is None)
            g["loop"] = gui.add_checkbox("loop", True)
            g["stop_play"] = gui.add_button("Stop")
            g["play_status"] = gui.add_markdown("")
        g["play"].on_click(lambda e: self.play_training(loop=bool(g["loop"].value)))
        g["stop_play"].on_click(lambda e: self.stop_motion())

        with gui.add_folder("Drive"):
            g["driver"] = gui.add_text("driver", "0", hint="camera index (0, 1, ...) or path of a video file on the server")
            g["pose"] = gui.add_dropdown("head motion", ("relative", "rotation", "none"), initial_value="relative")
            g["gain"] = gui.add_slider("expression gain", min=0.2, max=2.0, step=0.05, initial_value=1.0)
            g["drive"] = gui.add_button("Start driving")
            g["stop_drive"] = gui.add_button("Stop")
            g["drive_status"] = gui.add_markdown("")
        g["drive"].on_click(lambda e: self._drive_clicked())
        g["stop_drive"].on_click(lambda e: self.stop_motion())

        with gui.add_folder("Export"):
            g["png"] = gui.add_button("Save PNG snapshot")
            g["ply"] = gui.add_button("Save .ply")
            g["export_status"] = gui.add_markdown("")
        g["png"].on_click(lambda e: self._export(e.client, "png"))
        g["ply"].on_click(lambda e: self._export(e.client, "ply"))

    def _status(self, key: str, text: str) -> None:
        if key in self._gui:
            self._gui[key].content = text

    def _choose_avatar(self, name: str) -> None:
        try:
            self.scene(name)
        except Exception as e:
            self._status("export_status", f"cannot load {name}: {e}")
            return
        self.update(avatar=name)

    def apply_preset(self, preset: str) -> None:
        e = ex.preset_expression(preset, self.scenes[ORIGINAL].neutral_expression.numpy(), self.names, self.expr_max)
        for i, s in getattr(self, "_sliders", {}).items():
            s.value = round(float(e[i]), 2)  # the sliders show it (their callbacks are coalesced)
        self.update(expression=e.astype(np.float32))

    # ------------------------------------------------------------------ play / drive
    def stop_motion(self) -> None:
        pb, self._playback = self._playback, None
        if pb is not None:
            pb.stop.set()
            if pb.drive is not None:
                pb.drive.stop()
            if pb.thread is not threading.current_thread():
                pb.thread.join(timeout=5)
        self.update(motion=None)

    def play_training(self, loop: bool = True) -> None:
        """Play the training clip (its expressions and head poses) at its own frame rate."""
        if self.work is None:
            raise InputError("playing the training sequence needs a work folder")
        if self._dataset is None:
            from ..preprocess import load_dataset

            self._dataset = load_dataset(self.work)
        self.stop_motion()
        ds = self._dataset
        expr, poses, n, fps = ds.expression.numpy(), ds.world_to_cam.numpy(), len(ds), float(ds.fps or 25.0)
        stop = threading.Event()

        def run():
            t0 = time.perf_counter()
            while not stop.is_set():
                k = int((time.perf_counter() - t0) * fps)
                if k >= n:
                    if not loop:
                        break
                    t0, k = time.perf_counter(), 0
                self.update(motion=Motion(expr[k], poses[k], None, f"frame {k + 1}/{n}"))
                self._status("play_status", f"frame {k + 1} / {n} at {fps:g} frames/s")
                stop.wait(max(t0 + (k + 1) / fps - time.perf_counter(), 0.0))
            if not stop.is_set():
                self._playback = None
                self.update(motion=None)

        self._playback = _Playback(threading.Thread(target=run, name="styletalker-view-play", daemon=True), stop)
        self._playback.thread.start()

    def _drive_clicked(self) -> None:
        g = self._gui
        try:
            self.drive(g["driver"].value.strip(), pose=g["pose"].value, gain=float(g["gain"].value))
        except Exception as e:  # shown in the panel; the server keeps running
            self._status("drive_status", f"**cannot drive**: {e}")

    def _prefetch(self, motion: Motion) -> None:
        """The Gaussians of a driver frame for the newest tab's view, computed on the drive thread
        while the render thread draws the previous frame (kept by the scenes' FrozenAvatars);
        the live level of detail of each avatar shown is made here the first time."""
        import torch

        from ..lod import live_lod

        with self._lock:
            state = dataclasses.replace(self.state, motion=motion)
            views = sorted(self.views.values(), key=lambda v: v.rendered_at)
        names = [state.avatar, ORIGINAL] if state.split and state.avatar != ORIGINAL else [state.avatar]
        for name in names:
            if self.scene(name).lod is None:
                live_lod(self.scene(name))
        if not views:
            return
        framed, expr, pose, _ = self._scenes(views[-1].camera, state)
        for name in names:
            s = framed(name)
            s.frozen_for(pose, live=True)(torch.as_tensor(expr, dtype=torch.float32).to(
                next(s.avatar.parameters()).device))

    def drive(self, spec, *, pose: str = "relative", gain: float = 1.0, loop: bool = True):
        """Drive the avatar from a camera index or a video file (played at its own frame rate)
        as its frames arrive; returns the :class:`~styletalker.live.LiveDrive`."""
        from ..live import LiveDrive, LiveStats, open_source

        self.stop_motion()
        base = self.scenes[ORIGINAL]
        drive = LiveDrive(base, open_source(spec, loop=loop), pose=pose, gain=gain,
                          size=max(128, min(self.resolution, 256)))
        self._drive_stats = stats = LiveStats()
        drive.start()
        stop = threading.Event()

        def run():
            last_status = 0.0
            for f in drive.results(stop):
                motion = Motion(f.expression, f.pose, f.arrival, f"driver {f.media_time:.1f}s")
                self._prefetch(motion)
                self.update(motion=motion)
                if time.perf_counter() - last_status > 1.0:
                    last_status = time.perf_counter()
                    s = stats.summary()
                    self._status("drive_status", f"{s['fps']:g} frames/s shown, {s['latency_ms_median']:g} ms from "
                                                 f"driver frame to image (median); {drive.no_face} frames without a face")
            err = drive.error
            drive.stop()
            if err is not None:
                self._status("drive_status", f"**driver stopped**: {err}")
            if not stop.is_set():
                self._playback = None
                self.update(motion=None)

        self._playback = _Playback(threading.Thread(target=run, name="styletalker-view-drive", daemon=True), stop, drive)
        self._playback.thread.start()
        return drive

    # ------------------------------------------------------------------ export
    def export(self, kind: str, client_id: int | None = None) -> list[Path]:
        """Write the current state: ``png`` = the image last shown in tab ``client_id`` (default:
        any), ``ply`` = the Gaussians of the shown avatar(s) at the current expression (canonical
        space, the 3DGS layout of ``styletalker render --ply``). Files go to ``WORK/renders/``."""
        import torch

        from ..render.ply import save_ply
        from ..workdir import write_image

        folder = (self.work if self.work is not None else Path(self.scenes[ORIGINAL].source).parent) / RENDERS
        with self._lock:
            state = dataclasses.replace(self.state)
            view = self.views.get(client_id) if client_id is not None else next(iter(self.views.values()), None)
        tag = state.avatar + ("_ab" if state.split else "")
        k = 0
        while any((folder / f"view_{tag}_{k:03d}.{x}").exists() for x in ("png", "ply")):
            k += 1
        if kind == "png":
            if view is None:
                raise InputError("nothing rendered yet: open the viewer in a browser first")
            return [write_image(folder / f"view_{tag}_{k:03d}.png", view.image)]
        expr = state.motion.expression if state.motion is not None else state.expression
        out = []
        for name in dict.fromkeys([state.avatar] + ([ORIGINAL] if state.split else [])):
            with torch.no_grad():
                g = self.scene(name).avatar(torch.as_tensor(expr, dtype=torch.float32))
            path = folder / (f"view_{tag}_{k:03d}.ply" if name == state.avatar else f"view_{tag}_{k:03d}_original.ply")
            out.append(save_ply(path, g.means, g.quats, g.scales, g.opacities, g.colors.clamp(0, 1)))
        return out

    def _export(self, client, kind: str) -> None:
        try:
            paths = self.export(kind, client.client_id if client is not None else None)
        except Exception as e:
            self._status("export_status", f"**export failed**: {e}")
            return
        self._status("export_status", "saved " + ", ".join(f"`{p}`" for p in paths))
        if client is not None:
            for p in paths:
                client.send_file_download(p.name, p.read_bytes())


def run_viewer(work, *, edit: str | None = None, host: str = DEFAULT_HOST, port: int = DEFAULT_PORT,
               device: str = "cpu", resolution: int = DEFAULT_RESOLUTION) -> None:
    """Serve the viewer until Ctrl-C (raises before starting for a folder without a reconstruction)."""
    Viewer(work, edit=edit, host=host, port=port, device=device, resolution=resolution).serve_forever()


__all__ = ["Viewer", "run_viewer", "ORIGINAL", "finished_edits"]
