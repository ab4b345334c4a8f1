"""Learning-rate selection: one run per fine-tuned variant, chosen on the validation split.

Every rate of a variant's sweep is trained (``results/<study>/train/<variant>/lr<rate>/``).
The workflow's checkpoint ``select_learning_rate`` reads their training metrics and writes
``results/<study>/train/<variant>/selection.json``; only the selected run is evaluated.

The measure is the validation loss after training: the mean completion-token cross-entropy
on the task's validation rows (``valid.jsonl``, carved from the training source, disjoint
from train and eval). It is the training objective itself, costs no generation, and exists
for every task kind; a task metric on the validation rows would need a generation pass per
run. The lowest loss wins (a tie goes to the smaller rate). A run whose loss is not finite
(it diverged) is never selected. The eval set is read by neither training nor selection.

A selected rate at either end of a sweep of two or more rates is flagged (``at_edge``):
the best rate may lie outside the sweep, so the journal asks to widen it.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar, Sequence

from ftmatrix.errors import DataError
from ftmatrix.grid import run_from_path
from ftmatrix.numeric import finite
from ftmatrix.records import Record, TrainMetrics

log = logging.getLogger("ftmatrix.selection")

MEASURE = "validation loss after training (mean completion-token loss on the validation split)"


@dataclass
class LrSelection(Record):
    """The runs of one variant's learning-rate sweep and the one selected (selection.json)."""

    WHAT: ClassVar[str] = "learning-rate selection"
    WRITTEN_BY: ClassVar[str] = "select_learning_rate"

    variant: str                 # the variant's path ({model}/{method}/r{rank}/{train_task}/seed{seed})
    measure: str
    runs: list                   # [{lr, learning_rate, valid_loss_before, valid_loss_after, train_metrics}, …]
    selected: str                # the selected run's lr, as in its path
    selected_learning_rate: float
    at_edge: str | None          # "lowest" / "highest" rate of the sweep, or None

    def run_path(self) -> str:
        return f"{self.variant}/lr{self.selected}"


def select(metrics_files: Sequence[str | Path]) -> LrSelection:
    """The selection among the runs whose train_metrics.json are given (one variant's sweep)."""
    if not metrics_files:
        raise DataError("select_learning_rate: no training runs given; the variant has no learning rate to "
                        "choose from (check train.learning_rate).")
    runs, variant = [], None
    for path in metrics_files:
        run = run_from_path(path)
        if variant is not None and run.variant != variant:
            raise DataError(f"{path}: belongs to {run.variant.path}, not to {variant.path}; a selection "
                            f"compares the runs of one variant.")
        variant = run.variant
        metrics = TrainMetrics.read(path)
        runs.append({"lr": run.lr, "learning_rate": run.learning_rate,
                     "valid_loss_before": metrics.heldout_loss_before,
                     "valid_loss_after": metrics.heldout_loss_after, "train_metrics": str(path)})
    runs.sort(key=lambda r: r["learning_rate"])
    usable = [r for r in runs if finite(r["valid_loss_after"])]
    if not usable:
        listed = ", ".join(f"lr {r['lr']}: {r['valid_loss_after']}" for r in runs)
        raise DataError(f"{variant.path}: no run of the learning-rate sweep has a finite validation loss "
                        f"({listed}); every rate diverged. Lower train.learning_rate.{variant.method} and rerun.")
    best = min(usable, key=lambda r: (r["valid_loss_after"], r["learning_rate"]))
    at_edge = None
    if len(runs) >= 2:
        if best is runs[0]:
            at_edge = "lowest"
        elif best is runs[-1]:
            at_edge = "highest"
    return LrSelection(variant=variant.path, measure=MEASURE, runs=runs, selected=best["lr"],
                       selected_learning_rate=best["learning_rate"], at_edge=at_edge)


def select_learning_rate(metrics_files: Sequence[str | Path], selection_file: str | Path) -> LrSelection:
    """Write selection.json for one variant; logs the sweep and the choice."""
    selection = select(metrics_files)
    for run in selection.runs:
        mark = "  <- selected" if run["lr"] == selection.selected else ""
        log.info("%s lr %s: validation loss %.4f -> %.4f%s", selection.variant, run["lr"],
                 run["valid_loss_before"], run["valid_loss_after"], mark)
    if selection.at_edge:
        log.warning("%s: the selected rate %s is the %s of the sweep; the best rate may lie outside it "
                    "(widen the sweep).", selection.variant, selection.selected, selection.at_edge)
    selection.write(selection_file)
    return selection


# --------------------------------------------------------------------------- the sweep table

SWEEP_COLUMNS = ["model", "method", "rank", "train_task", "seed", "lr", "learning_rate", "valid_loss_before",
                 "valid_loss_after", "diverged", "selected", "at_edge", "n_rates"]


def sweep_rows(selection_files: Sequence[str | Path]) -> list[dict]:
    """One row per training run: its rate, validation losses, and whether it was selected."""
    from ftmatrix.grid import variant_from_path

    rows = []
    for path in selection_files:
        selection = LrSelection.read(path)
        variant = variant_from_path(selection.variant)
        for run in selection.runs:
            rows.append({"model": variant.model, "method": variant.method, "rank": variant.rank,
                         "train_task": variant.train_task, "seed": variant.seed, "lr": run["lr"],
                         "learning_rate": run["learning_rate"], "valid_loss_before": run["valid_loss_before"],
                         "valid_loss_after": run["valid_loss_after"],
                         "diverged": not finite(run["valid_loss_after"]),
                         "selected": run["lr"] == selection.selected, "at_edge": selection.at_edge or "",
                         "n_rates": len(selection.runs)})
    return rows


def write_sweep_table(selection_files: Sequence[str | Path], out_file: str | Path) -> Path:
    """results/<study>/analysis/lr_sweep.csv: every run of every variant's sweep."""
    import pandas as pd

    from ftmatrix.io import write_text

    table = pd.DataFrame(sweep_rows(selection_files), columns=SWEEP_COLUMNS)
    write_text(out_file, table.to_csv(index=False))
    log.info("learning-rate sweeps: %d runs of %d variants -> %s", len(table), len(selection_files), out_file)
    return Path(out_file)


def read_sweep_table(path: str | Path):
    import pandas as pd

    if not Path(path).is_file():
        raise DataError(f"{path}: the learning-rate sweep table is missing; run `snakemake --cores all {path}` "
                        f"(with the study's --configfile).")
    return pd.read_csv(path, dtype={"lr": str, "at_edge": str}, keep_default_na=False,
                       na_values={"valid_loss_before": ["", "nan"], "valid_loss_after": ["", "nan"]})
