"""``styletalker reconstruct WORK``: stage 1 (DMTet mesh) -> multi-view prior -> stage 2 (Gaussians)
-> held-out evaluation. Output layout: docs/FORMATS.md (``reconstruct/``); details: docs/reconstruct.md.

Resumable: every sub-stage keeps its state in its folder (``mesh/checkpoint.pt``,
``prior/``, ``gaussians/checkpoint.pt``) and writes ``stage.json`` when done; ``reconstruct/
stage.json`` is written last. An interrupted run (Ctrl-C saves a checkpoint) resumes where it
stopped; a complete one is a no-op unless ``force``.
"""

from __future__ import annotations

import shutil
import time
from dataclasses import asdict
from pathlib import Path
from typing import Callable

import torch

from ..errors import InputError, MissingStageError
from ..workdir import STAGE_FILE, atomic_write_json, is_complete, log, mark_complete, read_json
from ..workfolder import (AVATAR_FILE, AVATAR_PLY, CHECKPOINT_FILE, GAUSSIANS_DIR, MESH_DIR, MESH_OBJ, METRICS_FILE,
                          PREPROCESS, PRIOR_DIR, RENDERS, WorkFolder, fill_missing)
from . import config as C
from .checkpoint import load_state, resume_from, save_state, train_loop
from .data import ReconData, from_options, symmetry_x
from .density import DensityControl
from .dmtet import DMTetHead
from .evaluate import evaluate_avatar, evaluate_mesh, save_orbit, save_side_by_side
from ..avatar import AvatarExtra, GaussianAvatar
from .gauss_stage import (SampleSource, gauss_losses, init_from_mesh, init_from_sphere)
from .gauss_stage import make_optimizer as gauss_optimizer
from .mesh_io import write_obj
from .mesh_stage import mesh_eval, mesh_losses
from .mesh_stage import make_optimizer as mesh_optimizer
from .presets import ALIASES  # noqa: F401  (re-exported)
from .prior import PriorMesh, get_prior, load_views, orbit_cameras, save_views

# ---------------------------------------------------------------------------------------------
def sphere_init(data: ReconData, radius: float | None = None) -> tuple[torch.Tensor, float]:
    """Initial sphere (centre, radius) from the neutral 3D landmarks.

    Vertically it spans the chin (MediaPipe 152) to an estimated top of the head 0.4 face heights
    above the forehead landmark (10); the radius is half that span (about 1.2 dm, a "unit" head
    sphere); its front is 0.05 dm in front of the nose tip (landmark 1). ``radius`` overrides.
    """
    L = data.neutral_landmarks.detach().cpu()
    chin, forehead, nose = L[152], L[10], L[1]
    h = float(chin[1] - forehead[1])
    top = float(forehead[1]) - 0.4 * h
    r = radius if radius else (float(chin[1]) - top) / 2
    cy = (top + float(chin[1])) / 2
    cx = float(symmetry_x(L))
    cz = float(nose[2]) - 0.05 + r
    return torch.tensor([cx, cy, cz]), float(r)


def fit_expression_models(module, cfg: C.ReconstructConfig, data: ReconData) -> None:
    """Fit to the training frames what ``module`` (DMTetHead or GaussianAvatar) makes of an
    expression: the MLPs' normalisation when ``model.expr_normalize`` (else the identity) and the
    linear expression basis of the tracked landmarks when ``model.expr_basis`` (else zero)."""
    idx = data.train_idx
    if cfg.model.expr_normalize:
        module.expr_norm.fit(data.expression[idx], data.expression[data.neutral_index])
    if cfg.model.expr_basis:
        rows = torch.cat([idx[idx != data.neutral_index], idx.new_tensor([data.neutral_index])])
        module.basis.fit(data.expression[rows], data.landmarks3d[rows], len(rows) - 1)


def build_mesh_model(cfg: C.ReconstructConfig, data: ReconData) -> DMTetHead:
    """The stage-1 model, its SDF a sphere (see :func:`set_initial_shape`)."""
    m, mo = cfg.mesh, cfg.model
    center, radius = sphere_init(data, m.radius)
    model = DMTetHead(data.neutral_landmarks, res=m.res, extent=m.extent * radius, center=center, radius=radius,
                      feat_dim=mo.feat_dim, n_freqs=mo.n_freqs, hidden=mo.hidden, offset_scale=m.offset_scale,
                      smooth=m.smooth)
    fit_expression_models(model, cfg, data)
    return model


