"""Fine-tuning a sequence backbone with PyTorch Lightning (:func:`finetune_sequence_backbone`):
the module-level :class:`VariformerModule` and what runs it: precision, signals, checkpoints,
batch-norm calibration. Imports lightning and torch; the data, losses and metrics it uses live in
:mod:`varscore.training.lightning`, which imports nothing from here."""

from __future__ import annotations

import contextlib
import logging
import math
import os
import time
import warnings
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import lightning as L
import numpy as np
import torch

from varscore.errors import InputError
from varscore.training.lightning import (
    _RESUME_KEYS,
    CHECKPOINT_KEY,
    CHECKPOINT_NAME,
    BatchedPersonGeneDataset,
    FinetuneData,
    PersonGeneDataset,
    SameGeneBatchSampler,
    TrainingConfig,
    TrainingInterrupted,
    TrainingResult,
    _collate,
    _log_epoch,
    _StopSignal,
    _write_metrics,
    batch_seed,
    eval_batches,
    improvement_epoch,
    per_gene_metrics,
    smoothed_scores,
    track_loss,
    variformer_loss,
)

if TYPE_CHECKING:
    from varscore.plugin.contracts import SequenceBackbone

__all__ = ["LoopSetup", "VariformerModule", "finetune_sequence_backbone"]

logger = logging.getLogger("varscore.training.lightning")


@dataclass
class LoopSetup:
    """What the training loop needs besides the network: the settings, whether it trains a
    coverage track, the bin it reads, the parameters frozen while only the head trains, the
    sampler (told each epoch), the number of genes, where metrics and checkpoints go, and the
    settings a resumed run must share (``resume_key``)."""

    config: TrainingConfig
    track_mode: bool
    center: int
    trunk: list[Any]
    train_sampler: SameGeneBatchSampler
    n_genes: int
    out_dir: Path
    checkpoint_path: Path
    resume_key: dict[str, Any]
    trunk_norms: list[Any] = field(default_factory=list)  # the trunk's batch norms (eval mode while frozen)
    n_monitor: int = 0  # monitored tune genes, after the train genes in the tune batches


