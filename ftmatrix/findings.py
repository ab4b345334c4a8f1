"""The study's findings as data: which comparisons the journal reports, and what each one says.

Every rule here is a function from the analysis tables (``results/<study>/analysis/*.csv``
as ``ftmatrix.analysis.read_table`` reads them, keyed by table name) — and the matrix,
where a rule needs per-cell columns — to ``Finding`` records. A record carries numbers, an
interval and a verdict, never a sentence: ``ftmatrix.journal`` phrases it.

- *Highlights* (the journal's TL;DR) take ``(tables, confidence)``: the smaller model
  against a larger base, each fine-tuned model against its own base, full fine-tuning
  against the best LoRA rank, LoRA rank against score, and the largest cross-task effects.
- *Takeaways* (practical advice) take ``(matrix, tables, confidence)``: whether a
  fine-tuned model can stand in for a larger one, full fine-tuning or LoRA, which rank,
  forgetting, untuned models running to the length limit, what always abstaining scores
  (tasks whose metrics count unanswerable questions), and seeds.

A finding's interval says what variation it covers: evaluation samples, and training
seeds too where a variant was trained with several (the analysis then resamples seeds).
No rule names a task kind: a rule keys on the columns a task's metrics produce.
"""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass, field, replace
from typing import Callable, Mapping

from ftmatrix.analysis import (CORRELATION_WORDS, FASTER, SIGNIFICANT_DOWN, SIGNIFICANT_UP, TRANSFER_EFFECTS,
                               UNCONFIRMED_GAIN, ranks_to_test, verdict as interval_verdict, verdict_follows_check)
from ftmatrix.grid import NO_TASK
from ftmatrix.numeric import finite

# What an interval covers.
SAMPLES = "evaluation samples"
SAMPLES_AND_SEEDS = "evaluation samples and seeds"
SAMPLES_AND_ROUNDS = "evaluation samples and timing rounds"
SAMPLES_ROUNDS_AND_SEEDS = "evaluation samples, timing rounds and seeds"

# Units of an effect.
POINTS = "points"               # the headline metric's own scale (0–100)
PERCENT = "%"
RHO = "Spearman rho"
POINTS_SD = "points (standard deviation)"

# Highlight topics.
VS_LARGER = "small vs larger base"
VS_API = "local vs API"
VS_OWN_BASE = "fine-tuned vs own base"
FULL_VS_BEST_LORA = "full vs best LoRA"
LORA_RANK = "LoRA rank"
FORGETTING = TRANSFER_EFFECTS[(False, SIGNIFICANT_DOWN)]
POSITIVE_TRANSFER = TRANSFER_EFFECTS[(False, SIGNIFICANT_UP)]
# A cross-task headline gain the task's correctness metric does not bear out (not a transfer).
NOT_IN_RIGHT_ANSWERS = UNCONFIRMED_GAIN
TRANSFER = "transfer"
NO_EFFECTS = "no significant transfer or forgetting"

# Takeaway topics and their verdicts.
STAND_IN = "stand-in"
CAN_STAND_IN = "can stand in"
NOT_FASTER = "as good but not faster"
FALLS_SHORT = "falls short"

FULL_OR_LORA = "full or LoRA"
PREFER_FULL = "prefer full fine-tuning"
LORA_ENOUGH = "LoRA is enough"
DEPENDS_ON_TASK = "depends on the task"

WHICH_RANK = "which LoRA rank"
RANK_BARELY_MATTERS = "rank barely matters"
HIGHER_RANKS_HELP = "higher ranks help"
TOO_FEW_RANKS = "too few ranks"
POSITIVE_CORRELATION = CORRELATION_WORDS[SIGNIFICANT_UP]
NEGATIVE_CORRELATION = CORRELATION_WORDS[SIGNIFICANT_DOWN]

NO_FORGETTING = "no significant forgetting"

LENGTH_LIMIT = "length limit"
RUNS_TO_LIMIT = "runs to the length limit"

ABSTAINING = "always abstaining"
ANSWERING_MEASURED = "answering measured apart"
ONLY_ABSTAINING = "no answerable question answered"
ABSTAIN_SHARE_ONLY = "abstaining share"

