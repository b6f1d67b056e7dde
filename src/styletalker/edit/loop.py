"""The landmark-driven edit loop (paper Sec. 3.3, Eq. 7/8, Appendix A) with IN2N-style dataset updates.

Per iteration ``it`` (0-based):

1. pick a training view ``i`` at random (seeded);
2. if view ``i`` has no edited image yet, or ``it % update_every == 0`` (iterative dataset update),
   render the current avatar at view ``i`` (its pose + expression), draw a fresh edit strength
   ``b ~ N(b_mean, b_std)`` (or ``b_fixed``) and replace the view's edited image by
   ``editor.edit(render, original, prompt, b, face)``; the edited image and its ``b`` are kept
   (``dataset/%06d.png``, ``dataset/strengths.json``);
3. render RGB and the landmark weight map in one pass; loss = Eq. 8 with that view's ``b``
   (L1 weighted by ``w`` if ``b >= boundary``, by ``1 - w`` otherwise, plain L1 with
   ``weighting="none"``, always ``w`` with ``weighting="w"`` = paper ablation E4), over valid pixels;
4. Adam step on the trainable parts (colour MLP by default; see ``train``). ``MLP_deform``, the
   Gaussian positions and the per-Gaussian features (inputs of ``MLP_deform``) stay frozen so the
   edited avatar animates exactly like the reconstruction.

Per-Gaussian ``w = 2 sigmoid(-alpha d)`` uses ``d`` = distance of the neutral-expression Gaussian
centre to the nearest 3D landmark (``GaussianAvatar.landmark_distance()``), computed once.
"""

from __future__ import annotations

import re
import shutil
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch

from ..errors import InputError
from ..safeload import load_torch
from ..workdir import atomic_write_json, log, progress, save_torch, to_uint8, write_image
from ..workfolder import DATASET_DIR, PREVIEWS_DIR
from .options import EditOptions
from .weighting import edit_loss, landmark_weight, render_with_weight, sample_b

def slugify(prompt: str, max_len: int = 40) -> str:
    s = re.sub(r"[^a-z0-9]+", "-", prompt.lower()).strip("-")
    return (s[:max_len].rstrip("-") or "edit")


def trainable_parameters(avatar, train: str = "color", lr: float = 0.02, lr_mlp: float = 2e-3) -> list[dict]:
    """Freeze everything, then unfreeze the appearance parts named by ``train``; Adam param groups.

    * ``color``: the per-Gaussian colour residual (``GaussianAvatar.enable_color_offset``) only;
    * ``color+mlp``: plus MLP_color;  ``color+attr``: plus MLP_attr;
    * ``all-appearance``: plus per-Gaussian opacity and scale.
    MLP_deform, positions and features are never trained (animation stays as reconstructed).
    """
    for p in avatar.parameters():
        p.requires_grad_(False)
    groups = [{"params": [avatar.enable_color_offset()], "lr": lr, "base_lr": lr}]
    mlp: list = []
    if train in ("color+mlp", "color+attr", "all-appearance"):
        mlp += list(avatar.color.parameters())
    if train in ("color+attr", "all-appearance"):
        mlp += list(avatar.attributes.parameters())
    if mlp:
        groups.append({"params": mlp, "lr": lr_mlp, "base_lr": lr_mlp})
    if train == "all-appearance":
        groups.append({"params": [avatar.opacity_logits, avatar.log_scales], "lr": lr_mlp, "base_lr": lr_mlp})
    for g in groups:
        for p in g["params"]:
            p.requires_grad_(True)
    return groups


@dataclass
class EditState:
    """Everything needed to resume: iteration, RNG states, edited images and their b."""

    iteration: int = 0
    edited: dict = field(default_factory=dict)  # view -> (H,W,3) float32 (8-bit quantised)
    strengths: dict = field(default_factory=dict)  # view -> b
    history: list = field(default_factory=list)  # per-iteration (it, view, b, loss)
    n_edits: int = 0


