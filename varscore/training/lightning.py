"""Variformer fine-tuning, backbone-agnostic: the paper's loss, batches of different people of one
gene (also under DDP), per-gene tune-people R² with early stopping, on PyTorch Lightning.

torch and lightning are imported inside functions so that importing this module stays cheap.
"""

from __future__ import annotations

import csv
import logging
import math
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from varscore.errors import InputError, VarscoreError

# the cohort's containers and loaders live in varscore.training.cohort; these names stay importable from here
from varscore.training.cohort import COVERAGE_NPZ_KEYS as COVERAGE_NPZ_KEYS
from varscore.training.cohort import CohortInputs as CohortInputs
from varscore.training.cohort import FinetuneData as FinetuneData
from varscore.training.cohort import GeneData as GeneData
from varscore.training.cohort import LoadedCohort as LoadedCohort
from varscore.training.cohort import genotype_report as genotype_report
from varscore.training.cohort import load_cohort as load_cohort
from varscore.training.cohort import read_coverage as read_coverage

if TYPE_CHECKING:
    import torch


logger = logging.getLogger(__name__)
#: one INFO line per fine-tuning epoch (the CLI shows it unless --quiet)
progress_logger = logging.getLogger("varscore.progress")


def variformer_loss(pred: torch.Tensor, target: torch.Tensor, mse_weight: float = 0.5) -> torch.Tensor:
    """The paper's loss for one single-gene batch of different people.

    ``mse_weight · MSE(y, ŷ) + (1 − mse_weight) · mean over unique pairs i<j of
    ((ŷi − ŷj) − (yi − yj))²``. ``pred``, ``target``: ``(B,)``. A batch of one person has no
    pairs; its loss is the MSE term alone.
    """
    import torch

    pred = pred.float().reshape(-1)
    target = target.float().reshape(-1)
    mse = torch.mean((pred - target) ** 2)
    if pred.numel() < 2:
        return mse_weight * mse
    i, j = torch.triu_indices(pred.numel(), pred.numel(), offset=1, device=pred.device)
    pairwise = torch.mean(((pred[i] - pred[j]) - (target[i] - target[j])) ** 2)
    return mse_weight * mse + (1.0 - mse_weight) * pairwise


#: ``--loss``: the weight of the MSE term in :func:`variformer_loss` (the paper's Fig. S12 ablation:
#: both terms weighted one half, the MSE term alone, the cross-individual term alone)
LOSS_WEIGHTS = {"both": 0.5, "mse": 1.0, "cross": 0.0}
#: what early stopping and the kept epoch follow (the paper's Fig. S6 and S3): the mean R² over train
#: genes × tune people, the mean Pearson r over monitored tune genes × tune people, or the tune loss
MONITORS = ("r2-train-genes", "pearson-tune-genes", "tune-loss")

TRACK_LOSSES = ("poisson", "mse")


def track_loss(pred: torch.Tensor, target: torch.Tensor, kind: str = "poisson") -> torch.Tensor:
    """Loss of predicted coverage tracks: ``pred``, ``target``: ``(B, bins)``, ``pred`` >= 0.

    ``poisson``: mean over people and bins of ``ŷ − y·log(ŷ)`` (the Poisson negative log-likelihood
    without the constant ``log y!``, as ``torch.nn.PoissonNLLLoss(log_input=False)``);
    ``mse``: mean squared error.
    """
    import torch

    pred, target = pred.float(), target.float()
    if kind == "mse":
        return torch.mean((pred - target) ** 2)
    if bool((pred < 0).any()):
        raise InputError(
            "The Poisson track loss needs non-negative predicted coverage, but this model's head predicts negative "
            "values (e.g. Enformer's linear Variformer head): use --track-loss mse, or a softplus head "
            "(Borzoi head='track', Enformer head='pretrained')."
        )
    return torch.mean(pred - target * torch.log(pred + 1e-8))


