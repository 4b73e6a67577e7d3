"""Compensation for the removed Gaussians, closed-form (no optimisation): the survivors take over their coverage.

Three rules, all built on the coverage mass (:func:`coverage_mass`, opacity x projected area):

:func:`pairwise_merge` (the compressor's default, replacing voxel sampling): the significance score removes the
Gaussians that carry the last 2 % of it (occluded, nearly transparent), then neighbour pairs are merged greedily
by moment matching, cheapest first, until the budget is met. How, is a :class:`PairwiseRule`: the Ward cost with
opaque merges after the drop (:data:`WARD_OPAQUE`, solid objects) or, without any drop, a significance-weighted KL
cost with mass-conserving opacity (:data:`KL_MASS_CONSERVING`, fuzzy and thin content). Measured in BENCHMARKS.md.

:func:`merge_into_survivors`: after sampling, every removed Gaussian is moment-matched into its nearest survivor:
the survivor takes the group's mass-weighted centre, covariance (spread included) and colour, and the opacity that
conserves the group's coverage mass. Measured at rho = 0.1: +0.7 dB (guitar) and +2.6 dB (biker) over
:func:`amplify`.

:func:`amplify`: after sampling, per voxel, the kept Gaussians take over a share of the removed ones' coverage
mass: ``g = (M_all / M_kept) ** strength``, applied to opacity first (up to 0.99), the rest to the scale.

The per-edge loops of :func:`pairwise_merge` are numba kernels (``_*_py`` bodies, compiled with ``cache=True``;
the parallel ones wrapped by :func:`exgs_core._machine.guarded`, so any thread may launch them).
"""

from __future__ import annotations

import math
import threading
from dataclasses import dataclass, replace
from typing import Literal

import numpy as np

from ..conventions import logit
from ..scene import GaussianScene
from .sample import top_k


# ----------------------------------------------------------------------------- per-voxel amplification
def coverage_mass(scene: GaussianScene) -> np.ndarray:
    """float64 [N] opacity x area of the two largest axes (pi * s_a * s_b): a view-independent coverage proxy."""
    s = np.sort(np.exp(scene.log_scales.astype(np.float64)), axis=1)
    return scene.opacities.astype(np.float64) * math.pi * s[:, 2] * s[:, 1]


def amplify(
    scene: GaussianScene,
    keep: np.ndarray,
    voxel: np.ndarray,
    *,
    strength: float = 0.5,
    max_opacity: float = 0.99,
    max_scale_gain: float = 1.5,
) -> tuple[GaussianScene, dict]:
    """Return the kept Gaussians with opacity/scale compensated for the removed ones in their voxel.

    Per voxel: ``g = (M_all / M_kept) ** strength`` (M = :func:`coverage_mass`), clipped to
    [1, max_scale_gain**2 / min(opacity)]. Each kept Gaussian's mass is multiplied by g: opacity first
    (``sigma' = min(sigma * g, max_opacity)``), the remaining factor ``g * sigma / sigma'`` as area via a
    uniform scale factor ``sqrt(.)`` capped at ``max_scale_gain``.

    Returns:
        (scene of the kept Gaussians, stats dict: mean/max gain, Gaussians changed).
    """
    m = coverage_mass(scene)
    uniq, inv = np.unique(voxel, return_inverse=True)
    m_all = np.bincount(inv, weights=m, minlength=len(uniq))
    m_kept = np.bincount(inv, weights=m * keep, minlength=len(uniq))
    with np.errstate(divide="ignore", invalid="ignore"):
        g_vox = np.where(m_kept > 0, m_all / m_kept, 1.0) ** strength
    g = np.clip(g_vox[inv][keep], 1.0, None)
    out = scene.subset(keep)
    sig = out.opacities.astype(np.float64)
    sig_new = np.minimum(sig * g, max_opacity)
    sig_new = np.maximum(sig_new, sig)
    rest = g * sig / np.maximum(sig_new, 1e-12)
    f = np.clip(np.sqrt(np.maximum(rest, 1.0)), 1.0, max_scale_gain)
    out.opacity_logits = logit(sig_new)
    out.log_scales = (out.log_scales + np.log(f)[:, None]).astype(np.float32)
    changed = g > 1.0 + 1e-6
    # keep the logit exact where nothing changed (logit(sigmoid(x)) is not bit-exact)
    out.opacity_logits[~changed] = scene.opacity_logits[keep][~changed]
    return out, {
        "gain_mean": float(g.mean()) if len(g) else 1.0,
        "gain_max": float(g.max()) if len(g) else 1.0,
        "amplified": int(changed.sum()),
    }