SEEDS = "seeds"
SEEDS_VARY = "seeds vary"
ONE_SEED = "one seed"

LATENCY = "latency"

LEARNING_RATE = "learning rate"
ONE_RATE = "one rate"
WIDEN_SWEEP = "widen the sweep"
SWEEP_BRACKETS = "the sweep brackets the best rate"
VALIDATION_LOSS = "validation loss"

MAX_CROSS_TASK_HIGHLIGHTS = 4    # the largest effects, full fine-tuning first, each kind kept
RAMBLING_HIT_LIMIT_PCT = 25.0    # a base model hitting max_new_tokens this often "runs to the limit"

# Matrix columns of tasks whose metrics count unanswerable questions apart (NoAns / HasAns).
NO_ANSWER_TOTAL = "metric_NoAns_total"
ALL_TOTAL = "metric_total"
HAS_ANSWER_F1 = "metric_HasAns_f1"
NO_ANSWER_F1 = "metric_NoAns_f1"


# ---------------------------------------------------------------------------- records


@dataclass(frozen=True)
class Variant:
    """A model as trained: ``method`` base / full / lora, ``rank`` 0 unless LoRA."""
    model: str
    method: str = "base"
    rank: int = 0
    train_task: str = NO_TASK


@dataclass(frozen=True)
class Subject:
    """What a finding is about: a variant on an evaluation task, against a reference variant."""
    eval_task: str | None = None
    variant: Variant | None = None
    reference: Variant | None = None
    ranks: tuple[int, ...] = ()            # the LoRA ranks a rank finding spans


@dataclass(frozen=True)
class Effect:
    value: float
    unit: str
    relative_pct: float | None = None      # the change relative to the reference, where there is one


@dataclass(frozen=True)
class Interval:
    low: float
    high: float
    confidence: float

    @property
    def excludes_zero(self) -> bool:
        return self.low > 0 or self.high < 0


@dataclass(frozen=True)
class Finding:
    """One finding: about ``subject``, ``what`` (a metric name, ``latency``, …) changed by
    ``effect`` within ``interval``; ``verdict`` is the rule's call; ``covers`` the variation the
    interval covers. ``parts`` are the findings a summary stands on; ``facts`` further numbers."""
    topic: str
    subject: Subject
    what: str
    verdict: str
    effect: Effect | None = None
    interval: Interval | None = None
    covers: str | None = None
    parts: tuple["Finding", ...] = ()
    facts: Mapping = field(default_factory=dict, hash=False)
    note: str = ""


Tables = Mapping[str, object]     # table name -> pandas DataFrame


# ---------------------------------------------------------------------------- table rows


def records(table) -> list[dict]:
    """A table's rows as dicts, NaN as None; no rows for a missing or empty table."""
    if table is None or table.empty:
        return []
    return [{k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in r.items()}
            for r in table.to_dict("records")]


def truthy(value) -> bool:
    return value is True or str(value).lower() == "true"


def _number(value) -> float | None:
    return float(value) if finite(value) else None


def _rows(tables: Tables, name: str) -> list[dict]:
    return records(tables.get(name))


def _variant(row: dict) -> Variant:
    return Variant(str(row["model"]), str(row["method"]), int(row["rank"]) if finite(row.get("rank")) else 0,
                   str(row["train_task"]))


def _covers(row: dict) -> str:
    return SAMPLES_AND_SEEDS if finite(row.get("n_seeds")) and int(row["n_seeds"]) > 1 else SAMPLES


def _interval(low, high, confidence: float) -> Interval | None:
    return Interval(float(low), float(high), confidence) if finite(low) and finite(high) else None


