"""The attribute table of .exgs (docs/FORMAT.md, sections 4 and 5) and the quantise / dequantise pipeline it drives.

Every per-Gaussian attribute the format stores is one row of :data:`ATTRIBUTES`: its section, its quantiser
pair, the bit width the writer takes from :class:`~exgs_core.codec.options.CodecOptions` and the widths a reader
accepts, the ``quant`` parameters the JSON header holds, its range-coder model, the checks a decoded section
must pass, the error the encoder measures and its a-priori bound. :func:`quantise`, :func:`dequantise`, the
container's header validation (:mod:`exgs_core.io.exgs`), :func:`error_bounds`, ``exgs info`` (through
:data:`SECTION_NAMES`) and the decoder's memory estimate all loop over the table; adding an attribute is one
row. The higher SH (``sh_rest``: mask, palette and indices, three sections) is the one attribute that is not a
per-Gaussian scalar quantiser; :data:`SH_REST` describes it with the same vocabulary.

This module knows nothing of the container (header bytes, section table, checksums); it takes and returns
arrays and the JSON-ready ``quant`` dict.

>>> from exgs_core.codec.options import CodecOptions
>>> from exgs_core.scene import GaussianScene
>>> [a.name for a in ATTRIBUTES], [s.name for s in SECTIONS][-3:]
(['positions', 'rotations', 'log_scales', 'opacity', 'sh_dc'], ['sh_mask', 'sh_palette', 'sh_indices'])
>>> q = quantise(GaussianScene.empty(4, sh_degree=0), np.zeros(4, bool), CodecOptions())
>>> [tag for tag, _, _ in q.streams], q.quant["rotations"]
([b'POSN', b'ROTN', b'SCAL', b'OPAC', b'COLR'], {'scheme': 'smallest3', 'bits': 10})
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from ..conventions import sh_coeff_count
from ..scene import GaussianScene
from . import morton, quantize
from .entropy import FILTER_DELTA, FILTER_NONE, FILTER_SHUFFLE
from .palette import default_palette_size, kmeans_palette

__all__ = [
    "Attribute",
    "Codes",
    "CodeError",
    "Quantised",
    "Section",
    "ShPalette",
    "ATTRIBUTES",
    "POSITIONS",
    "SH_REST",
    "SECTIONS",
    "SECTION_NAMES",
    "MAX_PALETTE",
    "auto_position_bits",
    "resolve_position_bits",
    "storage_order",
    "models",
    "quantise",
    "dequantise",
    "error_bounds",
    "decoded_floats",
]

#: Largest SH palette (its indices are u16).
MAX_PALETTE = 65536

Progress = Callable[[float, str], None]


class _BadCodes(Exception):
    """Raised by a table row's ``unpack``; :func:`dequantise` adds the section's tag (a :class:`CodeError`)."""


class CodeError(ValueError):
    """A decoded section holds codes its quantiser cannot produce; the container names the section.

    Attributes:
        tag: the section's tag (``b"ROTN"``).
        detail: what is wrong, without the section's name.
    """

    def __init__(self, tag: bytes, detail: str):
        super().__init__(detail)
        self.tag = tag
        self.detail = detail


@dataclass(frozen=True)
class Codes:
    """One attribute's quantised values, in stored order.

    Attributes:
        planar: what the dequantiser takes: uniform codes [C, N] (channel-major; positions: the per-axis codes
            uint32 [3, N]), smallest-three words [N] or opacity codes [N].
        section: the section's raw elements [N x per_gaussian] (positions: Morton codes uint64 [N]).
        params: the uniform quantiser's (min f32 [C], step f32 [C]), None for the schemes without them.
    """

    planar: np.ndarray
    section: np.ndarray
    params: tuple[np.ndarray, np.ndarray] | None = None

    def take(self, perm: np.ndarray) -> Codes:
        """The same codes with the Gaussians permuted by ``perm`` (int64 [N]); for sections of one element per
        Gaussian (positions: the encoder quantises them before it knows the order they define)."""
        return Codes(self.planar[..., perm], self.section[perm], self.params)


@dataclass(frozen=True)
class Attribute:
    """One per-Gaussian attribute of the format: a row of :data:`ATTRIBUTES`.

    Attributes:
        name: its key in the header's ``quant`` and ``errors`` and the name of its section (``"positions"``).
        label: how header errors name it (``"unknown rotation scheme"``).
        tag: its section's tag (``b"POSN"``).
        field: the :class:`~exgs_core.scene.GaussianScene` attribute it encodes (``sh_dc`` = ``sh[:, 0, :]``).
        option: the :class:`~exgs_core.codec.options.CodecOptions` field holding its bit width.
        write_bits: the widths the writer accepts (inclusive).
        read_bits: the widths a reader accepts in ``quant.<name>.bits`` (inclusive).
        scheme: ``quant.<name>.scheme`` (None: the key is absent, as for positions).
        dim: length C of the float32 ``quant.<name>.min`` / ``.step`` lists (0: no such lists).
        per_gaussian: section elements per Gaussian.
        width: decoded float32 values per Gaussian.
        model: range-coder context model (codec 2, docs/FORMAT.md 4.1), None if only zstd may code it.
        filters: candidate filters of the entropy stage (the first alone when ``choose_filters`` is off).
        error_key: its key in the header's ``errors`` (measured by the encoder).
        bound_key: its key in :func:`error_bounds`.
        elem_size: bytes per section element for a bit width.
        quantise: ``(values, bits) -> Codes``; values as the scene holds them, any order.
        unpack: ``(section elements, n, bits) -> planar codes``, refusing codes no encoder writes.
        dequantise: ``(planar codes, quant entry) -> float32 values`` as the scene holds them.
        measure: ``(input values, decoded values) -> the error recorded in the header's errors``.
        bound: ``quant entry -> documented maximum error`` (docs/FORMAT.md 5).
    """

    name: str
    label: str
    tag: bytes
    field: str
    option: str
    write_bits: tuple[int, int]
    read_bits: tuple[int, int]
    scheme: str | None
    dim: int
    per_gaussian: int
    width: int
    model: str | None
    filters: tuple[int, ...]
    error_key: str
    bound_key: str
    elem_size: Callable[[int], int]
    quantise: Callable[[np.ndarray, int], Codes]
    unpack: Callable[[np.ndarray, int, int], np.ndarray]
    dequantise: Callable[[np.ndarray, dict], np.ndarray]
    measure: Callable[[np.ndarray, np.ndarray], object]
    bound: Callable[[dict], object]

    def quant_entry(self, bits: int, codes: Codes) -> dict:
        """The header's ``quant.<name>``: scheme, bits and, for uniform quantisers, min and step."""
        q: dict = {} if self.scheme is None else {"scheme": self.scheme}
        q["bits"] = int(bits)
        if self.dim:
            assert codes.params is not None  # uniform quantisers always carry (min, step)
            q["min"], q["step"] = _f32list(codes.params[0]), _f32list(codes.params[1])
        return q

    def header_fields(self) -> list[tuple[str, object, float | None, float | None]]:
        """The ``quant.<name>`` keys a reader checks after the scheme: (key, kind, lo, hi) for the container's
        schema checker, in checking order."""
        out: list = [("bits", int, *self.read_bits)]
        if self.dim:
            out += [("min", f"f32list:{self.dim}", None, None), ("step", f"f32list:{self.dim}", 0.0, None)]
        return out

    def expected(self, n: int, bits: int) -> tuple[int, int]:
        """(raw length, element size) of the section for N Gaussians at ``bits``."""
        e = self.elem_size(bits)
        return self.per_gaussian * e * n, e