def set_initial_shape(model: DMTetHead, cfg: C.ReconstructConfig, data: ReconData) -> None:
    """``mesh.init = "hull"``: start from the clip's visual hull closed at a head's depth
    (:mod:`.shape_prior`) instead of the sphere; kept as the sphere when no silhouette is usable."""
    if cfg.mesh.init != "hull":
        return
    from .shape_prior import head_occupancy, occupancy_to_sdf

    occ = head_occupancy(model.grid_verts.cpu(), _to(data, "cpu"), depth_ratio=cfg.mesh.depth_ratio,
                         symmetric=cfg.mesh.symmetric_hull, egg=cfg.mesh.egg, face=cfg.mesh.hull_face)
    if int(occ.sum()) > 8:
        with torch.no_grad():
            model.sdf.copy_(occupancy_to_sdf(occ, model.grid.cell).to(model.sdf))


def mesh_train_step(model: DMTetHead, opt, data: ReconData, tc, gen: torch.Generator, train_deform: bool) -> dict:
    """One stage-1 iteration: ``tc.batch`` training frames drawn with ``gen``, MLP_deform trained
    when ``train_deform`` (after the warm-up)."""
    for p in model.deform.parameters():
        p.requires_grad_(train_deform)
    fr = data.train_idx[torch.randint(len(data.train_idx), (tc.batch,), generator=gen)]
    out = mesh_losses(model, data, fr, tc)
    opt.zero_grad(set_to_none=True)
    out["total"].backward()
    opt.step()
    return {"loss": float(out["total"].detach()), "iou": 1 - float(out["sil"].detach())}


# ---------------------------------------------------------------------------------------------
def run_mesh_stage(cfg: C.ReconstructConfig, data: ReconData, folder: Path, show_progress: bool, hook) -> tuple[DMTetHead, dict]:
    folder.mkdir(parents=True, exist_ok=True)
    ckpt = folder / CHECKPOINT_FILE
    model = build_mesh_model(cfg, data)
    tc = cfg.mesh.train
    st = load_state(ckpt)
    if st is None:
        set_initial_shape(model, cfg, data)
    if is_complete(folder):
        if st is None:
            raise InputError(f"{ckpt} is missing although {folder} is marked complete; rerun with --force")
        model.load_state_dict(st["model"])
        return model.to(cfg.device), read_json(folder / STAGE_FILE)
    model = model.to(cfg.device)
    opt = mesh_optimizer(model, tc)
    gen = torch.Generator().manual_seed(cfg.seed + 1)
    if st is not None:
        model.load_state_dict(st["model"])
    start, info = resume_from(st, opt, gen, "mesh stage", tc.iters)
    if st is None:
        info["heldout_init"] = mesh_eval(model, data, _eval_frames(data), tc)
    t0 = time.time()
    warm = int(tc.deform_warmup * tc.iters)

    def step(it):
        return mesh_train_step(model, opt, data, tc, gen, train_deform=it >= warm)

    def save(done):
        info["seconds"] = info.get("seconds", 0.0) + time.time() - t0_box[0]
        t0_box[0] = time.time()
        save_state(ckpt, model=model.state_dict(), optimizer=opt.state_dict(), generator=gen.get_state(),
                   iteration=done, info=info, config=cfg.to_json())

    t0_box = [t0]
    train_loop("mesh (DMTet)", tc.iters, start, step, save, ckpt_every=cfg.ckpt_every, show_progress=show_progress,
               hook=hook, deterministic_kernels=cfg.device == "cpu")
    for p in model.deform.parameters():
        p.requires_grad_(True)
    info["heldout_final"] = mesh_eval(model, data, _eval_frames(data), tc)
    # export the canonical surface (neutral frame expression) with its colours
    with torch.no_grad():
        mesh = model.extract()
        e = data.expression[data.neutral_index]
        cols = model.colors(mesh, e)
    write_obj(folder / MESH_OBJ, mesh.verts.cpu().numpy(), mesh.faces.cpu().numpy(), cols.cpu().numpy(),
              header="styletalker stage-1 DMTet surface, canonical head space (dm), colours at the neutral frame")
    save_state(ckpt, model=model.state_dict(), optimizer=opt.state_dict(), generator=gen.get_state(),
               iteration=tc.iters, info=info, config=cfg.to_json())
    summary = {"iterations": tc.iters, "vertices": int(mesh.verts.shape[0]), "faces": int(mesh.faces.shape[0]),
               "seconds": round(info.get("seconds", 0.0), 1), "heldout_init": info["heldout_init"],
               "heldout_final": info["heldout_final"]}
    mark_complete(folder, **summary)
    return model, summary