def quality(topic: str, subject: Subject, row: dict, confidence: float) -> Finding:
    """The change a comparison row's verdict rests on (diff, its CI and its verdict): the headline
    metric's, with the task's correctness metric beside it in ``facts['check']``; the correctness
    metric's, with the headline beside it, where the analysis followed it against the headline
    (``verdict_metric``)."""
    interval = _interval(row.get("diff_ci_low"), row.get("diff_ci_high"), confidence)
    verdict = row.get("significance") or interval_verdict(row.get("diff_ci_low"), row.get("diff_ci_high"))
    facts = ({"seed_diffs": row["seed_diffs"], "seeds_agree": truthy(row.get("seeds_agree"))}
             if row.get("seed_diffs") else {})
    headline = Finding(topic, subject, str(row.get("headline_metric") or ""), verdict,
                       effect=Effect(float(row["diff"]), POINTS, _number(row.get("rel_pct"))),
                       interval=interval, covers=_covers(row), facts=facts)
    if not (row.get("check_metric") and finite(row.get("check_diff"))):
        return headline
    # The task's correctness metric beside its headline (ARC: accuracy beside macro-F1). The
    # per-seed differences are the headline's: they stay with it.
    check = Finding(topic, subject, str(row["check_metric"]), row.get("check_significance") or "n/a",
                    effect=Effect(float(row["check_diff"]), POINTS),
                    interval=_interval(row.get("check_diff_ci_low"), row.get("check_diff_ci_high"), confidence),
                    covers=_covers(row))
    if verdict_follows_check(row):
        # The two went significantly opposite ways and the analysis followed the right answers:
        # the finding is the correctness metric's, the headline beside it.
        return replace(check, verdict=verdict, facts={"check": headline})
    return replace(headline, facts={**facts, "check": check})


def _verdict_diff(row: dict) -> float:
    """The difference a row's verdict rests on (the correctness metric's where it decided)."""
    return float(row["check_diff"] if verdict_follows_check(row) else row["diff"])


def latency(topic: str, subject: Subject, row: dict, confidence: float) -> Finding | None:
    """The relative change of mean latency per sample in a comparison row, when it was timed;
    ``facts`` split it into fewer output tokens and faster per token (``tokens`` and
    ``per_token``: relative changes that multiply up to the latency's, each with its interval)
    and say in how many timing rounds it was measured and whether they agree."""
    if not finite(row.get("latency_rel_pct")):
        return None
    seeds = _covers(row) == SAMPLES_AND_SEEDS
    rounds = int(row["latency_rounds"]) if finite(row.get("latency_rounds")) else None
    covers = (SAMPLES_ROUNDS_AND_SEEDS if seeds else SAMPLES_AND_ROUNDS) if rounds and rounds > 1 else _covers(row)
    facts = {"rounds": rounds, "rounds_agree": truthy(row.get("latency_rounds_agree"))}
    for part in ("tokens", "per_token"):
        value = _number(row.get(f"latency_{part}_pct"))
        facts[part] = Effect(value, PERCENT) if value is not None else None
        facts[f"{part}_interval"] = _interval(row.get(f"latency_{part}_ci_low"), row.get(f"latency_{part}_ci_high"),
                                              confidence)
    return Finding(topic, subject, LATENCY, row.get("latency_significance") or "n/a",
                   effect=Effect(float(row["latency_rel_pct"]), PERCENT),
                   interval=_interval(row.get("latency_rel_ci_low"), row.get("latency_rel_ci_high"), confidence),
                   covers=covers, facts=facts)


def _best_in_task(rows: list[dict]) -> dict | None:
    """Full fine-tuning when the study has it, else the LoRA rank with the best score."""
    full = [r for r in rows if r["method"] == "full"]
    if full:
        return full[0]
    lora = [r for r in rows if r["method"] == "lora" and finite(r.get("value"))]
    return max(lora, key=lambda r: float(r["value"])) if lora else None


# ---------------------------------------------------------------------------- highlights


def vs_larger_base(tables: Tables, confidence: float) -> list[Finding]:
    """Per (smaller model, larger base, evaluation task): the in-task fine-tuned variant (full
    fine-tuning, else the best LoRA rank) — or, without one, the untuned smaller model — against
    the untuned larger model; quality, and latency where timed."""
    tuned_first, untuned = [], []
    larger = [r for r in _rows(tables, "vs_larger_base") if r.get("larger_model") and finite(r.get("diff"))]
    for model, big, task in sorted({(r["model"], r["larger_model"], r["eval_task"]) for r in larger}):
        rows = [r for r in larger if (r["model"], r["larger_model"], r["eval_task"]) == (model, big, task)]
        tuned = _best_in_task([r for r in rows if r["method"] != "base" and truthy(r["in_task"])])
        row = tuned or next((r for r in rows if r["method"] == "base"), None)
        if row is None:
            continue
        subject = Subject(task, _variant(row), Variant(big))
        # A model behind an endpoint counts as larger than every local one; said as what it is.
        topic = VS_API if truthy(row.get("larger_is_api")) else VS_LARGER
        # The study's question first: a fine-tuned model against a larger one; untuned models
        # (a larger base against an API, say) after.
        (tuned_first if tuned else untuned).extend(
            f for f in (quality(topic, subject, row, confidence), latency(topic, subject, row, confidence)) if f)
    return tuned_first + untuned


