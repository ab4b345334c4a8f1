"""The seeded percentile bootstrap: reproducible, paired, vectorised, and honest about undefined values."""

import statistics as st
import time

import numpy as np
import pytest

from ftmatrix.bootstrap import (align_by_id, bootstrap_ci, mean_of, metric_ci, paired_bootstrap_diff,
                                paired_metric_diff, ratio_of)
from ftmatrix.errors import FtmatrixError
from ftmatrix.tasks import get_task


def score_rows(values, key="correct"):
    return [{"id": f"q{i}", "scores": {key: float(v)}} for i, v in enumerate(values)]


def plain_mean(key):
    def statistic(rows):
        return st.fmean(r["scores"][key] for r in rows)
    return statistic


def test_same_seed_same_interval_other_seed_other_interval():
    rows = score_rows(np.random.default_rng(1).random(300) * 100)  # continuous: quantiles move with the seed
    a = bootstrap_ci(rows, plain_mean("correct"), resamples=1000, seed=3)
    b = bootstrap_ci(rows, plain_mean("correct"), resamples=1000, seed=3)
    c = bootstrap_ci(rows, plain_mean("correct"), resamples=1000, seed=4)
    assert a == b
    assert a[0] == c[0] and a[1:] != c[1:]


def test_vectorised_and_plain_statistics_give_the_same_interval():
    values = np.random.default_rng(2).integers(0, 2, 500) * 100.0
    rows = score_rows(values)
    plain = bootstrap_ci(rows, plain_mean("correct"), resamples=1000, seed=0)
    fast = bootstrap_ci(rows, mean_of("correct"), resamples=1000, seed=0)
    assert plain == pytest.approx(fast, abs=1e-9)


def test_interval_matches_the_percentile_definition():
    values = np.arange(20, dtype=float)
    rows = score_rows(values, key="x")
    value, low, high = bootstrap_ci(rows, mean_of("x"), resamples=2000, seed=5, confidence=0.9)
    rng = np.random.default_rng(5)
    idx = rng.integers(0, 20, size=(2000, 20), dtype=np.int64)
    means = values[idx].mean(axis=1)
    assert value == pytest.approx(values.mean())
    assert (low, high) == pytest.approx(tuple(np.quantile(means, [0.05, 0.95])))


def test_interval_covers_the_value_and_narrows_with_more_rows():
    rng = np.random.default_rng(0)
    small = score_rows(rng.integers(0, 2, 100) * 100)
    large = score_rows(rng.integers(0, 2, 4000) * 100)
    v1, lo1, hi1 = bootstrap_ci(small, mean_of("correct"))
    v2, lo2, hi2 = bootstrap_ci(large, mean_of("correct"))
    assert lo1 <= v1 <= hi1 and lo2 <= v2 <= hi2
    assert (hi2 - lo2) < (hi1 - lo1) / 3
    # for a proportion near 50 % with n = 4000 the 95 % half-width is about 1.55 points
    assert (hi2 - lo2) / 2 == pytest.approx(1.96 * np.sqrt(0.25 / 4000) * 100, rel=0.15)


def test_paired_difference_uses_the_same_indices_for_both_systems():
    rng = np.random.default_rng(3)
    a = rng.integers(0, 2, 400) * 100.0
    rows_a = score_rows(a)
    # identical systems: every resampled difference is exactly 0
    assert paired_bootstrap_diff(rows_a, score_rows(a), mean_of("correct")) == (0.0, 0.0, 0.0)
    # b = a minus a constant on every row: the difference is that constant on every resample
    rows_b = [{"id": r["id"], "scores": {"correct": r["scores"]["correct"] - 7.0}} for r in rows_a]
    diff, low, high = paired_bootstrap_diff(rows_a, rows_b, mean_of("correct"))
    assert diff == pytest.approx(7.0) and low == pytest.approx(7.0) and high == pytest.approx(7.0)


def test_paired_interval_is_narrower_than_unpaired_for_correlated_systems():
    rng = np.random.default_rng(4)
    a = rng.integers(0, 2, 1000) * 100.0
    flip = rng.random(1000) < 0.05
    b = np.where(flip, 100.0 - a, a)
    _, low, high = paired_bootstrap_diff(score_rows(a), score_rows(b), mean_of("correct"), seed=1)
    _, la, ha = bootstrap_ci(score_rows(a), mean_of("correct"), seed=1)
    assert (high - low) < (ha - la) / 2


def test_paired_needs_aligned_rows():
    with pytest.raises(FtmatrixError, match="align"):
        paired_bootstrap_diff(score_rows([1, 2]), score_rows([1]), mean_of("correct"))


def test_align_by_id_pairs_shared_ids_in_order_and_rejects_duplicates():
    a = [{"id": "x", "v": 1}, {"id": "y", "v": 2}, {"id": "z", "v": 3}]
    b = [{"id": "z", "v": 30}, {"id": "x", "v": 10}]
    left, right = align_by_id(a, b)
    assert [r["id"] for r in left] == [r["id"] for r in right] == ["x", "z"]
    with pytest.raises(FtmatrixError, match="twice"):
        align_by_id(a, b + [{"id": "x", "v": 0}])