# ----------------------------------------------------------------------------- merging into survivors
def merge_into_survivors(
    scene: GaussianScene, keep: np.ndarray, *, max_dist: float | None = None, opacity_gain: float = 1.0
) -> tuple[GaussianScene, dict]:
    """Closed-form compensation by moment matching: every removed Gaussian is merged into its nearest survivor.

    For survivor k and the removed Gaussians assigned to it (set A_k, nearest centre, within ``max_dist`` when
    given), with weights ``w_i = coverage_mass_i`` (opacity x pi x the two largest scales):

    - centre  ``mu = sum w_i mu_i / W``; covariance ``Sigma = sum w_i (Sigma_i + (mu_i - mu)(mu_i - mu)^T) / W``
      (rotation and scales from its eigen-decomposition);
    - colour  every SH coefficient ``sum w_i c_i / W``;
    - opacity mass-conserving: ``sigma = opacity_gain * sum m_i / (pi s_a s_b)`` of the merged shape, kept within
      [sigma_k, 0.99].

    Returns:
        (scene of the survivors, stats dict with the number merged and the mean group size).
    """
    from ..knn import nearest
    from ..sh_rotation import matrix_to_quat, quat_to_matrix

    kept_idx = np.flatnonzero(keep)
    rem_idx = np.flatnonzero(~keep)
    out = scene.subset(keep)
    if len(kept_idx) == 0 or len(rem_idx) == 0:
        return out, {"merged": 0, "group_mean": 1.0}
    # a removed Gaussian with a NaN/Inf centre (or no finite survivor) has no nearest survivor: dist inf, not merged
    dist, nn = nearest(scene.means[kept_idx].astype(np.float64), scene.means[rem_idx].astype(np.float64))
    ok = np.isfinite(dist)
    if max_dist is not None:
        ok &= dist <= max_dist
    rem_idx, nn = rem_idx[ok], nn[ok]
    members = np.concatenate([kept_idx, rem_idx])  # every Gaussian taking part
    group = np.concatenate([np.arange(len(kept_idx)), nn])  # its survivor
    m = coverage_mass(scene)[members]
    w = np.maximum(m, 1e-30)
    W = np.bincount(group, weights=w, minlength=len(kept_idx))
    mu_i = scene.means[members].astype(np.float64)
    mu = (
        np.stack([np.bincount(group, weights=w * mu_i[:, a], minlength=len(kept_idx)) for a in range(3)], 1)
        / W[:, None]
    )
    R = quat_to_matrix(scene.quats[members])
    s2 = np.exp(2.0 * scene.log_scales[members].astype(np.float64))
    cov_i = np.einsum("nij,nj,nkj->nik", R, s2, R)
    d = mu_i - mu[group]
    cov_i += d[:, :, None] * d[:, None, :]
    cov = np.zeros((len(kept_idx), 3, 3))
    for a in range(3):
        for b in range(a, 3):
            cov[:, a, b] = np.bincount(group, weights=w * cov_i[:, a, b], minlength=len(kept_idx)) / W
            cov[:, b, a] = cov[:, a, b]
    evals, evecs = np.linalg.eigh(cov)
    evecs[np.linalg.det(evecs) < 0, :, 0] *= -1  # proper rotation
    scales = np.sqrt(np.maximum(evals, 1e-20))
    sh = scene.sh[members].astype(np.float64)
    sh_new = (
        np.stack(
            [
                np.stack([np.bincount(group, weights=w * sh[:, k, c], minlength=len(kept_idx)) for c in range(3)], -1)
                for k in range(sh.shape[1])
            ],
            1,
        )
        / W[:, None, None]
    )
    m_sum = np.bincount(group, weights=m, minlength=len(kept_idx))
    ss = np.sort(scales, axis=1)
    sig = opacity_gain * m_sum / (np.pi * ss[:, 2] * ss[:, 1])
    sig = np.clip(sig, scene.opacities[kept_idx].astype(np.float64), 0.99)
    single = np.bincount(group, minlength=len(kept_idx)) == 1  # nothing merged: keep bit-exact
    out.means = np.where(single[:, None], out.means, mu).astype(np.float32)
    out.quats = np.where(single[:, None], out.quats, matrix_to_quat(evecs)).astype(np.float32)
    out.log_scales = np.where(single[:, None], out.log_scales, np.log(scales)).astype(np.float32)
    out.sh = np.where(single[:, None, None], out.sh, sh_new).astype(np.float32)
    out.opacity_logits = np.where(single, out.opacity_logits, logit(sig)).astype(np.float32)
    return out, {"merged": int(len(rem_idx)), "group_mean": float(len(members) / len(kept_idx))}


# ----------------------------------------------------------------------------- pairwise merging
@dataclass(frozen=True)
class PairwiseRule:
    """How :func:`pairwise_merge` drops, prices and merges pairs (the defaults are :data:`WARD_OPAQUE`).

    Attributes:
        cost: pair cost. ``"ward"``: ``w_i w_j / (w_i + w_j) * (|mu_i - mu_j|^2 + color_weight * |c_i - c_j|^2 *
            (A_i + A_j))`` (Ward's criterion on centres plus a colour term; w = coverage mass, A = area);
            ``"kl"``: the KL divergence from the pair's mixture to the merged Gaussian (Monte-Carlo with
            ``samples`` fixed draws; scale-free) plus ``color_weight * |c_i - c_j|^2``.
        mass: coverage mass is opacity x ``"projected"`` area (pi s_a s_b of the two largest axes) or x the
            ellipsoid ``"surface"`` area.
        color: the colour term compares the DC coefficients (``"dc"``) or every SH coefficient (``"all"``).
        color_weight: weight of the colour term.
        opacity_floor: a merged opacity never drops below this fraction of its members' largest (1: an opaque
            surface stays opaque however far the pair spreads; 0: pure mass conservation).
        drop_score_fraction: first remove the least significant Gaussians that together carry this fraction of the
            total significance (occluded or nearly transparent ones: typically 30-40 % of a scene carries 2 %);
            they are never merged into visible surfaces. 0: drop nothing.
        visibility_weight: multiply the cost by the pair's harmonic mean significance (score / its median; a
            merged Gaussian carries the sum), so pairs the views barely see merge first; with
            ``drop_score_fraction=0`` this replaces dropping them.
        knn: candidate pairs are each Gaussian's ``knn`` nearest neighbours.
        samples: Monte-Carlo draws per member for the ``"kl"`` cost.
    """

    cost: Literal["ward", "kl"] = "ward"
    mass: Literal["projected", "surface"] = "projected"
    color: Literal["dc", "all"] = "dc"
    color_weight: float = 1.0
    opacity_floor: float = 1.0
    drop_score_fraction: float = 0.02
    visibility_weight: bool = False
    knn: int = 8
    samples: int = 1

    def __post_init__(self):
        if self.cost not in ("ward", "kl"):
            raise ValueError(f"cost must be 'ward' or 'kl', got {self.cost!r}")
        if self.mass not in ("projected", "surface"):
            raise ValueError(f"mass must be 'projected' or 'surface', got {self.mass!r}")
        if self.color not in ("dc", "all"):
            raise ValueError(f"color must be 'dc' or 'all', got {self.color!r}")