def _eval_frames(data: ReconData) -> torch.Tensor:
    return data.test_idx if len(data.test_idx) else data.train_idx[:4]


def proxy_sphere_mesh(cfg: C.ReconstructConfig, data: ReconData) -> PriorMesh:
    """The initial unit sphere as a mesh (prior geometry for the --no-mesh ablation)."""
    from .tetgrid import build_tet_grid, marching_tets

    c, r = sphere_init(data, cfg.mesh.radius)
    g = build_tet_grid(24, r * 1.3)
    m = marching_tets(g.verts, g.verts.norm(dim=-1) - r * 0.999, g.tets)
    return PriorMesh(m.verts + c, m.faces, None)


def run_prior_stage(cfg: C.ReconstructConfig, data: ReconData, model: DMTetHead | None, folder: Path):
    if is_complete(folder):
        info = read_json(folder / STAGE_FILE)
        return load_views(folder, info.get("backend", "")), info
    if folder.exists():
        shutil.rmtree(folder)
    t0 = time.time()
    n = data.neutral_index
    center, _ = sphere_init(data, cfg.mesh.radius)
    cams = orbit_cameras(data.K[n].cpu(), data.world_to_cam[n].cpu(), center, data.width, data.height,
                         n=cfg.prior.views, span_deg=cfg.prior.span_deg)
    kw = {}
    if cfg.prior.backend == "symmetric":
        conf = cfg.prior.confidence
        kw = {"confidence": None if conf is None else tuple(float(c) for c in conf), "edge_px": cfg.data.edge_px,
              "unmix": cfg.data.unmix, "turned_front": cfg.prior.turned_front}
    if cfg.prior.backend == "svd":
        kw = {"num_inference_steps": cfg.prior.steps, "orbit_degrees": cfg.prior.orbit_deg, "seed": cfg.seed}
    prior = get_prior(cfg.prior.backend, cfg.prior.model, device=cfg.device, **kw)
    if model is not None:
        with torch.no_grad():
            mesh = model.extract()
            e = data.expression[n]
            pm = PriorMesh(model.deformed(mesh, e).cpu(), mesh.faces.cpu(), model.colors(mesh, e).cpu())
    else:
        pm = proxy_sphere_mesh(cfg, data)
    cpu_data = data if cfg.device == "cpu" else _to(data, "cpu")
    views = prior.generate(cpu_data, pm, n, cams)
    folder.mkdir(parents=True, exist_ok=True)
    save_views(folder, views)
    info = {"backend": prior.name, "views": len(views), "yaw_deg": list(views.yaw_deg), "neutral_index": n,
            "seconds": round(time.time() - t0, 1), "stats": getattr(prior, "stats", {})}
    mark_complete(folder, **info)
    # train on what was saved (8-bit PNGs), so a resumed run sees exactly the same views
    return load_views(folder, prior.name), info


