"""The rules that choose the study's findings, each on a few hand-made rows of the tables
ftmatrix.analysis writes (its columns, through its CSV writer and reader), and the journal
phrasing the records they return."""

from __future__ import annotations

import re
from pathlib import Path

import pandas as pd
import pytest

from ftmatrix import findings as F
from ftmatrix.analysis import (FASTER, SLOWER, TABLES, TRANSFER_EFFECTS, frame, quality_verdict, read_table, verdict,
                               write_table)

CONFIDENCE = 0.95


# ---------------------------------------------------------------------------- hand-made tables


@pytest.fixture
def tables(tmp_path):
    """tables(name=[rows], …) -> every analysis table, as read_table reads it (empty where no rows given)."""
    def make(**given):
        out = {}
        for name, columns in TABLES.items():
            path = tmp_path / f"{name}.csv"
            write_table(frame(given.get(name, []), columns), path)
            out[name] = read_table(path)
        return out
    return make


def compared(diff, low, high, *, latency=None, n_seeds=1, metric="f1", **keys) -> dict:
    """A comparison row as analysis writes it: treatment − reference, verdicts from the intervals."""
    row = {"headline_metric": metric, "n_seeds": n_seeds, "n_paired": 40, "reference": 50.0, "value": 50.0 + diff,
           "diff": diff, "diff_ci_low": low, "diff_ci_high": high, "rel_pct": diff / 50.0 * 100.0,
           "significance": quality_verdict(low, high), **keys}
    if latency is not None:
        rel, rel_low, rel_high = latency
        word = verdict(rel_low, rel_high)
        row.update({"n_timed_paired": 10, "latency_reference": 1.0, "latency_value": 1.0 + rel / 100.0,
                    "latency_rel_pct": rel, "latency_rel_ci_low": rel_low, "latency_rel_ci_high": rel_high,
                    "latency_significance": {"better": SLOWER, "worse": FASTER}.get(word, word)})
    return row


def transfer_row(model, method, rank, train_task, eval_task, diff, low, high, **extra) -> dict:
    row = compared(diff, low, high, model=model, method=method, rank=rank, train_task=train_task,
                   eval_task=eval_task, in_task=train_task == eval_task, **extra)
    row["effect"] = TRANSFER_EFFECTS.get((train_task == eval_task, row["significance"]), row["significance"])
    return row


def larger_row(method, rank, task, diff, low, high, *, latency=None, n_seeds=1) -> dict:
    return compared(diff, low, high, latency=latency, n_seeds=n_seeds, model="small", method=method, rank=rank,
                    train_task=task if method != "base" else "none", eval_task=task,
                    in_task=method != "base", larger_model="large", model_params=1e8, larger_model_params=4e8)


def matrix_rows(rows: list[dict]) -> pd.DataFrame:
    """Matrix cells: model, method, rank, train and eval task, plus the columns a rule reads."""
    base = {"rank": 0, "seed": 0, "headline_metric": "f1", "headline": 50.0, "headline_ci_low": 45.0,
            "headline_ci_high": 55.0}
    return pd.DataFrame([{**base, **r, "label": f"{r['model']} {r['method']}"} for r in rows])


# ---------------------------------------------------------------------------- verdicts of a comparison


def test_a_significant_gain_is_better_with_its_interval_and_latency(tables):
    t = tables(transfer=[transfer_row("small", "full", 0, "quiz", "quiz", 12.0, 5.0, 19.0,
                                      latency=(-60.0, -70.0, -50.0))])
    score, speed = F.vs_own_base(t, CONFIDENCE)
    assert score.topic == F.VS_OWN_BASE and score.verdict == "better"
    assert score.effect == F.Effect(12.0, F.POINTS, 24.0)
    assert score.interval == F.Interval(5.0, 19.0, CONFIDENCE) and score.interval.excludes_zero
    assert score.subject == F.Subject("quiz", F.Variant("small", "full", 0, "quiz"), F.Variant("small"))
    assert score.covers == F.SAMPLES
    assert speed.what == F.LATENCY and speed.verdict == FASTER and speed.effect.value == -60.0
    assert speed.subject == score.subject


def test_an_interval_straddling_zero_is_not_significant(tables):
    t = tables(transfer=[transfer_row("small", "full", 0, "quiz", "quiz", 2.0, -1.5, 5.5)])
    (score,) = F.vs_own_base(t, CONFIDENCE)       # no latency columns: no latency finding
    assert score.verdict == "no significant change"
    assert not score.interval.excludes_zero


