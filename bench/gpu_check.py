"""GPU check: the README pipeline on the sample clip with every torch stage on CUDA.

    bench/gpu_check.sh                 # on a CUDA machine (after `make setup`): ~8 minutes budget
    bench/gpu_check.sh --cpu-smoke     # anywhere: the same steps, tiny sizes, CUDA assertions skipped

Steps (in one process, through the CLI entry point ``styletalker.cli.main``), timed one by one:

1. ``preprocess`` the sample clip (MediaPipe runs on the CPU: no CUDA check);
2. ``reconstruct --preset full --device cuda`` (mesh and Gaussian iterations cut to fit the time
   budget, see --mesh-iters / --gauss-iters; held-out PSNR / SSIM recorded);
3. ``edit --editor ip2p`` with the tiny random Instruct-Pix2Pix pipeline of tests/tiny_models.py,
   and with ``timbrooks/instruct-pix2pix`` when it is in the Hugging Face cache;
4. ``animate`` with the driver clip, 5. ``render --orbit``, 6. ``evaluate`` (tiny random CLIP, or
   the real one when cached).

Asserted on CUDA: every stage that renders Gaussians used gsplat (``styletalker.render.backend_calls``);
reconstruct, edit (``--no-eval``), animate and render used no CPU rasterizer at all; the edit's
diffusion weights were float16 on CUDA when it ran; reconstruct/config.json says cuda. Results
(per-stage seconds, render calls per backend, PSNR / SSIM, GPU name, commit, command) go to
out/bench/gpu_check.json; the script exits 1 when an assertion fails.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BUDGET_S = 480  # the whole check must fit in 8 minutes on one modern GPU
sys.path.insert(0, str(ROOT / "tests"))  # tiny_models: the tiny random pipelines of the tests


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--cpu-smoke", action="store_true",
                    help="run the steps on the CPU with tiny sizes and skip the CUDA assertions")
    ap.add_argument("--out", default=str(ROOT / "out" / "bench"), help="output folder (default out/bench)")
    ap.add_argument("--video", default=str(ROOT / "data" / "videos" / "franck.webm"))
    ap.add_argument("--driver", default=str(ROOT / "data" / "videos" / "cap13_edit2.mp4"))
    ap.add_argument("--mesh-iters", type=int, default=None, help="stage-1 iterations (default 2000; smoke: 20)")
    ap.add_argument("--gauss-iters", type=int, default=None, help="stage-2 iterations (default 1000; smoke: 20)")
    ap.add_argument("--edit-iters", type=int, default=None, help="edit iterations (default 200; smoke: 4)")
    args = ap.parse_args(argv)

    import torch

    from styletalker.cli import main as st
    from styletalker.render import backend_calls

    smoke = args.cpu_smoke
    if not smoke and not torch.cuda.is_available():
        print("gpu_check: torch sees no CUDA device (use --cpu-smoke to run the steps on the CPU)", file=sys.stderr)
        return 2
    device = "cpu" if smoke else "cuda"
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    work = out / ("gpu_check_smoke" if smoke else "gpu_check") / "work"
    mesh_iters = args.mesh_iters or (20 if smoke else 2000)
    gauss_iters = args.gauss_iters or (20 if smoke else 1000)
    edit_iters = args.edit_iters or (4 if smoke else 200)
    tmp = Path(tempfile.mkdtemp(prefix="gpu_check_"))
    report: dict = {"device": device, "smoke": smoke, "command": " ".join([sys.argv[0]] + list(argv or sys.argv[1:])),
                    "commit": _git("rev-parse", "HEAD"), "torch": torch.__version__,
                    "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
                    "steps": {}, "failures": []}

    def step(name, argv_, *, gsplat=True, cpu_ok=False):
        backend_calls.clear()
        t0 = time.time()
        rc = st(["-q", *argv_] if smoke else argv_)
        rec = {"seconds": round(time.time() - t0, 2), "rc": rc, "render_calls": dict(backend_calls),
               "argv": argv_}
        report["steps"][name] = rec
        print(f"gpu_check: {name}: rc {rc}, {rec['seconds']} s, renders {dict(backend_calls)}", flush=True)
        if rc != 0:
            report["failures"].append(f"{name}: exit code {rc}")
        elif not smoke and gsplat:
            if backend_calls["gsplat"] == 0:
                report["failures"].append(f"{name}: no gsplat render on CUDA")
            if not cpu_ok and (backend_calls["cpu"] or backend_calls["dense"]):
                report["failures"].append(f"{name}: CPU rasterizer used on a CUDA run ({dict(backend_calls)})")
        return rc == 0

    dev = ["--device", device]
    ok = step("preprocess", ["preprocess", args.video, str(work), "--start", "10", "--duration", "4" if smoke else "20",
                             "--fps", "10" if smoke else "5", "--size", "128" if smoke else "256", "--no-overlay"],
              gsplat=False)
    ok = ok and step("reconstruct", ["reconstruct", str(work), "--preset", "test" if smoke else "full", *dev,
                                     "--mesh-iters", str(mesh_iters), "--gauss-iters", str(gauss_iters)])
    if ok:
        rec = json.loads((work / "reconstruct" / "config.json").read_text())
        cfg = {**rec["config"], "device": rec.get("device", rec["config"].get("device"))}
        m = json.loads((work / "reconstruct" / "metrics.json").read_text())
        report["reconstruct"] = {"preset": cfg["preset"], "device": cfg["device"], "psnr": m.get("psnr"),
                                 "ssim": m.get("ssim"), "psnr_head": m.get("psnr_head"),
                                 "mesh_iters": mesh_iters, "gauss_iters": gauss_iters}
        if cfg["device"] != device:
            report["failures"].append(f"reconstruct: config.json says device {cfg['device']}")
        ok = _edits(step, report, work, tmp, dev, edit_iters, smoke) and ok
        ok = step("animate", ["animate", str(work), "--edit", "tiny-ip2p", "--driver", args.driver, "--duration", "2",
                              "-o", str(out / "gpu_check_animate.mp4"), *dev]) and ok
        ok = step("render", ["render", str(work), "--orbit", "--frames", "24", "-o", str(out / "gpu_check_orbit.mp4"),
                             *dev]) and ok
        # evaluate's PSNR/SSIM re-render (reconstruct.evaluate.recompute_metrics) runs on the CPU
        ok = step("evaluate", ["evaluate", str(work), *dev, "--clip-model", _clip_model(tmp)], cpu_ok=True) and ok
        report["evaluate"] = {"reconstruct": _slim(json.loads((work / "reconstruct" / "metrics.json").read_text())),
                              "edits": {p.parent.name: json.loads(p.read_text()).get("orbit")
                                        for p in sorted((work / "edits").glob("*/metrics.json"))}}
    report["total_seconds"] = round(sum(s["seconds"] for s in report["steps"].values()), 1)
    if not smoke and report["total_seconds"] > BUDGET_S:
        report["failures"].append(f"took {report['total_seconds']} s, over the {BUDGET_S} s budget")
    report["passed"] = ok and not report["failures"]
    dest = out / ("gpu_check_smoke.json" if smoke else "gpu_check.json")
    dest.write_text(json.dumps(report, indent=2, default=str))
    print(f"gpu_check: {'PASSED' if report['passed'] else 'FAILED'} in {report['total_seconds']} s -> {dest}")
    for f in report["failures"]:
        print(f"  {f}")
    return 0 if report["passed"] else 1


def _edits(step, report, work, tmp, dev, iters, smoke) -> bool:
    """Edit with the tiny random Instruct-Pix2Pix pipeline, and with the real one when cached."""
    from tiny_models import make_tiny_ip2p

    from styletalker.edit import ip2p
    from styletalker.errors import MissingModelError
    from styletalker.hub import DEFAULT_EDITOR_MODEL, IP2P, resolve_model

    placements = []
    orig_edit = ip2p.InstructPix2PixEditor.edit

    def spy(self, *a, **kw):  # where the diffusion weights really were when an edit ran
        p = next(self.pipe.unet.parameters())
        placements.append((str(p.device), str(p.dtype)))
        return orig_edit(self, *a, **kw)

    ip2p.InstructPix2PixEditor.edit = spy
    ok = True
    try:
        models = {"tiny-ip2p": str(make_tiny_ip2p(tmp / "tiny_ip2p"))}
        try:
            with _offline():  # only look in the cache for the real weights
                resolve_model(DEFAULT_EDITOR_MODEL, IP2P)
            models["real-ip2p"] = DEFAULT_EDITOR_MODEL
        except MissingModelError as e:
            report["real_ip2p"] = f"skipped: {e}"
        for name, model in models.items():
            placements.clear()
            real = name == "real-ip2p"
            size = "512" if real and not smoke else "64"
            ok = step(f"edit-{name}", ["edit", str(work), "--prompt", "turn him into a bronze statue", "--name", name,
                                       "--editor", "ip2p", "--editor-model", model, "--iters", str(iters),
                                       "--update-every", "10" if not smoke else "2", "--ip2p-size", size,
                                       "--ip2p-steps", "20" if real else "4", "--no-eval", *dev]) and ok
            report["steps"][f"edit-{name}"]["diffusion_weights"] = sorted(set(placements))
            if not smoke and placements and set(placements) != {("cuda:0", "torch.float16")}:
                report["failures"].append(f"edit-{name}: diffusion weights on {sorted(set(placements))}")
    finally:
        ip2p.InstructPix2PixEditor.edit = orig_edit
    return ok


def _clip_model(tmp: Path) -> str:
    """openai/clip-vit-large-patch14 when cached, else the tiny random CLIP of the tests (a folder)."""
    from tiny_models import make_tiny_clip

    from styletalker.errors import MissingModelError
    from styletalker.hub import CLIP, DEFAULT_CLIP_MODEL, resolve_model

    try:
        with _offline():
            resolve_model(DEFAULT_CLIP_MODEL, CLIP)
        return DEFAULT_CLIP_MODEL
    except MissingModelError:
        return str(make_tiny_clip(tmp / "tiny_clip"))


@contextlib.contextmanager
def _offline():
    """HF_HUB_OFFLINE=1 for the block (cache look-ups only), the previous value restored after."""
    old = os.environ.get("HF_HUB_OFFLINE")
    os.environ["HF_HUB_OFFLINE"] = "1"
    try:
        yield
    finally:
        if old is None:
            os.environ.pop("HF_HUB_OFFLINE", None)
        else:
            os.environ["HF_HUB_OFFLINE"] = old


def _slim(m: dict) -> dict:
    return {k: v for k, v in m.items() if not isinstance(v, (list, dict))}


def _git(*a) -> str | None:
    try:
        return subprocess.run(["git", *a], cwd=ROOT, capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return None


if __name__ == "__main__":
    sys.exit(main())