class VariformerModule(L.LightningModule):
    """The Variformer training loop for one backbone's torch module ``net`` (see
    :func:`varscore.training.lightning.finetune_sequence_backbone`): single-gene batches, the paper's loss on
    the centre bin (or every bin of a coverage track), tune-people metrics after each epoch,
    smoothed early stopping, the best epoch's weights kept, and everything a resumed run needs in
    its checkpoint."""

    def __init__(self, net: torch.nn.Module, loop: LoopSetup) -> None:
        super().__init__()
        self.net = net
        self.loop = loop
        self.outputs: list[tuple[np.ndarray, ...]] = []
        self.history: list[dict[str, float]] = []
        self.best_state: dict[str, torch.Tensor] | None = None
        self.best = (-1, -math.inf)
        self.best_r2 = -math.inf
        self.stopped = False
        self.train_losses: list[float] = []
        self.tune_losses: list[float] = []
        self.epoch_started = time.monotonic()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.net(x)
        config = self.loop.config
        return out[:, :, config.track] if self.loop.track_mode else out[:, self.loop.center, config.track]

    def train(self, mode: bool = True) -> VariformerModule:
        super().train(mode)
        if mode and self.loop.config.freeze_batchnorm:
            for sub in self.net.modules():
                if isinstance(sub, torch.nn.modules.batchnorm._BatchNorm):
                    sub.eval()
        if mode and self.trunk_frozen():  # a frozen trunk keeps its batch-norm statistics too
            for sub in self.loop.trunk_norms:
                sub.eval()
        return self

    def trunk_frozen(self) -> bool:
        config = self.loop.config
        return bool(self.loop.trunk) and (config.freeze_backbone or self.current_epoch < config.freeze_trunk_epochs)

    def on_train_start(self) -> None:
        if self.stopped:  # resumed from the checkpoint of the epoch that stopped early
            self.trainer.should_stop = True

    def on_train_epoch_start(self) -> None:
        self.loop.train_sampler.set_epoch(self.current_epoch)
        frozen = self.trunk_frozen()
        for param in self.loop.trunk:
            param.requires_grad_(not frozen)
        self.train()
        self.epoch_started = time.monotonic()

    def on_train_batch_start(self, batch: Any, batch_idx: int) -> None:
        torch.manual_seed(batch_seed(self.loop.config.seed, self.current_epoch, batch_idx, self.global_rank))

    def loss(self, pred: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        if self.loop.track_mode:
            return track_loss(pred, y, self.loop.config.track_loss)
        return variformer_loss(pred, y, self.loop.config.mse_weight)

    def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        x, y, _, _ = batch
        loss = self.loss(self(x), y)
        self.train_losses.append(float(loss.detach()))
        return loss

    def validation_step(self, batch: Any, batch_idx: int) -> None:
        x, y, genes, _ = batch
        pred = self(x).float()
        train_gene = bool((genes < self.loop.n_genes).all())  # the tune loss is over train genes
        if self.loop.track_mode:  # metrics on each person's total coverage; the loss on every bin
            if train_gene:
                self.tune_losses.append(float(self.loss(pred, y)) * len(y))
            pred, y = pred.sum(dim=1), y.sum(dim=1)
        elif self.loop.config.monitor == "tune-loss" and train_gene:
            self.tune_losses.append(float(self.loss(pred, y)) * len(y))
        self.outputs.append((genes.cpu().numpy(), pred.cpu().numpy(), y.cpu().numpy()))

    def on_validation_epoch_end(self) -> None:
        if not self.outputs:
            return
        genes, pred, target = (np.concatenate(parts) for parts in zip(*self.outputs, strict=True))
        self.outputs.clear()
        n_genes = self.loop.n_genes
        metrics = per_gene_metrics(genes, pred, target, n_genes + self.loop.n_monitor)
        monitored = [m[1] for m in metrics[n_genes:] if not math.isnan(m[1])]
        metrics = metrics[:n_genes]
        r2 = float(np.nanmean([m[0] for m in metrics]))
        pearson = [m[1] for m in metrics if not math.isnan(m[1])]
        tune_loss = sum(self.tune_losses) / int((genes < n_genes).sum()) if self.tune_losses else None
        self.tune_losses.clear()
        if self.trainer.sanity_checking:
            return
        # every rank evaluates all tune people, so the metrics are the same everywhere
        row = {
            "epoch": float(self.current_epoch),
            "tune_mean_r2": r2,
            "tune_mean_pearson": float(np.mean(pearson)) if pearson else math.nan,
        }
        if tune_loss is not None:
            row["tune_loss"] = float(tune_loss)
        if self.loop.n_monitor:
            row["tune_genes_mean_pearson"] = float(np.mean(monitored)) if monitored else math.nan
        if self.train_losses:  # this rank's mean loss over the epoch's batches
            row["train_loss"] = float(np.mean(self.train_losses))
            self.train_losses.clear()
        self.history.append(row)
        config = self.loop.config
        smoothed = smoothed_scores([self.score(h) for h in self.history], config.smooth_epochs)
        score = smoothed[-1]
        # a smoothed score counts once its window is full (or the run is shorter than the window):
        # an average over the first one or two epochs is the lucky single epoch smoothing is against
        first_eligible = min(config.smooth_epochs, config.max_epochs) - 1
        eligible = self.current_epoch >= first_eligible
        if eligible and score > self.best[1]:
            self.best = (self.current_epoch, score)
            self.best_r2 = r2
            self.best_state = {k: v.detach().cpu().clone() for k, v in self.net.state_dict().items()}
        improved = improvement_epoch(smoothed, first_eligible, config.min_delta)
        if eligible and self.current_epoch - max(improved, first_eligible - 1) >= config.patience:
            self.stopped = True
            self.trainer.should_stop = True
        if self.trainer.is_global_zero:
            _write_metrics(self.loop.out_dir / "metrics.csv", self.history)
            _log_epoch(row, self.best, self.best_r2, config, time.monotonic() - self.epoch_started)

    def score(self, row: dict[str, float]) -> float:
        """What early stopping and the kept epoch follow, higher is better: the tune loss's negative in
        track mode and with monitor ``tune-loss``, else the mean tune R² over train genes or (monitor
        ``pearson-tune-genes``) the mean tune Pearson r over the monitored tune genes."""
        monitor = self.loop.config.monitor
        if (self.loop.track_mode or monitor == "tune-loss") and "tune_loss" in row:
            return -row["tune_loss"]
        if monitor == "pearson-tune-genes":
            return row.get("tune_genes_mean_pearson", math.nan)
        return row["tune_mean_r2"]

    def configure_optimizers(self) -> Any:
        config = self.loop.config
        return torch.optim.AdamW(self.net.parameters(), lr=config.lr, weight_decay=config.weight_decay)

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint[CHECKPOINT_KEY] = {
            "history": [dict(row) for row in self.history],
            "best_epoch": int(self.best[0]),
            "best_score": float(self.best[1]),
            "best_r2": float(self.best_r2),
            "stopped": bool(self.stopped),
            "best_state": self.best_state,
            "settings": self.loop.resume_key,
        }

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        state = checkpoint.get(CHECKPOINT_KEY)
        checkpoint_path, resume_key = self.loop.checkpoint_path, self.loop.resume_key
        if state is None:
            raise InputError(f"{checkpoint_path} was not written by varscore finetune; it cannot be resumed.")
        saved = {**_RESUME_DEFAULTS, **state["settings"]}  # checkpoints written before these settings existed
        differ = sorted(k for k in resume_key if saved.get(k) != resume_key[k])
        if differ:
            raise InputError(
                f"--resume: {checkpoint_path} was written with other settings or data ({', '.join(differ)}); "
                "resume with the same command, or start afresh in another output directory."
            )
        self.history = [dict(row) for row in state["history"]]
        self.best = (int(state["best_epoch"]), float(state["best_score"]))
        self.best_r2 = float(state["best_r2"])
        self.stopped = bool(state["stopped"])
        self.best_state = state["best_state"]


def _precision(config: TrainingConfig) -> str:
    if config.precision != "auto":
        return config.precision
    import torch

    if torch.cuda.is_available() and config.accelerator in ("auto", "gpu", "cuda") and torch.cuda.is_bf16_supported():
        return "bf16-mixed"
    return "32-true"


def _quiet_lightning() -> None:
    """Lightning's start-up lines (accelerator report, product tips) go to its INFO level, once:
    its own stream handler is removed so records reach the application's handlers only, and its
    INFO lines show only when the application logs at DEBUG (``varscore -vv``)."""
    app_level = logging.getLogger().getEffectiveLevel()
    for name in ("lightning.pytorch", "lightning.fabric", "pytorch_lightning", "lightning_fabric"):
        lib = logging.getLogger(name)
        for handler in list(lib.handlers):
            if type(handler) is logging.StreamHandler:
                lib.removeHandler(handler)
        lib.propagate = True
        lib.setLevel(logging.DEBUG if app_level <= logging.DEBUG else logging.WARNING)


def finetune_sequence_backbone(
    backbone: SequenceBackbone, data: FinetuneData, config: TrainingConfig
) -> TrainingResult:
    """Fine-tune ``backbone`` (built, with a ``torch_module()``) on ``data``; keep the best epoch.

    Each epoch: train genes × ``people_per_epoch`` train people in single-gene batches, then the
    mean per-gene R² over tune people (``tune_mean_r2``); early stopping on it (averaged over the
    last ``smooth_epochs`` epochs) with ``patience``. Writes ``metrics.csv`` and, after every
    epoch, ``checkpoints/last.ckpt`` under ``output_dir``: model and optimizer state with the best
    epoch's weights, the best score and the epoch history, so ``resume`` continues exactly where the
    run stopped (each batch's randomness is seeded by :func:`batch_seed`). On return the backbone
    holds the best epoch's weights. One INFO line per epoch goes to the ``varscore.progress``
    logger. SIGTERM and SIGINT stop training with :class:`TrainingInterrupted`, the checkpoint of
    the last finished epoch kept.

    With ``config.output_mode == "track"`` the model learns every bin of track ``config.track``
    from ``GeneData.coverage`` (loss :func:`track_loss`), and ``tune_mean_r2`` is the per-gene R²
    of the total predicted vs observed coverage over the window; early stopping and the kept epoch
    follow the tune loss (``tune_loss``).
    ``config.freeze_trunk_epochs`` trains only ``backbone.head_module()`` for the
    first epochs, ``config.freeze_backbone`` throughout; while frozen, the trunk's batch norms stay
    in eval mode, so every trunk tensor keeps its value. ``config.monitor`` chooses what early
    stopping and the kept epoch follow (``pearson-tune-genes``: the mean tune Pearson r of
    ``data.monitor_genes``, which are evaluated but never trained on; ``tune-loss``: the tune
    loss), and ``config.min_delta`` the smallest gain that restarts patience.
    """
    backbone.check_finetune(config)
    import lightning as L
    import torch
    from torch.utils.data import DataLoader

    _quiet_lightning()
    out_dir = Path(config.output_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    net = backbone.torch_module()
    n_bins = backbone.window_size // backbone.bin_size
    center = config.center_bin if config.center_bin is not None else n_bins // 2
    track_mode = config.output_mode == "track"
    dataset_class = BatchedPersonGeneDataset if config.batched_loader else PersonGeneDataset
    dataset = dataset_class(data, track=track_mode)
    if track_mode:
        wrong = [g.gene.label for g in data.genes if g.coverage is not None and g.coverage.shape[1] != n_bins]
        if wrong:
            raise InputError(f"Coverage of {', '.join(wrong[:5])} does not have the model's {n_bins} bins.")
    trunk: list[Any] = []
    trunk_norms: list[Any] = []
    if config.freeze_trunk_epochs or config.freeze_backbone:
        if not backbone.has_head_module:
            raise InputError(
                f"Backbone '{backbone.name}' does not name its output layer, so its trunk cannot be frozen "
                "(--freeze-backbone, --freeze-trunk-epochs); train all layers instead."
            )
        head = backbone.head_module()
        head_ids = {id(p) for p in head.parameters()}
        trunk = [p for p in net.parameters() if id(p) not in head_ids]
        head_modules = {id(m) for m in head.modules()}
        trunk_norms = [
            m
            for m in net.modules()
            if isinstance(m, torch.nn.modules.batchnorm._BatchNorm) and id(m) not in head_modules
        ]
    if config.monitor == "pearson-tune-genes" and not data.monitor_genes:
        raise InputError("Early stopping on tune genes (--monitor pearson-tune-genes) needs --tune-genes.")
    n_genes, n_people = len(data.genes), len(data.people)
    n_monitor = len(data.monitor_genes)
    tune_dataset = dataset
    if n_monitor:
        tune_data = FinetuneData(data.genes + data.monitor_genes, data.people, data.train, data.tune, data.test)
        tune_dataset = dataset_class(tune_data, track=track_mode)
    train_sampler = SameGeneBatchSampler(
        n_genes, n_people, data.train, config.batch_size, config.accumulate, config.people_per_epoch, config.seed
    )
    tune_batches = eval_batches(n_people, range(n_genes + n_monitor), data.tune, config.batch_size)
    loader_args: dict[str, Any] = {
        "collate_fn": _collate,
        "num_workers": config.num_workers,
        "persistent_workers": config.num_workers > 0,
    }
    train_loader: Any = DataLoader(dataset, batch_sampler=train_sampler, **loader_args)  # type: ignore[arg-type]
    tune_loader: Any = DataLoader(tune_dataset, batch_sampler=tune_batches, **loader_args)  # type: ignore[arg-type]
    resume_key = {k: getattr(config, k) for k in _RESUME_KEYS} | {
        "genes": [g.gene.gene_id for g in data.genes],
        "train": [data.people[i] for i in data.train],
        "tune": [data.people[i] for i in data.tune],
        "monitor_genes": [g.gene.gene_id for g in data.monitor_genes],
    }

    checkpoints = out_dir / "checkpoints"
    checkpoint_path = checkpoints / CHECKPOINT_NAME
    ckpt_path = str(checkpoint_path) if config.resume and checkpoint_path.exists() else None
    if config.resume and ckpt_path is None:
        logger.warning("--resume: no checkpoint at %s; starting from the beginning", checkpoint_path)
    if ckpt_path is not None:
        check_resume_checkpoint(checkpoint_path)
    if config.freeze_batchnorm and ckpt_path is None:
        _calibrate_batchnorm(net, dataset, eval_batches(n_people, range(n_genes), data.train, config.batch_size))
    setup = LoopSetup(
        config, track_mode, center, trunk, train_sampler, n_genes, out_dir, checkpoint_path, resume_key, trunk_norms
    )
    setup.n_monitor = n_monitor
    module = VariformerModule(net, setup)
    saved: list[int] = []  # epochs whose checkpoint was written
    module.train()  # backbones are built in eval mode; Lightning keeps submodules as it finds them
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
        callbacks=[_checkpoint_callback(checkpoint_path, saved)],
        logger=False,
        enable_progress_bar=config.progress,
        enable_model_summary=False,
        num_sanity_val_steps=0,
        use_distributed_sampler=False,
        default_root_dir=str(out_dir),
    )
    with _stop_on_signals() as received, warnings.catch_warnings():
        warnings.filterwarnings(
            "ignore", message=".*(LeafSpec|does not have many workers|num_workers|in eval mode at the start).*"
        )
        try:
            trainer.fit(module, train_loader, tune_loader, ckpt_path=ckpt_path, weights_only=True)
        except _StopSignal:
            pass
    if received:
        raise _interrupted(received[0], saved[-1] if saved else None, checkpoint_path)
    if module.best_state is not None:
        net.load_state_dict(module.best_state)
    elif module.history:  # the same on every rank: each evaluates all tune people
        # every epoch's monitored score was NaN: no epoch can be kept, and saving the last one as the
        # best (reported as 'best epoch -1, tune mean R2 -inf') would pass an untested model off as chosen
        raise InputError(
            f"No epoch of {len(module.history)} had a defined '{config.monitor}' score (NaN every time: constant "
            "predictions, or too few tune people or tune genes to correlate), so none can be kept and no model "
            "was written; monitor another score (--monitor), train longer or on more people."
        )
    net.eval()
    return TrainingResult(
        history=module.history,
        best_epoch=int(module.best[0]),
        best_tune_r2=float(module.best_r2),
        is_global_zero=trainer.is_global_zero,
        config=asdict(config),
    )


#: Resume settings a checkpoint written before they existed was trained with.
_RESUME_DEFAULTS: dict[str, Any] = {"monitor": "r2-train-genes", "freeze_backbone": False, "monitor_genes": []}

#: What :meth:`VariformerModule.on_save_checkpoint` stores, by the type each entry must have.
_CHECKPOINT_FIELDS: dict[str, type | tuple[type, ...]] = {
    "history": list,
    "best_epoch": int,
    "best_score": (int, float),
    "best_r2": (int, float),
    "stopped": bool,
    "best_state": (dict, type(None)),
    "settings": dict,
}


def check_resume_checkpoint(path: Path) -> None:
    """Refuse, in one line, a ``--resume`` checkpoint that is not one ``varscore finetune`` wrote:
    a file ``torch.load(weights_only=True)`` refuses (a pickle of other objects, random bytes, a
    truncated file; nothing but tensors and plain containers is ever unpickled), or one without
    the training state varscore keeps. The file is opened memory-mapped (as the zip-format file
    Lightning writes), so its tensors are not read into memory a second time."""
    restart = f"rerun without --resume to start afresh, or delete {path}."
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the unpickler's notes on protocols; the error says enough
            loaded = torch.load(str(path), map_location="cpu", weights_only=True, mmap=True)
    except Exception as err:  # pickle, zip and torch errors of several types
        text = str(err).strip()
        if "mmap" in text or "zip" in text.lower():
            reason = "it is not a zip-format torch checkpoint"
        elif "Weights only load failed" in text:
            reason = "it holds objects other than tensors, which varscore never unpickles"
        else:
            reason = f"it cannot be read: {(text.splitlines()[0] if text else type(err).__name__)[:200]}"
        raise InputError(f"--resume: {path} is not a varscore training checkpoint ({reason}); {restart}") from err
    state = loaded.get(CHECKPOINT_KEY) if isinstance(loaded, dict) else None
    wrong = (
        sorted(k for k, kind in _CHECKPOINT_FIELDS.items() if not isinstance(state.get(k), kind))
        if isinstance(state, dict)
        else [CHECKPOINT_KEY]
    )
    if wrong or not isinstance(loaded.get("state_dict"), dict):
        raise InputError(
            f"--resume: {path} is not a varscore training checkpoint (it lacks {', '.join(wrong) or 'state_dict'}); "
            f"{restart}"
        )


def _interrupted(signum: int, saved_epoch: int | None, checkpoint: Path) -> TrainingInterrupted:
    import signal

    name = signal.Signals(signum).name
    if checkpoint.exists():
        done = f"epoch {saved_epoch}" if saved_epoch is not None else "an earlier run"
        message = (
            f"fine-tuning stopped by {name}; the checkpoint of {done} is kept in {checkpoint}: "
            "run the same command with --resume to continue from it."
        )
    else:
        message = f"fine-tuning stopped by {name} before the first epoch finished; there is nothing to resume."
    return TrainingInterrupted(message, signum)


@contextlib.contextmanager
def _stop_on_signals() -> Iterator[list[int]]:
    """While active, SIGTERM and SIGINT are recorded in the yielded list and the first one raises
    :class:`_StopSignal` (main thread only; elsewhere nothing is installed)."""
    import signal
    import threading

    received: list[int] = []
    if threading.current_thread() is not threading.main_thread():
        yield received
        return
    armed = [True]
    main_pid = os.getpid()

    def handler(signum: int, frame: Any) -> None:
        if os.getpid() != main_pid:
            return  # a data-loader worker: the main process stops and shuts it down
        received.append(signum)
        if armed[0] and len(received) == 1:
            raise _StopSignal(signum)

    saved = {s: signal.signal(s, handler) for s in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield received
    finally:
        armed[0] = False
        for s, previous in saved.items():
            signal.signal(s, previous)


def _checkpoint_callback(path: Path, saved: list[int]) -> Any:
    """A Lightning ``Checkpoint`` callback writing ``path`` atomically at the end of every training
    epoch (after validation, so it holds that epoch's history and best weights); appends the
    epoch to ``saved``."""
    import lightning as L

    from varscore.io.outputguard import replace_file

    class EpochCheckpoint(L.pytorch.callbacks.Checkpoint):
        def on_train_epoch_end(self, trainer: Any, pl_module: Any) -> None:
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_name(f".{path.name}.part")  # removed as a leftover by the output guard
            trainer.save_checkpoint(tmp)
            if trainer.is_global_zero:
                replace_file(tmp, path)
            saved.append(int(trainer.current_epoch))

    return EpochCheckpoint()


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