def test_pooled_seeds_are_what_the_interval_covers(tables):
    t = tables(transfer=[transfer_row("small", "full", 0, "quiz", "quiz", 9.0, 3.0, 15.0, n_seeds=3)])
    (score,) = F.vs_own_base(t, CONFIDENCE)
    assert score.covers == F.SAMPLES_AND_SEEDS


def test_own_base_takes_full_fine_tuning_else_the_best_lora(tables):
    t = tables(transfer=[transfer_row("small", "lora", 8, "quiz", "quiz", 20.0, 15.0, 25.0),
                         transfer_row("small", "lora", 32, "quiz", "quiz", 25.0, 20.0, 30.0),
                         transfer_row("small", "full", 0, "quiz", "quiz", 10.0, 5.0, 15.0),
                         transfer_row("small", "lora", 8, "sums", "sums", 3.0, 1.0, 5.0),
                         transfer_row("small", "lora", 32, "sums", "sums", 4.0, 2.0, 6.0)])
    picked = {f.subject.eval_task: f.subject.variant for f in F.vs_own_base(t, CONFIDENCE)}
    assert picked == {"quiz": F.Variant("small", "full", 0, "quiz"), "sums": F.Variant("small", "lora", 32, "sums")}


def test_vs_larger_base_falls_back_on_the_untuned_model(tables):
    t = tables(vs_larger_base=[larger_row("base", 0, "quiz", -20.0, -25.0, -15.0, latency=(-50.0, -55.0, -45.0))])
    score, speed = F.vs_larger_base(t, CONFIDENCE)
    assert score.verdict == "worse" and score.subject.variant == F.Variant("small")
    assert score.subject.reference == F.Variant("large")
    assert speed.verdict == FASTER


def test_a_model_behind_an_endpoint_is_compared_as_an_api_not_as_a_larger_base(tables):
    """The API row counts as larger than every local model; its findings say "local vs API"."""
    api = {**larger_row("full", 0, "quiz", 2.0, -1.0, 5.0, latency=(-80.0, -85.0, -75.0)),
           "larger_model": "hosted", "larger_is_api": True, "larger_model_params": float("nan")}
    t = tables(vs_larger_base=[larger_row("full", 0, "quiz", -20.0, -25.0, -15.0), api])
    topics = {(f.topic, f.subject.reference.model) for f in F.vs_larger_base(t, CONFIDENCE)}
    assert topics == {(F.VS_LARGER, "large"), (F.VS_API, "hosted")}


def test_fine_tuned_comparisons_lead_untuned_ones(tables):
    """A fine-tuned model against a larger one is the study's question: it comes before an untuned
    model's comparison, whatever the names (here an untuned "aaa" against an API)."""
    api = {**larger_row("base", 0, "quiz", 0.0, 0.0, 0.0), "model": "aaa", "larger_model": "hosted",
           "larger_is_api": True, "larger_model_params": float("nan")}
    t = tables(vs_larger_base=[api, larger_row("full", 0, "quiz", 5.0, 1.0, 9.0)])
    found = F.vs_larger_base(t, CONFIDENCE)
    assert [(f.subject.variant.model, f.subject.variant.method) for f in found] == [("small", "full"), ("aaa", "base")]


# ---------------------------------------------------------------------------- full vs LoRA


def fvl(task, diff, low, high) -> dict:
    return compared(diff, low, high, model="small", train_task=task, eval_task=task, in_task=True, best_rank=16,
                    lora_ranks="4 16 64")


def test_full_vs_lora_counts_decide_the_advice(tables):
    most = tables(full_vs_lora=[fvl("a", 5.0, 2.0, 8.0), fvl("b", 4.0, 1.0, 7.0), fvl("c", -3.0, -5.0, -1.0)])
    (advice,) = F.full_or_lora(matrix_rows([]), most, CONFIDENCE)
    assert advice.verdict == F.PREFER_FULL
    assert (advice.facts["full_better_on"], advice.facts["lora_better_on"], advice.facts["no_difference_on"]) == \
        (("a", "b"), ("c",), ())
    assert [p.subject.reference.rank for p in advice.parts] == [16, 16, 16]

    none = tables(full_vs_lora=[fvl("a", 1.0, -2.0, 4.0), fvl("b", -3.0, -5.0, -1.0)])
    lora = matrix_rows([{"model": "small", "method": "lora", "rank": r, "train_task": "a", "eval_task": "a",
                         "trainable_pct": pct} for r, pct in ((4, 0.5), (64, 7.0))])
    (advice,) = F.full_or_lora(lora, none, CONFIDENCE)
    assert advice.verdict == F.LORA_ENOUGH and advice.facts["lora_better_on"] == ("b",)
    assert advice.facts["lora_trainable_pct"] == (0.5, 7.0)

    split = tables(full_vs_lora=[fvl("a", 5.0, 2.0, 8.0), fvl("b", 0.5, -1.0, 2.0), fvl("c", -3.0, -5.0, -1.0)])
    (advice,) = F.full_or_lora(matrix_rows([]), split, CONFIDENCE)
    assert advice.verdict == F.DEPENDS_ON_TASK


