"""A genotype backbone defined only in the tests, registered the way a third-party plugin is: a
per-gene *carrier* model, prediction = intercept + Σ w_j · [dosage_j ≥ 1] over the ``top`` variants
with the strongest marginal association on the train people (least squares on their carrier
indicators). It is deliberately not additive in dosage, so its variant effect (ALT homozygous vs
all reference) is ``w_j``, not ``2 w_j``: the core must take effects from the contract, not from an
assumption about linear models."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from varscore.errors import InputError
from varscore.genome.personal import imputed_dosage, variant_keys
from varscore.plugin.contracts import GenotypeBackbone, GenotypeFitResult
from varscore.plugin.hookspecs import hookimpl

WEIGHTS_FILE = "weights.safetensors"


class CarrierBackbone(GenotypeBackbone):
    name: ClassVar[str] = "carrier"
    output_modes: ClassVar[tuple[str, ...]] = ("scalar",)
    default_params: ClassVar[dict[str, Any]] = {"window_size": 2048, "top": 3}

    @property
    def window_size(self) -> int:
        return int(self.params["window_size"])

    def build(self) -> CarrierBackbone:
        # gene id -> (variant keys, weights, intercept)
        self.model_: dict[str, tuple[list[str], np.ndarray, float]] = {}
        return self

    def gene_ids(self) -> list[str]:
        self._require_built()
        return list(self.model_)

    def _gene(self, gene_id: str) -> tuple[list[str], np.ndarray, float]:
        if gene_id not in self.gene_ids():
            raise InputError(f"Model '{self.name}' has no gene '{gene_id}'.")
        return self.model_[gene_id]

    def variant_keys(self, gene_id: str) -> list[str]:
        return list(self._gene(gene_id)[0])

    def predict_dosages(self, gene_id: str, dosages: np.ndarray) -> np.ndarray:
        keys, weights, intercept = self._gene(gene_id)
        dosages = np.asarray(dosages, dtype=np.float64)
        if dosages.ndim != 2 or dosages.shape[1] != len(keys):
            raise InputError(f"Gene '{gene_id}' takes (N, {len(keys)}) dosages; got {dosages.shape}.")
        return intercept + (dosages >= 1).astype(np.float64) @ weights

    def fit_gene(self, gene_id: str, keys: list[str], dosage: np.ndarray, y: np.ndarray) -> None:
        carrier = (dosage >= 1).astype(np.float64)
        spread = carrier.std(axis=0)
        score = np.zeros(len(keys))
        usable = spread > 0
        if usable.any():
            centred = carrier[:, usable] - carrier[:, usable].mean(axis=0)
            score[usable] = np.abs(centred.T @ (y - y.mean())) / (spread[usable] * len(y))
        chosen = [int(j) for j in np.argsort(-score, kind="stable")[: int(self.params["top"])] if score[j] > 0]
        design = np.column_stack([np.ones(len(y)), carrier[:, chosen]])
        solution, *_ = np.linalg.lstsq(design, y, rcond=None)
        self.model_[gene_id] = ([keys[j] for j in chosen], solution[1:].astype(np.float64), float(solution[0]))

    def finetune(self, data: Any, config: Any = None) -> GenotypeFitResult:
        if not self.is_built:
            self.build()
        train, tune = np.asarray(data.train), np.asarray(data.tune)
        rows, imputed = [], 0
        for gene_data in data.genes:
            genotypes = gene_data.windows.genotypes
            dosage, n_missing = imputed_dosage(genotypes, train)
            imputed += n_missing
            y = np.asarray(gene_data.expression, dtype=np.float64)
            gene_id = gene_data.gene.gene_id
            self.fit_gene(gene_id, variant_keys(genotypes), dosage[train], y[train])
            pred, _ = self.predict_aligned(gene_id, variant_keys(genotypes), dosage[tune])
            ss_res = float(((y[tune] - pred) ** 2).sum())
            ss_tot = float(((y[tune] - y[tune].mean()) ** 2).sum())
            rows.append({"gene": gene_id, "tune_r2": 1 - ss_res / ss_tot if ss_tot > 0 else math.nan})
        r2s = [r["tune_r2"] for r in rows if not math.isnan(r["tune_r2"])]
        return GenotypeFitResult(rows, float(np.mean(r2s)) if r2s else math.nan, imputed)

    def save(self, directory: Path) -> None:
        from safetensors.numpy import save_file

        genes = self.gene_ids()
        tensors = {
            "intercepts": np.array([self.model_[g][2] for g in genes], dtype=np.float64),
            "weights": np.concatenate([self.model_[g][1] for g in genes] or [np.zeros(0)]).astype(np.float64),
        }
        meta = {"genes": genes, "keys": [self.model_[g][0] for g in genes]}
        Path(directory).mkdir(parents=True, exist_ok=True)
        save_file(tensors, str(Path(directory) / WEIGHTS_FILE), metadata={"carrier": json.dumps(meta)})

    def load(self, directory: Path) -> CarrierBackbone:
        from safetensors import safe_open

        with safe_open(str(Path(directory) / WEIGHTS_FILE), framework="numpy") as handle:
            meta = json.loads((handle.metadata() or {})["carrier"])
            intercepts, weights = handle.get_tensor("intercepts"), handle.get_tensor("weights")
        self.build()
        start = 0
        for gene_id, keys, intercept in zip(meta["genes"], meta["keys"], intercepts, strict=True):
            self.model_[gene_id] = (list(keys), weights[start : start + len(keys)].copy(), float(intercept))
            start += len(keys)
        return self


@hookimpl
def register_backbones(register):  # type: ignore[no-untyped-def]
    register(CarrierBackbone)
