"""Live driving: a camera's or a video's tracked expressions and head motion applied to the avatar
as the frames arrive (``styletalker animate WORK --driver 0``, the viewer's drive panel,
``bench/live.py``; docs/viewer.md "Live driving").

    source (camera, or a video file paced at its own frame rate)
      -> LiveTracker: the preprocessing tracker one frame at a time (MediaPipe face landmarker in
         VIDEO mode + ``tracking.solve_geometry``): 52 blendshapes and the head pose
      -> LiveRetarget: ``retarget.retarget_expressions`` with the driver's running 5th / 95th
         percentiles so far, ``animate.retarget_poses`` against the driver's running mean pose
      -> the consumer renders (``run_live`` writes a video, the viewer sends it to the browser)

Every hand-over keeps only the newest item (a camera does not wait): when tracking or rendering
is slower than the source, frames are skipped rather than queued, so the delay from a driver
frame to the avatar that shows it stays bounded. :class:`LiveStats` measures that delay and the
sustained frame rate.
"""

from __future__ import annotations

import signal
import threading
import time
from collections import deque
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .animate_options import DriveOptions
from .errors import InputError

HISTORY = 1500  # driver frames (60 s at 25 fps) behind the running range and mean pose


@dataclass
class Frame:
    """One source frame: ``seq`` counts published frames, ``arrival`` is when it became available
    (``time.perf_counter()``), ``media_time`` its timestamp in the source (seconds)."""

    seq: int
    arrival: float
    media_time: float
    image: np.ndarray  # (H, W, 3) uint8 RGB


class _Newest:
    """A worker thread that publishes items (each with a ``seq`` number) into a slot holding only
    the newest one; readers wait for one newer than what they have (:meth:`next`, :meth:`results`)."""

    thread_name = "styletalker-worker"

    def __init__(self):
        self.error: BaseException | None = None
        self._cond = threading.Condition()
        self._item = None
        self._count = 0
        self._done = False
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _start_thread(self, *args) -> None:
        self._thread = threading.Thread(target=self._guarded, args=args, name=self.thread_name, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        with self._cond:
            self._cond.notify_all()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout=5)

    @property
    def done(self) -> bool:
        return self._done

    @property
    def latest(self):
        return self._item

    def next(self, after: int, timeout: float | None = None):
        """The newest item with ``seq > after``; None when the worker has ended (or on timeout)."""
        with self._cond:
            self._cond.wait_for(lambda: (self._item is not None and self._item.seq > after) or self._done, timeout)
            return self._item if self._item is not None and self._item.seq > after else None

    def results(self, stop: threading.Event | None = None, until=None):
        """Each newest item until the worker ends, ``stop`` is set or ``until()`` is true (checked
        at least every 0.2 s); items published meanwhile are skipped."""
        seq = 0
        while (stop is None or not stop.is_set()) and (until is None or not until()):
            item = self.next(seq, timeout=0.2)
            if item is None:
                if self._done:
                    return
                continue
            seq = item.seq
            yield item

    def _publish(self, make) -> None:
        """Publish ``make(seq)`` as the newest item."""
        with self._cond:
            self._count += 1
            self._item = make(self._count)
            self._cond.notify_all()

    def _guarded(self, *args) -> None:
        try:
            self._run(*args)
        except BaseException as e:  # reported to the consumer (run_live, the viewer)
            self.error = e
        finally:
            self._finish()
            with self._cond:
                self._done = True
                self._cond.notify_all()

    def _run(self, *args) -> None:  # pragma: no cover - abstract
        raise NotImplementedError

    def _finish(self) -> None:
        pass


class FrameSource(_Newest):
    """Frames of a camera or a video from a reader thread; only the newest is kept."""

    kind = "source"

    def __init__(self, fps: float):
        super().__init__()
        self.fps = float(fps)
        self.thread_name = f"styletalker-{self.kind}"

    @property
    def published(self) -> int:
        return self._count

    def start(self) -> "FrameSource":
        self._start_thread()
        return self

    def _frame(self, image: np.ndarray, media_time: float) -> None:
        self._publish(lambda n: Frame(n, time.perf_counter(), float(media_time), image))