def test_full_vs_best_lora_highlights_only_trained_tasks(tables):
    cross = fvl("a", 5.0, 2.0, 8.0) | {"eval_task": "b", "in_task": False}
    t = tables(full_vs_lora=[fvl("a", 5.0, 2.0, 8.0), cross])
    (only,) = F.full_vs_best_lora(t, CONFIDENCE)
    assert only.subject.eval_task == "a" and only.verdict == "better"


# ---------------------------------------------------------------------------- LoRA rank


def rank_row(task, significance, rho=0.9, n_ranks=4, best=64, sufficient=16, note="") -> dict:
    return {"model": "small", "train_task": task, "eval_task": task, "in_task": True, "headline_metric": "f1",
            "n_ranks": n_ranks, "ranks": " ".join(str(4 ** i) for i in range(1, n_ranks + 1)),
            "spearman": rho, "ci_low": 0.3 if rho else None, "ci_high": 1.0 if rho else None,
            "permutation_p": 0.04 if rho else None, "significance": significance, "best_rank": best,
            "smallest_sufficient_rank": sufficient, "note": note}


def test_rank_matters_only_with_a_significant_positive_correlation(tables):
    t = tables(rank_correlation=[rank_row("a", "positive", n_ranks=5),
                                 rank_row("b", "no significant correlation", 0.2, 5, 16, 4)])
    (advice,) = F.rank_choice(matrix_rows([]), t, CONFIDENCE)
    assert advice.verdict == F.HIGHER_RANKS_HELP
    assert [(p.subject.eval_task, p.facts["best_rank"]) for p in advice.parts] == [("a", 64)]

    t = tables(rank_correlation=[rank_row("a", "no significant correlation", 0.5, n_ranks=5, sufficient=16),
                                 rank_row("b", "no significant correlation", 0.2, n_ranks=5, sufficient=4)])
    (advice,) = F.rank_choice(matrix_rows([]), t, CONFIDENCE)
    assert advice.verdict == F.RANK_BARELY_MATTERS and advice.facts["smallest_sufficient_ranks"] == (4, 16)


def test_three_ranks_do_not_make_rank_barely_matter(tables):
    """No correlation of three (or four) ranks can be significant at 95%, so its absence says
    nothing: the advice says rank is not measured, with each task's smallest sufficient rank."""
    t = tables(rank_correlation=[rank_row("a", "n/a", -0.5, n_ranks=3, best=4, sufficient=4),
                                 rank_row("b", "n/a", 0.5, n_ranks=3, best=64, sufficient=16)])
    (advice,) = F.rank_choice(matrix_rows([]), t, CONFIDENCE)
    assert advice.verdict == F.TOO_FEW_RANKS
    assert advice.facts["needs_ranks"] == 5 and advice.facts["n_ranks"] == 3
    assert advice.facts["smallest_sufficient"] == (("a", 4), ("b", 16))
    from ftmatrix.journal import rank_choice_text
    assert rank_choice_text(advice) == (
        "Whether LoRA rank matters is not measured: with three ranks no rank–score correlation can be "
        "significant at 95% (it takes five). The smallest rank not significantly below the best: r4 on a, "
        "r16 on b.")

    t = tables(rank_correlation=[rank_row("a", "n/a", None, n_ranks=2, note="n/a: needs 3 ranks")])
    (advice,) = F.rank_choice(matrix_rows([]), t, CONFIDENCE)
    assert advice.verdict == F.TOO_FEW_RANKS


def test_rank_correlation_highlight_carries_rho_or_why_not(tables):
    t = tables(rank_correlation=[rank_row("a", "positive", 0.8),
                                 rank_row("b", "n/a", None, n_ranks=2, note="n/a: needs 3 ranks")],
               lora_rank=[{"model": "small", "method": "lora", "rank": 4, "train_task": "a", "eval_task": "a",
                           "in_task": True, "n_seeds": 2}])
    rho, none = F.rank_correlations(t, CONFIDENCE)
    assert rho.effect == F.Effect(0.8, F.RHO) and rho.facts["permutation_p"] == 0.04
    assert rho.subject.ranks == (4, 16, 64, 256) and rho.covers == F.SAMPLES_AND_SEEDS
    assert none.effect is None and none.note == "n/a: needs 3 ranks" and none.covers == F.SAMPLES