@dataclass(frozen=True)
class TrainingConfig:
    """Fine-tuning settings; the defaults are the paper's (Variformer, whole blood)."""

    lr: float = 5e-6
    weight_decay: float = 0.01
    batch_size: int = 32
    accumulate: int = 4
    grad_clip: float = 0.05
    max_epochs: int = 100
    patience: int = 20
    people_per_epoch: int = 512
    mse_weight: float = 0.5
    seed: int = 0
    devices: int = 1
    accelerator: str = "auto"
    precision: str = "auto"
    center_bin: int | None = None  # default: bins // 2 (bin 192 of 384)
    track: int = 0
    output_dir: str = "."
    resume: bool = False
    progress: bool = True
    num_workers: int = 0
    # keep batch-norm layers in eval mode while fine-tuning, with running statistics first
    # re-estimated over train people of every gene: every training batch holds one gene's nearly
    # identical personal sequences, so train-mode batch statistics are per-gene statistics and the
    # running averages end up describing the last genes seen, shifting tune/test predictions
    freeze_batchnorm: bool = False
    # "scalar": one value per person (bin center_bin of track); "track": every bin of track, against
    # per-person coverage (GeneData.coverage) with track_loss "poisson" or "mse"
    output_mode: str = "scalar"
    track_loss: str = "poisson"
    # train only the backbone's head (its head_module()) for this many epochs, then every layer
    # (the paper's Borzoi track fine-tuning: 5)
    freeze_trunk_epochs: int = 0
    # early stopping and the kept epoch follow the tune score averaged over the last this many
    # epochs (1: each epoch's own score), so one lucky epoch is not picked
    smooth_epochs: int = 1
    # build each single-gene batch at once (PersonalWindows.batch) instead of person by person
    batched_loader: bool = True
    # what early stopping and the kept epoch follow (MONITORS; track mode always follows the tune loss)
    monitor: str = "r2-train-genes"
    # early stopping: an epoch counts as an improvement (restarting patience) only when its score
    # beats the last such epoch's by more than this (the kept epoch is still the best one)
    min_delta: float = 0.0
    # train only the backbone's head (its head_module()) throughout: the trunk's weights and
    # batch-norm statistics stay as they were built (the paper's frozen Enformer, Fig. S15)
    freeze_backbone: bool = False

    def __post_init__(self) -> None:
        checks = {
            "lr": self.lr > 0,
            "batch_size": self.batch_size >= 2,
            "accumulate": self.accumulate >= 1,
            "max_epochs": self.max_epochs >= 1,
            "patience": self.patience >= 1,
            "people_per_epoch": self.people_per_epoch >= 2,
            "devices": self.devices >= 1,
            "mse_weight": 0.0 <= self.mse_weight <= 1.0,
            "output_mode": self.output_mode in ("scalar", "track"),
            "track_loss": self.track_loss in TRACK_LOSSES,
            "freeze_trunk_epochs": self.freeze_trunk_epochs >= 0,
            "smooth_epochs": self.smooth_epochs >= 1,
            "monitor": self.monitor in MONITORS,
            "min_delta": self.min_delta >= 0,
        }
        bad = [name for name, ok in checks.items() if not ok]
        if bad:
            values = ", ".join(f"{name}={getattr(self, name)!r}" for name in bad)
            raise InputError(
                f"Invalid training settings: {values} (batch size >= 2 for the pairwise loss, "
                "positive learning rate and counts, mse_weight in [0, 1], output_mode scalar or track, "
                f"track_loss one of {', '.join(TRACK_LOSSES)}, freeze_trunk_epochs >= 0, smooth_epochs >= 1, "
                f"monitor one of {', '.join(MONITORS)}, min_delta >= 0)."
            )