@dataclass(frozen=True)
class Section:
    """A row of the section table a writer emits (docs/FORMAT.md 4): tag, name, entropy-stage choices."""

    tag: bytes
    name: str
    filters: tuple[int, ...]
    model: str | None = None


def _f32list(a) -> list[float]:
    return [float(v) for v in np.asarray(a, dtype=np.float32).ravel()]


# ============================================================================================ quantiser pairs


def _uniform_quantise(values: np.ndarray, bits: int) -> Codes:
    lo, step = quantize.uniform_params(values, bits)
    codes = quantize.uniform_encode(values, lo, step, bits)  # [C, N]
    return Codes(codes, codes.ravel(), (lo, step))


def _uniform_unpack(channels: int) -> Callable[[np.ndarray, int, int], np.ndarray]:
    """Unpacker of planar codes [C, N] (C = ``channels``) checking every code against 2^bits - 1."""

    def unpack(section: np.ndarray, n: int, bits: int) -> np.ndarray:
        if n and int(section.max()) > (1 << bits) - 1:
            raise _BadCodes(f"code {int(section.max())} exceeds the {bits}-bit range")
        return section.reshape(channels, n)

    return unpack


def _uniform_dequantise(planar: np.ndarray, q: dict) -> np.ndarray:
    return quantize.uniform_decode(planar, np.asarray(q["min"], np.float32), np.asarray(q["step"], np.float32))