def test_a_rank_correlation_too_few_ranks_can_show_says_so_rather_than_its_rho(tables):
    """Three ranks: the analysis keeps rho and its (often one-point) interval in the table but calls
    the row n/a; the TL;DR gives the reason, not 'Spearman ρ = −0.50 (95% CI −0.50 to −0.50)'."""
    note = "n/a: too few ranks to test at 95% (any order of 3 has permutation p ≥ 0.33; it takes 5)"
    t = tables(rank_correlation=[rank_row("a", "n/a", -0.5, n_ranks=3, note=note)])
    (finding,) = F.rank_correlations(t, CONFIDENCE)
    assert finding.effect is None and finding.note == note
    from ftmatrix.journal import rank_part
    assert rank_part(finding) == {"text": note, "ci": "", "significant": None}


# ---------------------------------------------------------------------------- transfer and forgetting


def test_forgetting_is_picked_worst_first(tables):
    t = tables(transfer=[transfer_row("small", "full", 0, "a", "a", 20.0, 15.0, 25.0),
                         transfer_row("small", "full", 0, "a", "b", -4.0, -6.0, -2.0),
                         transfer_row("small", "lora", 8, "a", "b", -9.0, -12.0, -6.0),
                         transfer_row("small", "full", 0, "a", "c", -1.0, -3.0, 1.0),
                         transfer_row("small", "full", 0, "b", "c", 6.0, 2.0, 10.0)])
    (advice,) = F.forgetting(matrix_rows([]), t, CONFIDENCE)
    assert advice.verdict == F.FORGETTING and advice.effect.value == -9.0
    assert advice.subject.variant == F.Variant("small", "lora", 8, "a") and advice.subject.eval_task == "b"
    assert len(advice.parts) == 2

    effects = F.cross_task_effects(t, CONFIDENCE)            # full fine-tuning's effects first, largest first
    assert [(f.topic, f.subject.variant.train_task, f.subject.eval_task) for f in effects] == \
        [(F.POSITIVE_TRANSFER, "b", "c"), (F.FORGETTING, "a", "b")]


def test_no_forgetting_says_with_how_many_samples(tables):
    t = tables(transfer=[transfer_row("small", "full", 0, "a", "b", -1.0, -3.0, 1.0)])
    (advice,) = F.forgetting(matrix_rows([]), t, CONFIDENCE)
    assert advice.verdict == F.NO_FORGETTING and advice.facts["samples_per_task"] == (40,)
    (none,) = F.cross_task_effects(t, CONFIDENCE)
    assert none.verdict == F.NO_EFFECTS


def test_cross_task_highlights_are_capped(tables):
    rows = [transfer_row("small", "full", 0, f"t{i}", "x", -float(i), -i - 1.0, -i + 0.5) for i in range(1, 7)]
    found = F.cross_task_effects(tables(transfer=rows), CONFIDENCE)
    assert [f.effect.value for f in found] == [-6.0, -5.0, -4.0, -3.0][:F.MAX_CROSS_TASK_HIGHLIGHTS]


def test_a_positive_transfer_keeps_its_place_among_larger_forgetting(tables):
    """Many large forgetting cells of full fine-tuning do not hide a smaller positive transfer,
    which is found among LoRA's cells when full fine-tuning has none."""
    rows = [transfer_row("small", "full", 0, f"t{i}", "x", -10.0 * i, -10.0 * i - 5, -10.0 * i + 5) for i in range(1, 7)]
    rows += [transfer_row("small", "lora", 8, "t1", "y", 7.0, 2.0, 12.0),
             transfer_row("small", "lora", 16, "t1", "y", 9.0, 1.0, 17.0),
             transfer_row("small", "lora", 16, "t2", "y", 3.0, -1.0, 7.0)]   # not significant
    found = F.cross_task_effects(tables(transfer=rows), CONFIDENCE)
    assert len(found) == F.MAX_CROSS_TASK_HIGHLIGHTS
    assert [f.effect.value for f in found[:-1]] == [-60.0, -50.0, -40.0][: F.MAX_CROSS_TASK_HIGHLIGHTS - 1]
    assert found[-1].topic == F.POSITIVE_TRANSFER and found[-1].effect.value == 9.0
    assert found[-1].subject.variant == F.Variant("small", "lora", 16, "t1")
    # A full fine-tuning positive transfer is preferred to a larger LoRA one.
    found = F.cross_task_effects(tables(transfer=rows + [transfer_row("small", "full", 0, "t3", "y", 4.0, 1.0, 7.0)]),
                                 CONFIDENCE)
    assert found[-1].topic == F.POSITIVE_TRANSFER and found[-1].subject.variant.method == "full"
    # And a study with positive transfer only still shows its largest forgetting.
    ups = [transfer_row("small", "full", 0, f"t{i}", "x", 10.0 * i, 10.0 * i - 5, 10.0 * i + 5) for i in range(1, 7)]
    found = F.cross_task_effects(tables(transfer=ups + [transfer_row("small", "full", 0, "t1", "y", -3.0, -5.0, -1.0)]),
                                 CONFIDENCE)
    assert [f.topic for f in found].count(F.FORGETTING) == 1 and found[-1].effect.value == -3.0


