"""The analysis tables: paired bootstrap CIs, labels only where the CI excludes zero, partial grids."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest

from ftmatrix.analysis import TABLES, BootstrapSettings, analyse, analyse_matrix
from ftmatrix.errors import DataError
from tests.test_aggregate_tree import aggregate, mean_score_statistic, study_config, write_results_tree

FAST = BootstrapSettings(resamples=400, seed=0, confidence=0.95)


def run(tree, settings=FAST):
    return analyse(aggregate(tree), tree.predictions, settings=settings, statistic_for=mean_score_statistic)


def rewrite_predictions(tree, cell_path, change):
    path = tree.root / "results" / "eval" / cell_path / "predictions.jsonl"
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    rows = change(rows)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))


@pytest.fixture(scope="module")
def full_tables(tmp_path_factory):
    tree = write_results_tree(tmp_path_factory.mktemp("full"), study_config())
    return tree, run(tree)


def test_every_table_has_its_columns(full_tables):
    _, tables = full_tables
    for name, columns in TABLES.items():
        assert list(tables[name].columns) == columns, name


def test_fine_tuning_beats_its_base_on_the_trained_task(full_tables):
    tree, tables = full_tables
    matrix = pd.read_csv(tree.root / "results" / "matrix.csv")
    vs = tables["vs_base"]
    in_task_full = vs[(vs["method"] == "full") & vs["in_task"]]
    assert len(in_task_full) == 3
    for row in in_task_full.to_dict("records"):
        base = matrix[(matrix["method"] == "base") & (matrix["model"] == row["model"])
                      & (matrix["eval_task"] == row["eval_task"])]["headline"].item()
        assert row["reference"] == pytest.approx(base)
        assert row["diff"] == pytest.approx(row["value"] - row["reference"])
        assert row["rel_pct"] == pytest.approx(100 * row["diff"] / row["reference"])
        assert row["diff_ci_low"] > 0 and row["significance"] == "better"
        assert row["diff_ci_low"] <= row["diff"] <= row["diff_ci_high"]
        # tuned models answer briefly: faster than their base, significantly
        assert row["latency_rel_pct"] < 0 and row["latency_significance"] == "faster"


def test_transfer_and_forgetting_are_labelled_only_when_significant(full_tables):
    _, tables = full_tables
    t = tables["transfer"]
    full = t[t["method"] == "full"].set_index(["train_task", "eval_task"])
    assert full.loc[("openmath", "squad_v2"), "effect"] == "forgetting"
    assert full.loc[("arc", "squad_v2"), "effect"] == "positive transfer"
    assert full.loc[("arc", "arc"), "effect"] == "in-task gain"
    for row in t.to_dict("records"):
        spans_zero = row["diff_ci_low"] <= 0 <= row["diff_ci_high"]
        assert (row["effect"] == "no significant change") == spans_zero, row


def test_smaller_tuned_model_against_the_larger_base(full_tables):
    _, tables = full_tables
    t = tables["vs_larger_base"]
    assert set(t["larger_model"]) == {"demo-large"} and set(t["model"]) == {"demo-small"}
    assert (t["larger_model_params"] > t["model_params"]).all()
    row = t[(t["method"] == "full") & (t["train_task"] == "arc") & (t["eval_task"] == "arc")].iloc[0]
    assert row["significance"] == "better" and row["latency_significance"] == "faster"
    untuned = t[(t["method"] == "base") & (t["eval_task"] == "arc")].iloc[0]
    assert untuned["significance"] == "worse"


def test_full_vs_best_lora_picks_the_best_rank(full_tables):
    _, tables = full_tables
    fvl = tables["full_vs_lora"]
    ranks = tables["lora_rank"]
    assert len(fvl) == 9
    for row in fvl.to_dict("records"):
        mine = ranks[(ranks["method"] == "lora") & (ranks["train_task"] == row["train_task"])
                     & (ranks["eval_task"] == row["eval_task"])]
        assert row["best_rank"] in set(mine[mine["value"] == mine["value"].max()]["rank"])
        assert row["reference"] == pytest.approx(mine["value"].max())


def test_rank_correlation_with_three_ranks(full_tables):
    _, tables = full_tables
    rc = tables["rank_correlation"]
    assert len(rc) == 9 and (rc["n_ranks"] == 3).all()
    defined = rc[rc["spearman"].notna()]
    assert ((defined["spearman"] >= -1) & (defined["spearman"] <= 1)).all()
    assert set(rc["significance"]) <= {"positive", "negative", "no significant correlation", "n/a"}
    assert rc["smallest_sufficient_rank"].notna().all()
    assert (rc["smallest_sufficient_rank"] <= rc["best_rank"]).all()


def test_a_cell_against_itself_is_exactly_zero(tmp_path):
    """Paired: the same predictions on both sides give a zero difference in every resample."""
    tree = write_results_tree(tmp_path, study_config(methods=("base", "full"), tasks=("arc",)))
    full = "demo-small/full/r0/arc/seed0/arc"
    base = "demo-small/base/r0/none/seed0/arc"
    base_rows = (tree.root / "results" / "eval" / base / "predictions.jsonl").read_text()
    (tree.root / "results" / "eval" / full / "predictions.jsonl").write_text(base_rows)
    row = run(tree)["vs_base"].iloc[0]
    assert (row["diff"], row["diff_ci_low"], row["diff_ci_high"]) == (0, 0, 0)
    assert row["significance"] == "no significant change"


def test_pairing_follows_ids_not_file_order(tmp_path):
    tree = write_results_tree(tmp_path, study_config(methods=("base", "full"), tasks=("arc", "squad_v2")))
    before = run(tree)["vs_base"]
    rewrite_predictions(tree, "demo-small/full/r0/arc/seed0/arc", lambda rows: rows[::-1])
    after = run(tree)["vs_base"]
    pd.testing.assert_frame_equal(before, after)


def test_paired_interval_sees_a_small_consistent_gain(tmp_path):
    """Six more right answers out of 60, nothing else changed: paired CI stays ≥ 0, as it must."""
    tree = write_results_tree(tmp_path, study_config(methods=("base", "full"), tasks=("arc",)))
    base = tree.root / "results" / "eval" / "demo-small/base/r0/none/seed0/arc" / "predictions.jsonl"
    rows = [json.loads(line) for line in base.read_text().splitlines()]
    wrong = [i for i, r in enumerate(rows) if r["scores"]["accuracy"] == 0][:6]
    for i in wrong:
        rows[i] = {**rows[i], "scores": {"accuracy": 1.0}}
    (tree.root / "results" / "eval" / "demo-small/full/r0/arc/seed0/arc" / "predictions.jsonl").write_text(
        "".join(json.dumps(r) + "\n" for r in rows))
    row = run(tree)["vs_base"].iloc[0]
    assert row["diff"] == pytest.approx(10.0)
    assert row["diff_ci_low"] >= 0 and row["diff_ci_high"] <= 20


def test_partial_grids_say_na_and_never_crash(tmp_path):
    grids = {
        "no_base": study_config(methods=("full", "lora"), models=("demo-small",)),
        "one_rank": study_config(ranks=(8,), tasks=("arc",)),
        "two_ranks": study_config(ranks=(8, 32), tasks=("arc",)),
        "base_only": study_config(methods=("base",)),
        "full_only": study_config(methods=("base", "full"), models=("demo-small",), tasks=("squad_v2",)),
        "one_model": study_config(models=("demo-small",), tasks=("arc",), ranks=(4, 8, 16)),
    }
    for name, config in grids.items():
        tree = write_results_tree(tmp_path / name, config)
        tables = run(tree, BootstrapSettings(resamples=100, seed=0, confidence=0.95))
        for table, columns in TABLES.items():
            assert list(tables[table].columns) == columns, (name, table)
        if name == "no_base":
            assert tables["vs_base"]["note"].str.startswith("n/a").all()
            assert (tables["transfer"]["effect"] == "n/a").all()
            assert tables["vs_larger_base"]["note"].iloc[0].startswith("n/a")
        if name in ("one_rank", "two_ranks"):
            rc = tables["rank_correlation"].iloc[0]
            assert math.isnan(rc["spearman"]) and "at least 3 LoRA ranks" in rc["note"]
            assert rc["best_rank"] in (8, 32)
        if name == "full_only":
            assert tables["full_vs_lora"]["note"].iloc[0] == "n/a: no LoRA in the study"
            assert tables["rank_correlation"].empty
        if name == "base_only":
            assert tables["vs_base"].empty and tables["transfer"].empty and tables["seeds"].empty
        if name == "one_model":
            assert tables["vs_larger_base"]["note"].iloc[0].startswith("n/a")
        if len(tables["seeds"]):
            assert tables["seeds"]["note"].str.contains("one seed").all()


def test_seed_variance_widens_the_interval(tmp_path):
    """Two seeds that disagree completely: sample resampling alone would give a zero-width CI."""
    tree = write_results_tree(tmp_path, study_config(methods=("base", "full"), tasks=("arc",), seeds=(0, 1),
                                                     models=("demo-small",)))
    for seed, score in ((0, 1.0), (1, 0.0)):
        rewrite_predictions(tree, f"demo-small/full/r0/arc/seed{seed}/arc",
                            lambda rows, score=score: [{**r, "scores": {"accuracy": score}} for r in rows])
    for path in tree.metrics:   # keep the matrix consistent with the rewritten predictions
        data = json.loads(path.read_text())
        if data["cell"]["method"] == "full":
            data["headline"]["value"] = 100.0 * (data["cell"]["seed"] == 0)
            path.write_text(json.dumps(data))
    seeds = run(tree)["seeds"].iloc[0]
    assert seeds["n_seeds"] == 2 and seeds["mean"] == 50 and seeds["sd"] == pytest.approx(math.sqrt(5000))
    assert seeds["ci_low"] == 0 and seeds["ci_high"] == 100
    lora_rank = run(tree)["lora_rank"].iloc[0]
    assert lora_rank["value"] == 50 and lora_rank["ci_low"] == 0 and lora_rank["ci_high"] == 100


def test_identical_inputs_give_identical_files(tmp_path):
    tree = write_results_tree(tmp_path, study_config(tasks=("arc", "squad_v2"), ranks=(4, 16, 64)))
    matrix = aggregate(tree)
    outputs = []
    for name in ("a", "b"):
        paths = analyse_matrix(matrix, tree.predictions, tmp_path / name, resamples=200, seed=0, confidence=0.95,
                               statistic_for=mean_score_statistic)
        outputs.append({k: p.read_bytes() for k, p in paths.items()})
    assert outputs[0] == outputs[1]
    assert b"nan" not in outputs[0]["vs_base"].lower()


def test_missing_predictions_is_a_clear_error(tree_small):
    tree = tree_small
    with pytest.raises(DataError, match="predictions.jsonl"):
        analyse(aggregate(tree), tree.predictions[1:], settings=FAST, statistic_for=mean_score_statistic)


@pytest.fixture
def tree_small(tmp_path):
    return write_results_tree(tmp_path, study_config(methods=("base", "full"), tasks=("arc",)))


def test_spearman_matches_scipy():
    from scipy.stats import spearmanr

    from ftmatrix.analysis import _spearman_rows

    rng = np.random.default_rng(3)
    ranks = np.array([4, 16, 64, 256], dtype=float)
    scores = rng.integers(0, 5, size=(50, 4)).astype(float)
    ours = _spearman_rows(ranks, scores)
    for row, value in zip(scores, ours):
        expected = spearmanr(ranks, row).statistic
        assert (math.isnan(value) and math.isnan(expected)) or value == pytest.approx(expected)


def test_two_cell_difference_equals_the_project_bootstrap(tmp_path):
    """One seed: the analysis's paired CI is exactly ftmatrix.bootstrap.paired_bootstrap_diff's."""
    from ftmatrix.bootstrap import align_by_id, paired_bootstrap_diff

    tree = write_results_tree(tmp_path, study_config(methods=("base", "full"), tasks=("squad_v2",)))
    row = run(tree)["vs_base"].iloc[0]
    folder = tree.root / "results" / "eval"

    def rows(cell):
        return [json.loads(line) for line in (folder / cell / "predictions.jsonl").read_text().splitlines()]

    tuned, base = rows("demo-small/full/r0/squad_v2/seed0/squad_v2"), rows("demo-small/base/r0/none/seed0/squad_v2")
    tuned, base = align_by_id(sorted(tuned, key=lambda r: r["id"]), base)
    diff, low, high = paired_bootstrap_diff(tuned, base, mean_score_statistic("squad_v2", "f1"),
                                            resamples=FAST.resamples, seed=FAST.seed, confidence=FAST.confidence)
    assert (row["diff"], row["diff_ci_low"], row["diff_ci_high"]) == pytest.approx((diff, low, high), abs=1e-9)


def test_with_the_tasks_own_metrics_and_scoring(tmp_path):
    """Generations in the tasks' formats, scored by the scoring stage; the analysis uses the tasks' metrics."""
    from ftmatrix.tasks import get_task

    tree = write_results_tree(tmp_path, study_config(methods=("base", "full"), models=("demo-small", "demo-large")),
                              realistic=True)
    matrix = pd.read_csv(aggregate(tree))
    assert set(matrix["headline_metric"]) == {"macro_f1", "exact_match", "f1"}
    assert matrix["metric_HasAns_f1"].notna().sum() == 5      # SQuAD v2's split metrics reach the matrix
    tables = analyse(tree.root / "results" / "matrix.csv", tree.predictions, settings=FAST)
    vs = tables["vs_base"]
    in_task = vs[vs["in_task"]]
    assert (in_task["significance"] == "better").all() and len(in_task) == 3
    # the point difference is the task's own corpus metric (macro-F1 is not a mean of per-sample scores)
    folder = tree.root / "results" / "eval"
    rows = {c: [json.loads(line) for line in (folder / c / "predictions.jsonl").read_text().splitlines()]
            for c in ("demo-small/full/r0/arc/seed0/arc", "demo-small/base/r0/none/seed0/arc")}
    arc = get_task("arc")
    expected = (arc.metrics(rows["demo-small/full/r0/arc/seed0/arc"])["macro_f1"]
                - arc.metrics(rows["demo-small/base/r0/none/seed0/arc"])["macro_f1"])
    assert in_task[in_task["eval_task"] == "arc"]["diff"].item() == pytest.approx(expected)


def test_duplicate_ids_cannot_be_paired(tree_small):
    rewrite_predictions(tree_small, "demo-small/full/r0/arc/seed0/arc", lambda rows: rows + rows[:1])
    with pytest.raises(DataError, match="appears twice"):
        run(tree_small)


def test_permutation_p_of_a_rank_sweep():
    from ftmatrix.analysis import permutation_p

    # three ranks: the most extreme ordering still has p = 2/6
    assert permutation_p([4, 16, 64], [1.0, 2.0, 3.0]) == pytest.approx(2 / 6)
    # six ranks in perfect order: p = 2/720
    assert permutation_p([1, 2, 3, 4, 5, 6], [10, 20, 30, 40, 50, 60]) == pytest.approx(2 / 720)
    assert math.isnan(permutation_p([1, 2, 3], [5.0, 5.0, 5.0]))


def test_three_ranks_never_make_a_significant_correlation(tmp_path):
    tree = write_results_tree(tmp_path, study_config(tasks=("arc",), ranks=(4, 16, 64)))
    rc = run(tree)["rank_correlation"].iloc[0]
    assert rc["permutation_p"] >= 2 / 6 - 1e-9
    # Said as n/a with the reason, not as a verdict: no order of three ranks could be significant
    # (the resamples rarely reorder three scores, so the interval is often a single point).
    assert rc["significance"] == "n/a"
    assert "too few ranks to test at 95% (any order of 3 has permutation p ≥ 0.33; it takes 5)" in rc["note"]
    assert math.isfinite(rc["spearman"])


def test_smallest_permutation_p_says_how_many_ranks_a_correlation_needs():
    from ftmatrix.analysis import permutation_p, smallest_permutation_p

    for n in (3, 4, 5, 6):
        ranks = [2 ** (i + 2) for i in range(n)]
        assert smallest_permutation_p(n) == pytest.approx(permutation_p(ranks, list(range(n))))
    assert smallest_permutation_p(4) > 0.05 > smallest_permutation_p(5)


def test_five_ranks_make_a_rank_correlation(tmp_path):
    tree = write_results_tree(tmp_path, study_config(tasks=("arc",), ranks=(4, 8, 16, 32, 64)))
    rc = run(tree)["rank_correlation"].iloc[0]
    assert rc["significance"] != "n/a" and "too few" not in str(rc.get("note") or "")


def test_a_gain_that_one_seed_reverses_is_not_significant(tmp_path):
    """With several training seeds, the interval over seeds and samples may exclude zero while one
    seed goes the other way: the comparison is then not called significant, and says why."""
    tree = write_results_tree(tmp_path, study_config(seeds=(0, 1, 2, 3), ranks=(4,), tasks=("arc",)))
    folder = tree.root / "results" / "eval"
    base = folder / "demo-small/base/r0/none/seed0/arc/predictions.jsonl"
    rows = [json.loads(line) for line in base.read_text().splitlines()]

    def write(path, fraction_right):
        path.write_text("".join(json.dumps({**row, "scores": {"accuracy": float(i < fraction_right * len(rows))}})
                                + "\n" for i, row in enumerate(rows)))

    write(base, 0.40)
    for seed, right in enumerate((0.95, 0.90, 0.85, 0.35)):    # three far better, one a little worse
        write(folder / f"demo-small/full/r0/arc/seed{seed}/arc/predictions.jsonl", right)
    transfer = run(tree)["transfer"]
    row = transfer[(transfer["method"] == "full") & (transfer["train_task"] == "arc")].iloc[0]
    assert row["seed_diffs"].split() == ["+55.00", "+50.00", "+45.00", "-5.00"]
    assert row["diff_ci_low"] > 0                                   # the pooled interval alone would say "better"
    assert not row["seeds_agree"]
    assert row["significance"] == "no significant change" and "seeds disagree" in row["note"]
    # The seeds table judges the change against the base by the same rule.
    seeds = run(tree)["seeds"]
    full = seeds[(seeds["method"] == "full") & (seeds["train_task"] == "arc")].iloc[0]
    assert full["vs_base_significance"] == "no significant change" and "seeds disagree" in full["note"]


def _answer_arc(tree, cell_path, said):
    """Rewrite an ARC cell's answers as ``said(i, gold, labels)`` gives them, scored by the task."""
    from ftmatrix.tasks import get_task

    arc = get_task("arc")

    def change(rows):
        out = []
        for i, row in enumerate(rows):
            label = said(i, row["reference"]["label"], row["reference"]["labels"])
            reading = {"extracted": label, "scores": arc.score(label, row["reference"])}
            out.append({**row, **reading, **{g: reading for g in ("lenient", "strict") if g in row}})
        return out

    rewrite_predictions(tree, cell_path, change)


