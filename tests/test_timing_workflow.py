"""The demo run's timing rounds, read from the finished run: no job ran beside a timed pass,
every cell was timed in every round, and the matrix carries the rounds."""

from __future__ import annotations

import re

import pytest

import ftmatrix.grid
from ftmatrix.records import CellMetrics, TimingRecord

pytestmark = pytest.mark.slow


def job_spans(log: str) -> list[tuple[str, str, int, int]]:
    """(rule, jobid, start, end) of every job, as positions in Snakemake's own log order."""
    started, spans = {}, []
    rule = None
    for number, line in enumerate(log.splitlines()):
        match = re.match(r"^(?:local)?rule (\w+):$", line)
        if match:
            rule = match.group(1)
            continue
        match = re.match(r"^\s+jobid: (\d+)$", line)
        if match and rule:
            started[match.group(1)] = (rule, number)
            rule = None
            continue
        match = re.match(r"^Finished jobid: (\d+) \(Rule: (\w+)\)", line)
        if match and match.group(1) in started:
            name, start = started.pop(match.group(1))
            spans.append((name, match.group(1), start, number))
    return spans


def test_no_job_ran_beside_a_timing_round(demo_run):
    spans = job_spans(demo_run["stdout"])
    rounds = [s for s in spans if s[0] == "time_round"]
    assert len(rounds) == demo_run["config"]["evaluate"]["timing_rounds"]
    others = [s for s in spans if s[0] not in ("time_round", "all")]
    assert any(s[0] == "evaluate_cell" for s in others)
    for name, job, start, end in rounds:
        beside = [o for o in others + [r for r in rounds if r[1] != job] if o[2] < end and start < o[3]]
        assert not beside, f"round job {job} ran beside {beside}"
    # … while quality passes did run side by side on the demo's two cores.
    quality = [s for s in spans if s[0] == "evaluate_cell"]
    assert any(a[2] < b[3] and b[2] < a[3] for a in quality for b in quality if a is not b)


def local_models(config) -> set[str]:
    """Models run by the pipeline itself (a model behind an endpoint is timed per request instead)."""
    return {m["name"] for m in config["models"] if m["source"] != "api"}


def test_every_cell_was_timed_in_every_round_in_a_turning_order(demo_run):
    root, config = demo_run["root"], demo_run["config"]
    rounds = config["evaluate"]["timing_rounds"]
    cells = [c for c in ftmatrix.grid.cells(config) if c.variant.model in local_models(config)]
    firsts = set()
    for r in range(1, rounds + 1):
        records = [TimingRecord.read(root / "results" / "demo" / "eval" / c.path / "timing" / f"round{r}.json")
                   for c in cells]
        assert sorted(rec.position for rec in records) == list(range(1, len(cells) + 1))
        assert {len(rec.samples) for rec in records} == {config["evaluate"]["latency_samples"]}
        firsts.add(min(records, key=lambda rec: rec.position).cell)
        # The round was one stretch of time: its cells one after another, in their order.
        ordered = sorted(records, key=lambda rec: rec.position)
        assert all(a.finished_at <= b.started_at for a, b in zip(ordered, ordered[1:]))
    assert len(firsts) == rounds
    metrics = CellMetrics.read(root / "results" / "demo" / "eval" / cells[0].path / "metrics.json")
    assert metrics.latency.rounds == rounds and len(metrics.latency.round_medians_s) == rounds
    assert metrics.latency.mean_ci_low_s <= metrics.latency.mean_s <= metrics.latency.mean_ci_high_s


def test_the_matrix_records_the_rounds_and_their_medians(demo_run):
    import pandas as pd

    everything = pd.read_csv(demo_run["root"] / "results" / "demo" / "matrix.csv")
    local = everything["model"].isin(local_models(demo_run["config"]))
    # One engine timed every local cell (evaluate.timing_engine); an endpoint's cells its requests.
    assert set(everything.loc[local, "timing_engine"]) == {demo_run["config"]["evaluate"]["timing_engine"]}
    assert set(everything.loc[~local, "timing_engine"]) <= {"openai"}
    matrix = everything[local]
    rounds = demo_run["config"]["evaluate"]["timing_rounds"]
    assert set(matrix["timing_rounds"]) == {rounds}
    medians = matrix["latency_round_medians_s"].str.split()
    assert set(medians.map(len)) == {rounds}
    # A cell whose every timed answer is one token has no time per further token: n/a, never 0.
    one_token = matrix["output_tokens_timed_mean"] == 1
    assert matrix.loc[one_token, ["tpot_s", "tpot_ci_low", "tpot_ci_high"]].isna().all().all()
    for column in ("latency_mean", "ttft_mean", "tpot", "output_tokens"):
        rows = matrix[~one_token] if column == "tpot" else matrix
        low, high = rows[f"{column}_ci_low"], rows[f"{column}_ci_high"]
        assert (low <= high).all(), column
    value = matrix["latency_mean_s"]
    assert ((matrix["latency_mean_ci_low"] <= value) & (value <= matrix["latency_mean_ci_high"])).all()
    # mean latency = mean TTFT + mean further tokens × tpot_s, exactly (fp32: the timed tokens are
    # the quality pass's).
    assert (matrix["timed_mismatches"] == 0).all()
    known = matrix[matrix["tpot_s"].notna()]
    rebuilt = known["ttft_mean_s"] + (known["output_tokens_timed_mean"] - 1) * known["tpot_s"]
    assert ((rebuilt - known["latency_mean_s"]).abs() <= 1e-9 + 1e-9 * known["latency_mean_s"]).all()
    assert (matrix["cost_per_1k_usd"] > 0).all() and (matrix["cost_per_1k_batched_usd"] > 0).all()