def unconfirmed_row(train_task, eval_task, diff, low, high, check) -> dict:
    """A cross-task headline gain whose correctness metric (accuracy) does not rise: analysis calls
    it no significant change, effect "gain not in right answers"."""
    row = transfer_row("small", "full", 0, train_task, eval_task, diff, low, high, metric="macro_f1")
    c_diff, c_low, c_high = check
    row.update({"significance": "no significant change", "effect": F.NOT_IN_RIGHT_ANSWERS,
                "check_metric": "accuracy", "check_diff": c_diff, "check_diff_ci_low": c_low,
                "check_diff_ci_high": c_high, "check_significance": quality_verdict(c_low, c_high)})
    return row


def test_a_gain_not_in_right_answers_is_said_as_such_and_not_as_transfer(tables):
    """The TL;DR never calls a headline gain the correctness metric does not show a positive
    transfer; where no cell shows one, the largest such gain is said for what it is, with both
    numbers (the heatmap shows it unstarred)."""
    from ftmatrix.journal import highlights

    rows = [transfer_row("small", "full", 0, "a", "b", -20.0, -25.0, -15.0),
            unconfirmed_row("c", "b", 18.2, 5.6, 29.7, (1.0, -10.0, 12.0)),
            unconfirmed_row("a", "c", 9.0, 2.0, 16.0, (2.0, -4.0, 8.0))]
    found = F.cross_task_effects(tables(transfer=rows), CONFIDENCE)
    assert [f.topic for f in found] == [F.FORGETTING, F.NOT_IN_RIGHT_ANSWERS]
    assert found[1].effect.value == 18.2 and found[1].verdict == "no significant change"
    line = [h for h in highlights(tables(transfer=rows), CONFIDENCE) if h["topic"] == F.NOT_IN_RIGHT_ANSWERS]
    assert line[0]["subject"] == "small full fine-tuning on c → b"
    assert line[0]["parts"] == [{"text": "macro-F1 +18.2 points (+36%)",
                                 "ci": "95% CI +5.6 to +29.7; accuracy +1.0 points, 95% CI −10.0 to +12.0",
                                 "significant": False}]
    # Full fine-tuning's is said before a larger LoRA one, as for the other cross-task effects.
    lora = {**unconfirmed_row("c", "b", 27.0, 15.0, 38.0, (8.0, -3.0, 19.0)), "method": "lora", "rank": 16}
    assert F.cross_task_effects(tables(transfer=rows + [lora]), CONFIDENCE)[1].effect.value == 18.2
    # Alone, it is the one cross-task line (not "no significant transfer or forgetting").
    assert [f.topic for f in F.cross_task_effects(tables(transfer=rows[1:2]), CONFIDENCE)] == [F.NOT_IN_RIGHT_ANSWERS]
    # A real positive transfer elsewhere leaves it out.
    rows.append(transfer_row("small", "full", 0, "c", "a", 6.0, 2.0, 10.0))
    topics = [f.topic for f in F.cross_task_effects(tables(transfer=rows), CONFIDENCE)]
    assert F.POSITIVE_TRANSFER in topics and F.NOT_IN_RIGHT_ANSWERS not in topics