def _uniform_measure(src: np.ndarray, dec: np.ndarray) -> list[float]:
    return _f32list(np.abs(dec.astype(np.float64) - src).max(axis=0))


def _uniform_bound(q: dict) -> list[float]:
    """step / 2 per channel plus the f32 rounding of ``min + f32(code) * step`` (2^-22 of the magnitude)."""
    lo = np.asarray(q["min"], np.float64)
    st = np.asarray(q["step"], np.float64)
    top = lo + st * ((1 << q["bits"]) - 1)
    mag = np.maximum(np.abs(lo), np.abs(top))
    return [float(v) for v in st / 2 + mag * 2.0**-22 + 1e-30]


def _uniform_size(bits: int) -> int:
    return quantize.uniform_dtype(bits).itemsize


def _positions_quantise(means: np.ndarray, bits: int) -> Codes:
    lo, step = quantize.uniform_params(means, bits)
    qpos = quantize.uniform_encode(means, lo, step, bits, dtype=np.uint32)  # [3, N]
    return Codes(qpos, morton.encode(qpos.T), (lo, step))


def _positions_unpack(codes: np.ndarray, n: int, bits: int) -> np.ndarray:
    if n and bits < morton.MAX_BITS and int(codes.max()) >> (3 * bits):
        raise _BadCodes(f"Morton code above 2^{3 * bits}")
    if n and bits == morton.MAX_BITS and int(codes.max()) >> 63:
        raise _BadCodes("Morton code above 2^63")
    return morton.decode(codes).T  # [3, N] u32


def _rotations_quantise(quats: np.ndarray, bits: int) -> Codes:
    n = quats.shape[0]
    words = quantize.smallest3_encode(quats, bits) if n else np.zeros(0, quantize.rotation_word_dtype(bits))
    return Codes(words, words)


def _rotations_unpack(words: np.ndarray, n: int, bits: int) -> np.ndarray:
    if n and int(words.max()) >> (3 * bits + 2):
        raise _BadCodes("rotation word with bits above the index field")
    return words


def _rotations_measure(src: np.ndarray, dec: np.ndarray) -> float:
    return float(np.degrees(quantize.rotation_angle(src, dec).max()))


def _opacity_quantise(logits: np.ndarray, bits: int) -> Codes:
    codes = quantize.opacity_encode(logits, bits)
    return Codes(codes, codes)


def _opacity_measure(src: np.ndarray, dec: np.ndarray) -> float:
    return float(np.abs(quantize._sigmoid64(dec) - quantize._sigmoid64(src)).max())


# ============================================================================================ the table

_S, _D, _N = FILTER_SHUFFLE, FILTER_DELTA, FILTER_NONE