class VideoSource(FrameSource):
    """A video file played at its own frame rate (frame t is published at start + t)."""

    kind = "video"

    def __init__(self, path, *, start: float = 0.0, duration: float | None = None, loop: bool = False):
        from .video import probe

        self.path = Path(path)
        info = probe(self.path)  # InputError for missing / unreadable files
        super().__init__(info.fps)
        self.start_s, self.duration, self.loop = float(start), duration, loop
        self.name = self.path.name

    def _run(self) -> None:
        from .video import iter_frames

        while not self._stop.is_set():
            t0 = None
            for _idx, t, img in iter_frames(self.path, start=self.start_s, duration=self.duration):
                if self._stop.is_set():
                    return
                if t0 is None:
                    t0 = time.perf_counter() - t
                wait = t0 + t - time.perf_counter()
                if wait > 0 and self._stop.wait(wait):
                    return
                self._frame(img, t)
            if not self.loop or t0 is None:
                return


class CameraSource(FrameSource):
    """A camera (OpenCV capture device index); frames are stamped with their arrival time."""

    kind = "camera"

    def __init__(self, index: int):
        import cv2

        self.index = int(index)
        self.name = f"camera{self.index}"
        self._cap = cv2.VideoCapture(self.index)
        if not self._cap.isOpened():
            self._cap.release()
            raise InputError(f"camera {self.index} could not be opened (no such capture device, or it is busy); "
                             "give a camera index that exists or a video file")
        super().__init__(self._cap.get(cv2.CAP_PROP_FPS) or 30.0)

    def _run(self) -> None:
        import cv2

        t0 = time.perf_counter()
        try:
            while not self._stop.is_set():
                ok, bgr = self._cap.read()
                if not ok:
                    if self.published == 0:
                        raise InputError(f"camera {self.index} delivers no frames")
                    return
                self._frame(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB), time.perf_counter() - t0)
        finally:
            self._cap.release()


def camera_index(spec) -> int | None:
    """``spec`` as a camera index (an int, or a string of digits that is not an existing file)."""
    if isinstance(spec, int):
        return spec
    s = str(spec)
    return int(s) if s.isdigit() and not Path(s).exists() else None


def open_source(spec, *, loop: bool = False) -> FrameSource:
    """A camera index (``0``) or a video file, not yet started."""
    idx = camera_index(spec)
    if idx is not None:
        return CameraSource(idx)
    return VideoSource(spec, loop=loop)


# ---------------------------------------------------------------------------------------------
# tracking and retargeting, one frame at a time


@dataclass
class Tracked:
    expression: np.ndarray  # (E,) blendshapes as tracked
    expression_names: list[str]
    world_to_cam: np.ndarray  # (4,4) head pose (canonical -> driver camera)


