"""Exact shortcuts for in-silico mutagenesis through the relative-position transformers of Enformer
(enformer-pytorch) and Borzoi (borzoi-pytorch), given a cached reference pass.

Both transformers are stacks of pre-norm residual blocks: LayerNorm -> multi-head attention with
relative positional logits -> residual, then LayerNorm -> Linear -> ReLU -> Linear -> residual
(dropout is off when predicting). When a variant changes only the tokens ``C`` of the first
layer's input (the conv-tower bins it reaches), the following stay exact (equal to a full forward
up to float round-off):

- **first layer**: the tokens outside ``C`` keep their reference query/key/value projections and
  their reference attention logits against keys outside ``C``; only the rows and columns of ``C``
  are recomputed, and every other row's softmax-weighted value sum is updated from the cached
  reference numerator and denominator (kept in float64) by removing the old columns of ``C`` and
  adding the new ones. Every row still changes (it attends to ``C``), so the output projection,
  residual and feed-forward run on all rows.
- **last layer**: a scalar read from a few output bins needs only those rows: keys and values of
  all tokens, but the query, attention, output projection and feed-forward of those rows alone.
- the relative-position keys (``to_rel_k`` of the positional features) do not depend on the input
  and are computed once per layer.

Layers in between see every token changed and run as they are. Below the transformer,
:class:`TowerPyramid` updates Enformer's conv tower stage by stage from cached activations, and
:class:`BorzoiISM` splices patch-recomputed convolutional activations into Borzoi's cached ones
(and, for outputs read from a few bins, runs its U-net upsampling path on those bins only).
:class:`EnformerISM` and :class:`BorzoiISM` hold one window's reference pass.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from varscore.errors import InputError
from varscore.plugin.contracts import ISMResult

if TYPE_CHECKING:
    import torch

logger = logging.getLogger(__name__)

# A reference row whose softmax mass outside the changed columns falls below this fraction is
# recomputed directly instead of updated (the update subtracts nearly equal float64 sums there).
_RETAINED_FLOOR = 1e-7


def bins_read(reduce: Callable[..., Any], n_bins: int) -> slice | None:
    """The output bins ``reduce`` reads, when it declares them (a ``reads_bins(n_bins)`` attribute
    of the function or of the object it is a method of, returning a slice or None); None: all."""
    reads = getattr(reduce, "reads_bins", None)
    if reads is None:
        reads = getattr(getattr(reduce, "__self__", None), "reads_bins", None)
    if reads is None:
        return None
    bins = reads(n_bins)
    if bins is None:
        return None
    start, stop, step = bins.indices(n_bins)
    if step != 1 or stop <= start:
        raise InputError(f"reads_bins must give a non-empty contiguous slice of the {n_bins} bins; got {bins}.")
    return slice(start, stop)


def reduce_rows(reduce: Callable[..., Any], rows: np.ndarray, bins: slice | None, n_bins: int) -> np.ndarray:
    """``reduce`` of predictions computed only on ``bins``: ``rows`` ``(N, len(bins), tracks)`` are
    placed in an ``(N, n_bins, tracks)`` array whose other bins are NaN, so a reducer that reads
    more than it declared gives NaN, which raises here."""
    if bins is None:
        return np.asarray(reduce(rows))
    full = np.full((rows.shape[0], n_bins, rows.shape[2]), np.nan, dtype=rows.dtype)
    full[:, bins] = rows
    out = np.asarray(reduce(full))
    if np.isnan(out).any() and not np.isnan(rows).any():
        raise InputError(f"The output mode read bins outside the ones it declared ({bins.start}..{bins.stop - 1}).")
    return out


def split_ism(
    fast: Callable[[list[tuple[int, str]]], tuple[np.ndarray, np.ndarray]],
    naive: Callable[[list[tuple[int, str]]], Any],
    substitutions: Sequence[tuple[int, str]],
    length: int,
) -> ISMResult:
    """ISM of ``substitutions`` with single-base ones through ``fast`` (-> reference ``(K,)``,
    alternates ``(M, K)``) and the rest through ``naive`` (-> an :class:`ISMResult`), in order."""
    quick = [i for i, sub in enumerate(substitutions) if _is_single_base(sub, length)]
    if not quick:
        return naive(list(substitutions))
    ref_out, quick_rows = fast([substitutions[i] for i in quick])
    if len(quick) == len(substitutions):
        return ISMResult(reference=ref_out, alternates=quick_rows)
    taken = set(quick)
    others = [i for i in range(len(substitutions)) if i not in taken]
    slow = naive([substitutions[i] for i in others])
    alternates = np.empty((len(substitutions), quick_rows.shape[1]), dtype=quick_rows.dtype)
    alternates[quick] = quick_rows
    alternates[others] = slow.alternates
    return ISMResult(reference=ref_out, alternates=alternates)


def _is_single_base(substitution: tuple[int, str], length: int) -> bool:
    if len(substitution) != 2:
        return False
    offset, base = substitution
    return (
        isinstance(offset, (int, np.integer))
        and not isinstance(offset, bool)
        and 0 <= offset < length
        and isinstance(base, str)
        and len(base) == 1
    )


@dataclass
class _Layer:
    norm1: Any
    attention: Any
    norm2: Any
    feed_forward: Any


@dataclass
class FirstLayerCache:
    """The reference's first transformer layer, per head ``h`` and token ``n``: ``content_q`` /
    ``position_q`` (queries plus the content / position biases, ``(h, n, dk)``), keys ``(h, n, dk)``,
    values ``(h, n, dv)``, attention logits ``(h, n, n)`` and their relative-position part, the
    row maxima ``(h, n)``, softmax denominators ``(h, n)`` and un-normalised value sums
    ``(h, n, dv)`` (float64)."""

    content_q: torch.Tensor
    position_q: torch.Tensor
    keys: torch.Tensor
    values: torch.Tensor
    logits: torch.Tensor
    position_logits: torch.Tensor
    row_max: torch.Tensor
    denominator: torch.Tensor
    numerator: torch.Tensor


class CachedTransformer:
    """Exact partial evaluation of an enformer-pytorch / borzoi-pytorch transformer (a
    ``torch.nn.Sequential`` of their blocks) on ``n`` tokens. The modules must be in eval mode."""

    def __init__(self, transformer: Any, n_tokens: int, positions: Callable[[Any, int], torch.Tensor]) -> None:
        """``positions(attention, n)``: the attention module's relative positional features,
        ``(2n - 1, features)``, for distances ``-(n-1)..n-1``."""
        import torch

        self.n = n_tokens
        self.layers: list[_Layer] = []
        self.rel_k: list[torch.Tensor] = []  # per layer (h, 2n - 1, dk)
        for block in transformer:
            attention_part, ff_part = block[0].fn, block[1].fn
            layer = _Layer(attention_part[0], attention_part[1], ff_part[0], ff_part[1:])
            self.layers.append(layer)
            attn = layer.attention
            with torch.inference_mode():
                rel_k = attn.to_rel_k(positions(attn, n_tokens))
            self.rel_k.append(rel_k.reshape(2 * n_tokens - 1, attn.heads, -1).transpose(0, 1).contiguous())
        # distance index of query i, key j: j - i + n - 1
        index = torch.arange(n_tokens)
        self._distance = index[None, :] - index[:, None] + n_tokens - 1  # (n, n)

    @property
    def depth(self) -> int:
        return len(self.layers)

    # -- pieces -----------------------------------------------------------------------------------

    @staticmethod
    def _heads(t: torch.Tensor, heads: int) -> torch.Tensor:
        """``(B, m, heads * d)`` -> ``(B, heads, m, d)``."""
        b, m, _ = t.shape
        return t.reshape(b, m, heads, -1).transpose(1, 2)

    def _position_logits(self, layer: int, position_q: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
        """Relative-position logits of query rows ``rows`` ``(m,)`` against every key: ``position_q``
        ``(B, h, m, dk)`` -> ``(B, h, m, n)``."""
        rel_k = self.rel_k[layer].to(position_q.dtype)  # (h, 2n - 1, dk)
        every = position_q @ rel_k.transpose(-1, -2)  # (B, h, m, 2n - 1)
        index = self._distance.to(position_q.device)[rows]  # (m, n)
        return every.gather(-1, index.expand(*every.shape[:-2], -1, -1))

    def _queries(self, attn: Any, hidden: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        q = self._heads(attn.to_q(hidden), attn.heads) * attn.scale
        return q + attn.rel_content_bias, q + attn.rel_pos_bias

    def _finish(self, layer: _Layer, x: torch.Tensor, attended: torch.Tensor) -> torch.Tensor:
        """Output projection, residual and feed-forward: ``attended`` ``(B, h, m, dv)`` of rows whose
        layer input is ``x`` ``(B, m, dim)`` -> ``(B, m, dim)``."""
        b, h, m, dv = attended.shape
        y = x + layer.attention.to_out(attended.transpose(1, 2).reshape(b, m, h * dv))
        return y + layer.feed_forward(layer.norm2(y))

    def _rows_layer(self, index: int, x: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
        """Layer ``index`` on input ``x`` ``(B, n, dim)``, output rows ``rows`` only: ``(B, m, dim)``."""
        layer = self.layers[index]
        attn = layer.attention
        hidden = layer.norm1(x)
        keys = self._heads(attn.to_k(hidden), attn.heads)
        values = self._heads(attn.to_v(hidden), attn.heads)
        content_q, position_q = self._queries(attn, hidden[:, rows])
        logits = content_q @ keys.transpose(-1, -2) + self._position_logits(index, position_q, rows)
        return self._finish(layer, x[:, rows], logits.softmax(dim=-1) @ values)

    # -- whole passes -----------------------------------------------------------------------------

    def reference(self, x: torch.Tensor) -> tuple[torch.Tensor, FirstLayerCache | None]:
        """The full transformer on one window's tokens ``x`` ``(1, n, dim)``: its output
        ``(1, n, dim)`` and the first layer's cache (None at depth 0)."""
        import torch

        if not self.layers:
            return x, None
        layer = self.layers[0]
        attn = layer.attention
        hidden = layer.norm1(x)
        keys = self._heads(attn.to_k(hidden), attn.heads)[0]
        values = self._heads(attn.to_v(hidden), attn.heads)[0]
        content_q, position_q = self._queries(attn, hidden)
        every = torch.arange(self.n, device=x.device)
        position_logits = self._position_logits(0, position_q, every)[0]
        logits = content_q[0] @ keys.transpose(-1, -2) + position_logits  # (h, n, n)
        row_max = logits.amax(dim=-1)
        weights = torch.exp(logits.double() - row_max.double()[..., None])
        cache = FirstLayerCache(
            content_q=content_q[0],
            position_q=position_q[0],
            keys=keys,
            values=values,
            logits=logits,
            position_logits=position_logits,
            row_max=row_max,
            denominator=weights.sum(dim=-1),
            numerator=weights @ values.double(),
        )
        attended = (cache.numerator / cache.denominator[..., None]).to(x.dtype)
        out = self._finish(layer, x, attended[None])
        for index in range(1, self.depth):
            out = self._full_layer(index, out)
        return out, cache

    def _full_layer(self, index: int, x: torch.Tensor) -> torch.Tensor:
        return self._rows_layer(index, x, torch_arange(self.n, x.device))

    def alternates(
        self,
        cache: FirstLayerCache | None,
        x: torch.Tensor,
        starts: torch.Tensor,
        width: int,
        rows: slice | None,
    ) -> torch.Tensor:
        """Transformer outputs of windows that differ from the reference only at tokens
        ``starts[b] .. starts[b] + width - 1`` of their inputs ``x`` ``(B, n, dim)``; rows ``rows``
        of the output (all when None): ``(B, m, dim)``."""
        out_rows = torch_arange(self.n, x.device) if rows is None else torch_arange(self.n, x.device)[rows]
        if not self.layers:
            return x[:, out_rows]
        if cache is None:
            raise InputError("alternates() needs the reference's first-layer cache.")
        first_rows = out_rows if self.depth == 1 else None
        out = self._first_layer(cache, x, starts, width, first_rows)
        for index in range(1, self.depth - 1):
            out = self._full_layer(index, out)
        if self.depth > 1:
            out = self._rows_layer(self.depth - 1, out, out_rows)
        return out

    def _first_layer(
        self, cache: FirstLayerCache, x: torch.Tensor, starts: torch.Tensor, width: int, rows: torch.Tensor | None
    ) -> torch.Tensor:
        """The first layer, updated from ``cache`` for inputs ``x`` ``(B, n, dim)`` that changed only
        at ``starts[b] + 0..width-1``; output rows ``rows`` (all when None)."""
        import torch

        layer = self.layers[0]
        attn = layer.attention
        n, device = self.n, x.device
        batch = x.shape[0]
        b_index = torch.arange(batch, device=device)[:, None]
        changed = starts[:, None] + torch.arange(width, device=device)[None, :]  # (B, w)
        hidden_c = layer.norm1(x[b_index, changed])  # (B, w, dim)
        keys_c = self._heads(attn.to_k(hidden_c), attn.heads)  # (B, h, w, dk)
        values_c = self._heads(attn.to_v(hidden_c), attn.heads)  # (B, h, w, dv)
        content_qc, position_qc = self._queries(attn, hidden_c)

        heads = attn.heads
        gather_cols = changed[:, None, None, :].expand(batch, heads, n, width)  # (B, h, n, w)
        # every row against the changed keys: new content logits + the reference position logits
        old_cols = cache.logits[None].expand(batch, -1, -1, -1).gather(-1, gather_cols)  # (B, h, n, w)
        position_cols = cache.position_logits[None].expand(batch, -1, -1, -1).gather(-1, gather_cols)
        new_cols = cache.content_q[None] @ keys_c.transpose(-1, -2) + position_cols  # (B, h, n, w)

        # float64 update of every row's softmax sums: remove the old columns, add the new ones
        row_max = cache.row_max.double()[None]  # (1, h, n)
        new_max = torch.maximum(row_max, new_cols.double().amax(dim=-1))  # (B, h, n)
        old_weights = torch.exp(old_cols.double() - row_max[..., None])  # (B, h, n, w)
        new_weights = torch.exp(new_cols.double() - new_max[..., None])
        rescale = torch.exp(row_max - new_max)  # (B, h, n)
        gather_rows = changed[:, None, :, None].expand(batch, heads, width, cache.values.shape[-1])
        values_old_c = cache.values[None].expand(batch, -1, -1, -1).gather(2, gather_rows).double()  # (B, h, w, dv)
        retained = cache.denominator[None] - old_weights.sum(dim=-1)  # (B, h, n)
        numerator = (cache.numerator[None] - old_weights @ values_old_c) * rescale[..., None]
        numerator = numerator + new_weights @ values_c.double()
        denominator = retained * rescale + new_weights.sum(dim=-1)
        attended = numerator / denominator[..., None]  # (B, h, n, dv)

        # the changed rows themselves, directly: their queries against every (new) key
        keys = cache.keys[None].expand(batch, -1, -1, -1).clone()
        values = cache.values[None].expand(batch, -1, -1, -1).clone()
        scatter_k = changed[:, None, :, None].expand(batch, heads, width, keys.shape[-1])
        keys.scatter_(2, scatter_k, keys_c)
        values.scatter_(2, gather_rows, values_c)
        logits_c = content_qc @ keys.transpose(-1, -2)
        logits_c = logits_c + self._position_logits_rows(0, position_qc, changed)
        attended_c = logits_c.softmax(dim=-1) @ values  # (B, h, w, dv)

        # rows whose reference mass sat almost entirely on the changed columns: directly as well
        weak = retained < _RETAINED_FLOOR * cache.denominator[None]
        weak.scatter_(2, changed[:, None, :].expand(batch, heads, width), False)
        if bool(weak.any()):
            for b in torch.nonzero(weak.any(dim=(1, 2))).flatten().tolist():
                attended[b] = self._direct_rows(cache, keys[b], values[b], changed[b]).double()
        attended = attended.to(x.dtype)
        attended.scatter_(2, gather_rows, attended_c)
        if rows is None:
            return self._finish(layer, x, attended)
        return self._finish(layer, x[:, rows], attended[:, :, rows])

    def _position_logits_rows(self, layer: int, position_q: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
        """Like :meth:`_position_logits` with a row set per batch item: ``rows`` ``(B, m)``."""
        rel_k = self.rel_k[layer].to(position_q.dtype)
        every = position_q @ rel_k.transpose(-1, -2)  # (B, h, m, 2n - 1)
        index = self._distance.to(position_q.device)[rows]  # (B, m, n)
        return every.gather(-1, index[:, None].expand(-1, every.shape[1], -1, -1))

    def _direct_rows(
        self, cache: FirstLayerCache, keys: torch.Tensor, values: torch.Tensor, changed: torch.Tensor
    ) -> torch.Tensor:
        """One window's first-layer attention output ``(h, n, dv)`` from scratch, with the new keys
        and values ``(h, n, d)`` and the reference queries (the changed rows are replaced later)."""
        content = cache.content_q @ keys.transpose(-1, -2)
        logits = content + cache.position_logits
        return logits.softmax(dim=-1) @ values


def torch_arange(n: int, device: Any) -> torch.Tensor:
    import torch

    return torch.arange(n, device=device)


def enformer_positions(attention: Any, n: int) -> torch.Tensor:
    """enformer-pytorch's relative positional features for ``n`` tokens, as its attention computes
    them on every call."""
    from enformer_pytorch.modeling_enformer import get_positional_embed

    weight = attention.to_rel_k.weight
    return get_positional_embed(
        n, attention.num_rel_pos_features, weight.device, use_tf_gamma=attention.use_tf_gamma, dtype=weight.dtype
    )


def borzoi_positions(attention: Any, n: int) -> torch.Tensor:
    """borzoi-pytorch's relative positional features (the table the backbone fitted to the window)."""
    if attention.positions is None or attention.positions.shape[0] != 2 * n - 1:
        raise InputError(f"Borzoi's attention position table does not fit {n} transformer positions.")
    return attention.positions.to(attention.to_rel_k.weight.dtype)


# -- the conv towers' receptive fields (Enformer's, and Borzoi's first U-net level) ------------------


@dataclass(frozen=True)
class TowerGeometry:
    """Where Enformer's stem + conv tower reads and writes, for exact partial recomputation.

    The stem and tower are ``n`` stages, each a same-padded convolution of half-width
    ``halves[i]`` (the stem's width-15 conv, then each tower layer's width-5 conv; the width-1 convs,
    batch norms in eval mode and GELUs are per-position) followed by a pool over pairs. Bin ``j``
    of the tower output therefore depends on a bounded stretch of input bases and a base
    changes a bounded run of bins. Positions are 0-based; ranges are inclusive ``(first, last)``.
    """

    length: int
    halves: tuple[int, ...]

    @classmethod
    def for_enformer(cls, window_size: int, num_downsamples: int) -> TowerGeometry:
        return cls(window_size, (7,) + (2,) * (num_downsamples - 1))

    @property
    def bin_size(self) -> int:
        return 2 ** len(self.halves)

    @property
    def n_bins(self) -> int:
        return self.length // self.bin_size

    def affected_bins(self, first: int, last: int) -> tuple[int, int]:
        """The tower-output bins a change of bases ``first..last`` can alter."""
        size = self.length
        for half in self.halves:
            first, last = max(first - half, 0) // 2, min(last + half, size - 1) // 2
            size //= 2
        return first, last

    def affected_chunks(self, offsets: np.ndarray, chunk_bins: int) -> np.ndarray:
        """Sorted unique ids of the ``chunk_bins``-bin chunks (chunk ``c`` = bins
        ``c * chunk_bins`` onwards) that changes at ``offsets`` (``(k,)`` bases) can alter."""
        first = np.asarray(offsets, dtype=np.int64)
        last = first.copy()
        size = self.length
        for half in self.halves:
            first, last = np.maximum(first - half, 0) // 2, np.minimum(last + half, size - 1) // 2
            size //= 2
        first, last = first // chunk_bins, last // chunk_bins
        spans = [np.arange(lo, hi + 1) for lo, hi in zip(first.tolist(), last.tolist(), strict=True)]
        return np.unique(np.concatenate(spans)) if spans else np.empty(0, dtype=np.int64)

    def needed_bases(self, first_bin: int, last_bin: int) -> tuple[int, int]:
        """The input bases tower-output bins ``first_bin..last_bin`` depend on, before clipping
        to the window (positions outside it are the convolutions' zero padding)."""
        first, last = first_bin, last_bin
        for half in reversed(self.halves):
            first, last = 2 * first - half, 2 * last + 1 + half
        return first, last

    def patch_bins(self, first_bin: int, last_bin: int) -> tuple[int, int]:
        """``(start_bin, width)`` of a bin-aligned input patch from which ``first_bin..last_bin``
        are computed exactly: it holds every base they depend on, and at a window edge it starts
        (or ends) at the edge so that the zero padding is the full forward's."""
        first, last = self.needed_bases(first_bin, last_bin)
        start = max(first, 0) // self.bin_size
        stop = -(-(min(last, self.length - 1) + 1) // self.bin_size)
        return start, stop - start

    def snv_patch_width(self) -> int:
        """Bins of a patch wide enough for any single-base change anywhere in the window: the
        widest interior need over one bin's worth of alignments, capped at the window."""
        # Probe a window long enough that no edge clips the interior pattern, which repeats
        # every bin_size bases.
        probe = TowerGeometry(self.bin_size * 4096, self.halves)
        centre = probe.length // 2
        widest = max(probe.patch_bins(*probe.affected_bins(p, p))[1] for p in range(centre, centre + self.bin_size))
        return min(widest, self.n_bins)

    def chunk_patch_width(self, chunk_bins: int) -> int:
        """Bins of a patch from which any ``chunk_bins``-bin chunk (aligned to multiples of
        ``chunk_bins``) is computed exactly, capped at the window."""
        probe = TowerGeometry(self.bin_size * 4096, self.halves)
        first = probe.n_bins // 2 // chunk_bins * chunk_bins
        return min(probe.patch_bins(first, first + chunk_bins - 1)[1], self.n_bins)

    def place_patch(self, first_bin: int, last_bin: int, width: int) -> int:
        """Start bin of a ``width``-bin patch covering the need of ``first_bin..last_bin`` (one
        fixed width lets patches be batched); shifted inwards at the window edges."""
        start, needed = self.patch_bins(first_bin, last_bin)
        if needed > width:
            raise ValueError(f"a {width}-bin patch cannot cover bins {first_bin}..{last_bin} (needs {needed})")
        return min(start, self.n_bins - width)


# -- Borzoi -----------------------------------------------------------------------------------------


@dataclass
class BorzoiTowers:
    """Borzoi's local (convolutional) activations of ``B`` windows or patches: ``unet0`` the conv
    tower output ``(B, channels, L / 32)``, ``unet1`` the next U-net level ``(B, dim, L / 64)``,
    ``tokens`` the transformer input ``(B, L / 128, dim)``, and the horizontal (skip) convolutions
    of the two levels, ``skip0`` ``(B, dim, L / 32)`` and ``skip1`` ``(B, dim, L / 64)``."""

    unet0: torch.Tensor
    unet1: torch.Tensor
    tokens: torch.Tensor
    skip0: torch.Tensor
    skip1: torch.Tensor


def borzoi_towers(model: Any, x: torch.Tensor) -> BorzoiTowers:
    """The convolutional part of Borzoi's forward (``get_embs_after_crop`` up to the transformer)
    on one-hot ``x`` ``(B, L', 4)``."""
    unet0 = model.res_tower(model.conv_dna(x.transpose(1, 2)))
    unet1 = model.unet1(unet0)
    tokens = model._max_pool(unet1).transpose(1, 2)
    return BorzoiTowers(unet0, unet1, tokens, model.horizontal_conv0(unet0), model.horizontal_conv1(unet1))


def borzoi_upsample(model: Any, transformed: torch.Tensor, towers: BorzoiTowers) -> torch.Tensor:
    """The rest of ``get_embs_after_crop`` on every bin: transformer output ``(B, n, dim)`` ->
    embeddings ``(B, dim, 4n)`` (the crop keeps every bin)."""
    x = model.upsampling_unet1(transformed.transpose(1, 2)) + towers.skip1
    x = model.upsampling_unet0(model.separable1(x)) + towers.skip0
    return model.separable0(x)


def _same_conv_rows(conv: Any, x: torch.Tensor, lo: int, first: int, last: int, n: int) -> torch.Tensor:
    """Outputs ``first..last`` of a width-3 same-padded convolution over ``n`` positions, from its
    input ``x`` ``(B, C, m)`` at positions ``lo..lo + m - 1``, which must hold every in-window
    neighbour of ``first..last`` (positions outside ``0..n-1`` are the convolution's zero padding)."""
    if lo > max(first - 1, 0) or lo + x.shape[-1] - 1 < min(last + 1, n - 1):
        raise ValueError("the input slice misses neighbours of the wanted outputs")
    return conv(x)[..., first - lo : last - lo + 1]


def borzoi_upsample_bins(
    model: Any, transformed: torch.Tensor, row_lo: int, towers: BorzoiTowers, first: int, last: int
) -> torch.Tensor:
    """Embeddings of output bins ``first..last`` only: ``(B, dim, last - first + 1)``, from the
    transformer output rows ``row_lo..`` (``transformed`` ``(B, m, dim)``, as many as
    :func:`borzoi_token_rows` asks for) and the skip activations of every bin (``towers``)."""
    n0 = towers.skip0.shape[-1]
    n1 = towers.skip1.shape[-1]
    lo0, hi0 = max(first - 1, 0), min(last + 1, n0 - 1)  # separable0 inputs
    q_first, q_last = lo0 // 2, hi0 // 2  # separable1 outputs they read
    lo1, hi1 = max(q_first - 1, 0), min(q_last + 1, n1 - 1)  # separable1 inputs
    up1 = model.upsampling_unet1[0](transformed.transpose(1, 2))  # per token, before the 2x repeat
    level1 = up1[..., [q // 2 - row_lo for q in range(lo1, hi1 + 1)]] + towers.skip1[..., lo1 : hi1 + 1]
    s1 = _same_conv_rows(model.separable1, level1, lo1, q_first, q_last, n1)  # (B, dim, q_last - q_first + 1)
    up0 = model.upsampling_unet0[0](s1)
    level0 = up0[..., [p // 2 - q_first for p in range(lo0, hi0 + 1)]] + towers.skip0[..., lo0 : hi0 + 1]
    return _same_conv_rows(model.separable0, level0, lo0, first, last, n0)


def borzoi_token_rows(n_bins: int, first: int, last: int) -> slice:
    """The transformer output rows that output bins ``first..last`` (of ``n_bins`` 32-bp bins) read
    through the upsampling path."""
    lo0, hi0 = max(first - 1, 0), min(last + 1, n_bins - 1)
    lo1, hi1 = max(lo0 // 2 - 1, 0), min(hi0 // 2 + 1, n_bins // 2 - 1)
    return slice(lo1 // 2, hi1 // 2 + 1)


def borzoi_head(model: Any, embeddings: torch.Tensor, head: str) -> torch.Tensor:
    """Embeddings ``(B, dim, m)`` -> predictions ``(B, m, tracks)``, per bin, as the backbone's
    forward computes them (head in float32, softplus unless the scalar head)."""
    import torch

    out = model.final_joined_convs(embeddings)
    with torch.autocast(embeddings.device.type, enabled=False):
        out = model.human_head(out.float())
        if head != "scalar":
            out = torch.nn.functional.softplus(out)
    return out.transpose(1, 2)


class BorzoiISM:
    """One window's cached reference pass for the Borzoi backbone's exact fast ISM: the
    convolutional activations (Borzoi's stem, tower and first U-net level have the receptive
    fields of :class:`TowerGeometry` with 7 stages, like Enformer's), the first transformer
    layer's cache, and the reference's reduced prediction ``reference_output`` ``(K,)``.
    Alternates recompute their changed bins on a patch and splice them in; the transformer runs
    through :class:`CachedTransformer`; when ``reduce`` declares the output bins it reads, only
    those go through the upsampling path and head, else every bin."""

    def __init__(self, backbone: Any, reference: np.ndarray, reduce: Callable[..., Any]) -> None:
        import torch

        self.backbone, self.reduce = backbone, reduce
        self.model, self.head = backbone.model_, backbone.params["head"]
        self.geometry = TowerGeometry.for_enformer(backbone.window_size, 7)
        self.n_bins = backbone.n_bins
        self.bins = bins_read(reduce, self.n_bins)
        self.rows = None if self.bins is None else borzoi_token_rows(self.n_bins, self.bins.start, self.bins.stop - 1)
        self.device = torch.device(backbone._device)
        self.model.eval()
        with torch.inference_mode(), backbone._autocast():
            self.ref = torch.from_numpy(np.ascontiguousarray(reference, dtype=np.float32)).to(self.device)
            self.towers = borzoi_towers(self.model, self.ref[None])
            self.transformer = CachedTransformer(self.model.transformer, self.geometry.n_bins, borzoi_positions)
            transformed, self.cache = self.transformer.reference(self.towers.tokens)
            embeddings = borzoi_upsample(self.model, transformed, self.towers)
            predicted = borzoi_head(self.model, embeddings, self.head).float().cpu().numpy()
        self.reference_output = np.asarray(reduce(predicted))[0]

    def alternates(self, chunk: Sequence[tuple[int, str]]) -> np.ndarray:
        """Reduced predictions ``(len(chunk), K)`` of single-base substitutions, as one batch."""
        import torch

        from varscore.plugin import BASE_INDEX

        geometry, model, device, towers = self.geometry, self.model, self.device, self.towers
        n_tokens = geometry.n_bins
        width, token_bp = geometry.snv_patch_width(), geometry.bin_size
        codes = np.eye(5, 4, dtype=np.float32)
        with torch.inference_mode(), self.backbone._autocast():
            offsets = np.array([int(offset) for offset, _ in chunk], dtype=np.int64)
            spans = [geometry.affected_bins(int(offset), int(offset)) for offset in offsets]
            starts = np.array([geometry.place_patch(first, last, width) for first, last in spans], dtype=np.int64)
            bases = torch.from_numpy(starts * token_bp).to(device)
            patches = self.ref[bases[:, None] + torch.arange(width * token_bp, device=device)]
            index = torch.arange(len(chunk), device=device)
            alleles = torch.from_numpy(codes[[BASE_INDEX.get(base, 4) for _, base in chunk]]).to(device)
            patches[index, torch.from_numpy(offsets - starts * token_bp).to(device)] = alleles
            patch = borzoi_towers(model, patches)
            alt = BorzoiTowers(
                towers.unet0,
                towers.unet1,
                *(t.expand(len(chunk), *t.shape[1:]).clone() for t in (towers.tokens, towers.skip0, towers.skip1)),
            )
            for row, ((first, last), start) in enumerate(zip(spans, starts.tolist(), strict=True)):
                a, b = first - start, last + 1 - start
                alt.tokens[row, first : last + 1] = patch.tokens[row, a:b]
                alt.skip1[row, :, 2 * first : 2 * last + 2] = patch.skip1[row, :, 2 * a : 2 * b]
                alt.skip0[row, :, 4 * first : 4 * last + 4] = patch.skip0[row, :, 4 * a : 4 * b]
            span = max(last - first + 1 for first, last in spans)
            changed = torch.tensor([min(first, n_tokens - span) for first, _ in spans], device=device)
            out = self.transformer.alternates(self.cache, alt.tokens, changed, span, self.rows)
            if self.bins is None or self.rows is None:
                embeddings = borzoi_upsample(model, out, alt)
            else:
                embeddings = borzoi_upsample_bins(model, out, self.rows.start, alt, self.bins.start, self.bins.stop - 1)
            predicted = borzoi_head(model, embeddings, self.head).float().cpu().numpy()
        return reduce_rows(self.reduce, predicted, self.bins, self.n_bins)


# -- Enformer's conv tower, stage by stage ----------------------------------------------------------


@dataclass
class _Stage:
    prefix: Any  # per-position modules before the convolution (batch norm, GELU), or None
    conv: Any  # same-padded Conv1d
    rest: Any  # per-position residual block, then the pool over pairs


class TowerPyramid:
    """Exact single-base updates of Enformer's stem + conv tower from cached reference activations.

    Each stage is (per-position prefix) -> same-padded convolution -> per-position residual block
    -> pool over pairs. The input of every stage's convolution is cached for the reference window
    (zero-padded as the convolution pads it); an alternate recomputes at each stage only the
    pooled positions its base can reach, reading the cached reference around them, instead of a
    patch of whole bins through every stage. The modules must be in eval mode."""

    def __init__(self, enformer: Any, reference: torch.Tensor) -> None:
        """``enformer``: the ``Enformer`` module; ``reference``: one-hot ``(L, 4)``."""
        import torch.nn.functional as F

        stem = enformer.stem
        self.stages = [_Stage(None, stem[0], stem[1:])]
        for layer in enformer.conv_tower:
            block = layer[0]
            self.stages.append(_Stage(block[:2], block[2], layer[1:]))
        self.inputs: list[torch.Tensor] = []  # per stage: padded conv input (C, len + 2 * half)
        x = reference.t()[None]  # (1, 4, L)
        for stage in self.stages:
            half = stage.conv.padding[0]
            conv_in = x if stage.prefix is None else stage.prefix(x)
            self.inputs.append(F.pad(conv_in[0], (half, half)))
            x = stage.rest(F.conv1d(conv_in, stage.conv.weight, stage.conv.bias, padding=half))
        self.output = x  # (1, dim, bins): the reference tower output

    def alternates(self, offsets: np.ndarray, alleles: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, list]:
        """Tower outputs of single-base alternates: base ``offsets[b]`` set to ``alleles[b]`` (``(B, 4)``).
        Returns the recomputed bins ``(B, dim, w)``, their first bins ``(B,)`` and each alternate's
        changed bins ``(first, last)`` (inclusive, within the recomputed ones)."""
        import torch
        import torch.nn.functional as F

        device = alleles.device
        batch = len(offsets)
        first = [int(o) for o in offsets]
        last = list(first)
        values = alleles[:, :, None]  # (B, C, w) new stage input at positions start..start + w - 1
        start = torch.tensor(first, device=device)
        for stage, padded in zip(self.stages, self.inputs, strict=True):
            half = stage.conv.padding[0]
            length = padded.shape[-1] - 2 * half
            first = [max(a - half, 0) // 2 for a in first]
            last = [min(b + half, length - 1) // 2 for b in last]
            width = max(b - a + 1 for a, b in zip(first, last, strict=True))
            out_start = [min(a, length // 2 - width) for a in first]
            # conv outputs 2 * out_start .. + 2 * width - 1 read padded positions from 2 * out_start
            span = 2 * width + 2 * half
            begin = torch.tensor([2 * s for s in out_start], device=device)
            window = padded[:, begin[:, None] + torch.arange(span, device=device)].transpose(0, 1).clone()
            new = values if stage.prefix is None else stage.prefix(values)
            for row in range(batch):
                # new input positions start[row] + j land at window column start[row] + j + half - begin
                shift = int(start[row]) + half - int(begin[row])
                lo, hi = max(shift, 0), min(shift + new.shape[-1], span)
                if hi > lo:
                    window[row, :, lo:hi] = new[row, :, lo - shift : hi - shift]
            values = stage.rest(F.conv1d(window, stage.conv.weight, stage.conv.bias))  # (B, C', width)
            start = torch.tensor(out_start, device=device)
        return values, start, list(zip(first, last, strict=True))


class EnformerISM:
    """One window's cached reference pass for the Enformer backbone's exact fast ISM (see
    :meth:`EnformerBackbone.ism`): the tower's stage activations, the first transformer layer's
    cache, and the reference's reduced prediction ``reference_output`` ``(K,)``."""

    def __init__(self, backbone: Any, reference: np.ndarray, reduce: Callable[..., Any]) -> None:
        import torch

        self.backbone, self.reduce = backbone, reduce
        self.n_bins = backbone.n_bins
        # a pooled Variformer head reads every bin, whatever bins the output mode then takes
        pooled = backbone.params.get("pool", "center") != "center"
        self.bins = None if pooled else bins_read(reduce, self.n_bins)
        self.device = torch.device(backbone._device)
        trunk = backbone._trunk_module()
        backbone.model_.eval()
        with torch.inference_mode(), backbone._autocast():
            ref = torch.from_numpy(np.ascontiguousarray(reference, dtype=np.float32)).to(self.device)
            self.pyramid = TowerPyramid(trunk, ref)
            self.transformer = CachedTransformer(trunk.transformer, self.n_bins, enformer_positions)
            embeddings, self.cache = self.transformer.reference(self.pyramid.output.transpose(1, 2))
            predicted = backbone._output_head(embeddings).float().cpu().numpy()
        self.reference_output = np.asarray(reduce(predicted))[0]

    def alternates(self, chunk: Sequence[tuple[int, str]]) -> np.ndarray:
        """Reduced predictions ``(len(chunk), K)`` of single-base substitutions ``(offset, base)``,
        computed as one batch."""
        import torch

        from varscore.plugin import BASE_INDEX

        codes = np.eye(5, 4, dtype=np.float32)  # row 4: an unknown base is all-zero, as in predict()
        n_bins, bins = self.n_bins, self.bins
        with torch.inference_mode(), self.backbone._autocast():
            alleles = torch.from_numpy(codes[[BASE_INDEX.get(base, 4) for _, base in chunk]]).to(self.device)
            new, new_start, spans = self.pyramid.alternates(np.array([o for o, _ in chunk]), alleles)
            towers = self.pyramid.output.expand(len(chunk), -1, -1).clone()
            for row, start in enumerate(new_start.tolist()):
                towers[row, :, start : start + new.shape[-1]] = new[row]
            width = max(last - first + 1 for first, last in spans)
            starts = torch.tensor([min(first, n_bins - width) for first, _ in spans], device=self.device)
            rows = self.transformer.alternates(self.cache, towers.transpose(1, 2), starts, width, bins)
            predicted = self.backbone._output_head(rows).float().cpu().numpy()
        return reduce_rows(self.reduce, predicted, bins, n_bins)