#: Positions: Morton codes of the uniformly quantised centres; they also fix the stored order.
POSITIONS = Attribute(
    name="positions",
    label="positions",
    tag=b"POSN",
    field="means",
    option="position_bits",
    write_bits=(12, morton.MAX_BITS),
    read_bits=(1, morton.MAX_BITS),
    scheme=None,
    dim=3,
    per_gaussian=1,
    width=3,
    model="morton",
    filters=(_D,),
    error_key="positions_max_abs",
    bound_key="positions_abs",
    elem_size=lambda bits: 8,
    quantise=_positions_quantise,
    unpack=_positions_unpack,
    dequantise=_uniform_dequantise,
    measure=_uniform_measure,
    bound=_uniform_bound,
)

#: The attributes in section order (docs/FORMAT.md 4: POSN, ROTN, SCAL, OPAC, COLR).
ATTRIBUTES: tuple[Attribute, ...] = (
    POSITIONS,
    Attribute(
        name="rotations",
        label="rotation",
        tag=b"ROTN",
        field="quats",
        option="rotation_bits",
        write_bits=(4, 20),
        read_bits=(1, 20),
        scheme="smallest3",
        dim=0,
        per_gaussian=1,
        width=4,
        model="rotation",
        filters=(_S,),
        error_key="rotations_max_deg",
        bound_key="rotations_rad",
        elem_size=lambda bits: quantize.rotation_word_dtype(bits).itemsize,
        quantise=_rotations_quantise,
        unpack=_rotations_unpack,
        dequantise=lambda words, q: quantize.smallest3_decode(words, q["bits"]),
        measure=_rotations_measure,
        bound=lambda q: quantize.smallest3_max_angle(q["bits"]) + 8.0 * 2.0**-24,
    ),
    Attribute(
        name="log_scales",
        label="log_scales",
        tag=b"SCAL",
        field="log_scales",
        option="scale_bits",
        write_bits=(4, 16),
        read_bits=(1, 16),
        scheme="uniform",
        dim=3,
        per_gaussian=3,
        width=3,
        model="triple",
        filters=(_D, _S),
        error_key="log_scales_max_abs",
        bound_key="log_scales_abs",
        elem_size=_uniform_size,
        quantise=_uniform_quantise,
        unpack=_uniform_unpack(3),
        dequantise=_uniform_dequantise,
        measure=_uniform_measure,
        bound=_uniform_bound,
    ),
    Attribute(
        name="opacity",
        label="opacity",
        tag=b"OPAC",
        field="opacity_logits",
        option="opacity_bits",
        write_bits=(4, 16),
        read_bits=(1, 16),
        scheme="sigmoid_uniform",
        dim=0,
        per_gaussian=1,
        width=1,
        model="scalar",
        filters=(_S, _D),
        error_key="opacity_max_abs",
        bound_key="opacity_abs",
        elem_size=_uniform_size,
        quantise=_opacity_quantise,
        unpack=lambda codes, n, bits: _uniform_unpack(1)(codes, n, bits)[0],
        dequantise=lambda codes, q: quantize.opacity_decode(codes, q["bits"]),
        measure=_opacity_measure,
        bound=lambda q: 2.0 ** -(q["bits"] + 1) + 2.0**-23,
    ),
    Attribute(
        name="sh_dc",
        label="sh_dc",
        tag=b"COLR",
        field="sh_dc",
        option="color_bits",
        write_bits=(4, 16),
        read_bits=(1, 16),
        scheme="uniform",
        dim=3,
        per_gaussian=3,
        width=3,
        model="triple",
        filters=(_D, _S),
        error_key="sh_dc_max_abs",
        bound_key="sh_dc_abs",
        elem_size=_uniform_size,
        quantise=_uniform_quantise,
        unpack=_uniform_unpack(3),
        dequantise=_uniform_dequantise,
        measure=_uniform_measure,
        bound=_uniform_bound,
    ),
)