def vs_own_base(tables: Tables, confidence: float) -> list[Finding]:
    """Per evaluation task and model: the in-task fine-tuned variant against its untuned base."""
    out = []
    transfer = _rows(tables, "transfer")
    for task in sorted({r["eval_task"] for r in transfer}):
        rows = [r for r in transfer if r["eval_task"] == task and truthy(r["in_task"]) and finite(r.get("diff"))]
        for model in sorted({r["model"] for r in rows}):
            row = _best_in_task([r for r in rows if r["model"] == model])
            if row is None:
                continue
            subject = Subject(task, _variant(row), Variant(model))
            out += [f for f in (quality(VS_OWN_BASE, subject, row, confidence),
                                latency(VS_OWN_BASE, subject, row, confidence)) if f]
    return out


def _full_vs_lora(row: dict, confidence: float, topic: str = FULL_VS_BEST_LORA) -> Finding:
    rank = int(row["best_rank"]) if finite(row.get("best_rank")) else 0
    subject = Subject(row["eval_task"], Variant(row["model"], "full", 0, row["train_task"]),
                      Variant(row["model"], "lora", rank, row["train_task"]))
    return quality(topic, subject, row, confidence)


def full_vs_best_lora(tables: Tables, confidence: float) -> list[Finding]:
    """Per trained task: full fine-tuning minus the best LoRA rank, on that task."""
    return [_full_vs_lora(row, confidence) for row in _rows(tables, "full_vs_lora")
            if truthy(row["in_task"]) and finite(row.get("diff"))]


def _rank_finding(row: dict, confidence: float, sizes: dict) -> Finding:
    ranks = tuple(int(r) for r in str(row.get("ranks") or "").split())
    key = (row["model"], row["train_task"], row["eval_task"])
    # A row called n/a (too few ranks, say) keeps its rho in the table; the finding states why.
    rho = _number(row.get("spearman")) if row.get("significance") != "n/a" else None
    return Finding(LORA_RANK,
                   Subject(row["eval_task"], Variant(row["model"], "lora", 0, row["train_task"]), ranks=ranks),
                   str(row.get("headline_metric") or ""), row.get("significance") or "n/a",
                   effect=Effect(rho, RHO) if rho is not None else None,
                   interval=_interval(row.get("ci_low"), row.get("ci_high"), confidence),
                   covers=SAMPLES_AND_SEEDS if sizes.get(key, 1) > 1 else SAMPLES,
                   facts={"permutation_p": _number(row.get("permutation_p")),
                          "best_rank": int(row["best_rank"]) if finite(row.get("best_rank")) else None,
                          "smallest_sufficient_rank": int(row["smallest_sufficient_rank"])
                          if finite(row.get("smallest_sufficient_rank")) else None,
                          "n_ranks": int(row["n_ranks"]) if finite(row.get("n_ranks")) else None},
                   note=row.get("note") or "")


def _seed_counts(tables: Tables) -> dict:
    """(model, train task, eval task) -> most seeds of a LoRA rank there (rank correlations pool them)."""
    out = {}
    for row in _rows(tables, "lora_rank"):
        if finite(row.get("n_seeds")):
            key = (row["model"], row["train_task"], row["eval_task"])
            out[key] = max(out.get(key, 1), int(row["n_seeds"]))
    return out


def rank_correlations(tables: Tables, confidence: float) -> list[Finding]:
    """Per trained task: Spearman's rho of LoRA rank and score (or why it is n/a)."""
    sizes = _seed_counts(tables)
    return [_rank_finding(row, confidence, sizes) for row in _rows(tables, "rank_correlation")
            if truthy(row["in_task"])]


def _largest_first(rows: list[dict]) -> list[dict]:
    return sorted(rows, key=lambda r: -abs(_verdict_diff(r)))