def test_a_verdict_the_right_answers_decided_is_reported_in_them(tables):
    """Where macro-F1 rose but significantly fewer answers are right, the analysis calls the cell
    forgetting: the finding (and the TL;DR and takeaway phrasing it) is the accuracy loss, with
    the macro-F1 gain beside it, not a "+7.5 points" forgetting."""
    from ftmatrix.journal import forgetting_text, highlights

    row = transfer_row("small", "full", 0, "a", "b", 7.5, 4.5, 10.1, metric="macro_f1")
    row.update({"significance": "worse", "effect": F.FORGETTING, "check_metric": "accuracy", "check_diff": -5.0,
                "check_diff_ci_low": -8.9, "check_diff_ci_high": -1.0, "check_significance": "worse",
                "verdict_metric": "accuracy"})
    found = F.cross_task_effects(tables(transfer=[row]), CONFIDENCE)
    assert [(f.topic, f.what, f.effect.value) for f in found] == [(F.FORGETTING, "accuracy", -5.0)]
    assert found[0].facts["check"].what == "macro_f1" and found[0].facts["check"].effect.value == 7.5
    line = highlights(tables(transfer=[row]), CONFIDENCE)[-1]
    assert line["parts"] == [{"text": "accuracy −5.0 points", "significant": True,
                              "ci": "95% CI −8.9 to −1.0; macro-F1 +7.5 points, 95% CI +4.5 to +10.1"}]
    [lost] = F.forgetting(None, tables(transfer=[row]), CONFIDENCE)
    assert "accuracy −5.0 points on b" in forgetting_text(lost)
    # Among cross-task effects it ranks by the accuracy loss it rests on, not by its +7.5 macro-F1.
    other = transfer_row("small", "full", 0, "c", "b", -6.0, -9.0, -3.0)
    assert [f.effect.value for f in F.cross_task_effects(tables(transfer=[row, other]), CONFIDENCE)] == [-6.0, -5.0]
    # Where the two agree, the headline is the finding and accuracy stands beside it.
    row.update({"diff": -7.5, "diff_ci_low": -10.1, "diff_ci_high": -4.5, "verdict_metric": "macro_f1"})
    assert F.cross_task_effects(tables(transfer=[row]), CONFIDENCE)[0].what == "macro_f1"


def test_a_right_answers_interval_above_zero_that_seeds_reverse_says_so(tables):
    """Every number shown pointing up yet "not significant": the journal says the training seeds
    disagree on the correctness metric, the reason the analysis gave."""
    from ftmatrix.journal import highlights

    row = unconfirmed_row("c", "b", 41.2, 18.8, 53.8, (28.7, 6.1, 43.3))
    row.update({"check_significance": "no significant change", "seed_diffs": "+51.99 +51.74 +52.75 +8.22",
                "seeds_agree": True})
    [line] = [h for h in highlights(tables(transfer=[row]), CONFIDENCE) if h["topic"] == F.NOT_IN_RIGHT_ANSWERS]
    assert line["parts"][0]["ci"].endswith("accuracy +28.7 points, 95% CI +6.1 to +43.3, seeds disagree")


def test_a_stand_in_says_the_right_answers_beside_its_headline(tables):
    """"Not significantly different" beside a macro-F1 interval that excludes zero reads as a
    contradiction unless the accuracy the verdict rests on is shown with it."""
    from ftmatrix.journal import stand_in_text

    row = larger_row("full", 0, "a", -14.6, -19.7, -9.0, latency=(-80.0, -85.0, -75.0))
    row.update({"headline_metric": "macro_f1", "significance": "no significant change", "check_metric": "accuracy",
                "check_diff": -2.0, "check_diff_ci_low": -8.8, "check_diff_ci_high": 5.5,
                "check_significance": "no significant change"})
    [found] = F.stand_in(matrix_rows([]), tables(vs_larger_base=[row]), CONFIDENCE)
    text = stand_in_text(found)
    assert found.verdict == F.CAN_STAND_IN
    assert "macro-F1 −14.6 points (95% CI −19.7 to −9.0; accuracy −2.0 points, 95% CI −8.8 to +5.5)" in text


# ---------------------------------------------------------------------------- stand-in


def test_a_stand_in_must_be_as_good_and_faster(tables):
    t = tables(vs_larger_base=[
        larger_row("full", 0, "a", -1.0, -4.0, 2.0, latency=(-80.0, -85.0, -75.0)),
        larger_row("lora", 8, "a", -0.5, -3.0, 2.0, latency=(-60.0, -65.0, -55.0)),
        larger_row("full", 0, "b", 1.0, -2.0, 4.0, latency=(20.0, 10.0, 30.0)),
        larger_row("full", 0, "c", -12.0, -15.0, -9.0, latency=(-80.0, -85.0, -75.0)),
        larger_row("lora", 8, "c", -8.0, -11.0, -5.0, latency=(-80.0, -85.0, -75.0))])
    matrix = matrix_rows([{"model": m, "method": meth, "rank": 0, "train_task": tt, "eval_task": "a",
                           "cost_per_1k_usd": c} for m, meth, tt, c in (("small", "full", "a", 0.01),
                                                                       ("large", "base", "none", 0.04))])
    a, b, c = F.stand_in(matrix, t, CONFIDENCE)
    assert a.verdict == F.CAN_STAND_IN and a.subject.variant.method == "full"     # the faster of the two
    assert a.facts == {"cost_per_1k_usd": 0.01, "reference_cost_per_1k_usd": 0.04}
    assert [p.what for p in a.parts] == ["f1", F.LATENCY]
    assert b.verdict == F.NOT_FASTER and b.facts["cost_per_1k_usd"] is None
    assert c.verdict == F.FALLS_SHORT and c.subject.variant == F.Variant("small", "lora", 8, "c")