def edit_avatar(avatar, data, editor, opts: EditOptions, *,
                show_progress: bool = True, state: EditState | None = None, optimizer_state=None,
                rng_state=None, on_checkpoint=None, hook=None):
    """Run the edit loop in place on ``avatar`` over :class:`~styletalker.reconstruct.data.ReconData` ``data`` (``WorkFolder.training_views``).

    ``on_checkpoint(avatar, opt, rng, state)`` is called every ``opts.checkpoint_every``
    iterations and at the end (the edited images and their b are in ``state``);
    ``hook(iteration) -> True`` raises KeyboardInterrupt before that iteration (tests).
    Returns the final :class:`EditState`.
    """
    opts.validate()
    editor.check_prompt(opts.prompt)
    opt = torch.optim.Adam(trainable_parameters(avatar, opts.train, opts.lr, opts.lr_mlp))
    if optimizer_state is not None:
        opt.load_state_dict(optimizer_state)
    rng = np.random.default_rng(opts.seed)
    if rng_state is not None:
        rng.bit_generator.state = rng_state
    state = state or EditState()
    with torch.no_grad():
        w_g = landmark_weight(avatar.landmark_distance(), opts.alpha)
    bg = tuple(float(x) for x in data.background)
    dev = next(avatar.parameters()).device  # the avatar's device: CUDA tensors render through gsplat
    bg_t = torch.tensor(bg, device=dev)
    train = [int(i) for i in data.train_idx.tolist()]
    if not train:
        raise InputError("the dataset has no training views to edit")
    every = opts.resolved_update_every()
    geo_cache: dict = {}
    bar = progress(total=opts.iters, initial=state.iteration, desc=f"edit '{opts.prompt}'", unit="it",
                   **({} if show_progress else {"disable": True}))
    try:
        while state.iteration < opts.iters:
            it = state.iteration
            if hook is not None and hook(it):
                raise KeyboardInterrupt
            i = train[int(rng.integers(len(train)))]
            if i not in state.edited or it % every == 0:
                b = sample_b(rng, opts.b_mean, opts.b_std, opts.b_fixed)
                seed = int(rng.integers(2**31 - 1))
                cur = None
                if getattr(editor, "needs_render", True):
                    with torch.no_grad():
                        cur = avatar.render(data.expression[i], data.camera(i), background=bg_t).image.cpu().numpy()
                ed = editor.edit(cur, data.original(i), opts.prompt, b, data.face(i), seed=seed)
                ed = to_uint8(ed).astype(np.float32) / 255.0  # what is stored is what is trained on
                state.edited[i], state.strengths[i] = ed, float(b)
                state.n_edits += 1
            ed_t = torch.from_numpy(state.edited[i]).to(dev)
            b = state.strengths[i]
            g = _gaussians(avatar, data.expression[i], i, opts.train, geo_cache)
            rgb, wmap, _ = render_with_weight(g, w_g, data.camera(i), bg)
            v = data.valid[i].to(dev)
            rgb = rgb * v + bg_t * (1 - v)
            if opts.weighting == "w":
                loss = edit_loss(rgb, ed_t, wmap, 1.0, 0.5, True)
            else:
                loss = edit_loss(rgb, ed_t, wmap, b, opts.b_boundary, opts.weighting == "eq8")
            for grp in opt.param_groups:
                grp["lr"] = lr_at(it, opts.iters, grp["base_lr"])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            state.history.append((int(it), int(i), round(float(b), 4), round(float(loss.detach()), 6)))
            state.iteration += 1
            bar.update(1)
            bar.set_postfix(loss=f"{float(loss.detach()):.4f}", b=f"{b:+.2f}")
            if on_checkpoint is not None and (state.iteration % opts.checkpoint_every == 0
                                              or state.iteration == opts.iters):
                on_checkpoint(avatar, opt, rng, state)
    finally:
        bar.close()
    for p in avatar.parameters():
        p.requires_grad_(False)
    return state


def lr_at(it: int, iters: int, lr: float, final: float = 0.05) -> float:
    """Cosine decay from ``lr`` to ``final * lr``: the end of the run averages over many random
    strengths b instead of following the last few edits."""
    t = min(max(it / max(iters - 1, 1), 0.0), 1.0)
    return float(lr * (final + (1 - final) * 0.5 * (1 + np.cos(np.pi * t))))


def _gaussians(avatar, expr, view: int, train: str, cache: dict):
    """The avatar's Gaussians for one view. With ``train="color"`` only the per-Gaussian colour
    residual is optimised, so geometry and MLP colours of each view are computed once and cached;
    the residual is applied exactly as in ``GaussianAvatar.forward``."""
    from ..avatar import GaussianState

    if train != "color":
        return avatar(expr)
    if view not in cache:
        with torch.no_grad():
            g = avatar(expr)
            base = avatar.mlp_colors(expr)
        cache[view] = (g, torch.logit(base.clamp(1e-6, 1 - 1e-6)))
    g, logit = cache[view]
    return GaussianState(g.means, g.quats, g.scales, g.opacities, torch.sigmoid(logit + avatar.color_offset))


# ---------------------------------------------------------------------------------------------
# work-folder stage: work/edits/<name>/


