"""Small networks shared by the mesh stage and the Gaussian avatar (paper Eq. 3 and Eq. 6).

    c_x    = MLP_color(f, beta)
    pos_x  = x + MLP_deform(f, gamma(x), beta)     (expression-conditioned deformation)
    attr_x = MLP_attr(f, beta)                     (scale / rotation / opacity offsets)

``f`` is a learnable per-point feature, ``beta`` the expression coefficients (52 ARKit-style
blendshapes from MediaPipe, see docs/FORMATS.md) and ``gamma`` a sinusoidal positional encoding.
The same :class:`DeformField` class is used by the DMTet stage and by the Gaussian avatar, so the
pretrained deformation weights can be copied over unchanged.
"""

from __future__ import annotations

import math
import weakref

import torch
import torch.nn.functional as F
from torch import nn

N_EXPR = 52
# a channel whose training span is below this is scaled as if it spanned this much (see
# ExpressionNorm): a channel the clip hardly moves is mostly tracker noise, not to be amplified
EXPR_MIN_SPAN = 0.1


class ExpressionNorm(nn.Module):
    """What the MLPs see of an expression: ``(beta - neutral) * scale``, per channel.

    Fitted once to the training clip (:meth:`fit`): ``neutral`` is the neutral frame's
    expression and ``scale = 1 / max(max - min, EXPR_MIN_SPAN)`` over the training frames, so
    every channel the clip moves varies by about 1 at the networks' input. Raw blendshapes span
    very different ranges (a talking mouth's ``jawOpen`` ~0.1, a smile ~0.7, a blink ~0.7), and
    the small ones are drowned by the per-point features in the first layer: the deformation field
    then learns no jaw, the colour field no mouth opening. Unfitted it is the identity (avatars of
    formats 1 and 2 and stage-1 checkpoints saved before it existed)."""

    def __init__(self, n_expr: int = N_EXPR):
        super().__init__()
        self.register_buffer("shift", torch.zeros(n_expr))
        self.register_buffer("scale", torch.ones(n_expr))

    @torch.no_grad()
    def fit(self, expressions: torch.Tensor, neutral: torch.Tensor) -> None:
        e = expressions.detach().float().to(self.shift.device)
        self.shift.copy_(neutral.detach().float().to(e.device))
        self.scale.copy_(1.0 / (e.max(0).values - e.min(0).values).clamp_min(EXPR_MIN_SPAN))

    def forward(self, expression: torch.Tensor) -> torch.Tensor:
        return (expression - self.shift) * self.scale

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        if prefix + "shift" not in state_dict and prefix + "scale" not in state_dict:
            # saved before the normalisation existed (avatar formats 1-2, older stage-1
            # checkpoints): those networks were trained on raw expressions, so the identity
            self.shift.zero_()
            self.scale.fill_(1.0)
            return
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)


def posenc(x: torch.Tensor, n_freqs: int) -> torch.Tensor:
    """gamma(x) = [x, sin(2^k pi x), cos(2^k pi x)]_{k<n_freqs}; (..., 3) -> (..., 3 + 6 n_freqs)."""
    if n_freqs <= 0:
        return x
    freqs = (2.0 ** torch.arange(n_freqs, dtype=x.dtype, device=x.device)) * math.pi
    xb = x.unsqueeze(-1) * freqs  # (...,3,F)
    enc = torch.cat([torch.sin(xb), torch.cos(xb)], dim=-1).flatten(-2)
    return torch.cat([x, enc], dim=-1)


def mlp(d_in: int, d_out: int, hidden: int = 128, layers: int = 3, zero_last: bool = False) -> nn.Sequential:
    mods: list[nn.Module] = []
    d = d_in
    for _ in range(layers - 1):
        mods += [nn.Linear(d, hidden), nn.SiLU()]
        d = hidden
    last = nn.Linear(d, d_out)
    if zero_last:
        nn.init.zeros_(last.weight)
        nn.init.zeros_(last.bias)
    mods.append(last)
    return nn.Sequential(*mods)


def _expand_expr(expr: torch.Tensor, n: int) -> torch.Tensor:
    if expr.dim() == 1:
        expr = expr.unsqueeze(0)
    return expr.expand(n, -1) if expr.shape[0] == 1 else expr


