"""Wall time and held-out quality of `styletalker reconstruct --preset cpu` on the sample video.

    python bench/reconstruct_cpu.py [--root /tmp/st_bench] [--threads 2]

Preprocesses franck.webm with the settings of `make demo` (20 s from 10 s at 5 fps, 256 px: 100
frames, every 10th held out) and times the reconstruction (the preset's target: under 20 minutes
on 2 CPU cores). The ablation runs use `--start 0 --duration 60 --fps 3 --size 128`.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from pathlib import Path


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--root", default="/tmp/styletalker_bench_cpu")
    ap.add_argument("--preset", default="cpu")
    ap.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (default: torch's choice)")
    ap.add_argument("--start", type=float, default=10.0)
    ap.add_argument("--duration", type=float, default=20.0)
    ap.add_argument("--fps", type=float, default=5.0)
    ap.add_argument("--size", type=int, default=256)
    args = ap.parse_args(argv)

    import torch

    from styletalker.assets import sample_video
    from styletalker.preprocess import run_preprocess
    from styletalker.reconstruct import run_reconstruct

    if args.threads:
        torch.set_num_threads(args.threads)
    root = Path(args.root)
    if (root / "reconstruct").exists():
        shutil.rmtree(root / "reconstruct")
    t = time.time()
    run_preprocess(sample_video(), root, start=args.start, duration=args.duration, fps=args.fps, size=args.size, progress=False)
    t_pre = time.time() - t
    t = time.time()
    run_reconstruct(root, preset=args.preset, progress=False, device="cpu")
    t_rec = time.time() - t
    m = json.loads((root / "reconstruct" / "metrics.json").read_text())
    print(f"threads {torch.get_num_threads()}  preprocess {t_pre:.0f} s  reconstruct ({args.preset}) {t_rec:.0f} s "
          f"= {t_rec / 60:.1f} min  [mesh {m['seconds']['mesh']} s, prior {m['seconds']['prior']} s, "
          f"gaussians {m['seconds']['gaussians']} s]")
    print(f"held-out ({len(m['heldout_frames'])} frames): PSNR {m['psnr']:.2f} dB  SSIM {m['ssim']:.4f}  "
          f"PSNR(head) {m['psnr_head']:.2f} dB;  stage-1 mesh PSNR {m['mesh']['psnr']:.2f} dB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