def run_gauss_stage(cfg: C.ReconstructConfig, data: ReconData, model: DMTetHead | None, views, folder: Path,
                    show_progress: bool, hook):
    folder.mkdir(parents=True, exist_ok=True)
    ckpt = folder / CHECKPOINT_FILE
    tc = cfg.gauss.train
    st = load_state(ckpt)
    train_deform = model is None or cfg.gauss.retrain_deform
    tc.train_deform = train_deform
    if is_complete(folder):
        if st is None:
            raise InputError(f"{ckpt} is missing although {folder} is marked complete; rerun with --force")
        av = GaussianAvatar.from_state(st["avatar_config"], st["avatar"]).to(cfg.device)
        return av, read_json(folder / STAGE_FILE)
    mo = cfg.model
    if st is not None:
        av = GaussianAvatar.from_state(st["avatar_config"], st["avatar"])
    else:
        go = cfg.gauss
        if model is not None:
            av = init_from_mesh(model.cpu(), go.points, mo.hidden, seed=cfg.seed, retrain_deform=go.retrain_deform,
                                init_opacity=go.init_opacity, anchor=go.anchor, attr_bound=go.attr_bound,
                                clamp_expression=go.clamp_expression, thickness=go.thickness)
            model.to(cfg.device)
        else:
            center, radius = sphere_init(data, cfg.mesh.radius)
            av = init_from_sphere(center, radius, data.neutral_landmarks.cpu(), go.points, mo.feat_dim,
                                  data.expression.shape[1], mo.n_freqs, mo.hidden, seed=cfg.seed,
                                  init_opacity=go.init_opacity, attr_bound=go.attr_bound,
                                  clamp_expression=go.clamp_expression)
            fit_expression_models(av, cfg, data)
        av.set_expression_range(data.expression[data.train_idx].cpu(), data.expression[data.neutral_index].cpu())
    av = av.to(cfg.device)
    opt = gauss_optimizer(av, tc)
    gen = torch.Generator().manual_seed(cfg.seed + 2)
    start, info = resume_from(st, opt, gen, "gaussian stage", tc.iters)
    if st is None:
        m0, _ = evaluate_avatar(av, data, _eval_frames(data))
        info["heldout_init"] = {"psnr": m0["psnr"], "ssim": m0["ssim"]}
    src = SampleSource(data, views, tc.prior_prob, cfg.data.edge_px, tc.w_mouth, cfg.data.unmix)
    dc = DensityControl(tc.densify, tc.iters, int(info.get("initial_points", av.num_points)))
    info.setdefault("initial_points", av.num_points)
    dc.load_state_dict(st.get("density") if st else None)
    t0_box = [time.time()]

    def step(it):
        samples = [src.draw(gen) for _ in range(tc.batch)]
        out = gauss_losses(av, samples, data, tc)
        opt.zero_grad(set_to_none=True)
        out["total"].backward()
        dc.accumulate(av, it)
        opt.step()
        dc.step(av, opt, gen, it)
        return {"loss": float(out["total"].detach()), "l1": float(out["rgb"].detach()), "n": av.num_points}

    def save(done):
        info["seconds"] = info.get("seconds", 0.0) + time.time() - t0_box[0]
        t0_box[0] = time.time()
        save_state(ckpt, avatar=av.state_dict(), avatar_config=dict(av.config), optimizer=opt.state_dict(),
                   generator=gen.get_state(), iteration=done, info=info, config=cfg.to_json(),
                   density=dc.state_dict())

    train_loop("gaussians", tc.iters, start, step, save, ckpt_every=cfg.ckpt_every, show_progress=show_progress,
               hook=hook, deterministic_kernels=cfg.device == "cpu")
    summary = {"iterations": tc.iters, "points": av.num_points, "initial_points": info["initial_points"],
               "density": dc.log, "seconds": round(info.get("seconds", 0.0), 1),
               "heldout_init": info["heldout_init"], "deform": "trained" if train_deform else "frozen (from stage 1)",
               "prior_views": 0 if views is None else len(views)}
    mark_complete(folder, **summary)
    return av, summary


def _to(data: ReconData, device) -> ReconData:
    import dataclasses

    kw = {}
    for f in dataclasses.fields(data):
        v = getattr(data, f.name)
        kw[f.name] = v.to(device) if torch.is_tensor(v) else v
    return ReconData(**kw)