def run_edit(work, prompt: str, *, name: str | None = None, force: bool = False, progress_bars: bool = True,
             evaluate: bool = True, detector=None, device: str = "auto", hook=None, **options) -> Path:
    """Edit the reconstructed avatar of ``work``; write ``work/edits/<name>/``; return that folder.

    Resume rule and lock: :class:`~styletalker.workfolder.WorkFolder` (a complete edit with the
    same options is a no-op, an interrupted one resumes from ``checkpoint.pt``, other options are
    refused unless ``force``). ``device`` (``auto``/``cpu``/``cuda``) holds the avatars and the 2D
    editor; it is not part of the options, so an edit may resume on another device.
    ``hook(iteration) -> True`` stops the loop there like Ctrl-C (tests).
    """
    from ..workfolder import RECONSTRUCT, WorkFolder

    work = Path(work)
    if not work.is_dir():
        raise InputError(f"{work}: work folder not found")
    opts = EditOptions(prompt=prompt, **options)
    opts.validate()
    name = name or slugify(prompt)
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]*", name):
        raise InputError(f"--name {name!r}: use letters, digits, '-', '_' and '.' only")
    if opts.editor == "builtin":
        from .builtin import parse_prompt

        parse_prompt(prompt)  # fail fast on prompts outside the vocabulary
    wf = WorkFolder(work)
    with wf.lock("edit " + name):
        wf.require(RECONSTRUCT)  # before the edit's folder is made
        out = wf.edit(name)
        record = wf.begin(out, {"format_version": 2, "prompt": prompt, "name": name, "options": asdict(opts),
                                "update_every": opts.resolved_update_every()}, (RECONSTRUCT,), force=force,
                          defaults={"options": asdict(EditOptions(prompt=prompt))})
        if record is None:
            log(f"{out} is already complete; nothing to do (use --force to redo it)")
            return out
        _edit(wf, out, record, opts, progress_bars, evaluate, detector, device, hook)
    return out


def _edit(wf, out: Path, record: dict, opts: EditOptions, progress_bars: bool, evaluate: bool, detector,
          device: str, hook) -> None:
    from ..avatar import AvatarExtra, GaussianAvatar
    from ..device import resolve_device
    from ..workfolder import AVATAR_FILE, CHECKPOINT_FILE, CONFIG_FILE, METRICS_FILE
    from .editors import get_editor

    prompt, name = opts.prompt, record["name"]
    src_path = wf.avatar()
    device = resolve_device(device)
    editor = get_editor(opts.editor, model_path=opts.editor_model, device=device, **opts.editor_kwargs())
    editor.check_prompt(prompt)
    atomic_write_json(out / CONFIG_FILE, {**record, "editor": editor.describe()})  # which backend ran

    avatar0 = GaussianAvatar.load(src_path).to(device)
    data = wf.training_views(avatar0)
    avatar = GaussianAvatar.load(src_path).to(device)
    state, opt_state, rng_state = EditState(), None, None
    ck = out / CHECKPOINT_FILE
    if ck.is_file():
        try:
            blob = load_torch(ck, "edit checkpoint")  # no code from a foreign folder
            if "color_offset" in blob["model"]:
                avatar.enable_color_offset()
            avatar.load_state_dict(blob["model"])
            state = EditState(iteration=int(blob["iteration"]),
                              strengths={int(k): float(v) for k, v in blob["strengths"].items()},
                              edited={int(k): v.numpy().astype(np.float32) / 255.0 for k, v in blob["edited"].items()},
                              history=list(blob["history"]), n_edits=int(blob["n_edits"]))
            if set(state.edited) != set(state.strengths):
                raise ValueError("edited images and strengths do not match")
            opt_state, rng_state = blob["optimizer"], blob["rng"]
            torch.set_rng_state(blob["torch_rng"])
            log(f"resuming {out} at iteration {state.iteration}/{opts.iters}")
            _export_dataset(out, data, state, state.edited)  # dataset/ as of this checkpoint
        except Exception as e:  # unreadable/partial checkpoint: start over
            log(f"{ck}: cannot resume ({type(e).__name__}: {e}); starting over")
            avatar = GaussianAvatar.load(src_path).to(device)
            state, opt_state, rng_state = EditState(), None, None
            shutil.rmtree(out / DATASET_DIR, ignore_errors=True)

    saved = dict(state.edited)  # view -> the edited image last exported to dataset/

    def save_checkpoint(av, opt, rng, st: EditState):
        # edited images and their b in one file: a resumed run pairs them as this run did
        blob = {"iteration": st.iteration, "model": av.state_dict(), "optimizer": opt.state_dict(),
                "rng": rng.bit_generator.state, "torch_rng": torch.get_rng_state(),
                "strengths": {int(k): float(v) for k, v in st.strengths.items()},
                "edited": {int(k): torch.from_numpy(to_uint8(v)) for k, v in st.edited.items()},
                "history": st.history, "n_edits": st.n_edits}
        save_torch(ck, blob)
        _export_dataset(out, data, st, {i: e for i, e in st.edited.items() if saved.get(i) is not e})
        saved.update(st.edited)

    t0 = time.time()
    if state.iteration < opts.iters:
        state = edit_avatar(avatar, data, editor, opts, show_progress=progress_bars, state=state,
                            optimizer_state=opt_state, rng_state=rng_state, on_checkpoint=save_checkpoint, hook=hook)
    train_s = time.time() - t0

    extra = dict(AvatarExtra.of(avatar0).raw)
    extra.update(edit={"prompt": prompt, "name": name, "editor": opts.editor}, background=list(data.background))
    avatar.save(out / AVATAR_FILE, **extra)
    write_previews(avatar0, avatar, data, out, state)
    metrics = {"prompt": prompt, "editor": opts.editor, "weighting": opts.weighting, "iters": opts.iters,
               "alpha": opts.alpha, "b_boundary": opts.b_boundary, "b_fixed": opts.b_fixed,
               "b_mean": opts.b_mean, "b_std": opts.b_std, "edits_made": state.n_edits,
               "train_seconds": round(train_s, 2),
               "b_stats": _b_stats([h[2] for h in state.history], opts.b_boundary)}
    if evaluate:  # edit.metrics renders to numpy on the CPU (a few views)
        ev = evaluate_views(avatar0.cpu(), avatar.cpu(), data, detector)
        metrics["heldout"] = ev["summary"]
        metrics["heldout_per_view"] = ev["per_view"]
        metrics["heldout_views"] = [int(v) for v in data.test_idx.tolist()]
    atomic_write_json(out / METRICS_FILE, metrics)
    wf.complete(out, record, prompt=prompt, iters=opts.iters, seconds=round(time.time() - t0, 2))
    if progress_bars and evaluate:
        s = metrics["heldout"]
        log(f"edit '{prompt}' -> {out}/avatar.pt  (held-out change inside face {s['inside_face']:.3f}, "
            f"outside {s['outside_face']:.3f}, landmark shift {s['landmark_px']:.2f}px)")


