"""Strict and lenient grading, both recorded: predictions.jsonl, metrics.json, and the choice of headline."""

from __future__ import annotations

import pytest

from ftmatrix import io
from ftmatrix.records import CellMetrics
from ftmatrix.scoring import GRADINGS, score_cell, score_rows
from ftmatrix.tasks import get_task
from ftmatrix.tasks.base import TaskKind
from tests.test_scoring import real_examples, write_cell


def _score(files: dict, kind: str, grading: str) -> CellMetrics:
    settings = {"task": {"name": kind, "kind": kind}, "bootstrap_resamples": 1000, "bootstrap_seed": 0,
                "confidence": 0.95, "grading": grading}
    return score_cell(settings, files["generations"], files["info"], files["eval"], files["predictions"],
                      files["metrics"], "cfg")


def test_arc_cell_records_both_readings_and_the_format_rate(tmp_path, shared_data):
    examples = real_examples(shared_data, "arc", 6)
    gold = [ex["reference"]["label"] for ex in examples]
    # in the asked form: 0 and 3; right but not in form: 1, 2 and 4; a hedge: 5
    generated = [gold[0], f"The answer is {gold[1]}.", f"**{gold[2]}**", gold[3], f"{gold[4]}.",
                 f"{gold[5]} or {'A' if gold[5] != 'A' else 'B'}"]
    files = write_cell(tmp_path, "arc", examples, generated)
    record = _score(files, "arc", "lenient")
    predictions = io.read_jsonl(files["predictions"])
    assert [p["follows_format"] for p in predictions] == [True, False, False, True, False, False]
    assert [p["strict"]["extracted"] for p in predictions] == [gold[0], "", "", gold[3], "", ""]
    assert [p["lenient"]["extracted"] for p in predictions] == gold[:5] + [""]
    assert all(p["extracted"] == p["lenient"]["extracted"] and p["scores"] == p["lenient"]["scores"]
               for p in predictions)
    assert record.grading == "lenient"
    assert record.readings["lenient"]["metrics"]["accuracy"] == pytest.approx(100 * 5 / 6)
    assert record.readings["strict"]["metrics"]["accuracy"] == pytest.approx(100 * 2 / 6)
    assert record.metrics == record.readings["lenient"]["metrics"]
    assert record.format_rate == pytest.approx(100 * 2 / 6)
    low, high = record.format_rate_ci
    assert 0 <= low <= record.format_rate <= high <= 100 and low < high
    for reading in GRADINGS:
        assert set(record.readings[reading]["ci"]) >= {"macro_f1", "accuracy"}
    assert CellMetrics.read(files["metrics"]) == record


def test_the_configured_grading_picks_the_headline(tmp_path, shared_data):
    examples = real_examples(shared_data, "squad_v2", 8)
    answers = [ex["reference"]["answers"] for ex in examples]
    generated = [f"Answer: {a[0]}" if a else "The context does not say." for a in answers]
    lenient = _score(write_cell(tmp_path / "lenient", "squad_v2", examples, generated), "squad_v2", "lenient")
    strict = _score(write_cell(tmp_path / "strict", "squad_v2", examples, generated), "squad_v2", "strict")
    assert lenient.headline.value == 100.0 and lenient.format_rate == 0.0
    assert strict.headline.value < 100.0
    assert strict.headline.value == strict.readings["strict"]["metrics"]["f1"]
    assert strict.readings == lenient.readings     # the same two readings, whichever is the headline
    predictions = io.read_jsonl(tmp_path / "strict" / "squad_v2" / "predictions.jsonl")
    assert all(p["scores"] == p["strict"]["scores"] for p in predictions)


def test_a_kind_without_a_strict_reading_has_one_reading():
    task = get_task("arc")
    plain = TaskKind(kind="plain", headline=task.headline, to_examples=task.to_examples, read_local=task.read_local,
                     dedup_key=task.dedup_key, extract=task.extract, score=task.score, metrics=task.metrics)
    reference = {"label": "B", "labels": ["A", "B", "C", "D"], "choices": ["w", "x", "y", "z"]}
    rows = score_rows(plain, [{"id": "1", "generated": "The answer is B", "reference": reference}], "strict")
    assert rows[0]["strict"] == rows[0]["lenient"] and rows[0]["follows_format"] is True
    with pytest.raises(ValueError, match="evaluate.grading"):
        score_rows(plain, rows, "loose")


