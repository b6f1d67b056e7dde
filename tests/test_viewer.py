"""`styletalker view` in a real browser (Debian's chromium, headless, driven by playwright).

The avatar is the real test-preset reconstruction of the sample clip. That tiny reconstruction does
not learn the jaw (docs/animate.md: the clip's jawOpen stays under 0.1 and 40 iterations fit no
expression), so :func:`jaw_rigged_work` gives a copy of it a hand-set MLP_deform that opens the
jaw: the surface below the lips turns down with jawOpen (0 above the lips, and 0 at the neutral
expression), everything else is the reconstruction as trained. An edit of that copy with the
built-in editor ("make his skin green") is the edit.

Checked from screenshots, in regions found by projecting the avatar's own 3D landmarks with the
camera the viewer rendered for that tab: moving the jawOpen control changes the mouth and chin
and leaves the hair and the background as they were; choosing the edit turns the face green; two
tabs at once, a closed tab and a slider dragged quickly leave the server serving. Without a
browser (no chromium, no playwright) the tests skip and say why.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest
import torch

CHROMIUM = os.environ.get("STYLETALKER_CHROMIUM", "/usr/bin/chromium")
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync"]
VIEWPORT = {"width": 960, "height": 640}
LIPS = (13, 14, 61, 291)  # MediaPipe landmarks: inner upper / lower lip, mouth corners
CHIN, FOREHEAD, CHEEKS = 152, 10, (50, 280)


def browser_or_skip():
    """(sync_playwright, executable) or a visible skip."""
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.skip("playwright is not installed (pip install -e '.[test]')")
    if not Path(CHROMIUM).is_file():
        pytest.skip(f"no browser at {CHROMIUM}: `make test` installs Debian's chromium (apt-get install chromium, "
                    "needs root); set STYLETALKER_CHROMIUM to another Chromium")
    pytest.importorskip("viser")
    return sync_playwright, CHROMIUM


def jaw_rigged_work(src: Path, dst: Path, amount: float = 0.5, sharpness: float = 20.0) -> Path:
    """A copy of the work folder ``src`` whose avatar opens its jaw with jawOpen (see the module
    docstring): MLP_deform = a single unit ``silu(k (y - y_lips + jawOpen - 1))`` pushing the
    surface down, which is ~0 unless jawOpen is large and the point lies below the lips; MLP_color
    and MLP_attr no longer see jawOpen. The rig sees the raw blendshapes and moves alone: the
    expression normalisation is set to the identity and the linear expression basis removed."""
    from styletalker.avatar import GaussianAvatar
    from styletalker.workdir import mark_complete

    shutil.copytree(src / "preprocess", dst / "preprocess")
    (dst / "reconstruct").mkdir(parents=True)
    shutil.copy2(src / "reconstruct" / "config.json", dst / "reconstruct" / "config.json")
    av = GaussianAvatar.load(src / "reconstruct" / "avatar.pt")
    names = json.loads((src / "preprocess" / "manifest.json").read_text())["expression_names"]
    jaw = names.index("jawOpen")
    y_lips = float(av.landmarks[list(LIPS[:2]), 1].mean())
    net = av.deform.net
    C = av.config["feat_dim"]
    x_dims = 3 + 6 * av.deform.n_freqs
    with torch.no_grad():
        for m in (net[0], net[2], net[4]):
            m.weight.zero_()
            m.bias.zero_()
        net[0].weight[0, C + 1] = sharpness  # y (down)
        net[0].weight[0, C + x_dims + jaw] = sharpness
        net[0].bias[0] = -sharpness * (y_lips + 1.0)
        net[2].weight[0, 0] = 1.0
        net[4].weight[1, 0] = amount / sharpness
        for field in (av.color, av.attributes):  # jawOpen drives the geometry only (these were never
            field.net[0].weight[:, C + jaw] = 0.0  # fitted beyond the clip's jawOpen < 0.1)
        av.expr_max[jaw] = 1.0  # the rig is defined up to a wide-open mouth
        av.expr_norm.shift.zero_()
        av.expr_norm.scale.fill_(1.0)
    av.basis.anchors, av.basis.matrix = av.basis.anchors[:0], av.basis.matrix[:, :0]
    av.save(dst / "reconstruct" / "avatar.pt", **av.extra)
    mark_complete(dst / "reconstruct", stage="reconstruct", rigged_from=str(src))
    return dst


@pytest.fixture(scope="module")
def rigged_work(franck_avatar_work, tmp_path_factory):
    from styletalker.edit.loop import run_edit

    work = jaw_rigged_work(franck_avatar_work, tmp_path_factory.mktemp("viewer") / "work")
    run_edit(work, "make his skin green", name="green", iters=30, progress_bars=False, evaluate=False)
    return work


@pytest.fixture(scope="module")
def viewer(rigged_work):
    from styletalker.viewer import Viewer

    v = Viewer(rigged_work, port=0, device="cpu", resolution=384, verbose=False)
    v.start()
    yield v
    v.stop()


@pytest.fixture(scope="module")
def chromium():
    """A function that starts a headless chromium with a fresh profile (a browser context)."""
    sync_playwright, exe = browser_or_skip()
    with sync_playwright() as p:
        started = []

        def launch():
            ctx = p.chromium.launch_persistent_context(tempfile.mkdtemp(prefix="st-chromium-"), executable_path=exe,
                                                       headless=True, args=FLAGS, viewport=VIEWPORT)
            started.append(ctx)
            return ctx

        yield launch
        for ctx in started:
            try:
                ctx.close()
            except Exception:  # closed by the test
                pass


@pytest.fixture(scope="module")
def browser(chromium):
    return chromium()


# ------------------------------------------------------------------------------------------------
# helpers


def wait_for(cond, timeout=30.0, what="condition"):
    t0 = time.time()
    while time.time() - t0 < timeout:
        v = cond()
        if v is not None and v is not False:
            return v
        time.sleep(0.05)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")


def shot(page) -> np.ndarray:
    import cv2

    png = page.screenshot()
    return cv2.cvtColor(cv2.imdecode(np.frombuffer(png, np.uint8), cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB).astype(np.float32)


def canvas_box(page) -> tuple[float, float, float, float]:
    r = page.evaluate("() => { const c = Array.from(document.querySelectorAll('canvas')).pop();"
                      " const b = c.getBoundingClientRect(); return [b.x, b.y, b.width, b.height]; }")
    return tuple(float(x) for x in r)


def open_tab(browser, viewer, known: set[int]):
    """A new tab on the viewer; returns (page, client id) once the avatar has been drawn in it."""
    page = browser.new_page()
    page.goto(viewer.url)
    cid = wait_for(lambda: next((c for c in viewer.views if c not in known), None), what="the first render")
    canvas = wait_for(lambda: (lambda b: b if b[2] > 0 else None)(canvas_box(page)), what="the canvas")
    # the first camera message may come before the layout settles: wait for a render at the canvas' aspect
    wait_for(lambda: abs(viewer.views[cid].camera.width / viewer.views[cid].camera.height - canvas[2] / canvas[3]) < 0.02,
             what="a render at the canvas' size")
    for b in page.locator("button.mantine-Notification-closeButton").all():  # "software WebGL" notice
        b.click(timeout=10000)
    return page, cid


def regions(viewer, cid, page) -> dict[str, tuple[slice, slice]]:
    """Screenshot boxes (rows, cols) of the mouth + chin, the hair, a cheek and the background,
    from the avatar's canonical landmarks projected with the camera of the tab's last render."""
    view = viewer.views[cid]
    lm = viewer.scenes["original"].avatar.landmarks.numpy().astype(np.float64)
    P = view.camera.world_to_cam
    cam = lm @ P[:3, :3].T + P[:3, 3]
    uv = cam @ view.camera.K.T
    uv = uv[:, :2] / uv[:, 2:]
    x0, y0, w, h = canvas_box(page)
    uv = uv * [w / view.camera.width, h / view.camera.height] + [x0, y0]
    face_w = abs(uv[454, 0] - uv[234, 0])

    def box(cx, cy, hw, hh):
        return (slice(int(cy - hh), int(cy + hh)), slice(int(cx - hw), int(cx + hw)))

    lips, chin, top = uv[list(LIPS)], uv[CHIN], uv[FOREHEAD]
    mouth_top = lips[:, 1].min()
    return {
        "mouth": (slice(int(mouth_top), int(chin[1] + 0.1 * face_w)),
                  slice(int(lips[:, 0].min()), int(lips[:, 0].max()))),
        "hair": box(top[0], top[1] - 0.25 * face_w, 0.2 * face_w, 0.1 * face_w),
        "cheek": box(*uv[CHEEKS[0]], 0.06 * face_w, 0.06 * face_w),
        "background": box(x0 + 0.92 * w, y0 + 0.4 * h, 0.05 * w, 0.1 * h),
    }


def diff(a, b, region):
    return float(np.abs(a[region] - b[region]).mean())


def _debug_save(before, after, r):
    import cv2

    img = np.concatenate([before, after, np.abs(after - before) * 8], 1).clip(0, 255).astype(np.uint8)
    for name, (ys, xs) in r.items():
        cv2.rectangle(img, (xs.start, ys.start), (xs.stop, ys.stop), (255, 0, 0), 1)
    cv2.imwrite(os.environ["STYLETALKER_DEBUG_SHOTS"], cv2.cvtColor(img, cv2.COLOR_RGB2BGR))
    print({k: round(diff(after, before, v), 2) for k, v in r.items()})


def jaw_slider(page):
    row = page.get_by_text("jawOpen", exact=True).locator("xpath=ancestor::div[.//*[@role='slider']][1]")
    return row.get_by_role("slider")


# ------------------------------------------------------------------------------------------------
# camera arithmetic and controls (no browser)


def test_framing():
    from styletalker.animate import orbit_poses
    from styletalker.viewer import framing

    rng = np.random.default_rng(0)
    q = rng.normal(size=4)
    R = framing.quat_to_matrix(q)
    np.testing.assert_allclose(R @ R.T, np.eye(3), atol=1e-12)
    assert np.linalg.det(R) == pytest.approx(1.0)
    pivot = np.array([0.1, -0.2, 0.3])
    ref = np.eye(4)
    ref[:3, 3] = [0.05, 0.1, 5.0]
    # yaw turns like animate.orbit_poses; pitch/roll keep the pivot fixed
    np.testing.assert_allclose(ref @ framing.head_motion(pivot, yaw=20), orbit_poses(ref, pivot, 2, 40, "turn")[1],
                               atol=1e-12)
    M = framing.head_motion(pivot, 10, -15, 5)
    np.testing.assert_allclose(M[:3, :3] @ pivot + M[:3, 3], pivot, atol=1e-12)
    # reference view -> browser camera -> back to the reference pose (OpenCV axes, y down)
    v = framing.reference_view(np.diag([200.0, 200.0, 1.0]), 256, ref, pivot)
    z = v["look_at"] - v["position"]
    z /= np.linalg.norm(z)
    y = -v["up"] - np.dot(-v["up"], z) * z
    y /= np.linalg.norm(y)
    c2w = np.eye(4)
    c2w[:3, :3] = np.stack([np.cross(y, z), y, z], 1)
    c2w[:3, 3] = v["position"]
    w = np.sqrt(max(1 + np.trace(c2w[:3, :3]), 1e-12)) / 2
    wxyz = [w, (c2w[2, 1] - c2w[1, 2]) / (4 * w), (c2w[0, 2] - c2w[2, 0]) / (4 * w), (c2w[1, 0] - c2w[0, 1]) / (4 * w)]
    cam = framing.browser_camera(wxyz, v["position"], v["fov"], 1.5, 300)
    np.testing.assert_allclose(cam.world_to_cam, ref, atol=1e-9)
    assert (cam.width, cam.height) == (300, 200) and cam.K[1, 1] == pytest.approx(200.0 * 200 / 256)
    a, b = np.zeros((4, 6, 3)), np.ones((4, 6, 3))
    ab = framing.split_view(a, b)
    assert ab[:, :2].max() == 0 and ab[:, 4:].min() == 1


def test_expression_controls():
    from styletalker.viewer import expressions as ex

    names = ["_neutral", "browDownLeft", "cheekPuff", "eyeBlinkLeft", "eyeBlinkRight", "jawOpen", "mouthSmileLeft",
             "mouthSmileRight", "noseSneerLeft", "tongueOut"]
    g = ex.grouped(names)
    assert [n for _, n in g["Jaw"]] == ["jawOpen"] and [n for _, n in g["Cheeks and nose"]] == ["cheekPuff", "noseSneerLeft"]
    assert [n for _, n in g["Other"]] == ["_neutral", "tongueOut"]
    assert sum(len(v) for v in g.values()) == len(names)
    neutral = np.full(len(names), 0.1)
    top = np.linspace(0.2, 0.9, len(names))
    e = ex.preset_expression("blink", neutral, names, top)
    assert e[3] == pytest.approx(top[3]) and e[4] == pytest.approx(top[4]) and e[5] == pytest.approx(0.1)
    np.testing.assert_allclose(ex.preset_expression("neutral", neutral, names, top), neutral)
    with pytest.raises(KeyError):
        ex.preset_expression("frown", neutral, names)


# ------------------------------------------------------------------------------------------------
# in the browser (in this order: they share one tab and the viewer's state)


@pytest.fixture(scope="module")
def tab(viewer, browser):
    page, cid = open_tab(browser, viewer, set())
    yield page, cid
    page.close()


def test_first_picture_is_the_reference_view(viewer, tab):
    from styletalker.viewer.framing import ViewCamera

    page, cid = tab
    view = viewer.views[cid]
    np.testing.assert_allclose(view.camera.world_to_cam, viewer.ref_pose, atol=2e-3)  # the browser starts there
    K = viewer.scenes["original"].K.numpy()
    fy = view.camera.height / 2 / np.tan(viewer._reference["fov"] / 2)
    assert fy / view.camera.height == pytest.approx(K[1, 1] / viewer.scenes["original"].height, rel=1e-3)
    # the picture is AvatarScene.render at that camera (what `styletalker render` draws), not a second renderer
    cam = ViewCamera(view.camera.K, viewer.ref_pose, view.camera.width, view.camera.height)
    assert np.abs(viewer.render(cam, view.state) - view.image).max() < 0.02


def test_jaw_control_moves_the_mouth_only(viewer, tab):
    page, cid = tab
    jaw = viewer.names.index("jawOpen")
    time.sleep(0.3)
    before = shot(page)
    r = regions(viewer, cid, page)
    assert before[r["background"]].mean() > 240, "the background box is on the avatar's white background"
    assert before[r["hair"]].mean() < 200, "the hair box is on the (dark) hair"
    n = viewer.views[cid].renders
    slider = jaw_slider(page)
    slider.focus()
    page.keyboard.press("End")  # jawOpen = 1
    wait_for(lambda: viewer.views[cid].renders > n and viewer.views[cid].state.expression[jaw] == 1.0,
             what="a render with the open jaw")
    after = wait_for(lambda: (lambda s: s if diff(s, before, r["mouth"]) > 4.0 else None)(shot(page)), timeout=10,
                     what="the mouth to change on screen")
    if os.environ.get("STYLETALKER_DEBUG_SHOTS"):
        _debug_save(before, after, r)
    assert diff(after, before, r["hair"]) < 0.5
    assert diff(after, before, r["background"]) < 0.5
    page.keyboard.press("Home")  # back to 0: the mouth closes again
    wait_for(lambda: viewer.views[cid].state.expression[jaw] == 0.0, what="jawOpen = 0 rendered")
    wait_for(lambda: diff(shot(page), before, r["mouth"]) < 1.5, timeout=10, what="the mouth to close on screen")


def test_edit_turns_the_face_green_and_ab_split(viewer, tab):
    page, cid = tab
    before = shot(page)
    r = regions(viewer, cid, page)
    page.get_by_text("avatar", exact=True).locator("xpath=ancestor::div[.//input][1]").locator("input").first.click()
    page.get_by_role("option", name="green").click()
    wait_for(lambda: viewer.views[cid].state.avatar == "green", what="the edit to be rendered")
    after = wait_for(lambda: (lambda s: s if diff(s, before, r["cheek"]) > 4.0 else None)(shot(page)), timeout=10,
                     what="the face colour to change on screen")
    g0 = before[r["cheek"]].mean((0, 1))
    g1 = after[r["cheek"]].mean((0, 1))
    assert (g1[1] - g1[0]) - (g0[1] - g0[0]) > 10, (g0, g1)  # green gained on red
    assert diff(after, before, r["background"]) < 0.5
    # A/B split: the left half is the original again, the right half stays green
    page.get_by_text("A/B split", exact=True).locator("xpath=ancestor::div[.//input][1]").locator("input").first.click()
    wait_for(lambda: viewer.views[cid].state.split, what="the split view")
    x0, y0, w, h = canvas_box(page)
    rows, mid = slice(int(y0), int(y0 + h)), int(x0 + w / 2)
    left_half, right_half = (rows, slice(int(x0), mid - 2)), (rows, slice(mid + 2, int(x0 + w)))

    def split_shown():
        s = shot(page)
        return s if diff(s, after, right_half) < 0.5 and diff(s, after, left_half) > 0.5 else None

    split = wait_for(split_shown, timeout=10, what="the A/B split")
    left = (r["cheek"][0], slice(r["cheek"][1].start, min(r["cheek"][1].stop, mid - 2)))
    assert diff(split, before, left) < 1.5  # the cheek (left of the split) is the original again


def test_export_png_and_ply(viewer, tab, rigged_work):
    import cv2

    from styletalker.render.ply import load_ply

    page, cid = tab
    png, = viewer.export("png", cid)
    plys = viewer.export("ply")  # A/B split on: the edit and the original
    assert all(p.parent == rigged_work / "renders" for p in [png, *plys]) and len(plys) == 2
    img = cv2.cvtColor(cv2.imread(str(png)), cv2.COLOR_BGR2RGB)
    assert np.abs(img / 255.0 - viewer.views[cid].image).max() < 1 / 255 + 1e-6  # the image last shown
    green, original = load_ply(plys[0]), load_ply(plys[1])
    assert green["means"].shape[0] == viewer.scene("green").avatar.num_points
    assert torch.allclose(green["means"], original["means"], atol=1e-5)  # an edit recolours only
    d = green["colors"] - original["colors"]
    assert (d[:, 1] - d[:, 0]).max() > 0.05  # some Gaussians turned green


def test_play_training_sequence_and_drive_from_a_video(viewer, tab, driver_video):
    page, cid = tab
    from styletalker.preprocess import load_dataset

    ds_len = len(load_dataset(viewer.work))
    n = viewer.views[cid].renders
    viewer.play_training(loop=False)
    labels = set()
    wait_for(lambda: labels.add(viewer.state.motion.label if viewer.state.motion else "") or len(labels) > 5,
             what="playback to advance")
    wait_for(lambda: viewer.state.motion is None, timeout=30, what="the sequence to end")  # 40 frames at 10 fps
    assert viewer.views[cid].renders - n >= 5  # the tab was redrawn while it played
    assert all(lb.startswith("frame ") and lb.endswith(f"/{ds_len}") for lb in labels - {""})
    drive = viewer.drive(str(driver_video), loop=False)
    seen = set()
    wait_for(lambda: (seen.add(viewer.state.motion.label if viewer.state.motion else "") or len(seen) > 5)
             and viewer._drive_stats.frames >= 3,  # images sent for driver frames (slow on a busy machine)
             timeout=60, what="the driver to move the avatar")
    viewer.stop_motion()
    assert viewer.state.motion is None and drive.done and drive.tracked >= 5
    assert viewer._drive_stats.frames >= 3 and viewer._drive_stats.fps > 0


def test_two_browsers_closed_tab_and_fast_drag_keep_serving(viewer, tab, chromium):
    a, ca = tab
    other = chromium()  # a second browser
    b, cb = open_tab(other, viewer, {ca})
    assert {ca, cb} <= set(viewer.server.get_clients())
    b.close()  # a closed tab
    wait_for(lambda: cb not in viewer.server.get_clients(), what="the closed tab to disconnect")
    slider = jaw_slider(a)
    v0 = viewer.state.version
    # dragged back and forth: 40 mouse moves dispatched in the page, 4 ms apart
    slider.locator("xpath=..").evaluate("""async (el) => {
        const b = el.getBoundingClientRect(), y = b.y + b.height / 2;
        const at = (type, t, target) => {
            const o = {bubbles: true, cancelable: true, clientX: b.x + t * b.width, clientY: y, buttons: 1,
                       pointerId: 1, isPrimary: true, pointerType: "mouse"};
            target.dispatchEvent(new PointerEvent("pointer" + type, o));
            target.dispatchEvent(new MouseEvent("mouse" + type, o));
        };
        at("down", 0.0, el);
        for (let k = 0; k < 40; k++) {
            at("move", 0.5 + 0.5 * Math.sin(k / 2), document);
            await new Promise((r) => setTimeout(r, 4));
        }
        at("up", 0.7, document);
    }""")
    wait_for(lambda: viewer.state.version - v0 > 10, timeout=30, what="the moves to reach the server as slider updates")
    assert viewer._render_thread.is_alive()
    n = viewer.views[ca].renders
    jaw = viewer.names.index("jawOpen")
    slider.focus()
    a.keyboard.press("End")
    wait_for(lambda: viewer.views[ca].renders > n and viewer.views[ca].state.expression[jaw] == 1,
             what="a render after the drag")
    c, cc = open_tab(other, viewer, {ca, cb})  # a new tab after the closed one gets its picture
    assert viewer.views[cc].image.std() > 0.05
    assert set(viewer.server.get_clients()) == {ca, cc}
    other.close()


def test_cli_missing_reconstruction_and_serving(franck_work, rigged_work, tmp_path, capsys):
    pytest.importorskip("viser")
    from styletalker.cli import main

    preprocessed = tmp_path / "preprocessed_only"  # franck_work itself gets reconstructed by other tests
    shutil.copytree(franck_work / "preprocess", preprocessed / "preprocess")
    assert main(["view", str(preprocessed), "--port", "0"]) == 2
    assert "styletalker reconstruct" in capsys.readouterr().err
    assert main(["view", str(rigged_work), "--edit", "nope", "--port", "0"]) == 2
    assert "finished edits: green" in capsys.readouterr().err
    # SIGINT at its default in the server, as in a terminal: a shell that starts the suite in the
    # background hands its children SIGINT ignored, and Python then never raises KeyboardInterrupt
    proc = subprocess.Popen([sys.executable, "-m", "styletalker", "-q", "view", str(rigged_work), "--port", "0"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    try:
        line = proc.stdout.readline()
        assert line.startswith("viewer: http://127.0.0.1:"), (line, proc.stderr.read() if proc.poll() else "")
        url = line.split()[1]
        with urllib.request.urlopen(url, timeout=20) as r:
            assert r.status == 200 and b"<html" in r.read(2000).lower()
    finally:
        proc.send_signal(signal.SIGINT)  # Ctrl-C
        try:
            assert proc.wait(timeout=30) == 0
        finally:
            if proc.poll() is None:  # a server that ignored it is not left running
                proc.kill()
                proc.wait()
