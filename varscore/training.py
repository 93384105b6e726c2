"""Variformer fine-tuning, backbone-agnostic: the paper's loss, batches of different people of one
gene (also under DDP), per-gene tune-people R² with early stopping, on PyTorch Lightning.

torch and lightning are imported inside functions so that importing this module stays cheap.
"""

from __future__ import annotations

import csv
import logging
import math
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from varscore.errors import InputError

if TYPE_CHECKING:
    import torch

    from varscore.personal import PersonalWindows
    from varscore.types import Gene

logger = logging.getLogger(__name__)


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
        }
        bad = [name for name, ok in checks.items() if not ok]
        if bad:
            values = ", ".join(f"{name}={getattr(self, name)!r}" for name in bad)
            raise InputError(
                f"Invalid training settings: {values} (batch size >= 2 for the pairwise loss, "
                "positive learning rate and counts, mse_weight in [0, 1])."
            )


@dataclass
class GeneData:
    """One gene's personal windows and expression, people in the cohort's order.

    ``expression``: ``(P,)`` float32; ``windows`` builds ``(B, L, 4)`` batches of those people.
    """

    gene: Gene
    windows: PersonalWindows
    expression: np.ndarray


@dataclass
class FinetuneData:
    """Everything fine-tuning needs: genes (train genes only) and the people's fold split.

    ``train``, ``tune``, ``test``: indices into ``people``.
    """

    genes: list[GeneData]
    people: list[str]
    train: np.ndarray
    tune: np.ndarray
    test: np.ndarray = field(default_factory=lambda: np.empty(0, dtype=np.int64))

    def __post_init__(self) -> None:
        if not self.genes:
            raise InputError("No genes to train on.")
        if len(self.train) < 2 or len(self.tune) < 2:
            raise InputError(
                f"Fine-tuning needs at least 2 train and 2 tune people; got {len(self.train)} and {len(self.tune)}."
            )


class PersonGeneDataset:
    """Map-style dataset over ``gene_index * n_people + person_index``.

    Item: ``(x (L, 4) float32, y float32, gene index, person index)``.
    """

    def __init__(self, data: FinetuneData) -> None:
        self.data = data
        self.n_people = len(data.people)

    def __len__(self) -> int:
        return len(self.data.genes) * self.n_people

    def __getitem__(self, index: int) -> tuple[np.ndarray, np.float32, int, int]:
        gene_index, person = divmod(int(index), self.n_people)
        gene = self.data.genes[gene_index]
        x = gene.windows.batch([person])[0].astype(np.float32, copy=False)
        return x, np.float32(gene.expression[person]), gene_index, person