class PersonGeneDataset:
    """Map-style dataset over ``gene_index * n_people + person_index``.

    Item: ``(x (L, 4) float32, y, gene index, person index)``; ``y`` is the expression (float32),
    or with ``track=True`` the person's coverage ``(bins,)`` float32.
    """

    def __init__(self, data: FinetuneData, track: bool = False) -> None:
        self.data = data
        self.n_people = len(data.people)
        self.track = track
        if track:
            missing = [g.gene.label for g in data.genes if g.coverage is None]
            if missing:
                raise InputError(
                    f"Track-mode training needs coverage for every gene; none for {', '.join(missing[:5])}."
                )

    def __len__(self) -> int:
        return len(self.data.genes) * self.n_people

    def __getitem__(self, index: int) -> tuple[np.ndarray, Any, int, int]:
        gene_index, person = divmod(int(index), self.n_people)
        gene = self.data.genes[gene_index]
        x = gene.windows.batch([person])[0].astype(np.float32, copy=False)
        if self.track:
            return x, np.asarray(gene.coverage[person], dtype=np.float32), gene_index, person  # type: ignore[index]
        return x, np.float32(gene.expression[person]), gene_index, person

    def batch(self, indices: Sequence[int]) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Items ``indices`` as one batch ``(x (B, L, 4), y, genes, people)``, each gene's people
        built at once with :meth:`PersonalWindows.batch` (equal to stacking ``self[i]``)."""
        genes, people = np.divmod(np.asarray(indices, dtype=np.int64), self.n_people)
        first = self.data.genes[int(genes[0])]
        shape = first.windows.reference.shape
        x = np.empty((len(people), *(shape if first.windows.mode == "dosage" else (2, *shape))), dtype=np.float32)
        for gene_index in np.unique(genes).tolist():
            rows = np.flatnonzero(genes == gene_index)
            gene = self.data.genes[gene_index]
            if rows.size == len(people) and gene.windows.dtype == np.float32:
                gene.windows.batch(people, out=x)  # the usual single-gene batch, built in place
            else:
                x[rows] = gene.windows.batch(people[rows])
        if self.track:
            y = np.stack(
                [
                    np.asarray(self.data.genes[g].coverage[p], dtype=np.float32)
                    for g, p in zip(genes.tolist(), people.tolist(), strict=True)
                ]
            )
        else:
            y = np.array(
                [self.data.genes[g].expression[p] for g, p in zip(genes.tolist(), people.tolist(), strict=True)],
                dtype=np.float32,
            )
        return x, y, genes, people


class BatchedPersonGeneDataset(PersonGeneDataset):
    """:class:`PersonGeneDataset` whose DataLoader batches are built whole (``__getitems__``): one
    vectorised :meth:`PersonalWindows.batch` call per single-gene batch instead of one per person."""

    def __getitems__(self, indices: list[int]) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        return self.batch(indices)


class SameGeneBatchSampler:
    """Yields batches (lists of dataset indices) of different people of one gene.

    Per epoch and gene, ``people_per_epoch`` people are drawn (rounded down to a whole number of
    ``batch_size × accumulate × world_size``, as the paper's 512 = 4 × 128) and cut into batches;
    the ``accumulate`` consecutive batches a rank sees between optimizer steps share the gene,
    and under DDP every rank steps through the same gene at the same time with different people.
    Every rank yields the same number of batches. ``world`` is ``(rank, world_size)``; by default
    ``torch.distributed``'s when it is initialised, else ``(0, 1)``. Genes, people and steps are
    drawn in a random order fixed by ``(seed, epoch)``.
    """

    def __init__(
        self,
        n_genes: int,
        n_people: int,
        people: Sequence[int] | np.ndarray,
        batch_size: int,
        accumulate: int = 1,
        people_per_epoch: int | None = None,
        seed: int = 0,
        world: tuple[int, int] | None = None,
    ) -> None:
        self.n_genes = n_genes
        self.n_people = n_people
        self.people = np.asarray(people, dtype=np.int64)
        self.batch_size = batch_size
        self.accumulate = accumulate
        self.people_per_epoch = people_per_epoch or len(self.people)
        self.seed = seed
        self._world = world
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def _dist(self) -> tuple[int, int]:
        if self._world is not None:
            return self._world
        try:
            import torch.distributed as dist

            if dist.is_available() and dist.is_initialized():
                return dist.get_rank(), dist.get_world_size()
        except ImportError:  # pragma: no cover - torch is a dependency
            pass
        return 0, 1

    def _group(self) -> int:
        return self.batch_size * self.accumulate * self._dist()[1]

    def people_per_gene(self) -> int:
        group = self._group()
        wanted = min(self.people_per_epoch, len(self.people))
        return max(group, (wanted // group) * group)

    def __len__(self) -> int:
        rank, world = self._dist()
        return self.n_genes * self.people_per_gene() // (self.batch_size * world)

    def __iter__(self) -> Iterator[list[int]]:
        rank, world = self._dist()
        rng = np.random.default_rng([self.seed, self.epoch])
        self.epoch += 1
        per_gene = self.people_per_gene()
        replace = per_gene > len(self.people)
        if replace:
            logger.warning("%d people per gene requested from %d: drawing with replacement", per_gene, len(self.people))
        genes = rng.permutation(self.n_genes)
        steps: list[list[list[int]]] = []  # one entry per optimizer step: world × accumulate batches
        step_batches = self.accumulate * world
        for gene in genes:
            chosen = rng.choice(self.people, size=per_gene, replace=replace)
            batches = chosen.reshape(-1, self.batch_size)
            for start in range(0, len(batches), step_batches):
                steps.append([list(gene * self.n_people + b) for b in batches[start : start + step_batches]])
        order = rng.permutation(len(steps))
        steps = [steps[i] for i in order]
        for step in steps:
            # rank r takes its accumulate consecutive batches of the step
            yield from (
                [int(i) for i in batch] for batch in step[rank * self.accumulate : (rank + 1) * self.accumulate]
            )


def eval_batches(
    n_people: int, genes: Sequence[int], people: Sequence[int] | np.ndarray, batch_size: int
) -> list[list[int]]:
    """Sequential single-gene batches covering every (gene, person) pair once."""
    people = list(people)
    return [
        [g * n_people + p for p in people[start : start + batch_size]]
        for g in genes
        for start in range(0, len(people), batch_size)
    ]


def per_gene_metrics(
    gene_index: np.ndarray, pred: np.ndarray, target: np.ndarray, n_genes: int
) -> list[tuple[float, float]]:
    """``(R², Pearson r)`` per gene across people, as sklearn ``r2_score`` and scipy ``pearsonr``
    (NaN when a side is constant)."""

    from scipy.stats import pearsonr
    from sklearn.metrics import r2_score

    out = []
    for gene in range(n_genes):
        mask = gene_index == gene
        y, p = target[mask], pred[mask]
        if mask.sum() < 2:
            out.append((math.nan, math.nan))
            continue
        r2 = float(r2_score(y, p))
        with warnings.catch_warnings():  # near-constant predictions early in training are expected
            warnings.simplefilter("ignore")
            r = float(pearsonr(y, p)[0]) if np.ptp(p) > 0 and np.ptp(y) > 0 else math.nan
        out.append((r2, r))
    return out


@dataclass
class TrainingResult:
    """What fine-tuning produced: per-epoch metrics and the best epoch's tune R²."""

    history: list[dict[str, float]]
    best_epoch: int
    best_tune_r2: float
    is_global_zero: bool
    config: dict[str, Any]


def _collate(batch: Any) -> tuple[Any, ...]:
    """Tensors ``(x, y, genes, people)`` of a list of items or of a batch already built whole
    (:meth:`BatchedPersonGeneDataset.__getitems__`)."""
    import torch

    if isinstance(batch, tuple):
        return tuple(torch.from_numpy(np.ascontiguousarray(part)) for part in batch)
    x = torch.from_numpy(np.stack([b[0] for b in batch]))
    y = torch.from_numpy(np.stack([np.asarray(b[1], dtype=np.float32) for b in batch]))
    genes = torch.tensor([b[2] for b in batch], dtype=torch.long)
    people = torch.tensor([b[3] for b in batch], dtype=torch.long)
    return x, y, genes, people


class TrainingInterrupted(VarscoreError):
    """Fine-tuning was stopped by SIGTERM or SIGINT; ``exit_code`` is the shell's ``128 + signal``
    (143, 130). The message says which checkpoint was kept and how to resume."""

    def __init__(self, message: str, signum: int) -> None:
        super().__init__(message)
        self.signum = signum
        self.exit_code = 128 + signum


class _StopSignal(BaseException):  # noqa: N818 - a control-flow signal, not an error
    """Raised by the SIGTERM/SIGINT handler to leave ``trainer.fit`` (BaseException, so that no
    ``except Exception`` on the way swallows it)."""

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum


CHECKPOINT_NAME = "last.ckpt"
CHECKPOINT_KEY = "varscore_training"
# settings a resumed run must share with the run that wrote the checkpoint
_RESUME_KEYS = (
    "lr",
    "weight_decay",
    "batch_size",
    "accumulate",
    "grad_clip",
    "people_per_epoch",
    "mse_weight",
    "seed",
    "devices",
    "center_bin",
    "track",
    "output_mode",
    "track_loss",
    "freeze_trunk_epochs",
    "freeze_batchnorm",
    "smooth_epochs",
    "monitor",
    "freeze_backbone",
)


def batch_seed(seed: int, epoch: int, batch: int, rank: int = 0) -> int:
    """The torch seed of one training batch (dropout and any other randomness of its forward pass):
    a function of ``(seed, epoch, batch, rank)`` only, so a resumed run repeats an uninterrupted
    one whatever else drew random numbers in between (data-loader iterators, validation)."""
    return int(np.random.SeedSequence([seed, epoch, batch, rank]).generate_state(1)[0])


def smoothed_scores(scores: Sequence[float], window: int) -> list[float]:
    """Each epoch's score averaged with the ``window - 1`` epochs before it (fewer at the start),
    NaN epochs left out; NaN when all are NaN."""
    out = []
    for end in range(1, len(scores) + 1):
        part = [v for v in scores[max(0, end - window) : end] if not math.isnan(v)]
        out.append(float(np.mean(part)) if part else math.nan)
    return out


def improvement_epoch(scores: Sequence[float], first_eligible: int, min_delta: float = 0.0) -> int:
    """The last epoch (from ``first_eligible`` on) whose score beat the previous such epoch's by
    more than ``min_delta`` (the first eligible finite score always counts); -1 when none did.
    Patience counts from it; with ``min_delta`` 0 it is the best epoch."""
    reference, epoch = -math.inf, -1
    for i, score in enumerate(scores):
        if i >= first_eligible and score > reference + min_delta:
            reference, epoch = score, i
    return epoch


def _log_epoch(
    row: dict[str, float], best: tuple[int, float], best_r2: float, config: TrainingConfig, seconds: float
) -> None:
    train = f"train loss {row['train_loss']:.4f}" if "train_loss" in row else "train loss n/a"
    tune_loss = f", tune loss {row['tune_loss']:.4f}" if "tune_loss" in row else ""
    if "tune_genes_mean_pearson" in row:
        tune_loss += f", tune-gene r {row['tune_genes_mean_pearson']:.4f}"
    if best[0] >= 0 and config.output_mode == "scalar" and config.monitor == "tune-loss":
        kept = f"best epoch {best[0]} (tune loss {-best[1]:.4f})"
    elif best[0] >= 0 and config.output_mode == "scalar" and config.monitor == "pearson-tune-genes":
        kept = f"best epoch {best[0]} (tune-gene r {best[1]:.4f})"
    elif best[0] >= 0:
        kept = f"best epoch {best[0]} (tune R2 {best_r2:.4f})"
    else:  # --smooth-epochs: no epoch is eligible before the window is full
        kept = f"best epoch: none yet (smoothing over {config.smooth_epochs} epochs)"
    progress_logger.info(
        "epoch %d/%d: %s%s, tune R2 %.4f, tune r %.4f; %s; %.1f s",
        int(row["epoch"]),
        config.max_epochs,
        train,
        tune_loss,
        row["tune_mean_r2"],
        row["tune_mean_pearson"],
        kept,
        seconds,
    )


def _write_metrics(path: Path, history: list[dict[str, float]]) -> None:
    keys = sorted({k for row in history for k in row}, key=lambda k: (k != "epoch", k))
    from varscore.io.outputguard import atomic_file

    with atomic_file(path) as tmp, open(tmp, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=keys)
        writer.writeheader()
        writer.writerows(history)