def _mlp_with_expr(net: nn.Sequential, per_point: torch.Tensor, expr: torch.Tensor) -> torch.Tensor:
    """``net(cat([per_point, expr]))`` without materialising the expanded expression.

    When one expression vector is shared by all points, its share of the first layer
    (W_e @ beta) is computed once and broadcast: same weights and result, less work.
    """
    if expr.dim() == 1:
        expr = expr.unsqueeze(0)
    if expr.shape[0] != 1:
        return net(torch.cat([per_point, _expand_expr(expr, per_point.shape[0])], dim=-1))
    first = net[0]
    d = per_point.shape[-1]
    h = F.linear(per_point, first.weight[:, :d], first.bias) + F.linear(expr, first.weight[:, d:])
    return net[1:](h)


class DeformField(nn.Module):
    """MLP_deform(f, gamma(x), beta) -> displacement (starts at zero)."""

    def __init__(self, feat_dim: int = 32, n_expr: int = N_EXPR, n_freqs: int = 4, hidden: int = 128, layers: int = 3):
        super().__init__()
        self.feat_dim, self.n_expr, self.n_freqs = feat_dim, n_expr, n_freqs
        self.net = mlp(feat_dim + 3 + 6 * n_freqs + n_expr, 3, hidden, layers, zero_last=True)

    def forward(self, feat: torch.Tensor, x: torch.Tensor, expr: torch.Tensor) -> torch.Tensor:
        return _mlp_with_expr(self.net, torch.cat([feat, posenc(x, self.n_freqs)], dim=-1), expr)