# ---------------------------------------------------------------------------------------------
def run_reconstruct(work, preset: str = "cpu", *, force: bool = False, progress: bool = True,
                    hook: Callable[[str, int], bool] | None = None, device: str = "auto",
                    mesh_from: str | Path | None = None, **overrides) -> Path:
    """Reconstruct the avatar of ``work`` (after ``styletalker preprocess``); returns ``work/reconstruct``.

    ``overrides``: dotted option names of :class:`~.config.ReconstructConfig` (``"mesh.train.iters"``)
    or the short aliases of :data:`ALIASES` (``mesh_iters``, ``no_mesh``, ``prior``, ...).
    ``hook(stage, iteration) -> True`` simulates Ctrl-C (tests). Resume rule and lock:
    :class:`~styletalker.workfolder.WorkFolder` (docs/FORMATS.md). ``mesh_from``: the complete
    ``reconstruct/mesh`` folder of another reconstruction of the same clip, taken instead of
    training stage 1 again (:func:`reuse_mesh`; ablations that differ after stage 1 only).
    """
    from ..preprocess import load_dataset

    work = Path(work)
    if not work.is_dir():
        raise InputError(f"{work}: work folder not found")
    wf = WorkFolder(work)
    with wf.lock("reconstruct"):
        ds = load_dataset(work)  # MissingStageError when preprocessing is missing/incomplete
        cfg = C.make_config(preset, device, **resolve_aliases(overrides))
        if cfg.prior.backend == "svd":
            from .prior import check_svd_path

            check_svd_path(cfg.prior.model)  # fail before hours of training, not after
        out = wf.reconstruct
        record = wf.begin(out, {"config": C.comparable(cfg.to_json()), "device": cfg.device}, (PREPROCESS,),
                          force=force, defaults={"config": C.comparable(C.make_config(preset, device).to_json())})
        if record is None:
            log(f"{out} is complete (use --force to redo)")
            return out
        if mesh_from is not None:
            reuse_mesh(cfg, Path(mesh_from), out / MESH_DIR, record["inputs"][PREPROCESS]["fingerprint"])
        _reconstruct(cfg, ds, out, record, progress, hook)
    return out


STAGE2_DATA_OPTIONS = ("edge_px", "unmix")  # data options that only the prior and the Gaussians use


def mesh_stage_key(cfg_json: dict) -> str:
    """What stage 1 depends on, as a JSON string, from a ``ReconstructConfig.to_json()``: two
    reconstructions of one clip with the same key train the same mesh (bit for bit on one device)."""
    import json

    data = {k: v for k, v in cfg_json["data"].items() if k not in STAGE2_DATA_OPTIONS}
    return json.dumps({"seed": cfg_json["seed"], "device": cfg_json["device"], "data": data,
                       "model": cfg_json["model"], "mesh": cfg_json["mesh"]}, sort_keys=True, default=str)


def mesh_folder_key(folder: Path) -> str | None:
    """:func:`mesh_stage_key` of a complete stage-1 folder (None: incomplete or unreadable)."""
    st = load_state(Path(folder) / CHECKPOINT_FILE) if is_complete(folder) else None
    if st is None or "config" not in st:
        return None
    c = st["config"]  # options added since it was written ran with their defaults (which no device
    # changes: "cpu" here, so a mesh trained on a GPU is read on a machine without one)
    return mesh_stage_key(fill_missing(c, C.make_config(c.get("preset", "cpu"), "cpu").to_json()))


def reuse_mesh(cfg: C.ReconstructConfig, src: Path, dst: Path, clip: str | None = None) -> None:
    """Copy the complete stage-1 folder ``src`` to ``dst`` (unless ``dst`` is complete already);
    an incomplete ``src``, one trained with other stage-1 options or, where both are recorded, on
    other preprocessed frames (``clip``: the fingerprint of ``dst``'s preprocess stage) is an
    InputError."""
    if is_complete(dst):
        return
    key = mesh_folder_key(src)
    if key is None:
        raise InputError(f"{src}: not a complete stage-1 mesh folder (reconstruct/mesh)")
    if key != mesh_stage_key(cfg.to_json()):
        raise InputError(f"{src}: this mesh was trained with other stage-1 options; it cannot be reused")
    src_clip = ((WorkFolder.record(src.parent) or {}).get("inputs", {}).get(PREPROCESS) or {}).get("fingerprint")
    if clip and src_clip and src_clip != clip:
        raise InputError(f"{src}: this mesh was trained on other preprocessed frames; it cannot be reused")
    if dst.exists():
        shutil.rmtree(dst)
    shutil.copytree(src, dst)


