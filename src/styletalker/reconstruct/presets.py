"""Names and presets of ``styletalker reconstruct`` (the option dataclasses are in :mod:`.config`):
one place for the presets, the choices of the enumerated options and the CLI's short option names.
No heavy imports, so ``styletalker --help`` stays fast.

Presets (``--preset``):

* ``test``: tiny (seconds) -- for the test suite and smoke runs, not for quality;
* ``cpu``: sized to finish on the sample video in under 20 minutes on 2 CPU cores;
* ``full``: GPU scale, the paper's iteration counts (10k mesh / 2k Gaussian iterations),
  paper learning rate 1e-4 for the MLPs;
* ``auto`` (CLI default): ``full`` when CUDA is available, else ``cpu``.
"""

from __future__ import annotations

PRESETS: dict[str, dict] = {
    "test": {
        "ckpt_every": 10,
        "model.hidden": 32,
        "mesh.res": 16,
        "mesh.train.iters": 40,
        "mesh.train.batch": 1,
        "gauss.points": 3000,
        "gauss.train.iters": 40,
        "gauss.train.densify.every": 10,
    },
    "cpu": {
        "mesh.res": 32,
        "mesh.train.iters": 1000,
        "mesh.train.batch": 2,
        "gauss.points": 20000,
        "gauss.train.iters": 4500,
    },
    "full": {
        "ckpt_every": 500,
        "model.hidden": 128,
        "mesh.res": 64,
        "mesh.train.iters": 10000,
        "mesh.train.batch": 4,
        "mesh.train.lr_mlp": 1e-4,
        "gauss.points": 60000,
        "gauss.train.iters": 2000,
        "gauss.train.batch": 4,
        "gauss.train.lr_mlp": 1e-4,
    },
}


ANCHORS = ("mesh", "free")
MESH_INITS = ("hull", "sphere")
HULL_FACES = ("tracked", "symmetric")  # mesh.hull_face
PRIORS = ("symmetric", "svd", "none")  # prior.backend


# short option names used by the CLI and by callers
ALIASES = {
    "size": "data.size",
    "max_frames": "data.max_frames",
    "holdout_every": "data.holdout_every",
    "mesh_iters": "mesh.train.iters",
    "mesh_res": "mesh.res",
    "gauss_iters": "gauss.train.iters",
    "gauss_points": "gauss.points",
    "prior": "prior.backend",
    "prior_model": "prior.model",
    "prior_steps": "prior.steps",
    "retrain_deform": "gauss.retrain_deform",
    "hidden": "model.hidden",
    "seed": "seed",
    "ckpt_every": "ckpt_every",
}