class ColorField(nn.Module):
    """MLP_color(f, beta) -> RGB in [0,1]."""

    def __init__(self, feat_dim: int = 32, n_expr: int = N_EXPR, hidden: int = 128, layers: int = 3, out_dim: int = 3):
        super().__init__()
        self.net = mlp(feat_dim + n_expr, out_dim, hidden, layers)

    def forward(self, feat: torch.Tensor, expr: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(_mlp_with_expr(self.net, feat, expr))


class AttributeField(nn.Module):
    """MLP_attr(f, beta) -> (d_log_scale(3), d_quat(4), d_opacity_logit(1)); starts at zero."""

    def __init__(self, feat_dim: int = 32, n_expr: int = N_EXPR, hidden: int = 128, layers: int = 3):
        super().__init__()
        self.net = mlp(feat_dim + n_expr, 8, hidden, layers, zero_last=True)

    def forward(self, feat: torch.Tensor, expr: torch.Tensor):
        out = _mlp_with_expr(self.net, feat, expr)
        return out[:, :3], out[:, 3:7], out[:, 7]


class ExpressionBasis(nn.Module):
    """A linear expression model of the clip's own tracked face, spread over nearby points.

    ``D(x, beta) = g(x) sum_k w_k(x) B[l_k]^T n(beta)`` -- the displacement of a canonical point
    ``x`` for the expression ``beta``: ``n`` is an :class:`ExpressionNorm` (the neutral frame's
    expression at 0, each channel in units of its training span), ``B`` (E, L, 3) holds each face
    landmark's displacement per unit of each channel, fitted in closed form (ridge regression) to
    the tracked 3D landmarks of the training frames, ``l_k`` are the :data:`K` landmarks nearest
    to ``x`` with inverse-square-distance weights ``w_k`` summing to 1, and
    ``g(x) = exp(-d^2 / 2 FALLOFF^2)`` (``d``: distance to the nearest landmark) fades the motion
    out away from the face (hair, ears and the back of the head stay).

    Why (docs/reconstruct.md, "Expressions as a linear model of the face"): on a talking clip the
    tracked lower lip moves by ~9 mm, and a linear map from the 52 blendshapes predicts it on
    held-out frames at r = 0.99, while MLP_deform, fitted by gradient descent with everything
    else in stage 1, moved it by 1-3 mm: the avatar's mouth did not open. The MLP keeps learning
    what the linear model misses. Linear in the expression, it also stays sane for other people's
    expressions a little past the training range (:attr:`EXTRAPOLATE`). Unfitted (no landmarks) it is zero:
    avatars and stage-1 checkpoints saved before it existed."""

    K = 4  # landmarks blended per point
    FALLOFF = 0.1  # dm: the motion fades out over ~1-3 cm beyond the outermost landmarks
    EPS = 0.005  # dm: softening of the inverse-square weights (landmarks are ~2-10 mm apart)
    RIDGE = 0.01  # ridge penalty per training frame, in normalised expression units
    # how far past the training range an avatar lets the basis go, in training spans per channel
    # (GaussianAvatar.basis_input; the MLPs stay clamped to the range). docs/animate.md: 1 lets a
    # talking clip's avatar open its mouth for a driver who opens wide; unbounded, rarely used
    # channels (brows, eyes) fitted on a few frames distort the face
    EXTRAPOLATE = 1.0

    def __init__(self, n_expr: int = N_EXPR):
        super().__init__()
        self.norm = ExpressionNorm(n_expr)
        self.register_buffer("anchors", torch.zeros(0, 3))  # (L,3) canonical landmarks
        self.register_buffer("matrix", torch.zeros(n_expr, 0, 3))  # (E,L,3) B
        self._memo: list = []

    @property
    def fitted(self) -> bool:
        return self.anchors.shape[0] > 0

    @torch.no_grad()
    def fit(self, expressions: torch.Tensor, landmarks: torch.Tensor, neutral_index: int) -> None:
        """``expressions`` (N,E) and tracked canonical ``landmarks`` (N,L,3) of the training
        frames, ``neutral_index`` the neutral frame's row among them."""
        e = expressions.detach().double().cpu()
        lm = landmarks.detach().double().cpu()
        self.norm.fit(e.float(), e[neutral_index].float())
        X = self.norm(e.float()).double()  # (N,E)
        Y = (lm - lm[neutral_index]).reshape(len(lm), -1)  # (N,3L)
        A = X.T @ X + self.RIDGE * len(X) * torch.eye(X.shape[1], dtype=X.dtype)
        B = torch.linalg.solve(A, X.T @ Y)
        dev = self.anchors.device
        self.anchors = lm[neutral_index].float().to(dev)
        self.matrix = B.reshape(X.shape[1], -1, 3).float().to(dev)
        self._memo = []

    @torch.no_grad()
    def weights(self, points: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(idx (N,K), w (N,K)): the landmarks that move each point and their weights (with the
        fall-off ``g`` folded in). Constant for fixed points: compute once and pass to
        :meth:`displacement`."""
        d = torch.cdist(points.detach().float(), self.anchors)
        dk, idx = d.topk(min(self.K, d.shape[1]), dim=1, largest=False)
        w = 1.0 / (dk**2 + self.EPS**2)
        w = w / w.sum(1, keepdim=True)
        g = torch.exp(-0.5 * (dk[:, :1] / self.FALLOFF) ** 2)
        return idx, (w * g).to(points.dtype)

    def displacement(self, weights: tuple[torch.Tensor, torch.Tensor], expression: torch.Tensor) -> torch.Tensor:
        """(N,3) displacement of the points whose :meth:`weights` are given, for one expression (E,)."""
        idx, w = weights
        per_landmark = torch.einsum("e,elc->lc", self.norm(expression.to(self.matrix)), self.matrix)  # (L,3)
        return (w[..., None] * per_landmark[idx]).sum(1)

    MEMO = 3  # point sets whose weights are kept (stage 1: the surface and the landmarks)

    def forward(self, points: torch.Tensor, expression: torch.Tensor) -> torch.Tensor:
        """(N,3) displacement of ``points`` (N,3) for one expression; zeros when unfitted. The
        weights of the last few point sets are kept and reused while the same tensor is unchanged
        (the same surface for every frame of a training step, an avatar's fixed surface)."""
        if not self.fitted:
            return torch.zeros_like(points)
        for ref, version, w in self._memo:
            if ref() is points and version == points._version:
                break
        else:
            w = self.weights(points)
            # a weak reference: a stage-1 surface (and its autograd graph) is not kept alive by it
            self._memo = [(weakref.ref(points), points._version, w)] + self._memo[: self.MEMO - 1]
        return self.displacement(w, expression)

    def _load_from_state_dict(self, state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys,
                              error_msgs):
        # the number of landmarks comes with the state (0 in states saved before the basis existed:
        # missing keys load as the unfitted, zero basis)
        for name in ("anchors", "matrix"):
            v = state_dict.get(prefix + name)
            if v is not None and v.dim() == getattr(self, name).dim():
                setattr(self, name, torch.empty_like(v, device=getattr(self, name).device))
        self._memo = []
        if prefix + "anchors" not in state_dict and prefix + "matrix" not in state_dict:
            self.anchors = self.anchors[:0]
            self.matrix = self.matrix[:, :0]
            return  # (its ``norm`` is loaded on its own, by the same rule)
        super()._load_from_state_dict(state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys,
                                      error_msgs)
