"""Server-side rendering vs streaming Gaussians to the browser's splat renderer, measured.

    python bench/viewer.py [--work out/demo/work] [--changes 10] [--json out/bench/viewer.json]

Both ways show the same avatar in headless chromium (Debian's, software WebGL: --disable-gpu) at
the avatar's reference view, and then change the head pose / expression ``--changes`` times
(yaw +-8 degrees, jawOpen alternating between the trained minimum and maximum), as a slider would:

* ``server`` (what `styletalker view` does): the avatar is rendered by the project's rasterizer
  (AvatarScene.render) at the tab's aspect ratio and sent as a JPEG background image;
* ``browser``: the avatar's Gaussians at the new expression (centres, covariances, colours,
  opacities; viser's ``add_gaussian_splats``, 32 bytes each) are sent and viser's WebGL splat
  renderer draws them with the browser's camera.

Per change: the server's time (render + JPEG, or avatar forward + packing), the bytes sent, and the
time until the tab's screenshot shows the change (screenshots polled, so that includes ~one
screenshot). Also the fidelity of the browser's splat renderer: PSNR of its picture against the
project's render of the same view, both as shown in the same tab. docs/viewer.md has the result.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT / "bench"))

FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync"]
VIEWPORT = {"width": 960, "height": 640}


def screenshot(page, box) -> np.ndarray:
    import cv2

    png = page.screenshot(clip=box)
    return cv2.imdecode(np.frombuffer(png, np.uint8), cv2.IMREAD_COLOR).astype(np.float32)


def dismiss_notices(page) -> None:
    """Close viser's "software WebGL" notice (it would sit in both pictures)."""
    for b in page.locator("button.mantine-Notification-closeButton").all():
        try:
            b.click(timeout=10000)
        except Exception:  # a page busy drawing splats in software WebGL: leave it
            pass
    time.sleep(0.3)


def canvas(page) -> dict:
    x, y, w, h = page.evaluate("() => { const b = Array.from(document.querySelectorAll('canvas')).pop()"
                               ".getBoundingClientRect(); return [b.x, b.y, b.width, b.height]; }")
    return {"x": x, "y": y, "width": w, "height": h}


def wait_change(page, box, before, timeout=30.0) -> tuple[float, np.ndarray]:
    t0 = time.perf_counter()
    while time.perf_counter() - t0 < timeout:
        s = screenshot(page, box)
        if np.abs(s - before).mean() > 0.5:
            return time.perf_counter() - t0, s
    return float("nan"), before


def changes(viewer, n):
    """(yaw, expression) for n changes: yaw +-8 degrees, jawOpen between its trained min and max."""
    e0 = viewer.state.expression.copy()
    jaw = viewer.names.index("jawOpen") if "jawOpen" in viewer.names else 0
    lo = float(viewer.expr_min[jaw]) if viewer.expr_min is not None else 0.0
    hi = float(viewer.expr_max[jaw]) if viewer.expr_max is not None else 1.0
    for k in range(n):
        e = e0.copy()
        e[jaw] = hi if k % 2 == 0 else lo
        yield (8.0 if k % 2 == 0 else -8.0), e


def server_mode(viewer, page, n) -> dict:
    import cv2

    cid = next(iter(viewer.views))
    box = canvas(page)
    rows = []
    before = screenshot(page, box)
    for yaw, e in changes(viewer, n):
        r0 = viewer.views[cid].renders
        t0 = time.perf_counter()
        viewer.update(yaw=yaw, expression=e)
        lat, before = wait_change(page, box, before)
        while viewer.views[cid].renders == r0 and time.perf_counter() - t0 < 30:
            time.sleep(0.01)
        v = viewer.views[cid]
        t1 = time.perf_counter()
        jpg = cv2.imencode(".jpg", (v.image[..., ::-1] * 255).astype(np.uint8), [cv2.IMWRITE_JPEG_QUALITY, 90])[1]
        rows.append({"server_ms": 1000 * (v.seconds), "jpeg_ms": 1000 * (time.perf_counter() - t1),
                     "bytes": int(len(jpg)), "shown_ms": 1000 * lat})
    return summarize(rows, {"image": f"{viewer.views[cid].camera.width}x{viewer.views[cid].camera.height}"})


def splats(scene, expression, R, pivot):
    """viser splat arrays of the avatar at ``expression``, its head turned by R about ``pivot``."""
    import torch

    from styletalker.render.common import covariance_3d

    with torch.no_grad():
        g = scene.avatar(torch.as_tensor(expression, dtype=torch.float32))
        cov = covariance_3d(g.quats, g.scales).double().numpy()
    Rm = np.asarray(R, np.float64)
    means = (g.means.double().numpy() - pivot) @ Rm.T + pivot
    return (means.astype(np.float32), (Rm @ cov @ Rm.T).astype(np.float32), g.colors.clamp(0, 1).numpy(),
            g.opacities.reshape(-1, 1).numpy())


