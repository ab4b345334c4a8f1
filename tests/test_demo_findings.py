"""The demo demonstrates what the study is about, on the demo run the suite already makes:
full fine-tuning learns every task (on its correctness metric, not on format alone), the larger
base beats the smaller one, a LoRA rank learns every task, the transfer table has a positive
transfer and a forgetting cell, and tuned models answer in fewer tokens than their base.

The intervals are the project's own: a percentile bootstrap over the evaluation samples,
paired by sample id (ftmatrix.bootstrap), and the analysis tables the journal is written from.
Slow: it reads the finished demo (tests/conftest.py, demo_run).
"""

from __future__ import annotations

import pandas as pd
import pytest

from ftmatrix import bootstrap, grid, io
from ftmatrix.tasks import get_task

pytestmark = pytest.mark.slow

# Each demo task's correctness metrics: the ones a fine-tuned model must raise over its base.
CORRECTNESS = {"arc": ["accuracy"], "squad_v2": ["HasAns_f1", "f1"], "openmath": ["exact_match"]}
# Four options: answering at random is right a quarter of the time.
ARC_CHANCE = 25.0
RESAMPLES = 2000


def finished_demo(root, config: dict) -> dict:
    """What the tests below read of a finished demo study (its results folder, its smaller
    fine-tuned model and larger untuned one, its tasks); also bench/demo_seed.py's."""
    models = {m["name"]: m for m in config["models"]}
    small = next(name for name, m in models.items() if m["finetune"] and m["source"] == "build")
    large = next(name for name, m in models.items()
                 if not m["finetune"] and m["source"] == "build" and m["params_b"] > models[small]["params_b"])
    tasks = {t["name"]: t for t in config["tasks"]}
    return {"root": root, "results": root / "results" / config["study"], "config": config, "small": small,
            "large": large, "tasks": tasks}


@pytest.fixture(scope="module")
def demo(demo_run):
    return finished_demo(demo_run["root"], demo_run["config"])


def predictions(demo, model, method, rank, train_task, seed, eval_task) -> list[dict]:
    path = (demo["results"] / "eval" / model / method / f"r{rank}" / train_task / f"seed{seed}" / eval_task
            / "predictions.jsonl")
    return io.read_jsonl(path)


def seeds_of(demo, task: str) -> list[int]:
    return grid.task_seeds(demo["config"], demo["tasks"][task])


def paired(kind, treatment, reference, metric):
    return bootstrap.paired_metric_diff(get_task(kind), treatment, reference, metric, resamples=RESAMPLES)


def analysis(demo, name) -> pd.DataFrame:
    return pd.read_csv(demo["results"] / "analysis" / f"{name}.csv")


def test_full_fine_tuning_learns_every_task_on_its_correctness_metric(demo):
    """Item 1: for every task and training seed, the fully fine-tuned small model beats its untuned
    base on the task's correctness metric with a CI excluding zero; on ARC its accuracy's CI
    lies above chance."""
    small = demo["small"]
    failures = []
    for task, entry in demo["tasks"].items():
        kind = entry["kind"]
        base = predictions(demo, small, "base", 0, "none", 0, task)
        for seed in seeds_of(demo, task):
            tuned = predictions(demo, small, "full", 0, task, seed, task)
            for metric in CORRECTNESS[kind]:
                diff, low, high = paired(kind, tuned, base, metric)
                if not low > 0:
                    failures.append(f"{task} seed {seed} {metric}: {diff:+.1f} [{low:+.1f}, {high:+.1f}]")
            if kind == "arc":
                value, low, high = bootstrap.metric_ci(get_task(kind), tuned, "accuracy", resamples=RESAMPLES)
                if not low > ARC_CHANCE:
                    failures.append(f"{task} seed {seed} accuracy {value:.1f} [{low:.1f}, {high:.1f}] "
                                    f"not above chance ({ARC_CHANCE})")
    assert not failures, failures


