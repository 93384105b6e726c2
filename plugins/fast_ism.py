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

Layers in between see every token changed and run as they are.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from varscore.errors import InputError

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
