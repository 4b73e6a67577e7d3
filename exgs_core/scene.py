"""The scene model: one container for N Gaussians, in the conventions of :mod:`exgs_core.conventions`.

>>> import numpy as np
>>> s = GaussianScene.empty(0)
>>> s.n, s.sh_degree
(0, 0)
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

import numpy as np

from .conventions import sh_coeff_count, sh_degree_from_count, sigmoid
from .errors import SceneError

_FIELDS = ("means", "quats", "log_scales", "opacity_logits", "sh")


@dataclass
class SceneReport:
    """What :meth:`GaussianScene.validate` found or :meth:`GaussianScene.sanitize` did.

    Attributes:
        n: number of Gaussians looked at (the longest field).
        nonfinite: field name -> number of Gaussians with a NaN/Inf in that field.
        zero_quats: Gaussians whose rotation has (near) zero norm (< 1e-12).
        length_mismatch: field name -> its length, present only when the fields disagree.
        actions: human-readable sentences of what sanitize changed (empty for validate).
        dropped: number of Gaussians sanitize removed.
    """

    n: int = 0
    nonfinite: dict[str, int] = field(default_factory=dict)
    zero_quats: int = 0
    length_mismatch: dict[str, int] = field(default_factory=dict)
    actions: list[str] = field(default_factory=list)
    dropped: int = 0

    @property
    def ok(self) -> bool:
        """True when nothing is wrong (no non-finite values, zero quaternions or length mismatch)."""
        return not (any(self.nonfinite.values()) or self.zero_quats or self.length_mismatch)

    def problems(self) -> list[str]:
        """One sentence per problem found, empty when :attr:`ok`."""
        out = []
        if self.length_mismatch:
            out.append("field lengths disagree: " + ", ".join(f"{k}={v}" for k, v in self.length_mismatch.items()))
        for k, v in self.nonfinite.items():
            if v:
                out.append(f"{v} Gaussian(s) with NaN/Inf in {k}")
        if self.zero_quats:
            out.append(f"{self.zero_quats} Gaussian(s) with a zero-norm rotation")
        return out

    def __str__(self) -> str:
        lines = self.problems() + self.actions
        return "; ".join(lines) if lines else f"{self.n} Gaussians, no problems"


@dataclass(eq=False)
class GaussianScene:
    """N Gaussians.

    Attributes:
        means: float32 [N, 3], centres in world units.
        quats: float32 [N, 4], rotations as quaternions **w, x, y, z** (normalised after ``sanitize``;
            renderers normalise on use).
        log_scales: float32 [N, 3], natural log of the per-axis standard deviations (world units).
        opacity_logits: float32 [N], opacity before the sigmoid.
        sh: float32 [N, K, 3], SH coefficients per colour channel, K = (degree+1)^2, ``sh[:, 0]`` = DC.
        extras: name -> float32 [N], per-Gaussian properties a reader kept that the model does not use.
        meta: free-form facts about the source (``format``, ``path``, ``notes`` list, reader-specific keys).
        antialiased: True when the scene was trained with mip-splatting-style antialiasing: render with gsplat's
            ``rasterize_mode="antialiased"`` (SPZ flag 0x1, SOG ``model: antialiased``, PLY ``SplatRenderMode: mip``).
        up: the scene's up direction in its own axes as a unit (x, y, z) when the file says (SPZ, .exgs), else
            None (automatic views then guess it, :func:`exgs_core.views.scene_up`).
    """

    means: np.ndarray
    quats: np.ndarray
    log_scales: np.ndarray
    opacity_logits: np.ndarray
    sh: np.ndarray
    extras: dict[str, np.ndarray] = field(default_factory=dict)
    meta: dict = field(default_factory=dict)
    antialiased: bool = False
    up: tuple[float, float, float] | None = None

    def __post_init__(self):
        self.means = _as_f32(self.means, "means", (3,))
        self.quats = _as_f32(self.quats, "quats", (4,))
        self.log_scales = _as_f32(self.log_scales, "log_scales", (3,))
        self.opacity_logits = _as_f32(self.opacity_logits, "opacity_logits", ())
        sh = np.asarray(self.sh)
        if sh.ndim == 2 and sh.shape[1] == 3:  # DC only, [N, 3]
            sh = sh[:, None, :]
        self.sh = _as_f32(sh, "sh", None)
        if self.sh.ndim != 3 or self.sh.shape[2] != 3:
            raise SceneError(f"sh: expected float32 [N, K, 3], got shape {self.sh.shape}")
        try:
            sh_degree_from_count(self.sh.shape[1])
        except ValueError as e:
            raise SceneError(f"sh: {e}") from None
        self.extras = {k: np.asarray(v, dtype=np.float32) for k, v in self.extras.items()}
        self.meta = dict(self.meta)
        self.meta.setdefault("notes", [])
        self.antialiased = bool(self.antialiased)
        if self.up is not None:
            up = np.asarray(self.up, np.float64).reshape(-1)
            norm = float(np.linalg.norm(up)) if up.shape == (3,) and np.all(np.isfinite(up)) else 0.0
            if norm < 1e-12:
                raise SceneError(f"up: expected a finite non-zero 3-vector, got {self.up!r}")
            self.up = tuple(float(v) for v in up / norm)

    # ------------------------------------------------------------------ basics
    @classmethod
    def empty(cls, n: int, sh_degree: int = 0) -> GaussianScene:
        """A scene of n unit-ish Gaussians at the origin (identity rotation, scale 1, opacity 0.5, grey)."""
        k = sh_coeff_count(sh_degree)
        q = np.zeros((n, 4), np.float32)
        q[:, 0] = 1
        return cls(np.zeros((n, 3)), q, np.zeros((n, 3)), np.zeros(n), np.zeros((n, k, 3)))

    @property
    def n(self) -> int:
        """Number of Gaussians (length of ``means``)."""
        return int(self.means.shape[0])

    def __len__(self) -> int:
        return self.n

    @property
    def sh_degree(self) -> int:
        """SH degree d in 0..3, from K = (d+1)^2."""
        return sh_degree_from_count(self.sh.shape[1])

    @property
    def scales(self) -> np.ndarray:
        """float32 [N, 3] linear scales, exp(log_scales)."""
        return np.exp(self.log_scales)

    @property
    def opacities(self) -> np.ndarray:
        """float32 [N] opacities in (0, 1), sigmoid(opacity_logits)."""
        return sigmoid(self.opacity_logits)

    @property
    def sh_dc(self) -> np.ndarray:
        """float32 [N, 3] DC coefficients (a view of ``sh[:, 0]``)."""
        return self.sh[:, 0, :]

    def bounds(self, finite_only: bool = True) -> tuple[np.ndarray, np.ndarray]:
        """(min [3], max [3]) of the centres; zeros for an empty scene."""
        m = self.means
        if finite_only:
            m = m[np.isfinite(m).all(axis=1)]
        if len(m) == 0:
            return np.zeros(3, np.float32), np.zeros(3, np.float32)
        return m.min(axis=0), m.max(axis=0)

    def robust_bounds(self, lo: float = 0.02, hi: float = 0.98) -> tuple[np.ndarray, np.ndarray]:
        """Per-axis quantiles (default 2 %..98 %) of the finite centres: bounds that ignore floaters."""
        m = self.means[np.isfinite(self.means).all(axis=1)]
        if len(m) == 0:
            return np.zeros(3, np.float32), np.zeros(3, np.float32)
        return np.quantile(m, lo, axis=0).astype(np.float32), np.quantile(m, hi, axis=0).astype(np.float32)

    def copy(self) -> GaussianScene:
        """A deep copy (arrays, extras and meta)."""
        return GaussianScene(
            self.means.copy(),
            self.quats.copy(),
            self.log_scales.copy(),
            self.opacity_logits.copy(),
            self.sh.copy(),
            {k: v.copy() for k, v in self.extras.items()},
            {**self.meta, "notes": list(self.meta.get("notes", []))},
            self.antialiased,
            self.up,
        )

    def subset(self, index: np.ndarray) -> GaussianScene:
        """A new scene of the Gaussians selected by ``index`` (bool mask [N] or int indices [M])."""
        return GaussianScene(
            self.means[index],
            self.quats[index],
            self.log_scales[index],
            self.opacity_logits[index],
            self.sh[index],
            {k: v[index] for k, v in self.extras.items()},
            {**self.meta, "notes": list(self.meta.get("notes", []))},
            self.antialiased,
            self.up,
        )

    def with_sh_degree(self, degree: int) -> GaussianScene:
        """A new scene with SH cut to (or zero-padded up to) ``degree``."""
        k = sh_coeff_count(degree)
        sh = np.zeros((self.sh.shape[0], k, 3), np.float32)
        kk = min(k, self.sh.shape[1])
        sh[:, :kk] = self.sh[:, :kk]
        out = self.copy()
        out.sh = sh
        return out

    def ply_size_bytes(self, sh_degree: int | None = None) -> int:
        """Size of this scene as a binary 3DGS PLY in the official layout (with the unused normals; header
        excluded): 4 bytes x (3 + 3 + 3*K + 1 + 3 + 4) per Gaussian. ``sh_degree`` overrides the scene's degree;
        use 3 for the standard "SH3 PLY" reference size of 62 floats = 248 B per Gaussian."""
        k = sh_coeff_count(self.sh_degree if sh_degree is None else sh_degree)
        return self.n * 4 * (6 + 3 * k + 1 + 3 + 4)

    # ------------------------------------------------------------------ checks
    def validate(self) -> SceneReport:
        """Report NaN/Inf per field, zero-norm rotations and length mismatches, with counts. Changes nothing."""
        lengths = {f: int(getattr(self, f).shape[0]) for f in _FIELDS}
        lengths.update({f"extras.{k}": int(v.shape[0]) for k, v in self.extras.items()})
        rep = SceneReport(n=max(lengths.values()) if lengths else 0)
        if len(set(lengths.values())) > 1:
            rep.length_mismatch = lengths
        for f in _FIELDS:
            a = getattr(self, f)
            bad = ~np.isfinite(a.reshape(a.shape[0], int(np.prod(a.shape[1:])))).all(axis=1)
            rep.nonfinite[f] = int(bad.sum())
        with np.errstate(invalid="ignore", over="ignore"):  # inf/NaN entries are reported above, not warned about
            norms = np.linalg.norm(np.nan_to_num(self.quats.astype(np.float64)), axis=1)
        rep.zero_quats = int((norms < 1e-12).sum())
        return rep

    def sanitize(
        self,
        *,
        drop_nonfinite: bool = True,
        zero_quat: str = "identity",
        normalize_quats: bool = True,
    ) -> tuple[GaussianScene, SceneReport]:
        """Repair or drop what :meth:`validate` reports, and say what was done. Never called implicitly.

        Args:
            drop_nonfinite: drop Gaussians with NaN/Inf in any field (otherwise NaN -> 0, +-Inf -> +-large).
            zero_quat: ``"identity"`` replaces zero-norm rotations by (1, 0, 0, 0); ``"drop"`` drops them.
            normalize_quats: normalise every rotation to unit length.

        Returns:
            (new scene, report whose ``actions`` list every change and ``dropped`` counts removed Gaussians).
        """
        if zero_quat not in ("identity", "drop"):
            raise ValueError(f"zero_quat must be 'identity' or 'drop', got {zero_quat!r}")
        rep = self.validate()
        s = self
        if rep.length_mismatch:
            n = min(rep.length_mismatch.values())
            s = GaussianScene(
                s.means[:n],
                s.quats[:n],
                s.log_scales[:n],
                s.opacity_logits[:n],
                s.sh[:n],
                {k: v[:n] for k, v in s.extras.items()},
                s.meta,
                s.antialiased,
                s.up,
            )
            rep.actions.append(f"truncated every field to the shortest length {n}")
            rep.dropped += rep.n - n
        else:
            s = s.copy()
        keep = np.ones(s.n, bool)
        if drop_nonfinite:
            for f in _FIELDS:
                a = getattr(s, f)
                keep &= np.isfinite(a.reshape(a.shape[0], int(np.prod(a.shape[1:])))).all(axis=1)
            nd = int((~keep).sum())
            if nd:
                rep.actions.append(f"dropped {nd} Gaussian(s) with NaN/Inf")
        else:
            for f in _FIELDS:
                a = getattr(s, f)
                nbad = int((~np.isfinite(a)).sum())
                if nbad:
                    setattr(s, f, np.nan_to_num(a, nan=0.0, posinf=1e4, neginf=-1e4).astype(np.float32))
                    rep.actions.append(f"replaced {nbad} NaN/Inf value(s) in {f}")
        norms = np.linalg.norm(np.nan_to_num(s.quats.astype(np.float64)), axis=1)
        zero = norms < 1e-12
        nz = int((zero & keep).sum())
        if nz:
            if zero_quat == "drop":
                keep &= ~zero
                rep.actions.append(f"dropped {nz} Gaussian(s) with a zero-norm rotation")
            else:
                s.quats[zero] = (1.0, 0.0, 0.0, 0.0)
                norms[zero] = 1.0
                rep.actions.append(f"set {nz} zero-norm rotation(s) to identity")
        if normalize_quats:
            with np.errstate(invalid="ignore", divide="ignore"):
                s.quats = (s.quats / np.where(norms > 0, norms, 1.0)[:, None]).astype(np.float32)
        if not keep.all():
            rep.dropped += int((~keep).sum())
            s = s.subset(keep)
        s.meta["notes"] = list(s.meta.get("notes", [])) + [f"sanitize: {a}" for a in rep.actions]
        return s, rep

    def equal(self, other: GaussianScene, atol: float = 0.0) -> bool:
        """True when all five arrays have equal shapes and agree within ``atol`` (NaN equal to NaN)."""
        for f in _FIELDS:
            a, b = getattr(self, f), getattr(other, f)
            if a.shape != b.shape or not np.allclose(a, b, atol=atol, rtol=0, equal_nan=True):
                return False
        return True

    def __repr__(self) -> str:
        return f"GaussianScene(n={self.n}, sh_degree={self.sh_degree}, format={self.meta.get('format')!r})"


def _as_f32(a, name: str, trailing: tuple | None) -> np.ndarray:
    a = np.asarray(a)
    if a.dtype.kind not in "fiu":
        raise SceneError(f"{name}: expected a numeric array, got dtype {a.dtype}")
    a = np.ascontiguousarray(a, dtype=np.float32)
    if trailing is not None and (a.ndim != 1 + len(trailing) or a.shape[1:] != trailing):
        want = "[N" + "".join(f", {t}" for t in trailing) + "]"
        raise SceneError(f"{name}: expected float32 {want}, got shape {a.shape}")
    return a


def replace(scene: GaussianScene, **changes) -> GaussianScene:
    """dataclasses.replace for scenes (re-runs the shape checks)."""
    return dataclasses.replace(scene, **changes)