def cross_task_effects(tables: Tables, confidence: float) -> list[Finding]:
    """The largest significant effects of training on one task on another (full fine-tuning's
    when the study has them), or one finding saying there are none. Each kind of effect the
    study shows (positive transfer, forgetting) keeps a place: many large forgetting cells do
    not hide the one where training on a task helped another, found among every method's
    cells when full fine-tuning shows none."""
    transfer = _rows(tables, "transfer")
    cross = [r for r in transfer if not truthy(r["in_task"])]
    effects = [r for r in cross if r.get("effect") in (FORGETTING, POSITIVE_TRANSFER)]
    # Where no cell shows a positive transfer, the largest headline gain the right answers do not
    # bear out is said as such: the heatmap shows its number, unstarred.
    shown = [r for r in cross if r.get("effect") == NOT_IN_RIGHT_ANSWERS]
    unconfirmed = [] if any(r["effect"] == POSITIVE_TRANSFER for r in effects) else \
        _largest_first([r for r in shown if r["method"] == "full"] or shown)[:1]
    if not effects:
        if unconfirmed:
            return [quality(NOT_IN_RIGHT_ANSWERS, Subject(r["eval_task"], _variant(r), Variant(r["model"])), r,
                            confidence) for r in unconfirmed]
        if any(finite(r.get("diff")) for r in cross):
            return [Finding(TRANSFER, Subject(), "", NO_EFFECTS)]
        return []
    main = [r for r in effects if r["method"] == "full"] or effects
    room = MAX_CROSS_TASK_HIGHLIGHTS - len(unconfirmed)
    picked = _largest_first(main)[:room]
    for kind in (POSITIVE_TRANSFER, FORGETTING):
        if any(r["effect"] == kind for r in picked):
            continue
        of_kind = _largest_first([r for r in main if r["effect"] == kind]
                                 or [r for r in effects if r["effect"] == kind])
        if of_kind:
            picked = picked[: room - 1] + [of_kind[0]]
    picked += unconfirmed
    return [quality(row["effect"], Subject(row["eval_task"], _variant(row), Variant(row["model"])), row, confidence)
            for row in picked]


HIGHLIGHT_RULES: tuple[Callable[[Tables, float], list[Finding]], ...] = (
    vs_larger_base, vs_own_base, full_vs_best_lora, rank_correlations, cross_task_effects)


def highlights(tables: Tables, confidence: float) -> list[Finding]:
    """The TL;DR's findings, rule by rule. A comparison gives a quality finding and, where
    timed, a latency finding with the same topic and subject."""
    return [finding for rule in HIGHLIGHT_RULES for finding in rule(tables, confidence)]


# ---------------------------------------------------------------------------- takeaways


def _cost(matrix, variant: Variant, task: str) -> float | None:
    if "cost_per_1k_usd" not in matrix:
        return None
    part = matrix[(matrix["model"] == variant.model) & (matrix["method"] == variant.method)
                  & (matrix["rank"] == variant.rank) & (matrix["train_task"] == variant.train_task)
                  & (matrix["eval_task"] == task)]
    return _number(part["cost_per_1k_usd"].mean()) if not part.empty else None


def stand_in(matrix, tables: Tables, confidence: float) -> list[Finding]:
    """Per evaluation task: can an in-task fine-tuned smaller model replace the untuned larger one?

    Among the variants not significantly worse, the one with the lowest latency: it *can stand
    in* when it is also significantly faster, else it is *as good but not faster*; when every
    variant is significantly worse, the best score *falls short*."""
    out = []
    larger = [r for r in _rows(tables, "vs_larger_base") if r.get("larger_model") and finite(r.get("diff"))]
    for task in sorted({r["eval_task"] for r in larger}):
        rows = [r for r in larger if r["eval_task"] == task and r["method"] != "base" and truthy(r["in_task"])]
        if not rows:
            continue
        ok = [r for r in rows if r["significance"] != SIGNIFICANT_DOWN]
        if ok:
            best = min(ok, key=lambda r: float(r["latency_value"]) if finite(r.get("latency_value")) else math.inf)
            verdict = CAN_STAND_IN if best.get("latency_significance") == FASTER else NOT_FASTER
        else:
            best = max(rows, key=lambda r: float(r["value"]))
            verdict = FALLS_SHORT
        subject = Subject(task, _variant(best), Variant(best["larger_model"]))
        score = quality(STAND_IN, subject, best, confidence)
        speed = latency(STAND_IN, subject, best, confidence)
        facts = {}
        if ok:
            facts = {"cost_per_1k_usd": _cost(matrix, subject.variant, task),
                     "reference_cost_per_1k_usd": _cost(matrix, subject.reference, task)}
        out.append(Finding(STAND_IN, subject, score.what, verdict, effect=score.effect, interval=score.interval,
                           covers=score.covers, parts=tuple(f for f in (score, speed) if f), facts=facts))
    return out