class LiveTracker:
    """The preprocessing tracker on single frames: MediaPipe's VIDEO-mode landmarker with the
    preprocessing settings (it tracks from frame to frame; two faces searched, the one nearest the
    previous kept, the larger one first, as ``tracking.detect_faces`` does; with ``num_faces=1``
    MediaPipe re-detects less often, which is faster but gives other blendshapes on the same
    video, docs/viewer.md) and :func:`~styletalker.preprocess.tracking.solve_geometry` (pose
    refined by PnP on the canonical face mesh, same camera model), without temporal smoothing."""

    def __init__(self, size: int = 256, num_faces: int = 2):
        from .preprocess import mp_models
        from .preprocess.tracking import TrackOptions

        self._landmarker = mp_models.create_landmarker(num_faces=num_faces)
        self._options = TrackOptions(size=int(size), smooth=0.0)
        self._last_ms = -1
        self._prev_centre: np.ndarray | None = None

    def track(self, image: np.ndarray, t: float) -> Tracked | None:
        """Track one RGB frame at time ``t`` (seconds, increasing); None when no face is found."""
        import mediapipe as mp

        from .preprocess.tracking import solve_geometry

        ms = max(int(round(t * 1000)), self._last_ms + 1)
        self._last_ms = ms
        res = self._landmarker.detect_for_video(mp.Image(image_format=mp.ImageFormat.SRGB,
                                                         data=np.ascontiguousarray(image)), ms)
        faces = [np.array([[p.x, p.y, p.z] for p in f], np.float64) for f in res.face_landmarks]
        if not faces:
            return None
        centres = [f[:, :2].mean(0) for f in faces]
        if self._prev_centre is not None:
            j = int(np.argmin([np.linalg.norm(c - self._prev_centre) for c in centres]))
        else:
            j = int(np.argmax([np.prod(f[:, :2].max(0) - f[:, :2].min(0)) for f in faces]))
        if len(res.face_blendshapes) <= j or len(res.facial_transformation_matrixes) <= j:
            return None
        self._prev_centre = centres[j]
        cats = res.face_blendshapes[j]
        raw = {"width": image.shape[1], "height": image.shape[0], "time": np.array([t]),
               "frame_index": np.array([0]), "expression_names": [c.category_name for c in cats],
               "landmarks_norm": faces[j][None],
               "blendshapes": np.clip(np.array([[c.score for c in cats]]), 0.0, 1.0),
               "matrix_gl": np.array(res.facial_transformation_matrixes[j], np.float64)[None]}
        geo = solve_geometry(raw, self._options)
        return Tracked(geo["expression"][0], geo["expression_names"], geo["world_to_cam"][0].astype(np.float64))

    def close(self) -> None:
        self._landmarker.close()


class LiveRetarget:
    """Driver expression + pose of each new frame -> what the avatar shows.

    Expressions: :func:`~styletalker.retarget.retarget_expressions` with ``driver_range`` = the
    5th / 95th percentiles of the driver frames seen so far (the last :data:`HISTORY`); while
    the driver has hardly moved a channel it is shifted, not stretched. Head motion:
    :func:`~styletalker.animate.retarget_poses` over the same frames (relative to the driver's
    running mean pose), last row. So a live driver converges to what ``styletalker animate``
    computes from the whole clip.
    """

    def __init__(self, scene, *, pose: str = "relative", retarget: str = "auto", gain: float = 1.0,
                 history: int = HISTORY):
        from .animate import POSE_MODES
        from .retarget import avatar_range, check_options

        check_options(retarget, gain)
        if pose not in POSE_MODES:
            raise InputError(f"unknown pose mode {pose!r}; choose from {', '.join(POSE_MODES)}")
        self.pose, self.mode, self.gain = pose, retarget, float(gain)
        self.source_range = avatar_range(scene.avatar)
        self.names = list(scene.info.get("expression_names") or [])
        self.n_expr = int(scene.avatar.config["n_expr"])
        self.ref_pose = scene.ref_pose.numpy().astype(np.float64)
        self._expr: deque = deque(maxlen=history)
        self._poses: deque = deque(maxlen=history)
        self._order: np.ndarray | None = None

    def _in_avatar_order(self, tracked: Tracked) -> np.ndarray:
        if self._order is None:
            have = {n: k for k, n in enumerate(tracked.expression_names)}
            want = self.names or tracked.expression_names
            self._order = np.array([have.get(n, -1) for n in want], np.int64)
            if len(self._order) != self.n_expr:
                raise InputError(f"the driver has {len(self._order)} expression coefficients, "
                                 f"the avatar expects {self.n_expr}")
        e = np.asarray(tracked.expression, np.float64)
        return np.where(self._order >= 0, e[np.maximum(self._order, 0)], 0.0)

    def __call__(self, tracked: Tracked) -> tuple[np.ndarray, np.ndarray]:
        from .animate import retarget_poses
        from .retarget import clip_range, retarget_expressions

        e = self._in_avatar_order(tracked)
        self._expr.append(e)
        self._poses.append(tracked.world_to_cam)
        expr = retarget_expressions(e[None], self.source_range, self.mode, self.gain,
                                    driver_range=clip_range(np.stack(self._expr)))[0]
        pose = retarget_poses(np.stack(self._poses), self.ref_pose, self.pose)[-1]
        return expr.astype(np.float32), pose.astype(np.float32)