def test_undefined_values_are_left_out_and_all_undefined_gives_none():
    rows = [{"scores": {"abs_error": v}} for v in (None, 1.0, None, 3.0)]
    value, low, high = bootstrap_ci(rows, mean_of("abs_error"), resamples=500)
    assert value == pytest.approx(2.0) and 1.0 <= low <= high <= 3.0
    empty = [{"scores": {"abs_error": None}}] * 3
    assert bootstrap_ci(empty, mean_of("abs_error")) == (None, None, None)
    assert bootstrap_ci([], mean_of("abs_error")) == (None, None, None)
    assert bootstrap_ci(empty, lambda rows: None) == (None, None, None)


def test_ratio_of_is_a_mean_over_a_subset():
    rows = [{"f1": 100.0, "has": 1}, {"f1": 50.0, "has": 1}, {"f1": 0.0, "has": 0}]
    value, _, _ = bootstrap_ci(rows, ratio_of(lambda r: r["f1"] * r["has"], "has"), resamples=200)
    assert value == pytest.approx(75.0)


def test_bad_settings_are_clear_errors():
    with pytest.raises(FtmatrixError, match="resamples"):
        bootstrap_ci(score_rows([1]), mean_of("correct"), resamples=0)
    with pytest.raises(FtmatrixError, match="confidence"):
        bootstrap_ci(score_rows([1]), mean_of("correct"), confidence=95)


def _arc_rows(n, seed=0):
    task = get_task("arc")
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(n):
        labels = ["A", "B", "C", "D"] if i % 10 else ["1", "2", "3", "4"]
        gold = labels[int(rng.integers(4))]
        pred = labels[int(rng.integers(4))] if rng.random() < 0.9 else ""
        if rng.random() < 0.5:
            pred = gold
        reference = {"label": gold, "labels": labels, "choices": labels}
        rows.append({"id": f"q{i}", "extracted": pred, "reference": reference, "scores": task.score(pred, reference)})
    return task, rows


def test_vectorised_macro_f1_equals_metrics_on_every_resample():
    task, rows = _arc_rows(300)
    fast = metric_ci(task, rows, "macro_f1", resamples=300, seed=2)
    slow = bootstrap_ci(rows, lambda rs: task.metrics(rs)["macro_f1"], resamples=300, seed=2)
    assert fast == pytest.approx(slow, abs=1e-9)
    assert fast[0] == pytest.approx(task.metrics(rows)["macro_f1"])


@pytest.mark.parametrize("kind, names", [
    ("squad_v2", ["f1", "exact", "HasAns_f1", "NoAns_exact"]),
    ("openmath", ["exact_match", "abs_error_mean", "parse_rate"]),
    ("arc", ["accuracy", "no_label_rate"]),
])
def test_task_statistics_agree_with_task_metrics(kind, names):
    task = get_task(kind)
    rng = np.random.default_rng(9)
    rows = []
    for i in range(200):
        if kind == "squad_v2":
            reference = {"answers": ["red car"] if i % 2 else [], "is_impossible": not i % 2}
            pred = ["red car", "car", "", "blue"][int(rng.integers(4))]
        elif kind == "openmath":
            reference = {"answer": ["12", "\\frac{1}{2}", "2\\sqrt{3}"][i % 3]}
            pred = ["12", "0.5", "13", "", "2\\sqrt{3}", "x"][int(rng.integers(6))]
        else:
            reference = {"label": "A", "labels": ["A", "B"], "choices": ["a", "b"]}
            pred = ["A", "B", ""][int(rng.integers(3))]
        rows.append({"id": str(i), "extracted": pred, "reference": reference, "scores": task.score(pred, reference)})
    for name in names:
        fast = metric_ci(task, rows, name, resamples=200, seed=1)
        slow = bootstrap_ci(rows, lambda rs, n=name: task.metrics(rs)[n], resamples=200, seed=1)
        assert fast == pytest.approx(slow, abs=1e-9), name
    diff = paired_metric_diff(task, rows, list(reversed(rows)), names[0], resamples=200)
    assert diff == pytest.approx((0.0, 0.0, 0.0), abs=1e-9)


def test_vectorised_bootstrap_of_5000_rows_is_fast():
    rows = score_rows(np.random.default_rng(0).integers(0, 2, 5000) * 100)
    task, arc_rows = _arc_rows(5000)
    timings = []
    for _ in range(3):
        started = time.perf_counter()
        bootstrap_ci(rows, mean_of("correct"), resamples=1000)
        metric_ci(task, arc_rows, "macro_f1", resamples=1000)
        timings.append(time.perf_counter() - started)
    # well under a second each on an idle core; generous for a shared machine
    assert st.median(timings) < 3.0