def browser_mode(viewer, launch, n) -> dict:
    """The same avatar streamed as Gaussians to viser's splat renderer, in a tab of its own."""
    import viser

    from styletalker.viewer import framing

    scene = viewer.scenes["original"]
    srv = viser.ViserServer(host="127.0.0.1", port=0, verbose=False)
    srv.gui.configure_theme(show_share_button=False)
    srv.gui.main_panel.dock_right()
    srv.scene.set_up_direction(tuple(-viewer.ref_pose[1, :3]))
    ref = viewer._reference
    ic = srv.initial_camera
    ic.position, ic.look_at, ic.up, ic.fov = ref["position"], ref["look_at"], ref["up"], ref["fov"]
    ic.near, ic.far = 0.05, 100.0
    srv.scene.set_background_image(np.full((8, 8, 3), 255, np.uint8))  # the avatar's white background
    e0 = viewer.state.expression.copy()
    srv.scene.add_gaussian_splats("/avatar", *splats(scene, e0, np.eye(3), viewer.pivot))
    ctx = launch()
    page = ctx.new_page()
    page.goto(f"http://127.0.0.1:{srv.get_port()}/")
    t0 = time.perf_counter()
    while not srv.get_clients() and time.perf_counter() - t0 < 60:
        time.sleep(0.1)
    time.sleep(3.0)  # the splats are sorted in a web worker: let the first picture settle
    dismiss_notices(page)
    box = canvas(page)
    reference = screenshot(page, box)
    rows = []
    before = reference
    try:
        for yaw, e in changes(viewer, n):
            t1 = time.perf_counter()
            R = framing.head_motion(viewer.pivot, yaw=yaw)[:3, :3]  # the head turned as the viewer turns it
            arrays = splats(scene, e, R, viewer.pivot)
            srv.scene.add_gaussian_splats("/avatar", *arrays)
            t2 = time.perf_counter()
            lat, before = wait_change(page, box, before)
            rows.append({"server_ms": 1000 * (t2 - t1), "bytes": 32 * arrays[0].shape[0],
                         "shown_ms": 1000 * (lat + (t2 - t1))})
        # back to the first state, to compare with the project's renderer
        srv.scene.add_gaussian_splats("/avatar", *splats(scene, e0, np.eye(3), viewer.pivot))
        time.sleep(3.0)
        splat_view = screenshot(page, box)
    finally:
        ctx.close()
        srv.stop()
    return summarize(rows, {"gaussians": scene.avatar.num_points}), splat_view


def summarize(rows, extra) -> dict:
    out = dict(extra)
    for k in rows[0]:
        v = np.array([r[k] for r in rows], np.float64)
        out[k + "_median"] = round(float(np.nanmedian(v)), 1)
    out["changes"] = len(rows)
    return out


def main(argv=None) -> int:
    from playwright.sync_api import sync_playwright

    from live import machine  # bench/live.py
    from styletalker.metrics import psnr
    from styletalker.viewer import Viewer

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--work", default=str(ROOT / "out" / "demo" / "work"))
    ap.add_argument("--changes", type=int, default=10)
    ap.add_argument("--resolution", type=int, default=512)
    ap.add_argument("--chromium", default="/usr/bin/chromium")
    ap.add_argument("--json", default=str(ROOT / "out" / "bench" / "viewer.json"))
    a = ap.parse_args(argv)
    viewer = Viewer(a.work, port=0, device="cpu", resolution=a.resolution, verbose=False)
    viewer.start()
    with sync_playwright() as p:
        def launch():
            return p.chromium.launch_persistent_context(tempfile.mkdtemp(prefix="st-chromium-"), headless=True,
                                                        executable_path=a.chromium, args=FLAGS, viewport=VIEWPORT)

        ctx = launch()
        page = ctx.new_page()
        page.goto(viewer.url)
        t0 = time.perf_counter()
        while not viewer.views and time.perf_counter() - t0 < 60:
            time.sleep(0.1)
        time.sleep(2.0)
        dismiss_notices(page)
        box = canvas(page)
        server_view = screenshot(page, box)
        server = server_mode(viewer, page, a.changes)
        ctx.close()
        try:
            browser, splat_view = browser_mode(viewer, launch, a.changes)
            browser["bytes_per_frame"] = browser.pop("bytes_median")
        except Exception as e:  # e.g. a tab too busy drawing splats in software WebGL to take a screenshot
            browser, splat_view = {"failed": f"{type(e).__name__}: {str(e).splitlines()[0]}",
                                   "gaussians": viewer.scenes["original"].avatar.num_points,
                                   "bytes_per_frame": 32 * viewer.scenes["original"].avatar.num_points}, None
    viewer.stop()
    server["bytes_per_frame"] = server.pop("bytes_median")
    res = {"work": a.work, "server": server, "browser": browser,
           "browser_vs_server_psnr_db": None if splat_view is None else round(psnr(splat_view, server_view, data_range=255.0), 2),
           "machine": machine(),
           "command": " ".join(["python", "bench/viewer.py", *(argv if argv is not None else sys.argv[1:])])}
    print(json.dumps(res, indent=2))
    Path(a.json).parent.mkdir(parents=True, exist_ok=True)
    Path(a.json).write_text(json.dumps(res, indent=2) + "\n")
    import cv2

    if splat_view is not None:
        cv2.imwrite(str(Path(a.json).with_suffix(".png")), np.concatenate([server_view, splat_view], 1).astype(np.uint8))
    return 0


if __name__ == "__main__":
    sys.exit(main())