@dataclass
class DriveFrame:
    """What the avatar should show for driver frame ``seq`` (avatar expression and head pose)."""

    seq: int
    arrival: float  # when the driver frame arrived (perf_counter)
    media_time: float
    expression: np.ndarray  # (E,) retargeted
    pose: np.ndarray  # (4,4) avatar head pose (world_to_cam of the avatar's reference camera)


class LiveDrive(_Newest):
    """Source -> tracker -> retarget on a worker thread; :meth:`next` / :meth:`results` give the
    newest result (a :class:`DriveFrame`).

    Counters: ``tracked`` (frames with a face), ``no_face``, ``skipped`` (source frames that
    arrived while the tracker was busy and were never tracked), ``track_seconds``.
    """

    thread_name = "styletalker-track"

    def __init__(self, scene, source: FrameSource, *, pose: str = "relative", retarget: str = "auto",
                 gain: float = 1.0, size: int = 256, num_faces: int = 2):
        super().__init__()
        self.source = source
        self.retarget = LiveRetarget(scene, pose=pose, retarget=retarget, gain=gain)
        self._size, self._num_faces = size, num_faces
        self.tracked = self.no_face = self.skipped = 0
        self.track_seconds = self.track_cpu = 0.0  # wall and thread CPU time of the tracked frames
        self._tracker: LiveTracker | None = None

    def start(self) -> "LiveDrive":
        tracker = LiveTracker(self._size, self._num_faces)  # created here: a bad model file raises in the caller
        self.source.start()
        self._start_thread(tracker)
        return self

    def stop(self) -> None:
        self.source.stop()
        super().stop()

    def _run(self, tracker: LiveTracker) -> None:
        self._tracker, seen = tracker, 0
        for f in self.source.results(self._stop):
            self.skipped += f.seq - seen - 1
            seen = f.seq
            t0, c0 = time.perf_counter(), time.thread_time()
            tr = tracker.track(f.image, f.media_time)
            if tr is None:
                self.no_face += 1
                continue
            expr, pose = self.retarget(tr)
            self.track_seconds += time.perf_counter() - t0
            self.track_cpu += time.thread_time() - c0
            self.tracked += 1
            self._publish(lambda n: DriveFrame(n, f.arrival, f.media_time, expr, pose))

    def _finish(self) -> None:
        if self._tracker is not None:
            self._tracker.close()
        self.error = self.error or self.source.error


class LiveGaussians(_Newest):
    """The second stage of live driving: the avatar's Gaussians for each newest
    :class:`DriveFrame` (``scene.frozen``, which keeps them for the render), on their own thread,
    while the caller rasterizes the previous frame. Tracking, Gaussians and rasterization then
    overlap on the cores, and the frame rate is set by the slowest stage instead of their sum.
    Publishes the drive frames whose Gaussians are ready."""

    thread_name = "styletalker-gaussians"

    def __init__(self, scene, drive: LiveDrive, scale: float = 1.0, live: bool = True):
        super().__init__()
        self.scene, self.drive, self.scale, self.live = scene, drive, scale, live
        self.computed, self.seconds, self.cpu = 0, 0.0, 0.0  # frames whose Gaussians were computed, wall / CPU time

    def start(self) -> "LiveGaussians":
        self._start_thread()
        return self

    def _run(self) -> None:
        import dataclasses

        import torch

        dev = next(self.scene.avatar.parameters()).device
        for f in self.drive.results(self._stop):
            t0, c0 = time.perf_counter(), time.thread_time()
            frozen = self.scene.frozen_for(torch.from_numpy(f.pose), self.scale, self.live)
            frozen(torch.as_tensor(f.expression, dtype=torch.float32).to(dev))
            self.seconds += time.perf_counter() - t0
            self.cpu += time.thread_time() - c0
            self.computed += 1
            self._publish(lambda n: dataclasses.replace(f, seq=n))


