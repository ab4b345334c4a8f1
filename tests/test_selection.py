"""Learning-rate selection: the run with the lowest validation loss, flagged at a sweep's edge,
never a diverged run; selection.json is read back by the same record class."""

from __future__ import annotations

import math

import pytest

from ftmatrix import grid
from ftmatrix.errors import DataError
from ftmatrix.selection import LrSelection, select, select_learning_rate
from tests.helpers import train_metrics_record

VARIANT = grid.Variant("demo-small", "lora", 16, "openmath", 0)


def write_runs(root, losses: dict[float, float], variant=VARIANT) -> list:
    files = []
    for rate, loss in losses.items():
        run = grid.Run(variant, grid.lr_text(rate))
        path = root / "results" / "demo" / "train" / run.path / "train_metrics.json"
        train_metrics_record(variant, learning_rate=rate, heldout_loss_before=2.0, heldout_loss_after=loss).write(path)
        files.append(path)
    return files


def test_the_lowest_validation_loss_is_selected_and_written(tmp_path):
    files = write_runs(tmp_path, {1e-3: 0.9, 3e-3: 0.7, 1e-2: 0.8})
    selection = select_learning_rate(files, tmp_path / "selection.json")
    assert selection.selected == "0.003" and selection.selected_learning_rate == 3e-3
    assert selection.at_edge is None
    assert [r["lr"] for r in selection.runs] == ["0.001", "0.003", "0.01"]
    again = LrSelection.read(tmp_path / "selection.json")
    assert again == selection
    assert again.run_path() == f"{VARIANT.path}/lr0.003"


@pytest.mark.parametrize("losses, edge", [
    ({1e-3: 0.5, 3e-3: 0.7, 1e-2: 0.8}, "lowest"),
    ({1e-3: 0.9, 3e-3: 0.7, 1e-2: 0.6}, "highest"),
    ({1e-3: 0.9}, None),
])
def test_a_best_rate_at_the_end_of_the_sweep_is_flagged(tmp_path, losses, edge):
    assert select(write_runs(tmp_path, losses)).at_edge == edge


def test_a_diverged_run_is_never_selected(tmp_path):
    selection = select(write_runs(tmp_path, {1e-3: 0.9, 3e-3: math.nan, 1e-2: math.inf}))
    assert selection.selected == "0.001"


def test_every_run_diverged_is_an_error_naming_the_variant(tmp_path):
    with pytest.raises(DataError, match=r"demo-small/lora/r16/openmath/seed0: no run .* Lower train.learning_rate.lora"):
        select(write_runs(tmp_path, {1e-3: math.nan, 3e-3: math.inf}))


def test_runs_of_two_variants_are_not_compared(tmp_path):
    other = grid.Variant("demo-small", "lora", 64, "openmath", 0)
    files = write_runs(tmp_path, {1e-3: 0.9}) + write_runs(tmp_path, {3e-3: 0.7}, variant=other)
    with pytest.raises(DataError, match="compares the runs of one variant"):
        select(files)