def _trainable_share(matrix) -> tuple[float, float] | None:
    if "trainable_pct" not in matrix:
        return None
    lora = matrix[(matrix["method"] == "lora") & matrix["trainable_pct"].notna()]
    return None if lora.empty else (float(lora["trainable_pct"].min()), float(lora["trainable_pct"].max()))


def full_or_lora(matrix, tables: Tables, confidence: float) -> list[Finding]:
    """Over the trained tasks: full fine-tuning significantly better on most → prefer it; on none
    → LoRA is enough; else it depends on the task. ``facts`` lists the tasks by outcome."""
    parts = tuple(_full_vs_lora(row, confidence, FULL_OR_LORA) for row in _rows(tables, "full_vs_lora")
                  if truthy(row["in_task"]) and finite(row.get("diff")))
    if not parts:
        return []
    better = tuple(p.subject.eval_task for p in parts if p.verdict == SIGNIFICANT_UP)
    worse = tuple(p.subject.eval_task for p in parts if p.verdict == SIGNIFICANT_DOWN)
    same = tuple(p.subject.eval_task for p in parts if p.verdict not in (SIGNIFICANT_UP, SIGNIFICANT_DOWN))
    verdict = PREFER_FULL if len(better) > len(parts) / 2 else LORA_ENOUGH if not better else DEPENDS_ON_TASK
    return [Finding(FULL_OR_LORA, Subject(), "", verdict, parts=parts,
                    facts={"full_better_on": better, "lora_better_on": worse, "no_difference_on": same,
                           "lora_trainable_pct": _trainable_share(matrix)})]


def rank_choice(matrix, tables: Tables, confidence: float) -> list[Finding]:
    """Does LoRA rank matter? Measured only with enough ranks for a correlation to reach
    significance (analysis.ranks_to_test: five at 95 %): a significant positive correlation on
    some task → higher ranks help there; none → rank barely matters, with the smallest ranks not
    significantly below the best. Fewer ranks → too few, with those smallest ranks per task."""
    sizes = _seed_counts(tables)
    rc = [_rank_finding(r, confidence, sizes) for r in _rows(tables, "rank_correlation") if truthy(r["in_task"])]
    # A sweep of fewer ranks than a significant correlation needs cannot show that rank barely
    # matters: it says so, with each task's smallest rank not significantly below its best.
    needed = ranks_to_test(confidence)
    measured = [f for f in rc if (f.facts["n_ranks"] or 0) >= needed]
    if measured:
        positive = tuple(f for f in measured if f.verdict == POSITIVE_CORRELATION)
        if positive:
            return [Finding(WHICH_RANK, Subject(), "", HIGHER_RANKS_HELP, parts=positive)]
        sufficient = tuple(sorted({f.facts["smallest_sufficient_rank"] for f in measured
                                   if f.facts["smallest_sufficient_rank"] is not None}))
        return [Finding(WHICH_RANK, Subject(), "", RANK_BARELY_MATTERS, parts=tuple(measured),
                        facts={"smallest_sufficient_ranks": sufficient})]
    if rc:
        sufficient = tuple((f.subject.eval_task, f.facts["smallest_sufficient_rank"]) for f in rc
                           if f.facts["smallest_sufficient_rank"] is not None)
        return [Finding(WHICH_RANK, Subject(), "", TOO_FEW_RANKS, parts=tuple(rc),
                        facts={"needs_ranks": needed, "confidence": confidence,
                               "n_ranks": max((f.facts["n_ranks"] or 0) for f in rc),
                               "smallest_sufficient": sufficient})]
    return []