# ---------------------------------------------------------------------------- matrix-level rules


def test_rambling_to_the_length_limit(tables):
    cells = [{"model": "large", "method": "base", "train_task": "none", "eval_task": "a", "hit_limit_pct": 40.0,
              "output_tokens_mean": 120.0},
             {"model": "large", "method": "base", "train_task": "none", "eval_task": "b", "hit_limit_pct": 90.0,
              "output_tokens_mean": 200.0},
             {"model": "small", "method": "full", "train_task": "b", "eval_task": "b", "hit_limit_pct": 0.0,
              "output_tokens_mean": 6.0},
             {"model": "small", "method": "lora", "rank": 8, "train_task": "b", "eval_task": "b",
              "hit_limit_pct": 0.0, "output_tokens_mean": 8.0}]
    (found,) = F.length_limit(matrix_rows(cells), tables(), CONFIDENCE)
    assert found.subject == F.Subject("b", F.Variant("large")) and found.effect == F.Effect(90.0, F.PERCENT)
    assert found.facts == {"output_tokens_mean": 200.0, "tuned_output_tokens_mean": 7.0}
    calm = [dict(c, hit_limit_pct=min(c["hit_limit_pct"], 10.0)) for c in cells]
    assert F.length_limit(matrix_rows(calm), tables(), CONFIDENCE) == []


def abstain_cells(task: str, has_answer: tuple[float, float]) -> list[dict]:
    return [{"model": "small", "method": "full", "train_task": task, "eval_task": task, "headline": 40.0,
             "headline_ci_high": 45.0, "metric_NoAns_total": 30, "metric_total": 60,
             "metric_HasAns_f1": has_answer[0], "metric_NoAns_f1": 70.0},
            {"model": "large", "method": "base", "train_task": "none", "eval_task": task, "headline": 55.0,
             "headline_ci_high": 60.0, "metric_NoAns_total": 30, "metric_total": 60,
             "metric_HasAns_f1": has_answer[1], "metric_NoAns_f1": 90.0}]


def test_always_abstaining_keys_on_the_no_answer_columns(tables):
    matrix = matrix_rows(abstain_cells("reading", (35.0, 20.0)) + abstain_cells("silent", (0.0, 0.0)))
    reading, silent = F.abstaining(matrix, tables(), CONFIDENCE)
    assert reading.effect == F.Effect(50.0, F.PERCENT) and reading.verdict == F.ANSWERING_MEASURED
    assert reading.facts["cells_below"] == 1 and reading.facts["cells"] == 2
    assert reading.facts["best_answerer"] == "small full" and reading.facts["has_answer_f1"] == 35.0
    assert silent.verdict == F.ONLY_ABSTAINING
    # The same task without the NoAns / total columns (another kind's metrics): no such finding.
    plain = matrix.drop(columns=[F.NO_ANSWER_TOTAL, F.ALL_TOTAL])
    assert F.abstaining(plain, tables(), CONFIDENCE) == []
    # Without HasAns F1 the share is still reported.
    (share,) = F.abstaining(matrix_rows(abstain_cells("r", (1.0, 1.0))).drop(columns=[F.HAS_ANSWER_F1]),
                            tables(), CONFIDENCE)
    assert share.verdict == F.ABSTAIN_SHARE_ONLY


def seed_row(task, sd, n_seeds) -> dict:
    return {"model": "small", "method": "full", "rank": 0, "train_task": task, "eval_task": task,
            "headline_metric": "f1", "n_seeds": n_seeds, "seeds": " ".join(map(str, range(n_seeds))), "mean": 50.0,
            "sd": sd}


def test_seeds(tables):
    (spread,) = F.seed_spread(matrix_rows([]), tables(seeds=[seed_row("a", 1.5, 3), seed_row("b", 4.0, 3)]),
                              CONFIDENCE)
    assert spread.verdict == F.SEEDS_VARY and spread.effect.value == 4.0 and spread.facts["n_seeds"] == 3
    assert spread.covers == F.SAMPLES_AND_SEEDS
    (one,) = F.seed_spread(matrix_rows([]), tables(seeds=[seed_row("a", None, 1)]), CONFIDENCE)
    assert one.verdict == F.ONE_SEED and one.covers == F.SAMPLES