#: Ward cost on centres + DC colour, mass = opacity x projected area, merged opacity never below the members'
#: (opaque surfaces stay opaque), after the 2 % drop: best on solid objects (guitar, biker, flowers at rho 0.25).
WARD_OPAQUE = PairwiseRule()
#: KL cost of the merged Gaussian against the pair's mixture + colour over all SH, scaled by the pair's significance
#: (the barely visible merge first, nothing is dropped), mass = opacity x ellipsoid surface, pure mass
#: conservation: best on fuzzy/thin content (plant, tarot cards, statues, street).
KL_MASS_CONSERVING = PairwiseRule(
    cost="kl", mass="surface", color="all", opacity_floor=0.0, drop_score_fraction=0.0, visibility_weight=True
)
#: :data:`KL_MASS_CONSERVING` after :data:`WARD_OPAQUE`'s 2 % drop.
KL_MASS_CONSERVING_AFTER_DROP = replace(KL_MASS_CONSERVING, drop_score_fraction=WARD_OPAQUE.drop_score_fraction)


class MergeShared:
    """Work that several :func:`pairwise_merge` calls on the same scene and score share (the compressor's ``auto``
    runs up to three rules): the covariances of the scene's Gaussians, and the first round's neighbour lists of
    every set of Gaussians left after a drop (the Ward rule and the KL rule after the same 2 % drop start from the
    same set). Results are the same as without it, bit for bit. Safe to use from several threads at once (a
    second caller waits for the first one's result instead of computing it again).

    Args:
        scene: the N Gaussians every call merges.
    """

    def __init__(self, scene: GaussianScene):
        self._scene = scene
        self._lock = threading.Lock()
        self._cov_lock = threading.Lock()
        self._cov: np.ndarray | None = None
        self._first: dict[int, list] = {}  # k -> [(vis bool [N], lock, [nb int64 [M, k] or None])]

    def covariances(self, vis: np.ndarray) -> np.ndarray:
        """float64 [M, 3, 3] world-space covariances ``R S S^T R^T`` of the Gaussians where ``vis`` (bool [N])."""
        with self._cov_lock:
            if self._cov is None:
                self._cov = _covariances(self._scene.quats, self._scene.log_scales)
        return self._cov[vis]

    def first_neighbours(self, vis: np.ndarray, means: np.ndarray, k: int) -> np.ndarray:
        """int64 [M, k]: :func:`exgs_core.knn.knn` of ``means`` (float64 [M, 3], the centres where ``vis``)."""
        from ..knn import knn as knn_search

        with self._lock:
            slots = self._first.setdefault(k, [])
            slot = next((e for e in slots if np.array_equal(e[0], vis)), None)
            if slot is None:
                held: list[np.ndarray | None] = [None]
                slot = (vis.copy(), threading.Lock(), held)
                slots.append(slot)
        with slot[1]:
            if slot[2][0] is None:
                slot[2][0] = knn_search(means, k)[1]
            nb = slot[2][0]
            assert nb is not None
            return nb


def _covariances(quats: np.ndarray, log_scales: np.ndarray) -> np.ndarray:
    """float64 [N, 3, 3] covariances ``R diag(exp(2 log_scales)) R^T`` from quaternions [N, 4] (wxyz) and
    log-scales [N, 3]."""
    from ..sh_rotation import quat_to_matrix

    r = quat_to_matrix(quats)
    return np.einsum("nij,nj,nkj->nik", r, np.exp(2.0 * log_scales.astype(np.float64)), r)


#: :func:`pairwise_merge` merges the Gaussians left after its drop in spatial chunks of at most this many (a kd split
#: of their centres; each chunk merges down to its share of the target), so its memory (about 0.7 kB per Gaussian
#: merged at once) stays bounded on any scene. Pairs across a chunk boundary never merge; scenes whose Gaussians
#: after the drop are at most this many merge in one piece.
MERGE_CHUNK = 2_000_000


def pairwise_merge(
    scene: GaussianScene,
    score: np.ndarray,
    target: int,
    rule: PairwiseRule = WARD_OPAQUE,
    *,
    shared: MergeShared | None = None,
    chunk: int | None = None,
    progress=None,
) -> tuple[GaussianScene, dict]:
    """UGC with hierarchical compensation (:func:`merge_with_tail` without its :class:`MergeTail`)."""
    out, stats, _ = merge_with_tail(scene, score, target, rule, shared=shared, chunk=chunk, progress=progress)
    return out, stats