def forgetting(matrix, tables: Tables, confidence: float) -> list[Finding]:
    """Significant losses on tasks the model was not trained for (the worst as the finding's own
    effect, all of them as parts), or — where cross-task cells exist — that none was measured."""
    transfer = _rows(tables, "transfer")
    lost = [r for r in transfer if r.get("effect") == FORGETTING]
    if lost:
        parts = tuple(quality(FORGETTING, Subject(r["eval_task"], _variant(r), Variant(r["model"])), r, confidence)
                      for r in lost)
        worst = min(parts, key=lambda f: f.effect.value)
        return [Finding(FORGETTING, worst.subject, worst.what, FORGETTING, effect=worst.effect,
                        interval=worst.interval, covers=worst.covers, parts=parts)]
    if transfer and any(finite(r.get("diff")) for r in transfer):
        samples = tuple(sorted({int(r["n_paired"]) for r in transfer if finite(r.get("n_paired"))}))
        return [Finding(FORGETTING, Subject(), "", NO_FORGETTING, facts={"samples_per_task": samples})]
    return []


def length_limit(matrix, tables: Tables, confidence: float) -> list[Finding]:
    """The untuned model that most often runs to max_new_tokens (at least 25% of samples), with
    its mean output length and the in-task fine-tuned variants' on the same task."""
    if "hit_limit_pct" not in matrix:
        return []
    base = matrix[(matrix["method"] == "base") & matrix["hit_limit_pct"].notna()]
    tuned = matrix[(matrix["method"] != "base") & (matrix["train_task"] == matrix["eval_task"])]
    rambling = base[base["hit_limit_pct"] >= RAMBLING_HIT_LIMIT_PCT]
    if rambling.empty or tuned.empty:
        return []
    worst = rambling.sort_values("hit_limit_pct", ascending=False).iloc[0]
    tuned_tokens = tuned[tuned["eval_task"] == worst["eval_task"]]["output_tokens_mean"].mean()
    return [Finding(LENGTH_LIMIT, Subject(worst["eval_task"], Variant(worst["model"])), "hit_limit_pct",
                    RUNS_TO_LIMIT, effect=Effect(float(worst["hit_limit_pct"]), PERCENT),
                    facts={"output_tokens_mean": _number(worst["output_tokens_mean"]),
                           "tuned_output_tokens_mean": _number(tuned_tokens)})]


def abstaining(matrix, tables: Tables, confidence: float) -> list[Finding]:
    """Per evaluation task whose metrics count unanswerable questions (the NoAns / total
    columns): the share of unanswerable questions — what always abstaining scores — how many
    cells score significantly below it, and, where HasAns F1 is reported, the best answerer."""
    out = []
    if not {NO_ANSWER_TOTAL, ALL_TOTAL} <= set(matrix.columns):
        return out
    for task in sorted(matrix["eval_task"].unique()):
        part = matrix[matrix["eval_task"] == task]
        if part[NO_ANSWER_TOTAL].isna().all():
            continue
        share = 100.0 * float(part[NO_ANSWER_TOTAL].iloc[0]) / float(part[ALL_TOTAL].iloc[0])
        below = part[part["headline_ci_high"] < share] if part["headline_ci_high"].notna().any() else part.iloc[0:0]
        facts = {"cells_below": len(below), "cells": len(part)}
        variant = None
        verdict = ABSTAIN_SHARE_ONLY
        if HAS_ANSWER_F1 in part and part[HAS_ANSWER_F1].notna().any():
            best = part.loc[part[HAS_ANSWER_F1].idxmax()]
            variant = Variant(best["model"], best["method"], int(best["rank"]), best["train_task"])
            verdict = ANSWERING_MEASURED if float(best[HAS_ANSWER_F1]) > 0 else ONLY_ABSTAINING
            facts.update({"best_answerer": best["label"], "has_answer_f1": _number(best[HAS_ANSWER_F1]),
                          "no_answer_f1": _number(best.get(NO_ANSWER_F1))})
        out.append(Finding(ABSTAINING, Subject(task, variant), str(part["headline_metric"].iloc[0]), verdict,
                           effect=Effect(share, PERCENT), facts=facts))
    return out