class LiveStats:
    """Frames shown, sustained frame rate and driver-frame-to-avatar latency."""

    def __init__(self):
        self.latency: list[float] = []
        self.render: list[float] = []
        self.render_cpu: list[float] = []  # thread CPU time of each render (load-independent)
        self.first: float | None = None
        self.last: float | None = None
        self.stage: LiveGaussians | None = None  # set by live_frames when pipelined

    def add(self, arrival: float, render_seconds: float, render_cpu: float | None = None) -> None:
        now = time.perf_counter()
        if render_cpu is not None:
            self.render_cpu.append(render_cpu)
        self.first = now if self.first is None else self.first
        self.last = now
        self.latency.append(now - arrival)
        self.render.append(render_seconds)

    @property
    def frames(self) -> int:
        return len(self.latency)

    @property
    def fps(self) -> float:
        if self.frames < 2 or self.last is None or self.first is None or self.last <= self.first:
            return 0.0
        return (self.frames - 1) / (self.last - self.first)

    def summary(self) -> dict:
        lat = np.asarray(self.latency or [np.nan]) * 1000
        ren = np.asarray(self.render or [np.nan]) * 1000
        return {"frames": self.frames, "fps": round(self.fps, 2),
                "latency_ms_median": round(float(np.median(lat)), 1),
                "latency_ms_p95": round(float(np.percentile(lat, 95)), 1),
                "render_ms_median": round(float(np.median(ren)), 1),
                **({"render_cpu_ms_mean": round(1000 * float(np.mean(self.render_cpu)), 1)} if self.render_cpu else {}),
                **({"pipeline": True, "gaussians_ms_mean": round(1000 * self.stage.seconds / max(self.stage.computed, 1), 1),
                    "gaussians_cpu_ms_mean": round(1000 * self.stage.cpu / max(self.stage.computed, 1), 1)}
                   if self.stage is not None else {"pipeline": False})}


def live_frames(scene, drive: LiveDrive, *, scale: float = 1.0, stats: LiveStats | None = None,
                stop: threading.Event | None = None, duration: float | None = None, max_frames: int | None = None,
                pipeline: bool = True, lod: bool = True, torch_threads: int | None = 1):
    """Render the newest result of a started ``drive`` each time there is one: yields
    ``(DriveFrame, image)`` until the source ends, ``duration`` seconds of source time or
    ``max_frames`` source frames have passed, or ``stop`` is set. ``stats`` records each image.
    ``pipeline``: the Gaussians of the next frame are computed on a thread of their own
    (:class:`LiveGaussians`) while this one rasterizes; otherwise both happen here, one after the
    other. ``lod``: views the live level of detail covers are drawn with its pruned avatar
    (:mod:`styletalker.lod`; made here unless the scene has it, a few seconds once per avatar).
    ``torch_threads``: torch's intra-op threads while this runs (restored after): tracking,
    Gaussians and rasterization already keep the cores busy, one thread each (None: unchanged)."""
    import torch

    from .lod import live_lod

    if lod and scene.lod is None:
        live_lod(scene)

    source, t_start = drive.source, time.perf_counter()

    def finished() -> bool:
        latest = source.latest
        if duration is not None and ((latest is not None and latest.media_time >= duration)
                                     or time.perf_counter() - t_start > duration + 10):
            return True
        return max_frames is not None and source.published >= max_frames

    threads = torch.get_num_threads()
    if torch_threads:
        torch.set_num_threads(torch_threads)
    stage = LiveGaussians(scene, drive, scale, lod).start() if pipeline else None
    if stats is not None:
        stats.stage = stage
    try:
        for f in (stage or drive).results(stop, until=finished):
            t0, c0 = time.perf_counter(), time.thread_time()
            img = scene.render(f.expression, torch.from_numpy(f.pose), scale, live=lod)
            if stats is not None:
                stats.add(f.arrival, time.perf_counter() - t0, time.thread_time() - c0)
            yield f, img
    finally:
        if stage is not None:
            stage.stop()
        if torch_threads:
            torch.set_num_threads(threads)
    if stage is not None and stage.error is not None:
        raise stage.error