def test_the_larger_base_beats_the_smaller_on_two_tasks(demo):
    """Item 2: the untuned larger model is significantly better than the untuned smaller one on
    at least two tasks (the analysis table vs_larger_base: small − larger, CI below zero)."""
    table = analysis(demo, "vs_larger_base")
    bases = table[(table["model"] == demo["small"]) & (table["method"] == "base")
                  & (table["larger_model"] == demo["large"])]
    assert len(bases) == len(demo["tasks"]), bases
    beaten = bases[bases["diff_ci_high"] < 0]
    assert len(beaten) >= 2, bases[["eval_task", "reference", "value", "diff", "diff_ci_low", "diff_ci_high"]]


def transfer_table(demo) -> pd.DataFrame:
    table = analysis(demo, "transfer")
    return table[table["model"] == demo["small"]]


def verdict_interval(rows: pd.DataFrame) -> pd.DataFrame:
    """Each row's 95% interval on the metric its verdict follows (``verdict_metric``): the
    headline's, or the correctness metric's where the analysis followed it (an ARC cell whose
    macro-F1 rises while its accuracy falls is forgetting, by accuracy's interval)."""
    checked = rows["verdict_metric"] != rows["headline_metric"]
    return pd.DataFrame({"low": rows["check_diff_ci_low"].where(checked, rows["diff_ci_low"]),
                         "high": rows["check_diff_ci_high"].where(checked, rows["diff_ci_high"])})


def test_a_lora_rank_learns_every_task_and_tuning_on_one_task_costs_another(demo):
    """Item 3: on every task at least one LoRA rank gains significantly over the base (as the
    analysis calls it: on ARC its accuracy rises too, not its macro-F1 alone), and the transfer
    table has a significant forgetting cell."""
    table = transfer_table(demo)
    lora = table[(table["method"] == "lora") & table["in_task"]]
    for task in demo["tasks"]:
        rows = lora[lora["train_task"] == task]
        assert len(rows) == len(demo["config"]["lora"]["ranks"]), (task, rows)
        assert (rows["significance"] == "better").any(), \
            rows[["rank", "reference", "value", "diff", "diff_ci_low", "check_diff", "check_diff_ci_low"]]
    forgetting = table[table["effect"] == "forgetting"]
    assert len(forgetting) >= 1, table[["method", "rank", "train_task", "eval_task", "diff", "effect"]]
    assert (~forgetting["in_task"]).all() and (verdict_interval(forgetting)["high"] < 0).all(), \
        forgetting[["method", "rank", "train_task", "eval_task", "verdict_metric", "diff_ci_high", "check_diff_ci_high"]]


def test_tuning_on_one_task_helps_another(demo):
    """Item 3: the transfer table has a significant positive transfer cell: a headline gain on a
    task the model was not tuned for that its correctness metric (ARC: accuracy) bears out."""
    table = transfer_table(demo)
    helped = table[table["effect"] == "positive transfer"]
    found = table[["method", "rank", "train_task", "eval_task", "diff", "check_diff", "effect"]].to_string()
    assert len(helped) >= 1, f"no positive transfer cell\n{found}"
    assert (~helped["in_task"]).all() and (verdict_interval(helped)["low"] > 0).all(), \
        helped[["method", "rank", "train_task", "eval_task", "verdict_metric", "diff_ci_low", "check_diff_ci_low"]]


def test_tuned_models_answer_in_fewer_tokens_than_their_base(demo):
    """Item 4: on at least two tasks the fully fine-tuned small model's answers are shorter than
    its base's (mean output tokens, paired over the samples, CI below zero)."""
    small = demo["small"]
    shorter = []
    for task in demo["tasks"]:
        base = predictions(demo, small, "base", 0, "none", 0, task)
        tuned = predictions(demo, small, "full", 0, task, seeds_of(demo, task)[0], task)
        a, b = bootstrap.align_by_id(tuned, base)
        diff, low, high = bootstrap.paired_bootstrap_diff(a, b, bootstrap.mean_of("output_tokens"),
                                                         resamples=RESAMPLES)
        if high < 0:
            shorter.append((task, round(diff, 1)))
    assert len(shorter) >= 2, shorter
