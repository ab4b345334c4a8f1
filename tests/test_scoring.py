"""Scoring from generations alone: predictions, metrics with bootstrap CIs, latency summary, robustness."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from ftmatrix import io
from ftmatrix import metrics as M
from ftmatrix.errors import DataError
from ftmatrix.records import CellMetrics
from ftmatrix.scoring import score_cell
from tests.helpers import generation_record
from ftmatrix.tasks import get_task, registry

CELLS = {"arc": "tiny/full/r0/arc/seed1/arc", "openmath": "tiny/lora/r8/arc/seed0/openmath",
         "squad_v2": "tiny/base/r0/none/seed0/squad_v2"}
# The real public files of the kinds that have some in ../shared/data (file, format).
REAL_FILES = {"arc": ("arc/ARC-Challenge/ARC-Challenge-Test.jsonl", "arc_release"),
              "squad_v2": ("squad_v2/dev-v2.0.sample.json", "squad_json"),
              "openmath": ("openmathinstruct2/openmathinstruct-2.sample.jsonl", "hub_jsonl")}

HOSTILE = [
    "",                                                          # nothing at all
    "x" * 200_000,                                              # very long
    "the answer the answer the answer " * 3000,                 # repetitive
    "\u202eC\u202c \u200b\u200d\ufeff \u0301\u0300 \U0001f600 \x00 \ufffd",  # bidi, zero-width, combining, emoji, NUL
    "<think>unclosed thinking about (A) and \\boxed{",          # half a thought, half a box
    "\\boxed{\\frac{1}{0}} 1e999999 " + "9" * 5000,             # division by zero, overflow, a huge number
    "  \n\t  ",                                                  # whitespace only
]


def real_examples(shared_data: Path, kind: str, n: int) -> list[dict]:
    """n examples from the kind's real file; a kind without one: its own example row, n times."""
    task = get_task(kind)
    if kind not in REAL_FILES:
        return [{**example, "id": f"{kind}-{i}"}
                for i, example in enumerate(task.to_examples([task.example] * n, kind))]
    path, fmt = REAL_FILES[kind]
    return task.to_examples(task.read_local([str(shared_data / path)], fmt)[:n], kind)


def generation_row(example: dict, generated: str, i: int, timed: bool = False) -> dict:
    return {"id": example["id"], "prompt": "rendered prompt", "generated": generated, "input_tokens": 100 + i,
            "output_tokens": 1 + i % 5, "hit_limit": i % 3 == 0,
            "latency_s": 0.1 * (i + 1) if timed else None, "ttft_s": 0.01 * (i + 1) if timed else None,
            "tpot_s": 0.02 if timed else None, "timed_matches": True if timed else None}


def write_cell(tmp_path: Path, kind: str, examples: list[dict], generated: list[str], timed: int = 0) -> dict:
    d = tmp_path / kind
    io.write_jsonl(d / "eval.jsonl", examples)
    io.write_jsonl(d / "generations.jsonl",
                   [generation_row(ex, g, i, i < timed) for i, (ex, g) in enumerate(zip(examples, generated))])
    generation_record(CELLS.get(kind, f"tiny/base/r0/none/seed0/{kind}"), len(examples), n_timed=timed, batch_size=4,
                      provenance={"git_commit": "abc"}).write(d / "generation.json")
    return {"eval": d / "eval.jsonl", "generations": d / "generations.jsonl", "info": d / "generation.json",
            "predictions": d / "predictions.jsonl", "metrics": d / "metrics.json"}


def score(files: dict, kind: str, resamples: int = 1000, seed: int = 0) -> dict:
    settings = {"task": {"name": kind, "kind": kind}, "bootstrap_resamples": resamples, "bootstrap_seed": seed,
                "confidence": 0.95}
    record = score_cell(settings, files["generations"], files["info"], files["eval"], files["predictions"],
                        files["metrics"], "cfg123")
    assert CellMetrics.read(files["metrics"]) == record     # what readers get is what was written
    return record.to_json()