def _reconstruct(cfg: C.ReconstructConfig, ds, out: Path, record: dict, progress: bool, hook) -> None:
    torch.manual_seed(cfg.seed)
    t_start = time.time()
    data = from_options(ds, asdict(cfg.data))
    if cfg.device != "cpu":
        data = _to(data, cfg.device)
    log(f"reconstruct: {len(data)} frames ({len(data.train_idx)} train, {len(data.test_idx)} held out), "
        f"{data.width}x{data.height}, preset {cfg.preset}, device {cfg.device}")

    model, mesh_info = None, None
    if cfg.mesh.enabled:
        model, mesh_info = run_mesh_stage(cfg, data, out / MESH_DIR, progress, hook)
    views, prior_info = None, {"backend": "none"}
    if cfg.prior.backend != "none":
        views, prior_info = run_prior_stage(cfg, data, model, out / PRIOR_DIR)
    av, gauss_info = run_gauss_stage(cfg, data, model, views, out / GAUSSIANS_DIR, progress, hook)

    # outputs
    av.eval()
    extra = AvatarExtra.for_reconstruction(asdict(cfg.data), data.neutral_index, data.y_cut, cfg.preset)
    av_cpu = av.to("cpu")
    av_cpu.save(out / AVATAR_FILE, **extra)
    _save_ply(out / AVATAR_PLY, av_cpu)
    data_cpu = data if cfg.device == "cpu" else _to(data, "cpu")
    metrics, renders = evaluate_avatar(av_cpu, data_cpu)
    save_side_by_side(out / RENDERS, data_cpu, renders)
    save_orbit(out / RENDERS / "orbit.png", av_cpu, data_cpu, sphere_init(data_cpu, cfg.mesh.radius)[0])
    result = {"psnr": metrics["psnr"], "ssim": metrics["ssim"], "psnr_head": metrics["psnr_head"],
              "heldout_frames": metrics["frames"], "per_frame": metrics["per_frame"],
              "init": gauss_info.get("heldout_init"), "preset": cfg.preset,
              "ablation": {"mesh": cfg.mesh.enabled, "prior": prior_info.get("backend", "none"),
                           "retrain_deform": bool(cfg.gauss.retrain_deform)},
              "points": av_cpu.num_points}
    if model is not None:
        mm, mrend = evaluate_mesh(model.cpu(), data_cpu)
        result["mesh"] = {"psnr": mm["psnr"], "ssim": mm["ssim"], "psnr_head": mm["psnr_head"]}
        save_side_by_side(out / RENDERS, data_cpu, mrend, prefix="mesh")
    if views is not None and len(views):
        _save_prior_montage(out / RENDERS / "prior_views.png", views)
    seconds = {"mesh": mesh_info.get("seconds") if mesh_info else None, "prior": prior_info.get("seconds"),
               "gaussians": gauss_info.get("seconds"), "this_run": round(time.time() - t_start, 1)}
    result["seconds"] = seconds
    atomic_write_json(out / METRICS_FILE, result)
    WorkFolder.complete(out, record, preset=cfg.preset, psnr=result["psnr"], ssim=result["ssim"], seconds=seconds,
                        points=av_cpu.num_points)
    log(f"reconstruct: {format_metrics(result)} -> {out}")


def format_metrics(m: dict) -> str:
    if m.get("psnr") is None:
        return "no held-out frames (clip too short or holdout_every=0), nothing to score"
    return f"held-out PSNR {m['psnr']:.2f} dB  SSIM {m['ssim']:.4f}  ({len(m['heldout_frames'])} frames)"


def _save_ply(path: Path, av) -> None:
    try:
        from ..render.ply import save_ply
    except ImportError:  # pragma: no cover - the renderer package provides it
        log("warning: styletalker.render.ply not available, avatar.ply not written")
        return
    with torch.no_grad():
        g = av(torch.zeros(av.config["n_expr"]))
    save_ply(path, g.means, g.quats, g.scales, g.opacities, g.colors.clamp(0, 1))


def _save_prior_montage(path: Path, views) -> None:
    from ..workdir import write_image

    write_image(path, torch.cat(list(views.images), 1))


def resolve_aliases(overrides: dict) -> dict:
    out = {}
    for k, v in overrides.items():
        if v is None and "." not in k:  # an option the caller left unset (dotted keys may set None)
            continue
        if k == "no_mesh":
            if v:
                out["mesh.enabled"] = False
            continue
        if k == "no_prior":
            if v:
                out["prior.backend"] = "none"
            continue
        out[ALIASES.get(k, k)] = v
    return out


def load_metrics(work) -> dict:
    p = WorkFolder(work).metrics()
    if not p.is_file():
        raise MissingStageError(f"{p} not found: run `styletalker reconstruct {work}` first")
    return read_json(p)
