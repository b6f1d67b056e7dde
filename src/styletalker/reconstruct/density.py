"""Adaptive density control of the Gaussian stage: clone, split, prune (3DGS, Kerbl et al. 2023,
Sec. 5.2), aware of the mesh binding (as GaussianAvatars): a new Gaussian stays on its parent's
triangle at a nearby barycentric point.

Every ``every`` iterations inside ``[start, stop)`` (fractions of the stage's iterations):

* the Gaussians whose position gradient, averaged over the iterations they were seen, is in the
  top ``fraction`` are densified: the small ones (largest scale below ``split_scale`` times the
  median) are **cloned** (a copy next to them), the large ones are **split** into two Gaussians
  with scales divided by 1.6 (their parent is removed);
* Gaussians with opacity below ``prune_opacity`` are **pruned**.

The count never exceeds ``max_growth`` times the initial number. A rank, not an absolute
gradient threshold, picks the Gaussians: the gradient's scale changes with image size, loss
weights and scene, the rank does not. Adam's moments are kept for surviving Gaussians and
start at zero for new ones. The accumulated statistics are part of the checkpoint, so a resumed
run densifies exactly as an uninterrupted one.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn


@dataclass
class DensifyConfig:
    enabled: bool = True
    start: float = 0.1  # fraction of the stage's iterations
    stop: float = 0.7
    every: int = 300
    fraction: float = 0.05  # top fraction of Gaussians by positional gradient densified per round
    split_scale: float = 1.5  # split when the largest scale exceeds this times the median
    prune_opacity: float = 0.02
    max_growth: float = 1.6  # at most this times the initial number of Gaussians
    bary_jitter: float = 0.15


def per_gaussian_names(av) -> tuple[list[str], list[str]]:
    """(parameter names, buffer names) that hold one row per Gaussian."""
    params = ["offset" if av.bound else "xyz", "features", "log_scales", "quats", "opacity_logits"]
    if getattr(av, "color_offset", None) is not None:
        params.append("color_offset")
    if av.bound:
        buffers = ["face_id", "bary"]
    else:
        buffers = ["deform_features"] if getattr(av, "deform_features", None) is not None else []
    return params, buffers


class DensityControl:
    def __init__(self, cfg: DensifyConfig, total_iters: int, n_initial: int):
        self.cfg = cfg
        self.total = int(total_iters)
        self.max_points = int(math.ceil(n_initial * cfg.max_growth))
        self.grad = None
        self.seen = None
        self.log: list[dict] = []

    def active(self, it: int) -> bool:
        c = self.cfg
        return c.enabled and int(c.start * self.total) <= it < int(c.stop * self.total)

    def accumulate(self, av, it: int) -> None:
        """After backward: add the per-Gaussian position gradient norm of this iteration."""
        if not self.active(it):
            return
        p = av.offset if av.bound else av.xyz
        if p.grad is None:
            return
        g = p.grad.detach().norm(dim=-1)
        if self.grad is None or self.grad.shape[0] != g.shape[0]:
            self.grad = torch.zeros_like(g)
            self.seen = torch.zeros_like(g)
        self.grad += g
        self.seen += (g > 0).to(g.dtype)

    def due(self, it: int) -> bool:
        c = self.cfg
        done = it + 1
        return self.active(it) and done % c.every == 0 and done > int(c.start * self.total)

    @torch.no_grad()
    def step(self, av, opt: torch.optim.Optimizer, gen: torch.Generator, it: int) -> dict | None:
        """Clone / split / prune when due (call after ``opt.step()``); returns what it did."""
        if not self.due(it) or self.grad is None:
            return None
        c = self.cfg
        n = av.num_points
        mean_grad = self.grad / self.seen.clamp_min(1)
        scales = av.log_scales.exp().max(dim=-1).values
        room = max(0, self.max_points - n)
        k = min(int(c.fraction * n), room)
        grow = torch.zeros(n, dtype=torch.bool, device=mean_grad.device)
        if k > 0:
            grow[torch.topk(mean_grad, k).indices] = True
            grow &= self.seen > 0
        big = scales > c.split_scale * scales.median()
        split, clone = grow & big, grow & ~big
        prune = torch.sigmoid(av.opacity_logits) < c.prune_opacity
        prune &= ~grow
        parents = torch.cat([clone.nonzero()[:, 0], split.nonzero()[:, 0], split.nonzero()[:, 0]])
        keep = ~(prune | split)
        new_rows = self._children(av, parents, int(clone.sum()), gen)
        _resize(av, opt, keep, parents, new_rows)
        self.grad = None
        self.seen = None
        rec = {"iteration": it + 1, "cloned": int(clone.sum()), "split": int(split.sum()),
               "pruned": int(prune.sum()), "points": av.num_points}
        self.log.append(rec)
        return rec

    def _children(self, av, parents: torch.Tensor, n_clone: int, gen: torch.Generator) -> dict:
        """Overrides for the rows of new Gaussians copied from ``parents`` (clones first, then
        split children): nearby barycentric points on the same triangle, smaller scales for split."""
        out = {}
        if parents.numel() == 0:
            return out
        ls = av.log_scales[parents].clone()
        ls[n_clone:] -= math.log(1.6)
        out["log_scales"] = ls
        if av.bound:
            b = av.bary[parents] + self.cfg.bary_jitter * torch.randn(parents.shape[0], 3, generator=gen).to(av.bary)
            b = b.clamp_min(0)
            out["bary"] = b / b.sum(-1, keepdim=True).clamp_min(1e-6)
        else:
            s = av.log_scales[parents].exp()
            out["xyz"] = av.xyz[parents] + s * torch.randn(parents.shape[0], 3, generator=gen).to(s)
        return out

    def state_dict(self) -> dict:
        return {"grad": self.grad, "seen": self.seen, "log": self.log}

    def load_state_dict(self, st: dict | None) -> None:
        if st:
            self.grad, self.seen, self.log = st.get("grad"), st.get("seen"), list(st.get("log", []))


def _resize(av, opt: torch.optim.Optimizer, keep: torch.Tensor, parents: torch.Tensor, overrides: dict) -> None:
    """Keep rows ``keep`` of every per-Gaussian tensor and append copies of rows ``parents`` (with
    ``overrides``); Adam moments follow the kept rows and start at zero for the new ones."""
    params, buffers = per_gaussian_names(av)
    for name in params + buffers:
        old = getattr(av, name)
        add = overrides.get(name, old[parents])
        new = torch.cat([old[keep], add.to(old.dtype)], 0)
        if name in params:
            p = nn.Parameter(new.detach().clone(), requires_grad=old.requires_grad)
            _swap_in_optimizer(opt, old, p, keep, parents.numel())
            setattr(av, name, p)
        else:
            av.register_buffer(name, new)
    av.config["n_points"] = int(keep.sum()) + int(parents.numel())


def _swap_in_optimizer(opt, old: nn.Parameter, new: nn.Parameter, keep: torch.Tensor, n_new: int) -> None:
    for group in opt.param_groups:
        for i, p in enumerate(group["params"]):
            if p is old:
                group["params"][i] = new
                st = opt.state.pop(old, None)
                if st:
                    for key in ("exp_avg", "exp_avg_sq"):
                        if key in st:
                            v = st[key]
                            st[key] = torch.cat([v[keep], torch.zeros((n_new,) + v.shape[1:], dtype=v.dtype,
                                                                      device=v.device)], 0)
                    opt.state[new] = st
                return