class SameGeneBatchSampler:
    """Yields batches (lists of dataset indices) of different people of one gene.

    Per epoch and gene, ``people_per_epoch`` people are drawn (rounded down to a whole number of
    ``batch_size × accumulate × world_size``, as the paper's 512 = 4 × 128) and cut into batches;
    the ``accumulate`` consecutive batches a rank sees between optimizer steps share the gene,
    and under DDP every rank steps through the same gene at the same time with different people.
    Every rank yields the same number of batches. ``rank``/``world_size`` default to
    ``torch.distributed``'s when it is initialised.
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
        shuffle: bool = True,
        rank: int | None = None,
        world_size: int | None = None,
    ) -> None:
        self.n_genes = n_genes
        self.n_people = n_people
        self.people = np.asarray(people, dtype=np.int64)
        self.batch_size = batch_size
        self.accumulate = accumulate
        self.people_per_epoch = people_per_epoch or len(self.people)
        self.seed = seed
        self.shuffle = shuffle
        self._rank = rank
        self._world_size = world_size
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def _dist(self) -> tuple[int, int]:
        if self._rank is not None and self._world_size is not None:
            return self._rank, self._world_size
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
        genes = rng.permutation(self.n_genes) if self.shuffle else np.arange(self.n_genes)
        steps: list[list[list[int]]] = []  # one entry per optimizer step: world × accumulate batches
        step_batches = self.accumulate * world
        for gene in genes:
            chosen = rng.choice(self.people, size=per_gene, replace=replace) if self.shuffle else self.people[:per_gene]
            batches = chosen.reshape(-1, self.batch_size)
            for start in range(0, len(batches), step_batches):
                steps.append([list(gene * self.n_people + b) for b in batches[start : start + step_batches]])
        if self.shuffle:
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
    import warnings

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


def _collate(batch: list[tuple[np.ndarray, np.float32, int, int]]) -> tuple[Any, ...]:
    import torch

    x = torch.from_numpy(np.stack([b[0] for b in batch]))
    y = torch.tensor([b[1] for b in batch], dtype=torch.float32)
    genes = torch.tensor([b[2] for b in batch], dtype=torch.long)
    people = torch.tensor([b[3] for b in batch], dtype=torch.long)
    return x, y, genes, people


def _precision(config: TrainingConfig) -> str:
    if config.precision != "auto":
        return config.precision
    import torch

    if torch.cuda.is_available() and config.accelerator in ("auto", "gpu", "cuda") and torch.cuda.is_bf16_supported():
        return "bf16-mixed"
    return "32-true"


def finetune_sequence_backbone(backbone: Any, data: FinetuneData, config: TrainingConfig) -> TrainingResult:
    """Fine-tune ``backbone`` (built, with a ``torch_module()``) on ``data``; keep the best epoch.

    Each epoch: train genes × ``people_per_epoch`` train people in single-gene batches, then the
    mean per-gene R² over tune people (``tune_mean_r2``); early stopping on it with
    ``patience``. Writes ``metrics.csv`` and Lightning checkpoints (``checkpoints/last.ckpt``,
    used by ``resume``) under ``output_dir``. On return the backbone holds the best epoch's
    weights.
    """
    import lightning as L
    import torch
    from torch.utils.data import DataLoader

    out_dir = Path(config.output_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    net = backbone.torch_module()
    n_bins = backbone.window_size // backbone.bin_size
    center = config.center_bin if config.center_bin is not None else n_bins // 2
    dataset = PersonGeneDataset(data)
    n_genes, n_people = len(data.genes), len(data.people)
    train_sampler = SameGeneBatchSampler(
        n_genes, n_people, data.train, config.batch_size, config.accumulate, config.people_per_epoch, config.seed
    )
    tune_batches = eval_batches(n_people, range(n_genes), data.tune, config.batch_size)
    loader_args: dict[str, Any] = {"collate_fn": _collate, "num_workers": config.num_workers}
    train_loader: Any = DataLoader(dataset, batch_sampler=train_sampler, **loader_args)  # type: ignore[arg-type]
    tune_loader: Any = DataLoader(dataset, batch_sampler=tune_batches, **loader_args)  # type: ignore[arg-type]

    class VariformerModule(L.LightningModule):
        def __init__(self) -> None:
            super().__init__()
            self.net = net
            self.outputs: list[tuple[np.ndarray, ...]] = []
            self.history: list[dict[str, float]] = []
            self.best_state: dict[str, torch.Tensor] | None = None
            self.best = (-1, -math.inf)
            self.train_losses: list[float] = []

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.net(x)[:, center, config.track]

        def train(self, mode: bool = True) -> VariformerModule:
            super().train(mode)
            if mode and config.freeze_batchnorm:
                for sub in self.net.modules():
                    if isinstance(sub, torch.nn.modules.batchnorm._BatchNorm):
                        sub.eval()
            return self

        def on_train_epoch_start(self) -> None:
            train_sampler.set_epoch(self.current_epoch)

        def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
            x, y, _, _ = batch
            loss = variformer_loss(self(x), y, config.mse_weight)
            self.train_losses.append(float(loss.detach()))
            self.log("train_loss", loss, on_step=False, on_epoch=True, sync_dist=True, batch_size=len(y))
            return loss

        def validation_step(self, batch: Any, batch_idx: int) -> None:
            x, y, genes, _ = batch
            pred = self(x).float()
            self.outputs.append((genes.cpu().numpy(), pred.cpu().numpy(), y.cpu().numpy()))

        def on_validation_epoch_end(self) -> None:
            if not self.outputs:
                return
            genes, pred, target = (np.concatenate(parts) for parts in zip(*self.outputs, strict=True))
            self.outputs.clear()
            metrics = per_gene_metrics(genes, pred, target, n_genes)
            r2 = float(np.nanmean([m[0] for m in metrics]))
            pearson = [m[1] for m in metrics if not math.isnan(m[1])]
            # every rank evaluates all tune people, so the metric is the same everywhere
            self.log("tune_mean_r2", r2, sync_dist=False)
            self.log("tune_mean_pearson", float(np.mean(pearson)) if pearson else math.nan, sync_dist=False)
            if self.trainer.sanity_checking:
                return
            row = {"epoch": float(self.current_epoch), "tune_mean_r2": r2,
                   "tune_mean_pearson": float(np.mean(pearson)) if pearson else math.nan}
            if self.train_losses:  # this rank's mean loss over the epoch's batches
                row["train_loss"] = float(np.mean(self.train_losses))
                self.train_losses.clear()
            self.history.append(row)
            if r2 > self.best[1]:
                self.best = (self.current_epoch, r2)
                self.best_state = {k: v.detach().cpu().clone() for k, v in self.net.state_dict().items()}
            if self.trainer.is_global_zero:
                _write_metrics(out_dir / "metrics.csv", self.history)

        def configure_optimizers(self) -> Any:
            return torch.optim.AdamW(self.net.parameters(), lr=config.lr, weight_decay=config.weight_decay)

    if config.freeze_batchnorm and not config.resume:
        _calibrate_batchnorm(net, dataset, eval_batches(n_people, range(n_genes), data.train, config.batch_size))
    module = VariformerModule()
    module.train()  # backbones are built in eval mode; Lightning keeps submodules as it finds them
    checkpoints = out_dir / "checkpoints"
    callbacks = [
        L.pytorch.callbacks.EarlyStopping(monitor="tune_mean_r2", mode="max", patience=config.patience),
        L.pytorch.callbacks.ModelCheckpoint(dirpath=checkpoints, save_last=True, save_top_k=0),
    ]
    devices = config.devices
    strategy: Any = "auto"
    if devices > 1:
        strategy = "ddp_find_unused_parameters_true"
    torch.manual_seed(config.seed)
    trainer = L.Trainer(
        max_epochs=config.max_epochs,
        accelerator=config.accelerator,
        devices=devices,
        strategy=strategy,
        precision=_precision(config),  # type: ignore[arg-type]
        gradient_clip_val=config.grad_clip,
        gradient_clip_algorithm="norm",
        accumulate_grad_batches=config.accumulate,
        callbacks=callbacks,
        logger=False,
        enable_progress_bar=config.progress,
        enable_model_summary=False,
        num_sanity_val_steps=0,
        use_distributed_sampler=False,
        default_root_dir=str(out_dir),
    )
    last = checkpoints / "last.ckpt"
    ckpt_path = str(last) if config.resume and last.exists() else None
    if config.resume and ckpt_path is None:
        logger.warning("--resume: no checkpoint at %s; starting from the beginning", last)
    trainer.fit(module, train_loader, tune_loader, ckpt_path=ckpt_path)
    if module.best_state is not None:
        net.load_state_dict(module.best_state)
    net.eval()
    return TrainingResult(
        history=module.history,
        best_epoch=int(module.best[0]),
        best_tune_r2=float(module.best[1]),
        is_global_zero=trainer.is_global_zero,
        config=asdict(config),
    )


def _calibrate_batchnorm(net: Any, dataset: PersonGeneDataset, batches: list[list[int]]) -> None:
    """Re-estimate every batch norm's running mean and variance as a cumulative average over
    ``batches`` (forward passes without gradients; only the batch norms in train mode, so dropout
    stays off and the estimate is deterministic); other weights are unchanged."""
    import torch

    norms = [m for m in net.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    if not norms:
        return
    saved = [(m, m.momentum) for m in norms]
    was_training = net.training
    for m in norms:
        m.reset_running_stats()
        m.momentum = None  # cumulative moving average
    net.eval()
    for m in norms:
        m.train()
    device = next(net.parameters()).device
    with torch.no_grad():
        for batch in batches:
            x = _collate([dataset[i] for i in batch])[0].to(device)
            net(x)
    for m, momentum in saved:
        m.momentum = momentum
    net.train(was_training)


def _write_metrics(path: Path, history: list[dict[str, float]]) -> None:
    keys = sorted({k for row in history for k in row}, key=lambda k: (k != "epoch", k))
    tmp = path.with_suffix(".csv.part")
    with open(tmp, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=keys)
        writer.writeheader()
        writer.writerows(history)
    tmp.replace(path)




@dataclass
class CohortInputs:
    """Paths and choices that define a fine-tuning or evaluation cohort."""

    vcf: Path
    expression: Path
    genes: Path
    fasta: Path
    folds: Path | None = None
    replicate: int = 0
    gene_names: Sequence[str] | None = None


@dataclass
class LoadedCohort:
    """People split into folds and per-gene personal windows + expression."""

    data: FinetuneData
    folds: Any  # pandas DataFrame: person, replicate, split
    report: list[str]


def load_cohort(inputs: CohortInputs, window_size: int, fold_seed: int = 0) -> LoadedCohort:
    """Read the VCF, expression and genes; match people; build per-gene personal windows.

    Folds come from ``inputs.folds`` when given (the same file for every backbone); otherwise
    they are made with ``fold_seed`` (80/10/10, 3 replicates). Genes missing from the
    expression file are reported and skipped; people present on one side only are reported.
    """
    from varscore.cohort import expression_matrix, fold_people, make_folds, match_samples, read_expression, read_folds
    from varscore.genome import Genome, load_genes
    from varscore.personal import GenotypeReader, PersonalWindows
    from varscore.types import tss_window
    from varscore.vcf import vcf_samples

    expression = read_expression(inputs.expression)
    match = match_samples(expression.people, vcf_samples(inputs.vcf))
    people = match.people
    report = [match.report()]
    folds = read_folds(inputs.folds, known_people=people) if inputs.folds else make_folds(people, seed=fold_seed)
    splits = {s: fold_people(folds, inputs.replicate, s) for s in ("train", "tune", "test")}
    position = {p: i for i, p in enumerate(people)}
    genes = load_genes(inputs.genes, names=inputs.gene_names)
    matrix = expression_matrix(expression, genes, people, missing="skip")
    if matrix.missing_genes:
        report.append(f"genes missing from the expression file (skipped): {', '.join(matrix.missing_genes[:10])}")
    kept = {g: i for i, g in enumerate(matrix.genes)}
    genome = Genome(inputs.fasta)
    gene_data = []
    with GenotypeReader(inputs.vcf, samples=people) as reader:
        for gene in genes:
            row = kept.get(gene.gene_id, kept.get(gene.name))
            if row is None:
                continue
            window = tss_window(gene, window_size)
            sequence = genome.window_sequence(window)
            genotypes = reader.read(window, sequence.one_hot)  # REF checked against the same fetch
            gene_data.append(GeneData(gene, PersonalWindows(sequence.one_hot, genotypes), matrix.values[row]))
    if not gene_data:
        raise InputError(f"None of the genes in {inputs.genes} has expression in {inputs.expression}.")
    report.append(
        f"{len(gene_data)} genes; people: {len(splits['train'])} train, {len(splits['tune'])} tune, "
        f"{len(splits['test'])} test (replicate {inputs.replicate})"
    )
    data = FinetuneData(
        genes=gene_data,
        people=people,
        train=np.array([position[p] for p in splits["train"]], dtype=np.int64),
        tune=np.array([position[p] for p in splits["tune"]], dtype=np.int64),
        test=np.array([position[p] for p in splits["test"]], dtype=np.int64),
    )
    return LoadedCohort(data, folds, report)