@dataclass(frozen=True)
class ShPalette:
    """The higher SH (``sh_rest``, docs/FORMAT.md 5): a mask of the Gaussians that keep them, a k-means palette
    of their [K - 1, 3] coefficients quantised to ``bits`` per coefficient, and one palette index per kept
    Gaussian. Three sections; no a-priori error bound (the encoder measures it)."""

    name: str = "sh_rest"
    label: str = "sh_rest"
    scheme: str = "palette"
    bits: int = 8
    mask: Section = Section(b"SHMK", "sh_mask", (_N,))
    palette: Section = Section(b"SHPL", "sh_palette", (_N,))
    indices: Section = Section(b"SHIX", "sh_indices", (_S, _D))

    @property
    def sections(self) -> tuple[Section, Section, Section]:
        return self.mask, self.palette, self.indices

    @staticmethod
    def dim(degree: int) -> int:
        """D = 3 (K - 1) coefficients per palette entry."""
        return 3 * (sh_coeff_count(degree) - 1)

    def header_fields(self, degree: int) -> list[tuple[str, object, float | None, float | None]]:
        """The ``quant.sh_rest`` keys a reader checks after the scheme (see :meth:`Attribute.header_fields`)."""
        d = self.dim(degree)
        return [
            ("size", int, 1, MAX_PALETTE),
            ("dim", int, d, d),
            ("bits", int, self.bits, self.bits),
            ("min", f"f32list:{d}", None, None),
            ("step", f"f32list:{d}", 0.0, None),
        ]

    def expected(self, n: int, degree: int, m: int, quant: dict) -> dict[bytes, tuple[int, int]]:
        """(raw length, element size) of its sections present for N, SH degree and M full-SH Gaussians."""
        out = {}
        if degree > 0:
            out[self.mask.tag] = ((n + 7) // 8, 1)
        if m > 0:
            out[self.palette.tag] = (quant["sh_rest"]["size"] * self.dim(degree), 1)
            out[self.indices.tag] = (2 * m, 2)
        return out


#: The higher SH, the attribute outside :data:`ATTRIBUTES`.
SH_REST = ShPalette()

#: Every section a writer emits, in table order.
SECTIONS: tuple[Section, ...] = tuple(Section(a.tag, a.name, a.filters, a.model) for a in ATTRIBUTES) + SH_REST.sections

#: Section tag -> name used in messages, ``exgs info`` and ``FormatError.field`` (``section:<name>``).
SECTION_NAMES: dict[bytes, str] = {s.tag: s.name for s in SECTIONS}


def models(quant: dict) -> dict[bytes, tuple[str, int]]:
    """Range-coder model (docs/FORMAT.md 4.1) and bit width of each section that codec 2 may code."""
    return {a.tag: (a.model, quant[a.name]["bits"]) for a in ATTRIBUTES if a.model is not None}


def decoded_floats(degree: int) -> int:
    """float32 values per Gaussian of a decoded scene of SH degree ``degree`` (11 + 3 K)."""
    return sum(a.width for a in ATTRIBUTES) + SH_REST.dim(degree)


# ============================================================================================ order


def auto_position_bits(means: np.ndarray) -> int:
    """Bits per axis for ``position_bits="auto"``: 16 + max(0, ceil(log2(r)) - 1) clamped to 21, with r the
    largest ratio over the axes of the full extent to the 1..99 % quantile extent (16 for r <= 2)."""
    means = np.asarray(means, dtype=np.float64)
    if means.shape[0] < 2:
        return 16
    full = means.max(axis=0) - means.min(axis=0)
    lo, hi = np.quantile(means, [0.01, 0.99], axis=0)
    robust = hi - lo
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = np.where(robust > 0, full / np.where(robust > 0, robust, 1.0), 1.0)
    r = float(ratio.max())
    extra = max(0, math.ceil(math.log2(r)) - 1) if r > 1 else 0
    return int(min(16 + extra, morton.MAX_BITS))


def resolve_position_bits(means: np.ndarray, position_bits: int | str) -> int:
    """``position_bits`` as an integer (``"auto"``: :func:`auto_position_bits`)."""
    return auto_position_bits(means) if position_bits == "auto" else int(position_bits)


def storage_order(means: np.ndarray, position_bits: int | str = 16) -> np.ndarray:
    """The permutation :func:`~exgs_core.io.exgs.encode` applies: int64 [N] indices into the input such that
    ``decode(encode(scene)).means[i]`` is the quantised ``scene.means[order[i]]`` (Morton order of the quantised
    centres, ties in input order). Use it to map per-Gaussian data of the input to the decoded scene."""
    means = np.asarray(means, dtype=np.float32)
    if means.ndim != 2 or means.shape[1] != 3:
        raise ValueError(f"means: expected float32 [N, 3], got {means.shape}")
    return morton.order(POSITIONS.quantise(means, resolve_position_bits(means, position_bits)).section)


# ============================================================================================ encode side


@dataclass(frozen=True)
class Quantised:
    """A scene after the attribute table's quantisers, in stored (Morton) order.

    Attributes:
        streams: (tag, raw elements [1-D], candidate filters) per section, in section order.
        quant: the JSON header's ``quant``.
        errors: the JSON header's ``errors``, measured against the input (docs/FORMAT.md 6).
        bounds: (min, max) float32 [3] of the decoded centres (zeros when N = 0).
        n_sh_full: M, the Gaussians that keep their higher SH.
    """

    streams: list[tuple[bytes, np.ndarray, tuple[int, ...]]]
    quant: dict
    errors: dict
    bounds: tuple[np.ndarray, np.ndarray]
    n_sh_full: int


def _report(progress: Progress | None, fraction: float, stage: str) -> None:
    if progress is not None:
        progress(float(fraction), stage)


def quantise(scene: GaussianScene, full: np.ndarray, options, progress: Progress | None = None) -> Quantised:
    """Order, quantise and measure a clean scene: the codec half of the encoder.

    Args:
        scene: N Gaussians, already checked clean by the caller.
        full: bool [N] in input order: which Gaussians keep their higher SH (all False at SH degree 0).
        options: a :class:`~exgs_core.codec.options.CodecOptions`.
        progress: ``progress(fraction, stage)``; stages ``order``, ``quantize``, ``sh_palette``, ``errors``.

    Returns:
        The streams, ``quant`` and ``errors`` of the header, the decoded bounds and M.
    """
    n = scene.n
    degree = scene.sh_degree
    choose = options.choose_filters
    bits = {a.name: getattr(options, a.option) for a in ATTRIBUTES}

    # ---- order: quantised centres -> Morton codes -> stable sort
    _report(progress, 0.0, "order")
    bits[POSITIONS.name] = resolve_position_bits(scene.means, options.position_bits)
    pos = POSITIONS.quantise(scene.means, bits[POSITIONS.name])
    perm = morton.order(pos.section)
    full = full[perm]
    m = int(full.sum())

    # ---- scalar quantisers, one per row of the table (positions: done above, to find the order)
    _report(progress, 0.1, "quantize")
    codes: dict[str, Codes] = {POSITIONS.name: pos.take(perm)}
    del pos
    sources: dict[str, np.ndarray] = {}  # the inputs in stored order, kept for the errors
    for a in ATTRIBUTES:
        if a.name not in codes:
            sources[a.name] = getattr(scene, a.field)[perm]
            codes[a.name] = a.quantise(sources[a.name], bits[a.name])
    quant: dict = {a.name: a.quant_entry(bits[a.name], codes[a.name]) for a in ATTRIBUTES}
    streams = [(a.tag, codes[a.name].section, a.filters if choose else a.filters[:1]) for a in ATTRIBUTES]

    # ---- higher SH palette
    rest = None
    if degree > 0:
        streams.append((SH_REST.mask.tag, np.packbits(full, bitorder="little"), SH_REST.mask.filters))
        if m > 0:
            _report(progress, 0.2, "sh_palette")
            rest = _palette_encode(scene.sh[perm[full], 1:, :], options)
            quant[SH_REST.name] = rest["quant"]
            streams.append((SH_REST.palette.tag, rest["codes"].ravel(), SH_REST.palette.filters))
            indices = SH_REST.indices
            streams.append(
                (indices.tag, rest["labels"].astype(np.uint16), indices.filters if choose else indices.filters[:1])
            )

    # ---- measured errors (decode the codes, compare with the sorted input) and decoded bounds
    _report(progress, 0.7, "errors")
    errors: dict = {}
    dmin = dmax = np.zeros(3, np.float32)
    if n:
        for a in ATTRIBUTES:
            dec = a.dequantise(codes[a.name].planar, quant[a.name])
            if a is POSITIONS:
                dmin, dmax = dec.min(axis=0), dec.max(axis=0)
            src = sources.pop(a.name) if a.name in sources else getattr(scene, a.field)[perm]
            errors[a.error_key] = a.measure(src, dec)
            del dec, src
    if rest is not None:
        errors.update(_palette_errors(rest))
    return Quantised(streams, quant, errors, (dmin, dmax), m)


def _palette_encode(sh_rest: np.ndarray, options) -> dict:
    """k-means palette of the kept Gaussians' higher SH float32 [M, K - 1, 3] (stored order)."""
    m = sh_rest.shape[0]
    d = 3 * sh_rest.shape[1]
    sh_rest_in = np.ascontiguousarray(sh_rest).reshape(m, d)  # [M, D]
    size = options.sh_palette_size or default_palette_size(m)
    pal, labels = kmeans_palette(
        sh_rest_in,
        size,
        iterations=options.sh_iterations,
        sample_per_centroid=options.sh_sample_per_centroid,
        probes=options.sh_probes,
        seed=options.seed,
    )
    q_lo, q_step = quantize.uniform_params(pal, SH_REST.bits)
    pal_codes = quantize.uniform_encode(pal, q_lo, q_step, SH_REST.bits).T.copy()  # [P, D] u8
    pal_dec = quantize.uniform_decode(pal_codes.T, q_lo, q_step)  # [P, D] f32
    quant = {
        "scheme": SH_REST.scheme,
        "size": int(pal.shape[0]),
        "dim": d,
        "bits": SH_REST.bits,
        "min": _f32list(q_lo),
        "step": _f32list(q_step),
    }
    return {"quant": quant, "codes": pal_codes, "labels": labels, "decoded": pal_dec, "input": sh_rest_in}


def _palette_errors(rest: dict) -> dict:
    src_all, pal_dec, labels = rest["input"], rest["decoded"], rest["labels"]
    sq = ref = mx = 0.0
    for a in range(0, src_all.shape[0], 1 << 16):  # in chunks: M x D float64 temporaries would be large
        src = src_all[a : a + (1 << 16)].astype(np.float64)
        diff = pal_dec[labels[a : a + (1 << 16)]].astype(np.float64) - src
        sq += float((diff * diff).sum())
        ref += float((src * src).sum())
        mx = max(mx, float(np.abs(diff).max()))
    return {
        "sh_rest_rmse": math.sqrt(sq / src_all.size),
        "sh_rest_max_abs": mx,
        "sh_rest_rel_mse": sq / ref if ref > 0 else 0.0,
    }


# ============================================================================================ decode side


def dequantise(arrays: dict[bytes, np.ndarray], quant: dict, n: int, degree: int, m: int) -> dict[str, np.ndarray]:
    """The scene's arrays from the decoded sections (raw elements per tag), checking every code first.

    Returns:
        ``means``, ``quats``, ``log_scales``, ``opacity_logits``, ``sh`` (float32, stored order) and ``sh_full``
        (bool [N]).

    Raises:
        CodeError: naming the section whose codes no encoder writes (Morton codes above 2^(3b), rotation words
            with stray high bits, uniform codes above 2^b - 1, a bad mask, palette indices out of range).
    """
    k = sh_coeff_count(degree)
    out: dict[str, np.ndarray] = {}
    for a in ATTRIBUTES:
        try:
            planar = a.unpack(arrays[a.tag], n, quant[a.name]["bits"])
        except _BadCodes as e:
            raise CodeError(a.tag, str(e)) from None
        out[a.field] = a.dequantise(planar, quant[a.name])
    sh = np.zeros((n, k, 3), np.float32)
    sh[:, 0, :] = out.pop("sh_dc")
    full = np.zeros(n, bool)
    if degree > 0:
        full = _mask_decode(arrays[SH_REST.mask.tag], n, m)
        if m > 0:
            _palette_decode(arrays[SH_REST.palette.tag], arrays[SH_REST.indices.tag], quant[SH_REST.name], full, sh)
    out["sh"] = sh
    out["sh_full"] = full
    return out


def _mask_decode(bits: np.ndarray, n: int, m: int) -> np.ndarray:
    full = np.unpackbits(bits, count=n, bitorder="little").astype(bool) if n else np.zeros(n, bool)
    if n % 8 and int(bits[-1]) >> (n % 8):
        raise CodeError(SH_REST.mask.tag, "padding bits are not zero")
    cnt = int(full.sum())
    if cnt != m:
        raise CodeError(SH_REST.mask.tag, f"{cnt} bits set, the header says {m} full-SH Gaussians")
    return full


def _palette_decode(pal_codes: np.ndarray, idx: np.ndarray, q: dict, full: np.ndarray, sh: np.ndarray) -> None:
    """Fill ``sh[full, 1:, :]`` (float32 [N, K, 3], in place) from the palette and the indices."""
    n, k = sh.shape[0], sh.shape[1]
    m = idx.shape[0]
    p, d = q["size"], q["dim"]
    pal = _uniform_dequantise(pal_codes.reshape(p, d).T, q)  # [P, D]
    if int(idx.max()) >= p:
        raise CodeError(SH_REST.indices.tag, f"palette index {int(idx.max())} out of range (palette size {p})")
    # in blocks of rows: no [M, K - 1, 3] temporary beside the output (the same values)
    flat = sh.reshape(n, 3 * k)
    rows = None if m == n else np.flatnonzero(full)
    for a in range(0, m, 4096):
        block = pal[idx[a : a + 4096]]
        if rows is None:
            flat[a : a + 4096, 3:] = block
        else:
            flat[rows[a : a + 4096], 3:] = block


# ============================================================================================ bounds


def error_bounds(header: dict) -> dict:
    """Documented maximum errors (docs/FORMAT.md, sections 5 and 6) of a decoded file against the encoder's
    input, from its JSON header.

    Returns:
        ``positions_abs`` [3] (per axis, world units), ``rotations_rad`` (rotation angle), ``log_scales_abs`` [3],
        ``opacity_abs`` (in sigmoid space), ``sh_dc_abs`` [3] (SH units), and ``sh_rest`` = the encoder's measured
        ``{"rmse", "max_abs", "rel_mse"}`` for the full-SH Gaussians (None without higher SH; the palette has no
        a-priori bound). ``measured`` repeats the header's ``errors``.
    """
    q = header["quant"]
    out = {a.bound_key: a.bound(q[a.name]) for a in ATTRIBUTES}
    e = header.get("errors", {})
    out["sh_rest"] = None
    if SH_REST.name in q:
        out["sh_rest"] = {
            "rmse": e.get("sh_rest_rmse"),
            "max_abs": e.get("sh_rest_max_abs"),
            "rel_mse": e.get("sh_rest_rel_mse"),
        }
    out["measured"] = e
    return out