def test_arc_predictions_and_hand_computed_metrics(tmp_path, shared_data):
    examples = real_examples(shared_data, "arc", 8)
    gold = [ex["reference"]["label"] for ex in examples]
    wrong = [next(l for l in ex["reference"]["labels"] if l != ex["reference"]["label"]) for ex in examples]
    generated = [gold[0], f"The answer is {gold[1]}", f"({wrong[2]})", "", f"{gold[4]}.", "I do not know",
                 f"{wrong[6]}) because", f"({gold[7]})"]
    files = write_cell(tmp_path, "arc", examples, generated, timed=4)
    doc = score(files, "arc")

    preds = io.read_jsonl(files["predictions"])
    assert [p["id"] for p in preds] == [ex["id"] for ex in examples]
    for p, ex, g in zip(preds, examples, generated):
        assert p["generated"] == g and p["reference"] == ex["reference"]
        assert {"extracted", "scores", "latency_s", "ttft_s", "tpot_s", "hit_limit", "prompt"} <= set(p)
    assert [p["extracted"] for p in preds] == [gold[0], gold[1], wrong[2], "", gold[4], "", wrong[6], gold[7]]
    assert [p["scores"]["correct"] for p in preds] == [100, 100, 0, 0, 100, 0, 0, 100]

    assert doc["metrics"]["accuracy"] == pytest.approx(50.0)
    assert doc["metrics"]["no_label_rate"] == pytest.approx(25.0)
    assert doc["cell"] == {"model": "tiny", "method": "full", "rank": 0, "train_task": "arc", "seed": 1,
                           "eval_task": "arc"}
    assert doc["task"] == "arc" and doc["task_kind"] == "arc" and doc["n"] == 8
    head = doc["headline"]
    assert head["name"] == "macro_f1" and head["value"] == doc["metrics"]["macro_f1"]
    assert head["confidence"] == 0.95 and head["resamples"] == 1000
    assert head["ci_low"] <= head["value"] <= head["ci_high"] and head["ci_low"] < head["ci_high"]
    assert set(doc["ci"]) == {"macro_f1", "accuracy", "no_label_rate"}        # rates only, no counts
    lo, hi = doc["ci"]["accuracy"]
    assert 0 <= lo < 50 < hi <= 100
    assert doc["hit_limit"] == 3 and doc["hit_limit_pct"] == pytest.approx(37.5)      # rows 0, 3, 6
    assert doc["generation"]["cell"] == CELLS["arc"] and doc["generation"]["batch_size"] == 4
    assert "provenance" not in doc["generation"]        # it is provenance.generation
    assert doc["provenance"]["config_hash"] == "cfg123"
    assert doc["provenance"]["generation"] == {"git_commit": "abc"}
    assert json.loads(files["metrics"].read_text()) == doc


def test_latency_summary_over_timed_samples(tmp_path, shared_data):
    examples = real_examples(shared_data, "arc", 10)
    files = write_cell(tmp_path, "arc", examples, ["A"] * 10, timed=4)
    lat = score(files, "arc")["latency"]
    assert lat["n_timed"] == 4
    assert lat["mean_s"] == pytest.approx(0.25) and lat["median_s"] == pytest.approx(0.25)
    assert lat["p95_s"] == pytest.approx(0.1 + 0.95 * 3 * 0.1)        # linear interpolation over 0.1…0.4
    assert lat["ttft_mean_s"] == pytest.approx(0.025) and lat["ttft_median_s"] == pytest.approx(0.025)
    assert lat["tpot_mean_s"] == pytest.approx(0.02)
    assert lat["output_tokens_mean"] == pytest.approx(np.mean([1 + i % 5 for i in range(10)]))
    assert lat["input_tokens_mean"] == pytest.approx(104.5)
    files = write_cell(tmp_path / "untimed", "arc", examples, ["A"] * 10, timed=0)
    lat = score(files, "arc")["latency"]
    assert lat["n_timed"] == 0 and lat["mean_s"] is None and lat["p95_s"] is None


