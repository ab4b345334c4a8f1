"""Latency timed apart from quality, in rounds: the round order, the rounds joined per cell,
intervals over rounds and samples, significance that must hold in every round, and the split of
a latency change into fewer output tokens and faster per token."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from ftmatrix import io
from ftmatrix.analysis import FASTER, NOT_SIGNIFICANT, BootstrapSettings, Study, _comparison, latency_split
from ftmatrix.bootstrap import bootstrap_ci, hierarchical_ci, mean_of
from ftmatrix.errors import DataError
from ftmatrix.grid import Variant
from ftmatrix.records import TimingRecord
from ftmatrix.timing import join_rounds, round_order

VARIANTS = [Variant("m", "base", 0, "none", 0), Variant("m", "full", 0, "a", 0), Variant("m", "lora", 4, "a", 0),
            Variant("m", "lora", 8, "a", 0), Variant("big", "base", 0, "none", 0), Variant("m", "full", 0, "b", 0)]
TASKS = ["a", "b", "c"]


# --------------------------------------------------------------------------- the order


def test_every_round_times_every_cell_once_with_a_variants_cells_together():
    for r in (1, 2, 3):
        order = round_order(VARIANTS, TASKS, r, 3)
        assert sorted(map(str, order)) == sorted(str(c) for c in round_order(VARIANTS, TASKS, 1, 3))
        assert len(set(order)) == len(VARIANTS) * len(TASKS)
        seen = [c.variant for c in order]
        assert [v for i, v in enumerate(seen) if i == 0 or seen[i - 1] != v] == list(dict.fromkeys(seen))


def test_the_order_turns_so_a_spell_across_two_rounds_hits_different_cells():
    first = round_order(VARIANTS, TASKS, 1, 3)
    assert [c.variant for c in first[::3]] == VARIANTS            # round 1: the grid's order
    for r in (1, 2):
        this, following = round_order(VARIANTS, TASKS, r, 3), round_order(VARIANTS, TASKS, r + 1, 3)
        tail, head = {c.variant for c in this[-6:]}, {c.variant for c in following[:6]}
        assert not tail & head, (r, tail, head)
    # Each variant is first in at most one round.
    starts = [round_order(VARIANTS, TASKS, r, 3)[0].variant for r in (1, 2, 3)]
    assert len(set(starts)) == 3


# --------------------------------------------------------------------------- intervals over rounds


def test_a_slow_round_widens_the_interval_that_resamples_rounds():
    rng = np.random.default_rng(1)
    base = rng.uniform(0.9, 1.1, size=40)
    steady = np.stack([base, base * 1.01, base * 0.99])
    slow = np.stack([base, base, base * 1.6])             # a slow spell during round 3
    mean, low, high = hierarchical_ci(steady, resamples=2000, seed=0)
    assert low < mean < high and high - low < 0.1
    # Sample-only bootstrap of the per-sample means: blind to the slow round's spread.
    per_sample = [{"v": v} for v in slow.mean(axis=0)]
    _, s_low, s_high = bootstrap_ci(per_sample, mean_of("v"), 2000, 0)
    _, h_low, h_high = hierarchical_ci(slow, resamples=2000, seed=0)
    assert h_high - h_low > 3 * (s_high - s_low)
    assert h_low < 1.0 < h_high      # one round alone at 1.0 is inside the interval


# --------------------------------------------------------------------------- joining rounds


def _record(cell: str, round_number: int, samples: list[dict]) -> TimingRecord:
    return TimingRecord(cell=cell, round=round_number, rounds=3, position=1, cells_in_round=1,
                        model={"name": "m"}, method="base", adapter=None, merge_lora=None, enable_thinking=False,
                        precision="fp32", device="cpu", threads=1, max_new_tokens=8, latency_samples=len(samples),
                        warmup=1, load_s=0.1, timed_s=1.0, started_at=0.0, finished_at=1.0, load_average=[0.1, 0.2],
                        samples=samples, provenance={})


def _timed(sample_id, latency, ttft=0.01, tokens=3, text="A"):
    return {"id": sample_id, "output_tokens": tokens, "hit_limit": False, "latency_s": latency, "ttft_s": ttft,
            "tpot_s": (latency - ttft) / (tokens - 1), "generated": text}


def test_rounds_join_onto_the_quality_rows(tmp_path):
    rows = [{"id": i, "generated": "A", "output_tokens": 3} for i in ("x", "y", "z")]
    files = []
    for r, scale in ((2, 1.1), (1, 1.0), (3, 0.9)):           # files in any order; rounds sorted
        path = tmp_path / f"round{r}.json"
        _record("m/base/r0/none/seed0/a", r, [_timed("x", 0.1 * scale), _timed("y", 0.2 * scale, text="B")]).write(path)
        files.append(path)
    joined, info = join_rounds(rows, files)
    x, y, z = joined
    assert info["rounds"] == 3 and info["mismatches"] == 1
    assert x["latency_rounds_s"] == pytest.approx([0.1, 0.11, 0.09])
    assert x["latency_s"] == pytest.approx(0.1) and x["timed_matches"] is True
    assert x["tpot_s"] == pytest.approx((0.1 - 0.01) / 2)
    assert y["timed_matches"] is False and y["timed_generated"] == "B"
    assert z["latency_s"] is None and "latency_rounds_s" not in z


def test_rounds_that_timed_other_samples_are_refused(tmp_path):
    rows = [{"id": i, "generated": "A", "output_tokens": 3} for i in ("x", "y")]
    _record("c", 1, [_timed("x", 0.1)]).write(tmp_path / "r1.json")
    _record("c", 2, [_timed("y", 0.1)]).write(tmp_path / "r2.json")
    with pytest.raises(DataError, match="round 2 timed other samples"):
        join_rounds(rows, [tmp_path / "r1.json", tmp_path / "r2.json"])
    _record("c", 3, [_timed("w", 0.1)]).write(tmp_path / "r3.json")
    with pytest.raises(DataError, match="'w' is not among the cell's generations"):
        join_rounds(rows, [tmp_path / "r3.json"])


def test_rounds_timed_by_different_engines_are_refused(tmp_path):
    rows = [{"id": "x", "generated": "A", "output_tokens": 3}]
    _record("c", 1, [_timed("x", 0.1)]).write(tmp_path / "r1.json")
    record = _record("c", 2, [_timed("x", 0.05)])
    record.engine = "vllm"
    record.write(tmp_path / "r2.json")
    with pytest.raises(DataError, match="round 2 was timed by vllm, round 1 by transformers"):
        join_rounds(rows, [tmp_path / "r1.json", tmp_path / "r2.json"])
    _, info = join_rounds(rows, [tmp_path / "r2.json"])
    assert info["engine"] == "vllm"


def test_a_timing_record_with_a_broken_sample_names_the_key(tmp_path):
    path = tmp_path / "round1.json"
    record = _record("c", 1, [_timed("x", 0.1)]).to_json()
    del record["samples"][0]["ttft_s"]
    io.write_json(path, record)
    with pytest.raises(DataError, match=r"samples\[0\]\.ttft_s"):
        TimingRecord.read(path)


# --------------------------------------------------------------------------- comparisons


def _study(cells: dict[str, dict], resamples: int = 1000) -> Study:
    """cells: cell path -> {'latency': rounds × samples, 'ttft': same, 'tokens': per sample}."""
    rows, predictions = [], {}
    for path, t in cells.items():
        model, method, rank, train_task, seed, eval_task = path.replace("/r", "/").replace("/seed", "/").split("/")
        rows.append({"model": model, "method": method, "rank": int(rank), "train_task": train_task,
                     "seed": int(seed), "eval_task": eval_task, "cell": path, "label": path, "task_kind": "k",
                     "headline_metric": "accuracy", "headline": 50.0, "higher_is_better": True,
                     "model_params": 1})
        lat, ttft = np.asarray(t["latency"]), np.asarray(t["ttft"])
        predictions[path] = [{"id": f"s{i}", "scores": {"accuracy": 1.0}, "output_tokens": int(t["tokens"][i]),
                              "timed_output_tokens": int(t["tokens"][i]), "latency_s": float(lat[:, i].mean()),
                              "latency_rounds_s": lat[:, i].tolist(), "ttft_rounds_s": ttft[:, i].tolist()}
                             for i in range(lat.shape[1])]
    return Study(pd.DataFrame(rows), predictions, BootstrapSettings(resamples, 0, 0.95),
                 statistic_for=lambda kind, name: mean_of("accuracy"))


def _timing(n, further, per_token, ttft, round_scale=(1.0, 1.0, 1.0), seed=0):
    rng = np.random.default_rng(seed)
    noise = rng.uniform(0.95, 1.05, size=n)
    tokens = np.full(n, further + 1)
    first = np.array([[ttft * s * x for x in noise] for s in round_scale])
    latency = np.array([[ttft * s * x + further * per_token * s * x for x in noise] for s in round_scale])
    return {"latency": latency, "ttft": first, "tokens": tokens}


BASE = "m/base/r0/none/seed0/a"
TUNED = "m/full/r0/a/seed0/a"


def test_a_shorter_answer_is_faster_by_fewer_tokens_not_per_token():
    study = _study({BASE: _timing(30, further=39, per_token=0.01, ttft=0.02),
                    TUNED: _timing(30, further=1, per_token=0.01, ttft=0.02, seed=1)})
    result = _comparison(study, study.groups[("m", "full", 0, "a", "a")], study.groups[("m", "base", 0, "none", "a")])
    assert result["latency_significance"] == FASTER and result["latency_rounds_agree"]
    total = 1 + result["latency_rel_pct"] / 100
    parts = (1 + result["latency_tokens_pct"] / 100) * (1 + result["latency_per_token_pct"] / 100)
    assert parts == pytest.approx(total, rel=1e-9)             # the two parts multiply up to the change
    assert result["latency_tokens_pct"] < -85
    assert abs(result["latency_per_token_pct"]) < 10
    assert result["latency_tokens_ci_low"] <= result["latency_tokens_pct"] <= result["latency_tokens_ci_high"]


def test_a_faster_model_with_equal_answers_is_faster_per_token():
    study = _study({BASE: _timing(30, further=10, per_token=0.02, ttft=0.04),
                    TUNED: _timing(30, further=10, per_token=0.01, ttft=0.02, seed=1)})
    result = _comparison(study, study.groups[("m", "full", 0, "a", "a")], study.groups[("m", "base", 0, "none", "a")])
    assert result["latency_tokens_pct"] == pytest.approx(0.0, abs=1e-9)
    assert result["latency_per_token_pct"] == pytest.approx(result["latency_rel_pct"], rel=1e-9)


def test_a_difference_that_one_slow_round_makes_is_not_called_significant():
    # Equal models; the tuned one's round 2 ran through a slow spell of the machine.
    study = _study({BASE: _timing(40, further=10, per_token=0.01, ttft=0.02),
                    TUNED: _timing(40, further=10, per_token=0.01, ttft=0.02, round_scale=(1.0, 1.9, 1.0))})
    tuned, base = study.groups[("m", "full", 0, "a", "a")], study.groups[("m", "base", 0, "none", "a")]
    result = _comparison(study, tuned, base)
    assert result["latency_rel_pct"] > 20                       # the means differ …
    assert result["latency_significance"] == NOT_SIGNIFICANT    # … but not in every round, nor beyond the CI
    assert not result["latency_rounds_agree"]
    # A sample-only bootstrap of the same means would have called it: every sample is slower on average.
    diffs = [{"d": d} for d in (np.asarray(study.predictions[TUNED][i]["latency_s"]) -
                                np.asarray(study.predictions[BASE][i]["latency_s"]) for i in range(40))]
    _, low, _ = bootstrap_ci(diffs, mean_of("d"), 1000, 0)
    assert low > 0


def test_latency_split_of_identical_sides_is_zero():
    side = {"further": (10.0, np.full(5, 10.0)), "ttft": (0.1, np.full(5, 0.1)), "decode": (1.0, np.full(5, 1.0))}
    out = latency_split(side, side, lambda d: (float(np.nanmin(d)), float(np.nanmax(d))))
    assert out["latency_tokens_pct"] == 0 and out["latency_per_token_pct"] == 0
    no_tokens = {**side, "further": (0.0, np.zeros(5))}
    assert math.isnan(latency_split(no_tokens, side, lambda d: (0, 0))["latency_tokens_pct"])


def test_a_latency_difference_is_significant_only_when_every_round_agrees():
    from ftmatrix.analysis import SLOWER, latency_verdict

    assert latency_verdict(-0.3, -0.1, True) == FASTER
    assert latency_verdict(0.1, 0.3, True) == SLOWER
    assert latency_verdict(-0.3, -0.1, False) == NOT_SIGNIFICANT
    assert latency_verdict(-0.3, 0.1, True) == NOT_SIGNIFICANT
    assert latency_verdict(None, None, True) == "n/a"


# --------------------------------------------------------------------------- a real round


def test_a_round_times_each_cell_of_a_real_model_in_its_order(tmp_path, shared_data, tiny_qwen3):
    from tests.test_evaluate import arc_eval_rows, write_manifest

    from ftmatrix.timing import time_round

    manifest = write_manifest(tmp_path / "models" / "manifest.json", tiny_qwen3)
    evals = {}
    for task, rows in (("a", arc_eval_rows(shared_data, 6)), ("b", arc_eval_rows(shared_data, 6)[::-1])):
        evals[task] = tmp_path / task / "eval.jsonl"
        io.write_jsonl(evals[task], rows)
    cells = ["tiny/base/r0/none/seed0/a", "tiny/base/r0/none/seed0/b"]
    outputs = {c: tmp_path / "eval" / c / "timing" / "round2.json" for c in cells}
    settings = {"round": 2, "rounds": 3, "enable_thinking": False, "cells": cells,
                "evaluate": {"latency_samples": 3, "warmup": 1, "precision": "fp32", "merge_lora": True},
                "tasks": {"a": {"kind": "arc", "max_new_tokens": 5}, "b": {"kind": "arc", "max_new_tokens": 5}}}
    order = time_round(settings, manifests={"tiny": str(manifest)}, trained={}, eval_files=evals,
                       outputs={c: str(p) for c, p in outputs.items()}, config_hash="h", max_threads=1,
                       progress=False)
    assert order == [cells[1], cells[0]]                       # round 2 turns the tasks by one
    for position, cell in enumerate(order, start=1):
        record = TimingRecord.read(outputs[cell])
        assert (record.cell, record.round, record.rounds, record.position) == (cell, 2, 3, position)
        assert record.device == "cpu" and record.warmup == 1 and record.started_at <= record.finished_at
        eval_ids = [r["id"] for r in io.read_jsonl(evals[cell.rsplit("/", 1)[1]])][:3]
        assert [s["id"] for s in record.samples] == eval_ids    # the first latency_samples, in file order
        for s in record.samples:
            assert 0 < s["ttft_s"] <= s["latency_s"] and 1 <= s["output_tokens"] <= 5
    assert TimingRecord.read(outputs[order[0]]).load_s > 0 and TimingRecord.read(outputs[order[1]]).load_s == 0


# --------------------------------------------------------------------------- the journal's words


def _row(**changes):
    row = {"latency_rel_pct": -96.0, "latency_rel_ci_low": -97.0, "latency_rel_ci_high": -95.0,
           "latency_significance": FASTER, "latency_rounds": 3, "latency_rounds_agree": True,
           "latency_tokens_pct": -95.0, "latency_tokens_ci_low": -96.0, "latency_tokens_ci_high": -94.0,
           "latency_per_token_pct": -20.0, "latency_per_token_ci_low": -30.0, "latency_per_token_ci_high": -10.0,
           "n_seeds": 1}
    row.update(changes)
    return row


def test_the_journal_splits_a_latency_change_and_names_the_rounds():
    from ftmatrix import findings, journal

    finding = findings.latency(findings.VS_LARGER, findings.Subject("a"), _row(), 0.95)
    assert finding.covers == findings.SAMPLES_AND_ROUNDS
    part = journal.latency_part(finding)
    assert part["text"] == "latency ↓ 96.0%" and part["significant"] is True
    assert "3 timing rounds" in part["ci"]
    assert "fewer output tokens ↓ 95.0% [95% CI 94.0–96.0%]" in part["ci"]
    assert "faster per token ↓ 20.0% [95% CI 10.0–30.0%]" in part["ci"]
    slower = journal.latency_part(findings.latency(findings.VS_LARGER, findings.Subject("a"), _row(
        latency_tokens_pct=12.0, latency_per_token_pct=5.0), 0.95))
    assert "more output tokens ↑ 12.0%" in slower["ci"] and "slower per token ↑ 5.0%" in slower["ci"]


def test_the_journal_calls_a_latency_change_significant_only_as_the_analysis_did():
    from ftmatrix import findings, journal

    # The interval excludes zero, but the rounds disagreed: the analysis said no significant change.
    row = _row(latency_significance=NOT_SIGNIFICANT, latency_rounds_agree=False)
    part = journal.latency_part(findings.latency(findings.VS_LARGER, findings.Subject("a"), row, 0.95))
    assert part["significant"] is False and "rounds disagree" in part["ci"]