def _export_dataset(out: Path, data, state: EditState, images: dict) -> None:
    """``dataset/%06d.png`` for ``images`` (view -> edited image) and ``dataset/strengths.json``
    for every edited view: a readable copy of the checkpoint's edited images and their b."""
    for i, img in images.items():
        write_image(out / DATASET_DIR / f"{data.frame_id(i):06d}.png", img)
    atomic_write_json(out / DATASET_DIR / "strengths.json",
                      {str(data.frame_id(i)): b for i, b in sorted(state.strengths.items())})


def _b_stats(bs: list[float], boundary: float) -> dict:
    if not bs:
        return {}
    a = np.asarray(bs, np.float64)
    return {"mean": float(a.mean()), "std": float(a.std()), "frac_ge_boundary": float((a >= boundary).mean())}


def evaluate_views(avatar0, avatar, data, detector=None) -> dict:
    from .metrics import evaluate_edit

    views = data.test_idx.tolist() or data.train_idx.tolist()[:4]
    scale = max(1.0, 256.0 / max(data.width, data.height))
    return evaluate_edit(avatar0, avatar, data, views, detector=detector, scale=scale)


def write_previews(avatar0, avatar, data, out: Path, state: EditState, n: int = 4) -> None:
    """Preview images in ``out/previews/``:

    * ``heldout.png``: rows = held-out views; columns = original frame, unedited render, edited render
    * ``training.png``: rows = training views; columns = original, edited training image (last
      dataset update, its b in ``dataset/strengths.json``), edited render
    * ``view_XXXXXX.png``: the edited render of each held-out view
    """
    bg = torch.tensor(data.background)

    def rend(av, i):
        with torch.no_grad():
            return av.render(data.expression[i], data.camera(i), background=bg).image.cpu().numpy()

    rows = []
    for i in (data.test_idx.tolist() or data.train_idx.tolist())[:n]:
        r1 = rend(avatar, i)
        rows.append(np.concatenate([data.original(i), rend(avatar0, i), r1], axis=1))
        write_image(out / PREVIEWS_DIR / f"view_{data.frame_id(i):06d}.png", r1)
    if rows:
        write_image(out / PREVIEWS_DIR / "heldout.png", np.concatenate(rows, axis=0))
    rows = [np.concatenate([data.original(i), state.edited[i], rend(avatar, i)], axis=1)
            for i in sorted(state.edited)[:n]]
    if rows:
        write_image(out / PREVIEWS_DIR / "training.png", np.concatenate(rows, axis=0))