def test_bootstrap_is_seeded_and_rescoring_is_reproducible(tmp_path, shared_data):
    examples = real_examples(shared_data, "arc", 30)
    generated = [ex["reference"]["label"] if i % 3 else "B" for i, ex in enumerate(examples)]
    files = write_cell(tmp_path, "arc", examples, generated)
    first = score(files, "arc", seed=7)
    first_predictions = files["predictions"].read_bytes()
    again = score(files, "arc", seed=7)
    assert again["headline"] == first["headline"] and again["ci"] == first["ci"]
    assert files["predictions"].read_bytes() == first_predictions
    other = score(files, "arc", seed=8)
    assert other["headline"]["value"] == first["headline"]["value"]
    assert other["ci"] != first["ci"]


@pytest.mark.parametrize("kind", registry().kinds())
def test_hostile_outputs_are_scored_not_crashed(tmp_path, shared_data, kind):
    examples = real_examples(shared_data, kind, len(HOSTILE) + 2)
    task = get_task(kind)
    # two outputs that are exactly the gold completion, the rest hostile
    generated = [ex["completion"][0]["content"] for ex in examples[:2]] + HOSTILE
    files = write_cell(tmp_path, kind, examples, generated)
    doc = score(files, kind)
    preds = io.read_jsonl(files["predictions"])
    assert len(preds) == len(examples)
    assert task.metrics(preds[:1])[task.headline] == task.metrics(preds[1:2])[task.headline] == 100
    assert doc["headline"]["name"] == task.headline
    value = doc["headline"]["value"]
    assert value is not None and 0 <= value <= 100
    assert doc["headline"]["ci_low"] <= value <= doc["headline"]["ci_high"]
    for name, (lo, hi) in doc["ci"].items():
        assert lo is None or lo <= hi, name
    # Empty and blank: no answer (for SQuAD v2 the mark that is no abstention either).
    no_answer = M.SQUAD_NO_ANSWER if kind == "squad_v2" else ""
    assert preds[2]["extracted"] == no_answer and preds[8]["extracted"] == no_answer


def test_squad_reports_hasans_and_noans_with_intervals(tmp_path, shared_data):
    examples = real_examples(shared_data, "squad_v2", 14)
    # answer every question with its first gold, abstain on every unanswerable one: all correct
    generated = [ex["reference"]["answers"][0] if ex["reference"]["answers"] else "unanswerable" for ex in examples]
    files = write_cell(tmp_path, "squad_v2", examples, generated)
    doc = score(files, "squad_v2")
    m = doc["metrics"]
    assert m["f1"] == m["exact"] == m["HasAns_f1"] == m["NoAns_f1"] == 100.0
    assert m["HasAns_total"] + m["NoAns_total"] == 14
    assert {"f1", "exact", "HasAns_f1", "NoAns_f1", "HasAns_exact", "NoAns_exact"} <= set(doc["ci"])
    assert "HasAns_total" not in doc["ci"] and "total" not in doc["ci"]


def test_generations_that_do_not_match_the_eval_file_are_refused(tmp_path, shared_data):
    examples = real_examples(shared_data, "arc", 5)
    files = write_cell(tmp_path, "arc", examples[:4], ["A"] * 4)
    io.write_jsonl(files["eval"], examples)                 # the eval file gained a row since generation
    with pytest.raises(DataError, match=r"1 eval id\(s\) have no generation.*rerun evaluate_cell"):
        score(files, "arc")
    rows = io.read_jsonl(files["generations"])
    io.write_jsonl(files["generations"], rows + [rows[0]])
    with pytest.raises(DataError, match="appears twice"):
        score(files, "arc")
    io.write_jsonl(files["generations"], [{"id": r["id"], "generated": "A"} for r in rows])
    with pytest.raises(DataError, match=r"generations.jsonl, line 1: the generation row key 'prompt' is missing"
                                         r".*--force .*generations.jsonl"):
        score(files, "arc")
    assert not files["predictions"].exists() and not files["metrics"].exists()
