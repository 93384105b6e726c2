"""A count of the floating-point operations (matrix products and convolutions, 2 per
multiply-add, as ``torch.utils.flop_counter`` counts them) of one single-base variant's ISM for
the Enformer and Borzoi backbones: a naive full forward, the cached-tower patch path with the whole
transformer and head (``ism_method="patch"``), and the exact fast path of
:mod:`varscore_plugins.fast_ism`. Their ratios are the bounds on the speed-up a device running
both at the same efficiency could reach; elementwise work (norms, softmax, activations) is left out.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class IsmFlops:
    """FLOP per scored variant (the window's one reference pass left out)."""

    naive: float
    patch: float
    fast: float

    @property
    def patch_bound(self) -> float:
        return self.naive / self.patch

    @property
    def fast_bound(self) -> float:
        return self.naive / self.fast

    def centred_bound(self, alternates: float = 1.0) -> float:
        """The bound for variant-centred ``exact`` scoring, where every window is centred on its
        own site and so pays its own reference pass: a window of ``alternates`` single-base
        alternates costs ``(1 + alternates)`` full forwards naively, one full forward (the
        reference pass) plus ``alternates`` fast alternates through the exact ISM. Count the
        fast alternates with ``rows=None`` for whole-window statistics (SUM, logSUM, D1, D2)."""
        return (1 + alternates) * self.naive / (self.naive + alternates * self.fast)


@dataclass(frozen=True)
class _Attention:
    dim: int
    heads: int
    key: int
    value: int

    def full(self, n: int, rows: int | None = None) -> float:
        """One layer on ``n`` tokens with ``rows`` output rows (all by default). The relative-position
        keys do not depend on the input and are computed once per batch, so no variant pays for them."""
        m = n if rows is None else rows
        h, dk, dv, d = self.heads, self.key, self.value, self.dim
        flops = 2 * n * d * h * (dk + dv) + 2 * m * d * h * dk  # keys, values, queries
        flops += 2 * h * m * n * dk + 2 * h * m * (2 * n - 1) * dk + 2 * h * m * n * dv  # logits, weights x values
        return flops + self._rest(m)

    def _rest(self, rows: int) -> float:
        """Output projection and feed-forward of ``rows`` rows."""
        d = self.dim
        return 2 * rows * self.heads * self.value * d + 2 * rows * d * 2 * d * 2

    def first_updated(self, n: int, changed: int, rows: int | None = None) -> float:
        """The first layer updated from the cached reference for ``changed`` changed tokens."""
        h, dk, dv, d, c = self.heads, self.key, self.value, self.dim, changed
        flops = 2 * c * d * h * (2 * dk + dv)  # queries, keys, values of the changed tokens
        flops += 2 * h * n * c * dk  # every row against the changed keys
        flops += 2 * 2 * h * n * c * dv  # removing and adding the changed columns' values
        flops += 2 * h * c * n * dk + 2 * h * c * (2 * n - 1) * dk + 2 * h * c * n * dv  # the changed rows
        return flops + self._rest(n if rows is None else rows)


def _transformer(attention: _Attention, depth: int, n: int, changed: int, rows: int | None) -> tuple[float, float]:
    """(every layer in full, the fast path) for ``depth`` layers on ``n`` tokens."""
    full = depth * attention.full(n)
    if depth == 0:
        return full, 0.0
    if depth == 1:
        return full, attention.first_updated(n, changed, rows)
    fast = attention.first_updated(n, changed)
    fast += (depth - 2) * attention.full(n)
    fast += attention.full(n, rows)
    return full, fast


def _enformer_tower(channels: list[int], bases: int) -> float:
    c0 = channels[0]
    flops = 2 * 4 * c0 * 15 * bases + 2 * c0 * c0 * bases + 2 * c0 * c0 * bases  # stem conv, residual, pool logits
    length = bases // 2
    for c_in, c_out in zip(channels[:-1], channels[1:], strict=True):
        flops += 2 * c_in * c_out * 5 * length + 2 * c_out * c_out * length * 2
        length //= 2
    return flops


def _enformer_pyramid(channels: list[int], length: int, offset: int) -> float:
    """The stage-by-stage tower update (:class:`~varscore_plugins.fast_ism.TowerPyramid`) for a base
    at ``offset`` of a ``length``-bp window."""
    first = last = offset
    flops = 0.0
    for stage, (c_in, c_out) in enumerate(zip([4, *channels[:-1]], channels, strict=True)):
        half = 7 if stage == 0 else 2
        first, last = max(first - half, 0) // 2, min(last + half, length - 1) // 2
        outputs = 2 * (last - first + 1)  # convolution outputs before the pool
        flops += 2 * c_in * c_out * (2 * half + 1) * outputs + 2 * 2 * c_out * c_out * outputs  # + residual, pool
        length //= 2
    return flops


def enformer_ism_flops(params: dict[str, Any], rows: int | None = 1, changed: int | None = None) -> IsmFlops:
    """FLOP per single-base variant of an Enformer with hyper-parameters ``params`` (a backbone's
    ``params``), for an output read from ``rows`` centre bins (None: every bin); ``changed``: the
    tower bins the variant changes (default: an interior base's)."""
    from varscore_plugins.enformer import EnformerBackbone, TowerGeometry, _conv_tower_channels

    p = {**EnformerBackbone.default_params, **params}
    dim, depth, heads = int(p["dim"]), int(p["depth"]), int(p["heads"])
    channels = _conv_tower_channels(dim, int(p["num_downsamples"]), int(p["dim_divisible_by"]))
    geometry = TowerGeometry.for_enformer(int(p["window_size"]), int(p["num_downsamples"]))
    n = geometry.n_bins
    if changed is None:
        first, last = geometry.affected_bins(geometry.length // 2, geometry.length // 2)
        changed = last - first + 1
    attention = _Attention(dim, heads, int(p["attn_dim_key"]), dim // heads)
    tracks = 1 if p["head"] == "variformer" else int(p["output_heads"][p["output_head"]])
    head_per_bin = 2 * dim * 2 * dim + 2 * 2 * dim * tracks
    full_transformer, fast_transformer = _transformer(attention, depth, n, changed, rows)
    tower = _enformer_tower(channels, geometry.length)
    patch_tower = _enformer_tower(channels, geometry.snv_patch_width() * geometry.bin_size)
    return IsmFlops(
        naive=tower + full_transformer + n * head_per_bin,
        patch=patch_tower + full_transformer + n * head_per_bin,
        fast=_enformer_pyramid(channels, geometry.length, geometry.length // 2)
        + fast_transformer
        + (n if rows is None else rows) * head_per_bin,
    )


def _borzoi_convs(channels: list[int], dim: int, bases: int) -> float:
    """Stem, conv tower, first U-net level and the two skip convolutions on ``bases`` bases."""
    flops = 2 * 4 * channels[0] * 15 * bases
    length = bases // 2
    for c_in, c_out in zip(channels[:-1], channels[1:], strict=True):
        flops += 2 * c_in * c_out * 5 * length
        length //= 2
    length *= 2  # the last tower block is not followed by a pool before the skip
    flops += 2 * channels[-1] * dim * length  # skip 0 at 32 bp
    flops += 2 * channels[-1] * dim * 5 * (length // 2) + 2 * dim * dim * (length // 2)  # unet1, skip 1 at 64 bp
    return flops


def _borzoi_upsampling(dim: int, final: int, tracks: int, n: int, bins: int) -> float:
    """Upsampling path from ``n`` tokens to ``bins`` output bins, final convolutions and head."""
    flops = 2 * dim * dim * n + 2 * dim * 3 * 2 * n + 2 * dim * dim * 2 * n  # level 1: pointwise, separable
    flops += 2 * dim * dim * 2 * n + 2 * dim * 3 * bins + 2 * dim * dim * bins  # level 0
    return flops + bins * (2 * dim * final + 2 * final * tracks)


def borzoi_ism_flops(params: dict[str, Any], rows: int | None = 1) -> IsmFlops:
    """FLOP per single-base variant of a Borzoi with hyper-parameters ``params``, for an output read
    from ``rows`` centre 32-bp bins (None: every bin)."""
    from varscore_plugins.borzoi import BORZOI_CHANNELS, BORZOI_FINAL_CHANNELS, PRETRAINED_TRACKS, BorzoiBackbone
    from varscore_plugins.enformer import TowerGeometry
    from varscore_plugins.fast_ism import borzoi_token_rows

    p = {**BorzoiBackbone.default_params, **params}
    dim, depth = int(p["dim"]), int(p["depth"])
    channels = list(p["channels"] or BORZOI_CHANNELS)
    final = int(p["final_channels"] or BORZOI_FINAL_CHANNELS)
    tracks = PRETRAINED_TRACKS if p["head"] == "pretrained" else int(p["n_tracks"])
    geometry = TowerGeometry.for_enformer(int(p["window_size"]), 7)
    n, bins = geometry.n_bins, int(p["window_size"]) // 32
    first, last = geometry.affected_bins(geometry.length // 2, geometry.length // 2)
    attention = _Attention(dim, int(p["heads"]), int(p["attn_dim_key"]), int(p["attn_dim_value"]))
    if rows is None:
        token_rows = None
        upsampling = _borzoi_upsampling(dim, final, tracks, n, bins)
    else:
        start = bins // 2 - (rows - 1) // 2
        span = borzoi_token_rows(bins, start, start + rows - 1)
        token_rows = span.stop - span.start
        lo0, hi0 = max(start - 1, 0), min(start + rows, bins - 1)
        q0, q1 = lo0 // 2, hi0 // 2
        level1 = min(q1 + 1, bins // 2 - 1) - max(q0 - 1, 0) + 1
        upsampling = 2 * dim * dim * token_rows + 2 * dim * 3 * level1 + 2 * dim * dim * level1
        upsampling += 2 * dim * dim * (q1 - q0 + 1) + 2 * dim * 3 * (hi0 - lo0 + 1) + 2 * dim * dim * (hi0 - lo0 + 1)
        upsampling += rows * (2 * dim * final + 2 * final * tracks)
    full_transformer, fast_transformer = _transformer(attention, depth, n, last - first + 1, token_rows)
    convs = _borzoi_convs(channels, dim, geometry.length)
    patch_convs = _borzoi_convs(channels, dim, geometry.snv_patch_width() * geometry.bin_size)
    naive_up = _borzoi_upsampling(dim, final, tracks, n, bins)
    return IsmFlops(
        naive=convs + full_transformer + naive_up,
        patch=patch_convs + full_transformer + naive_up,
        fast=patch_convs + fast_transformer + upsampling,
    )