def test_vs_base_shows_how_much_of_a_gain_is_format(shared_data):
    """A base model that knows the answers but writes sentences, and a tuned one that answers in
    the asked form: under lenient grading the gain is small; under strict most of it is format."""
    import pandas as pd

    from ftmatrix.analysis import BootstrapSettings, Study, vs_base

    task = get_task("arc")
    examples = real_examples(shared_data, "arc", 40)
    gold = [ex["reference"]["label"] for ex in examples]
    wrong = [next(l for l in ex["reference"]["labels"] if l != g) for ex, g in zip(examples, gold)]
    base_text = [f"The answer is {g}." if i % 4 else f"The answer is {w}." for i, (g, w) in enumerate(zip(gold, wrong))]
    tuned_text = [g if i % 8 else w for i, (g, w) in enumerate(zip(gold, wrong))]
    cells = {"m/base/r0/none/seed0/arc": base_text, "m/full/r0/arc/seed0/arc": tuned_text}
    predictions, rows = {}, []
    for cell, texts in cells.items():
        joined = [{"id": ex["id"], "generated": text, "reference": ex["reference"]} for ex, text in zip(examples, texts)]
        predictions[cell] = score_rows(task, joined, "lenient")
        model, method, rank, train_task, seed, eval_task = cell.split("/")
        rows.append({"model": model, "method": method, "rank": int(rank[1:]), "train_task": train_task, "seed": 0,
                     "eval_task": eval_task, "label": f"{model} {method}", "cell": cell, "task_kind": "arc",
                     "model_params": 1e6, "headline_metric": "accuracy", "higher_is_better": True,
                     "grading": "lenient",
                     "format_rate": 100.0 * sum(p["follows_format"] for p in predictions[cell]) / len(texts)})
    study = Study(pd.DataFrame(rows), predictions, BootstrapSettings(resamples=1000, seed=0, confidence=0.95))
    (row,) = vs_base(study)
    assert row["grading"] == "lenient" and row["other_grading"] == "strict"
    assert row["diff"] == pytest.approx(100 * (35 / 40 - 30 / 40))          # lenient: 75% -> 87.5%
    assert row["other_diff"] == pytest.approx(100 * 35 / 40)                 # strict: 0% -> 87.5%
    assert row["survives_pct"] == pytest.approx(row["other_diff"] / row["diff"] * 100)
    assert row["other_diff_ci_low"] > 0
    assert (row["format_rate_reference"], row["format_rate_value"]) == (0.0, 100.0)


def test_journal_table_of_how_much_of_each_gain_is_format():
    import pandas as pd

    from ftmatrix.journal import format_share_rows

    table = pd.DataFrame([
        {"model": "m", "method": "full", "rank": 0, "seed": 0, "eval_task": "squad", "in_task": True,
         "headline_metric": "f1", "diff": 40.0, "diff_ci_low": 30.0, "diff_ci_high": 50.0, "grading": "lenient",
         "other_grading": "strict", "other_diff": 10.0, "other_diff_ci_low": 2.0, "other_diff_ci_high": 18.0,
         "survives_pct": 25.0, "format_rate_reference": 5.0, "format_rate_value": 97.0},
        {"model": "m", "method": "full", "rank": 0, "seed": 0, "eval_task": "arc", "in_task": False,
         "headline_metric": "macro_f1", "diff": 1.0, "grading": "lenient", "other_grading": "strict"},
        {"model": "m", "method": "full", "rank": 0, "seed": 0, "eval_task": "old", "in_task": True,
         "headline_metric": "f1", "diff": 1.0},                      # scored before both readings existed
    ])
    (row,) = format_share_rows(table, 0.95)
    assert (row["diff_text"], row["other_text"], row["survives_text"], row["format_text"]) == (
        "+40.0", "+10.0", "25%", "5% → 97%")
    assert row["grading"] == "lenient" and row["other_grading"] == "strict"