def seed_spread(matrix, tables: Tables, confidence: float) -> list[Finding]:
    """The variant whose score varies most across training seeds, or that there is one seed."""
    seeds = _rows(tables, "seeds")
    several = [r for r in seeds if finite(r.get("sd"))]
    if several:
        worst = max(several, key=lambda r: float(r["sd"]))
        return [Finding(SEEDS, Subject(worst["eval_task"], _variant(worst)), str(worst.get("headline_metric") or ""),
                        SEEDS_VARY, effect=Effect(float(worst["sd"]), POINTS_SD), covers=SAMPLES_AND_SEEDS,
                        facts={"n_seeds": int(worst["n_seeds"])})]
    if seeds:
        return [Finding(SEEDS, Subject(), "", ONE_SEED, covers=SAMPLES)]
    return []


def _middle(rates: list[float]) -> float:
    """The rate a single-rate study would have used: the middle of the sweep (the lower of two)."""
    rates = sorted(rates)
    return rates[(len(rates) - 1) // 2]


def learning_rate_sweeps(matrix, tables: Tables, confidence: float) -> list[Finding]:
    """Per model and method: the rates selected on the validation split, how many variants chose an
    end of their sweep (widen it), and what the sweep changed against one rate — the validation
    loss at the sweep's middle rate minus the selected run's (median over variants; positive: the
    sweep found a better rate)."""
    rows = _rows(tables, "lr_sweep")
    out = []
    for model, method in sorted({(r["model"], r["method"]) for r in rows}, key=lambda k: (k[0], k[1] != "full")):
        runs = [r for r in rows if (r["model"], r["method"]) == (model, method)]
        by_variant: dict[tuple, list[dict]] = {}
        for r in runs:
            by_variant.setdefault((int(r["rank"]), r["train_task"], int(r["seed"])), []).append(r)
        selected = [r for r in runs if truthy(r["selected"])]
        rates = sorted({float(r["learning_rate"]) for r in selected})
        n_rates = max(len(v) for v in by_variant.values())
        facts = {"n_variants": len(by_variant), "selected_rates": rates,
                 "swept_rates": sorted({float(r["learning_rate"]) for r in runs}), "n_rates": n_rates,
                 "diverged": sum(truthy(r["diverged"]) for r in runs), "n_runs": len(runs)}
        subject = Subject(variant=Variant(model, method))
        if n_rates < 2:
            out.append(Finding(LEARNING_RATE, subject, VALIDATION_LOSS, ONE_RATE, facts=facts))
            continue
        gains, at_edge = [], []
        for (rank, task, seed), variant_runs in sorted(by_variant.items()):
            losses = {float(r["learning_rate"]): r["valid_loss_after"] for r in variant_runs}
            chosen = next(r for r in variant_runs if truthy(r["selected"]))
            middle = losses[_middle(list(losses))]
            gains.append((float(middle) if finite(middle) else math.inf) - float(chosen["valid_loss_after"]))
            if chosen.get("at_edge"):
                at_edge.append({"rank": rank, "train_task": task, "seed": seed, "edge": chosen["at_edge"],
                                "learning_rate": float(chosen["learning_rate"])})
        facts.update(at_edge=at_edge, better_than_middle=sum(g > 0 for g in gains),
                     middle_rate=_middle(facts["swept_rates"]))
        finite_gains = sorted(g for g in gains if math.isfinite(g))
        effect = Effect(statistics.median(finite_gains), VALIDATION_LOSS) if finite_gains else None
        out.append(Finding(LEARNING_RATE, subject, VALIDATION_LOSS, WIDEN_SWEEP if at_edge else SWEEP_BRACKETS,
                           effect=effect, facts=facts))
    return out


TAKEAWAY_RULES: tuple[Callable[..., list[Finding]], ...] = (
    stand_in, full_or_lora, rank_choice, forgetting, length_limit, abstaining, seed_spread, learning_rate_sweeps)


def takeaways(matrix, tables: Tables, confidence: float) -> list[Finding]:
    """The practical takeaways' findings, rule by rule."""
    return [finding for rule in TAKEAWAY_RULES for finding in rule(matrix, tables, confidence)]