def merge_with_tail(
    scene: GaussianScene,
    score: np.ndarray,
    target: int,
    rule: PairwiseRule = WARD_OPAQUE,
    *,
    shared: MergeShared | None = None,
    chunk: int | None = None,
    progress=None,
    tail: bool = False,
) -> tuple[GaussianScene, dict, MergeTail | None]:
    """UGC with hierarchical compensation: drop the invisible, then merge neighbour pairs until ``target`` remain.

    1. The least significant Gaussians that together carry ``rule.drop_score_fraction`` of the total significance
       are removed outright (never fewer than ``target`` remain: then the best ``target`` by score are kept).
    2. Rounds of greedy pairwise merging: candidate pairs are each Gaussian's ``rule.knn`` nearest neighbours, the
       cheapest disjoint pairs (by ``rule.cost``, see :class:`PairwiseRule`) are moment-matched (mass-weighted
       centre, covariance with spread, colour; the opacity conserves the pair's coverage mass, within
       ``rule.opacity_floor``) — at most half the Gaussians per round — until exactly ``target`` remain.
       More than ``chunk`` Gaussians after the drop merge in spatial chunks (:data:`MERGE_CHUNK`), each down to
       its share of ``target`` in proportion to its size (largest remainders; at least one each).

    Args:
        scene: N Gaussians.
        score: float [N] significance (higher = more important).
        target: how many Gaussians remain.
        rule: how to drop, price and merge.
        shared: a :class:`MergeShared` of ``scene``, when several rules merge the same scene and score (the
            result does not depend on it; unused when merging in chunks).
        chunk: most Gaussians merged at once (default :data:`MERGE_CHUNK`).
        progress: ``progress(fraction, stage)``, called before each chunk.
        tail: also keep the last merge round (:class:`MergeTail`), from which the merge of the same scene down to
            a few more Gaussians is rebuilt without merging again (None when the merge ran in chunks, kept the
            best by score instead of dropping, or needed no round).

    Returns:
        (scene of ``target`` Gaussians, stats: dropped, rounds (the most of any chunk), chunks; the tail or None).
    """
    n0 = scene.n
    if target >= n0:
        return scene.copy(), {"dropped": 0, "rounds": 0}, None
    if rule.drop_score_fraction > 0:
        o = np.sort(score)
        cum = np.cumsum(o) / max(o.sum(), 1e-300)
        thr = o[min(int(np.searchsorted(cum, rule.drop_score_fraction)), n0 - 1)]
        del o, cum
        vis = score > thr
    else:
        vis = np.ones(n0, bool)
    by_score = vis.sum() < target
    if by_score:  # never drop below the target: keep the best by score instead
        vis = top_k(score, target / n0)
    s = scene.subset(vis)
    vis_w = score[vis].astype(np.float64) / max(float(np.median(score[vis])), 1e-30)
    last: list | None
    parts = _spatial_chunks(s.means, MERGE_CHUNK if chunk is None else int(chunk))
    if len(parts) == 1:
        cov = _covariances(s.quats, s.log_scales) if shared is None else shared.covariances(vis)
        first = None if shared is None else (lambda means, k: shared.first_neighbours(vis, means, k))
        last = [] if tail and not by_score else None
        pieces = [_merge_piece(s, cov, vis_w, target, rule, first, last)]
    else:
        last = None
        pieces = []
        for i, (idx, t) in enumerate(zip(parts, _shares(target, [len(p) for p in parts]), strict=True)):
            if progress is not None:
                progress(i / len(parts), f"merging chunk {i + 1}/{len(parts)}")
            piece = s.subset(idx)
            pieces.append(_merge_piece(piece, _covariances(piece.quats, piece.log_scales), vis_w[idx], t, rule, None))
            del piece
    del s
    means, cov, op, sh = (np.concatenate([p[a] for p in pieces]) if len(pieces) > 1 else pieces[0][a] for a in range(4))
    rounds = max(p[4] for p in pieces)
    stats = {"dropped": int(n0 - vis.sum()), "rounds": rounds, "chunks": len(parts)}
    kept_tail = None
    if last:
        m, c, o, a, w, h, pi, pj = last[0]
        kept_tail = MergeTail(m, c, o, a, w, h, pi, pj, target=target, rule=rule, template=scene, stats=stats)
    return _as_scene(means, cov, op, sh, scene), stats, kept_tail


def _as_scene(means, cov, op, sh, template: GaussianScene) -> GaussianScene:
    """The merged Gaussians (centres float64 [T, 3], covariances [T, 3, 3], opacities [T], SH [T, K, 3]) as a
    scene with ``template``'s meta, antialiasing and up axis."""
    from ..sh_rotation import matrix_to_quat

    ev, evec = np.linalg.eigh(cov)
    evec[np.linalg.det(evec) < 0, :, 0] *= -1
    return GaussianScene(
        means,
        matrix_to_quat(evec),
        0.5 * np.log(np.maximum(ev, 1e-20)),
        logit(op),
        sh,
        meta={**template.meta, "notes": list(template.meta.get("notes", []))},
        antialiased=template.antialiased,
        up=template.up,
    )