@pytest.mark.parametrize("right_every", [0, 2])
def test_a_macro_f1_gain_counts_only_when_accuracy_shows_it(tmp_path, right_every):
    """ARC's macro-F1 rises when answers merely spread over the labels: against a base that always
    says A, a model that spreads its answers at chance gains macro-F1 with an interval above zero
    and answers no more questions right. That is no transfer, and the table says why; a model
    that also answers more right is one."""
    tree = write_results_tree(tmp_path, study_config(tasks=("arc", "squad_v2"), methods=("base", "full"),
                                                     models=("demo-small",)), realistic=True)
    _answer_arc(tree, "demo-small/base/r0/none/seed0/arc", lambda i, gold, labels: labels[0])
    # Spread over the four labels; right a quarter of the time, or every other question and spread.
    _answer_arc(tree, "demo-small/full/r0/squad_v2/seed0/arc",
                lambda i, gold, labels: gold if right_every and i % right_every == 0 else labels[(i // 4) % 4])
    tables = analyse(aggregate(tree), tree.predictions, settings=FAST)
    row = tables["transfer"].set_index(["method", "train_task", "eval_task"]).loc[("full", "squad_v2", "arc")]
    assert row["diff_ci_low"] > 0 and row["check_metric"] == "accuracy"
    if not right_every:
        assert row["check_diff"] == pytest.approx(0.0, abs=5.0) and not row["check_diff_ci_low"] > 0
        assert row["effect"] == "gain not in right answers" and row["significance"] == "no significant change"
        assert "macro-F1 difference does not show in accuracy" in row["note"]
    else:
        assert row["check_diff_ci_low"] > 0
        assert row["effect"] == "positive transfer" and row["significance"] == "better"
    seeds = tables["seeds"].set_index(["method", "train_task", "eval_task"]).loc[("full", "squad_v2", "arc")]
    assert seeds["vs_base_significance"] == row["significance"]


def _sized(config: dict, eval_size: int) -> dict:
    for task in config["tasks"]:
        task["eval_size"] = eval_size
    return config


def _spread(right: float, salt: int = 0):
    """Answers right with probability ``right``; the wrong ones spread over the other labels."""
    import random

    def said(i, gold, labels):
        draw = random.Random(i * 7 + salt)
        return gold if draw.random() < right else draw.choice([label for label in labels if label != gold])
    return said


def _on_ab(i, gold, labels):
    """Right on the questions whose answer is A or B, A on the others: accuracy about 50, macro-F1 37.5."""
    return gold if gold in "AB" else "A"


def test_a_macro_f1_gain_with_fewer_right_answers_is_forgetting(tmp_path):
    """Against the base, macro-F1 can rise while significantly fewer answers are right (the answers
    spread over the labels, the base's A-or-B answers were right more often): a loss of right
    answers, not a change to hide."""
    tree = write_results_tree(tmp_path, _sized(study_config(tasks=("arc", "squad_v2"), methods=("base", "full"),
                                                            models=("demo-small",)), 1200), realistic=True)
    _answer_arc(tree, "demo-small/base/r0/none/seed0/arc", _on_ab)
    _answer_arc(tree, "demo-small/full/r0/squad_v2/seed0/arc", _spread(0.43))
    tables = analyse(aggregate(tree), tree.predictions, settings=FAST)
    row = tables["transfer"].set_index(["method", "train_task", "eval_task"]).loc[("full", "squad_v2", "arc")]
    assert row["diff_ci_low"] > 0 and row["check_diff_ci_high"] < 0          # macro-F1 up, accuracy down
    assert row["significance"] == "worse" and row["effect"] == "forgetting"
    assert "macro-F1 and accuracy disagree" in row["note"] and "the verdict follows accuracy" in row["note"]
    seeds = tables["seeds"].set_index(["method", "train_task", "eval_task"]).loc[("full", "squad_v2", "arc")]
    assert seeds["vs_base_significance"] == "worse"


def test_when_two_alternatives_differ_oppositely_on_the_two_metrics_the_right_answers_decide(tmp_path):
    """Full fine-tuning answers more questions right than the best LoRA rank, significantly, while
    LoRA's answers spread better over the labels (higher macro-F1): full fine-tuning is better."""
    tree = write_results_tree(tmp_path, _sized(study_config(tasks=("arc",), ranks=(4,), models=("demo-small",)),
                                               2000), realistic=True)
    _answer_arc(tree, "demo-small/base/r0/none/seed0/arc", _spread(0.3, 99))
    _answer_arc(tree, "demo-small/full/r0/arc/seed0/arc", lambda i, gold, labels: gold if gold in "ABC" else "A")
    _answer_arc(tree, "demo-small/lora/r4/arc/seed0/arc", _spread(0.69, 4))
    row = analyse(aggregate(tree), tree.predictions, settings=FAST)["full_vs_lora"].iloc[0]
    assert row["diff_ci_high"] < 0 and row["check_diff_ci_low"] > 0
    assert row["significance"] == "better" and "the verdict follows accuracy" in row["note"]


def test_a_right_answers_gain_one_seed_reverses_confirms_no_headline_gain(tmp_path):
    """The correctness check follows the headline's rule for seeds: with one of four training seeds
    answering fewer questions right, the pooled accuracy gain does not confirm the macro-F1 gain."""
    tree = write_results_tree(tmp_path, _sized(study_config(tasks=("arc",), methods=("base", "full"), seeds=(0, 1, 2, 3),
                                                            models=("demo-small",)), 400), realistic=True)
    _answer_arc(tree, "demo-small/base/r0/none/seed0/arc", _on_ab)
    for seed, right in enumerate((0.9, 0.9, 0.9, 0.40)):
        _answer_arc(tree, f"demo-small/full/r0/arc/seed{seed}/arc", _spread(right, seed))
    row = analyse(aggregate(tree), tree.predictions, settings=FAST)["transfer"].iloc[0]
    assert row["seeds_agree"] and row["diff_ci_low"] > 0 and row["check_diff_ci_low"] > 0
    assert row["check_significance"] == "no significant change"
    assert row["effect"] == "gain not in right answers" and "the training seeds disagree on its sign" in row["note"]


def test_the_smallest_sufficient_rank_is_judged_as_two_alternatives_are(tmp_path):
    """A rank below the best on macro-F1 alone (the answers right as often, within noise) is not
    significantly below it: it is sufficient, as full_vs_lora would judge the pair."""
    import random

    tree = write_results_tree(tmp_path, _sized(study_config(tasks=("arc",), methods=("base", "lora"), ranks=(4, 16),
                                                            models=("demo-small",)), 2000), realistic=True)
    _answer_arc(tree, "demo-small/base/r0/none/seed0/arc", _spread(0.42, 1))
    _answer_arc(tree, "demo-small/lora/r16/arc/seed0/arc", _spread(0.8, 16))
    _answer_arc(tree, "demo-small/lora/r4/arc/seed0/arc",
                lambda i, gold, labels: gold if gold in "ABC" or random.Random(i).random() < 0.2 else "A")
    tables = analyse(aggregate(tree), tree.predictions, settings=FAST)
    ranks = tables["lora_rank"].set_index("rank")
    assert ranks.loc[16, "value"] - ranks.loc[4, "value"] > 3            # r4 behind on macro-F1
    row = tables["rank_correlation"].iloc[0]
    assert row["best_rank"] == 16 and row["smallest_sufficient_rank"] == 4


def test_a_correctness_note_keeps_the_latency_note(tmp_path):
    """Notes add up: a gain accuracy does not show and a cell without timed samples both say so."""
    tree = write_results_tree(tmp_path, _sized(study_config(tasks=("arc",), methods=("base", "full"),
                                                            models=("demo-small",)), 400), realistic=True)
    _answer_arc(tree, "demo-small/base/r0/none/seed0/arc", _on_ab)
    # The same right answers; the wrong ones moved off A: macro-F1 up, accuracy identical.
    _answer_arc(tree, "demo-small/full/r0/arc/seed0/arc",
                lambda i, gold, labels: gold if gold in "AB" else {"C": "D", "D": "C"}[gold])
    rewrite_predictions(tree, "demo-small/full/r0/arc/seed0/arc",
                        lambda rows: [{**r, "latency_s": None, "ttft_s": None, "tpot_s": None,
                                       "latency_rounds_s": None} for r in rows])
    row = analyse(aggregate(tree), tree.predictions, settings=FAST)["vs_base"].iloc[0]
    assert "does not show in accuracy" in row["note"] and "latency n/a: no timed samples in common" in row["note"]


def test_the_smallest_sufficient_rank_follows_the_seeds_rule(tmp_path):
    """Three of four seeds of r4 below r16 and one above: full_vs_lora would call such a pair "no
    significant change" (the seeds disagree), and so r4 is not significantly below r16."""
    import random

    tree = write_results_tree(tmp_path, _sized(study_config(tasks=("openmath",), methods=("base", "lora"), ranks=(4, 16),
                                                            seeds=(0, 1, 2, 3), models=("demo-small",)), 400))
    folder = tree.root / "results" / "eval"

    def write(path, fraction_right, salt):
        rows = [json.loads(line) for line in path.read_text().splitlines()]
        path.write_text("".join(json.dumps({**r, "scores": {k: float(random.Random(i * 13 + salt).random() < fraction_right)
                                                            for k in r["scores"]}}) + "\n"
                                for i, r in enumerate(rows)))

    write(folder / "demo-small/base/r0/none/seed0/openmath/predictions.jsonl", 0.3, 0)
    for seed in range(4):
        write(folder / f"demo-small/lora/r16/openmath/seed{seed}/openmath/predictions.jsonl", 0.85, 100 + seed)
        write(folder / f"demo-small/lora/r4/openmath/seed{seed}/openmath/predictions.jsonl",
              (0.6, 0.6, 0.6, 0.9)[seed], 200 + seed)
    row = run(tree)["rank_correlation"].iloc[0]
    assert row["best_rank"] == 16 and row["smallest_sufficient_rank"] == 4
