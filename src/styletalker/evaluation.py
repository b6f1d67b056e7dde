"""The paper's metrics, computed by ``styletalker evaluate`` (docs/FORMATS.md lists the keys).

* Reconstruction (Tables 3, 5): **LPIPS** of the held-out renders against their frames (the same
  renders and targets as the PSNR / SSIM of ``reconstruct/metrics.json``), :func:`heldout_lpips`.
* Each finished edit (Table 1), on an **orbit** of the neutral expression (``views`` head poses
  turning from -degrees/2 to +degrees/2 around the head, the framing of ``styletalker render
  --orbit --orbit-mode turn``), edited avatar vs the original reconstruction, same poses
  (:func:`edit_orbit_metrics`):

  * ``clip_score`` (CLIP-S) of the edited views with the prompt, and ``clip_score_original`` of
    the original views with the same prompt for reference;
  * ``clip_directional`` (CLIP-DS): image change edited - original against the text change
    prompt - source caption (``--source-caption``, default "a photo of a person");
  * ``identity_distance``: mean dlib face-embedding distance (:mod:`styletalker.identity`) between
    the edited and the original view (< 0.6: the same person for dlib), ``identity_same_fraction``
    (views under 0.6) and ``identity_views`` (views where both faces were found);
  * ``lpips``: mean LPIPS between the edited and the original view (perceptual size of the edit).

A metric that cannot be computed (no weights, no face found, ...) is the string
``"unavailable: <why>"`` instead of a number, in metrics.json and in the printed report.
"""

from __future__ import annotations

import numpy as np

from .errors import StyleTalkerError

ORBIT_VIEWS = 8
ORBIT_DEGREES = 60.0
SOURCE_CAPTION = "a photo of a person"


def unavailable(why) -> str:
    """The value a metric gets when it cannot be computed."""
    return f"unavailable: {why}"


def is_unavailable(v) -> bool:
    return isinstance(v, str) and v.startswith("unavailable:")


def load_or_reason(loader, *args, **kw):
    """``(object, None)`` from ``loader(*args, **kw)``, or ``(None, reason)`` when it raises a
    StyleTalkerError (missing weights, offline, ...)."""
    try:
        return loader(*args, **kw), None
    except StyleTalkerError as e:
        return None, str(e)


# ---------------------------------------------------------------------------------------------
# reconstruction


def heldout_lpips(work, lpips, device: str = "cpu") -> dict:
    """LPIPS of the reconstruction's held-out renders vs. frames: ``{"lpips": mean, "per_frame": [...]}``."""
    from .avatar import GaussianAvatar
    from .reconstruct.evaluate import evaluate_avatar
    from .workfolder import WorkFolder

    wf = WorkFolder(work)
    avatar = GaussianAvatar.load(wf.avatar()).to(device)
    data = wf.training_views(avatar)
    _, renders = evaluate_avatar(avatar, data)
    per = [{"frame": int(i), "lpips": lpips.distance(img, data.target[i])} for i, img in renders.items()]
    if not per:
        return {"lpips": unavailable("no held-out frames"), "per_frame": []}
    return {"lpips": float(np.mean([p["lpips"] for p in per])), "per_frame": per}


# ---------------------------------------------------------------------------------------------
# edits


def orbit_renders(work, edit: str, device: str = "cpu", views: int = ORBIT_VIEWS,
                  degrees: float = ORBIT_DEGREES) -> tuple[list, list, np.ndarray]:
    """Renders of the original and the edited avatar (neutral expression) at the same ``views``
    orbit poses. Returns (original images, edited images, poses)."""
    from .animate import head_pivot, load_scene, orbit_poses

    ref = load_scene(work, None, device)
    ed = load_scene(work, edit, device)
    poses = orbit_poses(ref.ref_pose.numpy(), head_pivot(ref.avatar), views, degrees, "turn")
    import torch

    imgs0, imgs1 = [], []
    for P in poses:
        w2c = torch.from_numpy(P).float()
        imgs0.append(ref.render(ref.neutral_expression, w2c))
        imgs1.append(ed.render(ed.neutral_expression, w2c))
    return imgs0, imgs1, poses


def identity_scores(original, edited) -> dict:
    """dlib identity distance between paired views (see the module doc)."""
    from .identity import SAME_PERSON_DISTANCE, face_embedding, identity_distance

    try:
        emb0 = [face_embedding(im) for im in original]
        emb1 = [face_embedding(im) for im in edited]
    except StyleTalkerError as e:  # dlib or its weights missing
        return {"identity_distance": unavailable(e)}
    d = [identity_distance(a, b) for a, b in zip(emb0, emb1) if a is not None and b is not None]
    out = {"identity_views": len(d), "identity_no_face_original": sum(e is None for e in emb0),
           "identity_no_face_edited": sum(a is not None and b is None for a, b in zip(emb0, emb1))}
    if not d:
        why = ("dlib found no face in the original avatar's renders" if all(e is None for e in emb0)
               else "dlib found no face in the edited avatar's renders")
        out.update(identity_distance=unavailable(why), identity_same_fraction=unavailable(why))
        return out
    out.update(identity_distance=float(np.mean(d)),
               identity_same_fraction=float(np.mean([x < SAME_PERSON_DISTANCE for x in d])),
               identity_per_view=[float(x) for x in d])
    return out


def edit_orbit_metrics(work, edit: str, prompt: str, *, clip=None, clip_reason: str | None = None,
                       lpips=None, lpips_reason: str | None = None, device: str = "cpu",
                       views: int = ORBIT_VIEWS, degrees: float = ORBIT_DEGREES,
                       source_caption: str = SOURCE_CAPTION) -> dict:
    """All edit metrics of one finished edit (module doc). ``clip`` is a
    :class:`~styletalker.clip_metrics.ClipScorer` or None with ``clip_reason``; same for ``lpips``."""
    from .clip_metrics import clip_scores

    orig, edited, _ = orbit_renders(work, edit, device, views, degrees)
    out: dict = {"views": len(orig), "degrees": float(degrees), "prompt": prompt, "source_caption": source_caption}
    if clip is not None:
        s = clip_scores(clip, orig, edited, prompt, source_caption)
        out.update(clip_model=clip.model_ref, clip_score=s["clip_score"], clip_score_original=s["clip_score_original"],
                   clip_directional=s["clip_directional"], clip_per_view=s["per_view"])
    else:
        why = unavailable(clip_reason or "no CLIP model")
        out.update(clip_score=why, clip_directional=why)
    out.update(identity_scores(orig, edited))
    if lpips is not None:
        out["lpips"] = float(np.mean([lpips.distance(a, b) for a, b in zip(edited, orig)]))
    else:
        out["lpips"] = unavailable(lpips_reason or "no LPIPS weights")
    return out