@dataclass(eq=False)
class MergeTail:
    """The last round of a :func:`merge_with_tail`: the Gaussians before it (the arrays of :func:`_merge_piece`'s
    state, float64: centres [M, 3], covariances [M, 3, 3], opacities, areas and masses [M], SH [M, K, 3]) and the
    round's pairs in the greedy order it took them (int [P] each). The merge of the same scene and score by the same
    rule down to any count in [target, M] takes the same earlier rounds and, in its last, the first M - count of
    these pairs (greedy takes disjoint pairs cheapest first and stops at its count), so :meth:`at` rebuilds it
    exactly, bit for bit, without merging again (the compressor's retention probe)."""

    means: np.ndarray
    cov: np.ndarray
    op: np.ndarray
    area: np.ndarray
    w_mass: np.ndarray
    sh: np.ndarray
    pi: np.ndarray
    pj: np.ndarray
    target: int
    rule: PairwiseRule
    template: GaussianScene
    stats: dict

    def at(self, count: int) -> tuple[GaussianScene, dict] | None:
        """(the scene :func:`pairwise_merge` gives for ``count`` Gaussians, its stats), or None when ``count`` is
        outside [target, M] or more pairs would be needed than the round took."""
        m = len(self.means)
        k = m - int(count)
        if not (self.target <= count <= m and k <= len(self.pi)):
            return None
        means, cov, op, _, _, sh = _merge_pairs(
            (self.means.copy(), self.cov.copy(), self.op.copy(), self.area.copy(), self.w_mass.copy(), self.sh.copy()),
            self.pi[:k],
            self.pj[:k],
            self.rule,
        )
        return _as_scene(means, cov, op, sh, self.template), dict(self.stats)


def _area_of(rule: PairwiseRule, sd_sorted: np.ndarray) -> np.ndarray:
    """float64 [N]: the mass area of Gaussians with standard deviations ``sd_sorted`` (ascending, [N, 3])."""
    return np.pi * sd_sorted[:, 2] * sd_sorted[:, 1] if rule.mass == "projected" else _ellipsoid_area(sd_sorted)


def _merge_pairs(state: tuple, pi: np.ndarray, pj: np.ndarray, rule: PairwiseRule) -> tuple:
    """Moment-match the disjoint pairs (pi[p], pj[p]) of ``state`` = (means [N, 3], cov [N, 3, 3], op [N], area [N],
    w_mass [N], sh [N, K, 3], all float64; modified in place) into pi's slots and remove pj's: the state of N - P
    Gaussians, in the same order."""
    means, cov, op, area, w_mass, sh = state
    w1, w2 = w_mass[pi], w_mass[pj]
    W = w1 + w2 + 1e-300
    mu = (w1[:, None] * means[pi] + w2[:, None] * means[pj]) / W[:, None]
    d1, d2 = means[pi] - mu, means[pj] - mu
    cm = (
        w1[:, None, None] * (cov[pi] + d1[:, :, None] * d1[:, None, :])
        + w2[:, None, None] * (cov[pj] + d2[:, :, None] * d2[:, None, :])
    ) / W[:, None, None]
    ev = np.maximum(np.linalg.eigvalsh(cm), 1e-20)
    a_new = _area_of(rule, np.sqrt(ev))  # eigvalsh is ascending
    lo = float(rule.opacity_floor) * np.maximum(op[pi], op[pj])
    op_new = np.clip((w1 + w2) / a_new, lo, 0.99)
    means[pi], cov[pi], op[pi], area[pi] = mu, cm, op_new, a_new
    sh[pi] = (w1[:, None, None] * sh[pi] + w2[:, None, None] * sh[pj]) / W[:, None, None]
    w_mass[pi] = op_new * a_new
    keep = np.ones(len(means), bool)
    keep[pj] = False
    return means[keep], cov[keep], op[keep], area[keep], w_mass[keep], sh[keep]