def test_empty_tables_give_no_findings(tables):
    t = tables()
    assert F.highlights(t, CONFIDENCE) == [] and F.takeaways(matrix_rows([]).reindex(columns=[
        "model", "method", "rank", "train_task", "eval_task"]), t, CONFIDENCE) == []


# ---------------------------------------------------------------------------- the journal phrases records


def test_the_journal_phrases_the_records(tables):
    from ftmatrix.journal import highlights, takeaways

    t = tables(full_vs_lora=[fvl("a", 1.0, -2.0, 4.0)],
               transfer=[transfer_row("small", "full", 0, "a", "a", 12.0, 5.0, 19.0, latency=(-60.0, -70.0, -50.0))])
    lines = highlights(t, CONFIDENCE)
    assert lines[0]["subject"] == "a: small full fine-tuning vs untuned small"
    assert [p["text"] for p in lines[0]["parts"]] == ["F1 +12.0 points (+24%)", "latency ↓ 60.0%"]
    assert lines[1]["parts"][0] == {"text": "F1 +1.0 points (+2%)", "ci": "95% CI −2.0 to +4.0",
                                    "significant": False}
    assert takeaways(matrix_rows([]), t, CONFIDENCE)[0].startswith("LoRA is enough here")


# ---------------------------------------------------------------------------- no kind names


@pytest.mark.parametrize("module", ["findings.py", "journal.py"])
def test_no_task_kind_is_named(module):
    from ftmatrix.tasks import kinds

    source = (Path(__file__).resolve().parents[1] / "ftmatrix" / module).read_text(encoding="utf-8")
    named = [k for k in kinds() if re.search(rf"(?<![A-Za-z0-9_]){re.escape(k)}(?![A-Za-z0-9_])", source)]
    assert not named, f"ftmatrix/{module} names task kinds {named}: a rule must key on columns, not on a kind"


def _sweep(losses_by_variant: dict) -> dict:
    import pandas as pd

    rows = []
    for (method, rank), losses in losses_by_variant.items():
        finite_losses = {lr: loss for lr, loss in losses.items() if loss == loss and loss != float("inf")}
        best = min(finite_losses, key=finite_losses.get)
        rates = sorted(losses)
        edge = "" if len(rates) < 2 or best not in (rates[0], rates[-1]) else (
            "lowest" if best == rates[0] else "highest")
        for lr, loss in losses.items():
            rows.append({"model": "m", "method": method, "rank": rank, "train_task": "t", "seed": 0, "lr": repr(lr),
                         "learning_rate": lr, "valid_loss_before": 2.0, "valid_loss_after": loss,
                         "diverged": loss != loss or loss == float("inf"), "selected": lr == best,
                         "at_edge": edge, "n_rates": len(losses)})
    return {"lr_sweep": pd.DataFrame(rows)}


def test_a_sweep_whose_best_rate_is_inside_it_brackets_and_says_what_it_changed():
    tables = _sweep({("full", 0): {1e-3: 0.9, 3e-3: 0.6, 1e-2: 0.8}, ("lora", 4): {1e-2: 0.7, 3e-2: 0.5, 1e-1: 0.9}})
    full, lora = F.learning_rate_sweeps(None, tables, 0.95)
    assert full.subject.variant.method == "full" and full.verdict == F.SWEEP_BRACKETS
    assert full.facts["middle_rate"] == 3e-3 and full.facts["better_than_middle"] == 0
    assert lora.verdict == F.SWEEP_BRACKETS and lora.effect.value == 0.0


def test_a_best_rate_at_the_end_of_a_sweep_asks_to_widen_it_and_counts_what_the_sweep_won():
    tables = _sweep({("lora", 4): {1e-2: 0.5, 3e-2: 0.7, 1e-1: float("inf")},
                     ("lora", 16): {1e-2: 0.9, 3e-2: 0.7, 1e-1: 0.4}})
    (lora,) = F.learning_rate_sweeps(None, tables, 0.95)
    assert lora.verdict == F.WIDEN_SWEEP
    assert [e["edge"] for e in lora.facts["at_edge"]] == ["lowest", "highest"]
    assert lora.facts["better_than_middle"] == 2 and lora.facts["diverged"] == 1
    assert lora.effect.value == pytest.approx(0.25)      # median of 0.2 and 0.3


def test_one_rate_is_a_finding_too():
    (full,) = F.learning_rate_sweeps(None, _sweep({("full", 0): {1e-3: 0.9}}), 0.95)
    assert full.verdict == F.ONE_RATE and full.effect is None