# ---------------------------------------------------------------------------------------------
# `styletalker animate WORK --driver 0`


@contextmanager
def _stop_on_sigint():
    """Ctrl-C ends a live run cleanly (the video written so far is kept) instead of aborting it."""
    stop = threading.Event()
    if threading.current_thread() is not threading.main_thread():
        yield stop
        return
    old = signal.signal(signal.SIGINT, lambda *_: stop.set())
    try:
        yield stop
    finally:
        signal.signal(signal.SIGINT, old)


def run_live(target, driver, output=None, *, edit: str | None = None, device: str = "cpu",
             duration: float | None = DriveOptions.duration, max_frames: int | None = DriveOptions.max_frames,
             pose: str = DriveOptions.pose, retarget: str = DriveOptions.retarget,
             expression_gain: float = DriveOptions.expression_gain, scale: float = DriveOptions.scale,
             show_progress: bool = True) -> dict:
    """Drive the avatar live from ``driver`` (a camera index or a video played in real time) and
    write what it showed to ``output`` (default ``WORK/renders/animate_camera<i>[_<edit>].mp4``)
    at the source's frame rate: each output frame is the newest avatar rendered by then. Stops at
    the end of a video, after ``duration`` seconds or ``max_frames`` source frames, or on Ctrl-C.
    Returns a summary with :meth:`LiveStats.summary` and the drive counters."""
    from .animate import _video_output, load_scene
    from .retarget import check_options
    from .video import write_video
    from .workdir import log

    check_options(retarget, expression_gain)
    if scale <= 0:
        raise InputError("--scale must be positive")
    scene = load_scene(target, edit, device)
    source = open_source(driver)
    output = _video_output(scene, output, f"animate_{source.name if source.kind == 'camera' else Path(driver).stem}",
                           edit, "the output")
    drive = LiveDrive(scene, source, pose=pose, retarget=retarget, gain=expression_gain,
                      size=max(128, int(round(scene.height * scale))))
    stats = LiveStats()
    fps = source.fps
    blank = scene.render(scene.neutral_expression, scene.ref_pose, scale)
    from .lod import live_lod

    live_lod(scene)  # before the source starts: the level of detail takes a few seconds once per avatar

    def frames(stop: threading.Event):
        """One image per source frame (media time t -> frame round(t * fps)): the newest avatar
        rendered by then; source frames the avatar skipped hold the previous image."""
        shown, current = 0, blank

        def upto(t: float):
            nonlocal shown
            while shown <= int(round(t * fps)):
                shown += 1
                yield current

        for f, img in live_frames(scene, drive, scale=scale, stats=stats, stop=stop, duration=duration,
                                  max_frames=max_frames):
            yield from upto(f.media_time - 1.0 / fps)  # up to the previous source frame
            current = img
            yield from upto(f.media_time)
        if stats.frames == 0 and drive.error is not None:  # nothing shown: no video is written
            raise drive.error if isinstance(drive.error, InputError) else InputError(f"live driver {driver}: {drive.error}")
        latest = source.latest
        end = latest.media_time if latest is not None else 0.0
        yield from upto(min(end, duration - 0.5 / fps) if duration is not None else end)

    with _stop_on_sigint() as stop:
        drive.start()
        try:
            n = write_video(output, frames(stop), fps)
        finally:
            drive.stop()
    live = {**stats.summary(), "tracked": drive.tracked, "no_face": drive.no_face, "skipped": drive.skipped}
    if show_progress:
        log(f"wrote {output} ({n} frames at {fps:g} fps); the avatar was updated at {live['fps']:g} frames/s, "
            f"{live['latency_ms_median']:g} ms after the driver frame (median); {drive.no_face} driver frames "
            f"without a face")
    return {"output": str(output), "frames": int(n), "fps": fps, "avatar": scene.source, "live": live}