def _merge_piece(
    s: GaussianScene, cov: np.ndarray, vis_w: np.ndarray, target: int, rule: PairwiseRule, first, last=None
):
    """The merge rounds of :func:`pairwise_merge` on the M Gaussians of ``s`` (covariances ``cov`` float64
    [M, 3, 3], significance over its median ``vis_w`` float64 [M]) down to ``target``. ``first(means, k)``, when
    given, supplies the first round's neighbour lists; ``last``, a list, receives the last round (its state before
    and its pairs, the fields of :class:`MergeTail`). Returns (means float64 [T, 3], cov float64 [T, 3, 3],
    opacity float64 [T], sh float64 [T, K, 3], rounds)."""
    from ..knn import knn as knn_search

    means = s.means.astype(np.float64)
    op = s.opacities.astype(np.float64)
    area = _area_of(rule, np.sort(np.exp(s.log_scales.astype(np.float64)), axis=1))
    w_mass = op * area
    sh = s.sh.astype(np.float64)
    vis_w = vis_w.copy()
    z = np.random.default_rng(0).standard_normal((max(1, rule.samples), 3))
    n = s.n
    rounds = 0
    while n > target:
        rounds += 1
        k = min(rule.knn + 1, n)
        if rounds == 1 and first is not None:
            nb = first(means, k)
        else:
            _, nb = knn_search(means, k)  # column 0: the Gaussian itself
        # candidate pairs: each Gaussian with its k - 1 neighbours, every pair once (where j lists i too, the
        # edge (i, j) with i > j repeats the earlier edge (j, i), whose cost is the same: greedy never takes it);
        # NaN/Inf centres have no neighbours (index n): no candidate pairs for them
        ei, ej = _unique_edges(np.ascontiguousarray(nb))
        del nb
        c2 = _edge_sq_dist(np.ascontiguousarray(sh[:, 0] if rule.color == "dc" else sh.reshape(n, -1)), ei, ej)
        if rule.cost == "ward":
            wi, wj = w_mass[ei], w_mass[ej]
            h = wi * wj / (wi + wj + 1e-300)
            c = h * (_edge_sq_dist(means, ei, ej) + rule.color_weight * c2 * (area[ei] + area[ej]))
            del wi, wj, h
        else:
            chol = _psd_cholesky(cov)
            logdet = 2.0 * np.log(np.abs(np.diagonal(chol, axis1=1, axis2=2))).sum(1)
            kl = _kl_costs(means, chol, logdet, w_mass, ei, ej, z)
            del chol
            # KL >= 0; the Monte-Carlo estimate can dip below: clamp to a small positive floor (from a 1/64
            # sample), so a pair that looks free still costs more than an invisible pair once scaled by significance
            sample = np.abs(kl[::64])
            sample = sample[np.isfinite(sample)]
            floor = 1e-3 * float(np.median(sample)) if sample.size else 1e-12
            c = _finish_kl_costs(kl, c2, float(rule.color_weight), max(floor, 1e-300))
            del kl
        del c2
        if rule.visibility_weight:  # pairs the views barely see merge first, whatever their shape
            c = _scale_by_visibility(c, vis_w, ei, ej)
        order = _order_by_cost(c)
        del c
        pi, pj = _greedy_pairs(order, ei, ej, n, min(n - target, n // 2 + 1))
        del order, ei, ej
        if len(pi) == 0:
            break
        if last is not None:  # a round that may be the last: its state before and its pairs (else none kept)
            last[:] = (
                [(means.copy(), cov.copy(), op.copy(), area.copy(), w_mass.copy(), sh.copy(), pi, pj)]
                if n - target <= n // 2 + 1
                else []
            )
        keep = np.ones(n, bool)
        keep[pj] = False
        vis_w[pi] = vis_w[pi] + vis_w[pj]
        vis_w = vis_w[keep]
        means, cov, op, area, w_mass, sh = _merge_pairs((means, cov, op, area, w_mass, sh), pi, pj, rule)
        n = len(means)
    return means, cov, op, sh, rounds


def _spatial_chunks(means: np.ndarray, limit: int) -> list[np.ndarray]:
    """int64 index arrays (each ascending) of a kd split of the centres ``means`` [N, 3] into parts of at most
    ``limit`` (>= 1): a part above it is halved at the median of its widest axis (ties and non-finite centres by
    index), depth first, the lower half first. One part, ``arange(N)``, when N <= limit."""
    n = len(means)
    if n <= limit:
        return [np.arange(n, dtype=np.int64)]
    if limit < 1:
        raise ValueError(f"chunk must be >= 1, got {limit}")
    out, stack = [], [np.arange(n, dtype=np.int64)]
    while stack:
        idx = stack.pop()
        if len(idx) <= limit:
            out.append(idx)
            continue
        p = means[idx].astype(np.float64)
        fin = np.isfinite(p).all(axis=1)
        axis = int(np.argmax(np.ptp(p[fin], axis=0))) if fin.any() else 0
        order = np.argsort(np.where(fin, p[:, axis], np.inf), kind="stable")
        half = len(idx) // 2
        stack += [np.sort(idx[order[half:]]), np.sort(idx[order[:half]])]
    return out


def _shares(target: int, sizes: list[int]) -> list[int]:
    """``target`` split over parts of ``sizes`` in proportion (largest remainders, ties to the earlier part), each
    share within [1, size]."""
    sz = np.asarray(sizes, np.float64)
    raw = target * sz / sz.sum()
    base = np.floor(raw).astype(np.int64)
    extra = int(target - base.sum())
    if extra > 0:
        base[np.argsort(-(raw - base), kind="stable")[:extra]] += 1
    return np.clip(base, 1, np.asarray(sizes, np.int64)).tolist()


# ----------------------------------------------------------------------------- kernels of pairwise_merge
def _greedy_pairs_py(order, ei, ej, n, max_pairs):
    """(int64 [P], int64 [P]): disjoint pairs (ei[e], ej[e]) taken greedily in ``order`` (edge indices, cheapest
    first) among n Gaussians, at most ``max_pairs`` of them."""
    used = np.zeros(n, np.bool_)
    pi = np.empty(max_pairs, np.int64)
    pj = np.empty(max_pairs, np.int64)
    k = 0
    for t in range(order.size):
        if k >= max_pairs:
            break
        e = order[t]
        a = ei[e]
        b = ej[e]
        if a == b or used[a] or used[b]:
            continue
        used[a] = True
        used[b] = True
        pi[k] = a
        pj[k] = b
        k += 1
    return pi[:k], pj[:k]


try:  # numba compiles the per-edge loops (~100x faster); the pure-Python bodies are the same algorithms
    from numba import njit as _njit
    from numba import prange as _prange
except ImportError:  # pragma: no cover
    _njit = None  # type: ignore[assignment]
    _prange = range  # type: ignore[misc]


def _unique_edge_mask_py(nb):
    """bool [N * (K - 1)]: which edges (i, nb[i, t]), t = 1..K-1 in row-major order, to keep: not missing
    (index N) and not the repeat of an earlier edge (j, i) (j < i with i among j's neighbours). nb int64 [N, K]."""
    n, k = nb.shape
    keep = np.empty(n * (k - 1), np.bool_)
    for i in _prange(n):
        for t in range(1, k):
            j = nb[i, t]
            ok = j < n
            if ok and j < i:
                for u in range(1, k):
                    if nb[j, u] == i:
                        ok = False
                        break
            keep[i * (k - 1) + t - 1] = ok
    return keep


def _unique_edges(nb: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(ei, ej) int64 [E]: the candidate pairs of neighbour lists nb int64 [N, K] (column 0 the Gaussian itself),
    each unordered pair once, in the order of their first listing (see :func:`_unique_edge_mask_py`)."""
    n, k = nb.shape
    keep = _unique_edge_mask(nb)
    ei = np.repeat(np.arange(n, dtype=np.int64), k - 1)[keep]
    return ei, nb[:, 1:].ravel()[keep]


def _edge_sq_dist_py(x, ei, ej):
    """float64 [E]: squared Euclidean distance between rows ei[e] and ej[e] of x [N, D] (no [E, D] temporaries)."""
    m = ei.size
    out = np.empty(m, np.float64)
    d = x.shape[1]
    for e in _prange(m):
        i = ei[e]
        j = ej[e]
        acc = 0.0
        for t in range(d):
            v = x[i, t] - x[j, t]
            acc += v * v
        out[e] = acc
    return out


def _kl_costs_py(means, chol, logdet, mass, ei, ej, z):
    """float64 [E]: per edge (ei[e], ej[e]), KL(p || q) from the pair's mixture p (weights ~ mass) to its
    moment-matched Gaussian q, estimated with the fixed standard-normal draws z [S, 3] pushed through each
    member (common random numbers for log p and log q, so identical members cost exactly 0).
    means [N, 3], chol [N, 3, 3] lower Cholesky factors of the covariances, logdet [N], mass [N]."""
    m = ei.size
    out = np.empty(m, np.float64)
    ns = z.shape[0]
    c3 = 3.0 * math.log(2.0 * math.pi)
    for e in _prange(m):
        i = ei[e]
        j = ej[e]
        w = mass[i] + mass[j]
        pi = mass[i] / w if w > 0 else 0.5
        pi = min(max(pi, 1e-12), 1.0 - 1e-12)
        pj = 1.0 - pi
        mu0 = pi * means[i, 0] + pj * means[j, 0]
        mu1 = pi * means[i, 1] + pj * means[j, 1]
        mu2 = pi * means[i, 2] + pj * means[j, 2]
        # merged covariance = sum_k p_k (L_k L_k^T + d_k d_k^T), lower triangle only
        di0, di1, di2 = means[i, 0] - mu0, means[i, 1] - mu1, means[i, 2] - mu2
        dj0, dj1, dj2 = means[j, 0] - mu0, means[j, 1] - mu1, means[j, 2] - mu2
        ci = chol[i]
        cj = chol[j]
        s00 = pi * (ci[0, 0] * ci[0, 0] + di0 * di0) + pj * (cj[0, 0] * cj[0, 0] + dj0 * dj0)
        s10 = pi * (ci[1, 0] * ci[0, 0] + di1 * di0) + pj * (cj[1, 0] * cj[0, 0] + dj1 * dj0)
        s20 = pi * (ci[2, 0] * ci[0, 0] + di2 * di0) + pj * (cj[2, 0] * cj[0, 0] + dj2 * dj0)
        s11 = pi * (ci[1, 0] * ci[1, 0] + ci[1, 1] * ci[1, 1] + di1 * di1) + pj * (
            cj[1, 0] * cj[1, 0] + cj[1, 1] * cj[1, 1] + dj1 * dj1
        )
        s21 = pi * (ci[2, 0] * ci[1, 0] + ci[2, 1] * ci[1, 1] + di2 * di1) + pj * (
            cj[2, 0] * cj[1, 0] + cj[2, 1] * cj[1, 1] + dj2 * dj1
        )
        s22 = pi * (ci[2, 0] * ci[2, 0] + ci[2, 1] * ci[2, 1] + ci[2, 2] * ci[2, 2] + di2 * di2) + pj * (
            cj[2, 0] * cj[2, 0] + cj[2, 1] * cj[2, 1] + cj[2, 2] * cj[2, 2] + dj2 * dj2
        )
        # Cholesky of the merged covariance (3x3, with a tiny ridge)
        l00 = math.sqrt(max(s00, 1e-30))
        l10 = s10 / l00
        l20 = s20 / l00
        l11 = math.sqrt(max(s11 - l10 * l10, 1e-30))
        l21 = (s21 - l20 * l10) / l11
        l22 = math.sqrt(max(s22 - l20 * l20 - l21 * l21, 1e-30))
        logdet_m = 2.0 * (math.log(l00) + math.log(l11) + math.log(l22))
        kl = 0.0
        for src in range(2):
            s_ = i if src == 0 else j
            ps = pi if src == 0 else pj
            acc = 0.0
            for t in range(ns):
                x0 = means[s_, 0] + chol[s_, 0, 0] * z[t, 0] + chol[s_, 0, 1] * z[t, 1] + chol[s_, 0, 2] * z[t, 2]
                x1 = means[s_, 1] + chol[s_, 1, 0] * z[t, 0] + chol[s_, 1, 1] * z[t, 1] + chol[s_, 1, 2] * z[t, 2]
                x2 = means[s_, 2] + chol[s_, 2, 0] * z[t, 0] + chol[s_, 2, 1] * z[t, 1] + chol[s_, 2, 2] * z[t, 2]
                lg0 = 0.0
                lg1 = 0.0
                for k in range(2):
                    g = i if k == 0 else j
                    r0 = x0 - means[g, 0]
                    r1 = x1 - means[g, 1]
                    r2 = x2 - means[g, 2]
                    y0 = r0 / chol[g, 0, 0]
                    y1 = (r1 - chol[g, 1, 0] * y0) / chol[g, 1, 1]
                    y2 = (r2 - chol[g, 2, 0] * y0 - chol[g, 2, 1] * y1) / chol[g, 2, 2]
                    v = -0.5 * (c3 + logdet[g] + y0 * y0 + y1 * y1 + y2 * y2) + math.log(pi if k == 0 else pj)
                    if k == 0:
                        lg0 = v
                    else:
                        lg1 = v
                hi = max(lg0, lg1)
                log_p = hi + math.log(math.exp(lg0 - hi) + math.exp(lg1 - hi))
                r0 = x0 - mu0
                r1 = x1 - mu1
                r2 = x2 - mu2
                y0 = r0 / l00
                y1 = (r1 - l10 * y0) / l11
                y2 = (r2 - l20 * y0 - l21 * y1) / l22
                log_q = -0.5 * (c3 + logdet_m + y0 * y0 + y1 * y1 + y2 * y2)
                acc += log_p - log_q
            kl += ps * acc / ns
        out[e] = kl
    return out


def _finish_kl_costs_py(kl, c2, color_weight, floor):
    """float64 [E]: max(kl, floor) + color_weight * c2, non-finite kl -> inf."""
    m = kl.size
    out = np.empty(m, np.float64)
    for e in _prange(m):
        k = kl[e]
        out[e] = max(k, floor) + color_weight * c2[e] if math.isfinite(k) else math.inf
    return out


def _scale_by_visibility_py(c, vis_w, ei, ej):
    """float64 [E]: c [E] x the harmonic mean of the endpoints' significance vis_w [N]."""
    m = c.size
    out = np.empty(m, np.float64)
    for e in _prange(m):
        a = vis_w[ei[e]]
        b = vis_w[ej[e]]
        out[e] = c[e] * (a * b / (a + b + 1e-300))
    return out


def _compiled(fn, **kw):
    if _njit is None:
        return fn
    from .._machine import guarded

    k = _njit(cache=True, nogil=True, **kw)(fn)
    return guarded(k) if kw.get("parallel") else k  # parallel kernels: safe from any thread (see _machine)


_greedy_pairs = _compiled(_greedy_pairs_py)
_kl_costs = _compiled(_kl_costs_py, parallel=True)
_edge_sq_dist = _compiled(_edge_sq_dist_py, parallel=True)
_unique_edge_mask = _compiled(_unique_edge_mask_py, parallel=True)
_finish_kl_costs = _compiled(_finish_kl_costs_py, parallel=True)
_scale_by_visibility = _compiled(_scale_by_visibility_py, parallel=True)


def _order_by_cost(c: np.ndarray) -> np.ndarray:
    """int64 [E]: edge indices by ascending cost c [E], ties (at float32 precision) by edge index.

    One sort of unique uint64 keys ``float32 bits << 32 | index`` (as the renderer orders depths): 2-3x faster than
    a stable argsort of float64, and the order does not depend on the sort algorithm numpy picks on this CPU."""
    if c.size >= 1 << 32:  # pragma: no cover - 4 billion candidate edges
        return np.argsort(c, kind="stable")
    c = np.where(np.isfinite(c), c, np.inf)
    lo = c.min() if c.size else 0.0
    with np.errstate(over="ignore"):  # costs beyond float32 (scenes at ~1e15 units) tie at inf, still monotonic
        bits = (c - lo).astype(np.float32).view(np.uint32).astype(np.uint64)  # >= 0, so the bits are monotonic
    keys = (bits << np.uint64(32)) | np.arange(c.size, dtype=np.uint64)
    keys.sort()
    return (keys & np.uint64(0xFFFFFFFF)).astype(np.int64)


def _psd_cholesky(cov: np.ndarray) -> np.ndarray:
    """float64 [N, 3, 3] lower Cholesky factors of covariances cov [N, 3, 3], with a tiny ridge; matrices that
    rounding made indefinite are first projected onto the PSD cone (eigenvalues floored at 1e-9 of the largest)."""
    ridge = 1e-12 * np.eye(3)
    try:
        return np.linalg.cholesky(cov + ridge)
    except np.linalg.LinAlgError:
        ev, evec = np.linalg.eigh(cov)
        ev = np.maximum(ev, 1e-9 * np.maximum(ev[:, -1:], 1e-30))
        return np.linalg.cholesky(np.einsum("nij,nj,nkj->nik", evec, ev, evec) + ridge)


def _ellipsoid_area(sd: np.ndarray) -> np.ndarray:
    """float64 [N] surface area of ellipsoids with semi-axes sd [N, 3] (Knud Thomsen, p = 1.6075)."""
    p = 1.6075
    a, b, c = sd[:, 0], sd[:, 1], sd[:, 2]
    return 4.0 * np.pi * (((a * b) ** p + (a * c) ** p + (b * c) ** p) / 3.0) ** (1.0 / p)
