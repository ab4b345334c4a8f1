"""The journal: results/journal/journal.html (self-contained) and journal.pdf (WeasyPrint).

Every number and every sentence of findings comes from the matrix, the analysis tables
and the per-sample predictions: the TL;DR highlights and the practical takeaways are
chosen by the rules of ``ftmatrix.findings``, which return records (effect, interval,
verdict); this module only phrases them (``highlights``, ``takeaways``).

The page is rendered by Jinja templates in ``report/`` with autoescaping on: generated
answers are untrusted text, so ``<script>`` in a model's output shows as text. The HTML
needs no network and no JavaScript (figures are embedded as data URIs, the CSS is inline,
and a Content-Security-Policy forbids scripts and remote requests); strings that look like
Hugging Face tokens are masked wherever they would appear.
"""

from __future__ import annotations

import base64
import json
import logging
import math
import re
import sys
from pathlib import Path
from typing import Iterable

from ftmatrix import findings
from ftmatrix.analysis import FASTER, NOT_SIGNIFICANT, SIGNIFICANT_UP, SLOWER
from ftmatrix.config import PROJECT_ROOT
from ftmatrix.errors import DataError, FtmatrixError
from ftmatrix.findings import Finding
from ftmatrix.findings import records as _records, truthy as _truthy
from ftmatrix.numeric import finite
from ftmatrix.records import CellMetrics, ModelManifest, TaskMeta, TrainMetrics

log = logging.getLogger("ftmatrix")

TEMPLATE_DIR = PROJECT_ROOT / "report"
TEMPLATE = "journal.html.j2"
STYLESHEET = "journal.css"
SECTIONS = ("TL;DR", "Setup", "Results", "Fine-tuned local vs API", "Transfer and forgetting", "Learning rate", "LoRA rank", "Latency and cost",
            "Seeds",
            "Practical takeaways", "Sample predictions", "Reproducibility")
REPORT_LIBRARIES = ("pandas", "matplotlib", "jinja2", "weasyprint", "scipy")


# ---------------------------------------------------------------------------- formatting


def anchor(title: str) -> str:
    """A section's id in the page, from its title: 'Latency and cost' -> 'latency-and-cost'."""
    return re.sub(r"[^a-z0-9]+", "-", str(title).lower()).strip("-")


def redact(text: str) -> str:
    """Mask anything shaped like an access token (Hugging Face, GitHub, API keys) or a URL's password."""
    from ftmatrix.redaction import redact as mask

    return mask(text)


def num(value, digits: int = 1) -> str:
    return f"{float(value):.{digits}f}" if finite(value) else "n/a"


def signed(value, digits: int = 1) -> str:
    return f"{float(value):+.{digits}f}".replace("-", "−") if finite(value) else "n/a"


def seconds(value) -> str:
    if not finite(value):
        return "n/a"
    value = float(value)
    if value >= 10:
        return f"{value:.1f}"
    if value >= 0.1:
        return f"{value:.3f}"
    return f"{value:.4f}"


def money(value) -> str:
    if not finite(value):
        return "n/a"
    value = float(value)
    if value >= 0.1 or value <= 0:
        return f"${value:.2f}"
    # Two significant digits for small sums, so two different costs never print alike.
    return f"${value:.{max(4, 1 - math.floor(math.log10(value)))}f}"


def count(value) -> str:
    if not finite(value):
        return "n/a"
    value = float(value)
    for unit, size in (("B", 1e9), ("M", 1e6), ("k", 1e3)):
        if abs(value) >= size:
            return f"{value / size:.3g}{unit}"
    return f"{value:.0f}"


def metric_name(name: str, kind: str | None = None) -> str:
    """A metric's display name, as its task kind declares it (ftmatrix.tasks.metric_display)."""
    from ftmatrix.tasks import metric_display

    return metric_display(name, kind)


def is_significant(low, high) -> bool:
    return finite(low) and finite(high) and (float(low) > 0 or float(high) < 0)


def ci_text(low, high, confidence: float, unit: str = "", *, of_change: bool = True) -> str:
    """'95% CI +1.2 to +3.4' for a change; '95% CI 40.0–52.0' for a value (of_change=False)."""
    if not (finite(low) and finite(high)):
        return "CI n/a"
    if not of_change:
        return f"{confidence:.0%} CI {num(low)}{unit}–{num(high)}{unit}"
    return f"{confidence:.0%} CI {signed(low)}{unit} to {signed(high)}{unit}"


def arrow_ci(low, high, confidence: float) -> str:
    """A relative change's CI in the arrow style: '95% CI 83.3–87.4%' for a decrease."""
    if not (finite(low) and finite(high)):
        return "CI n/a"
    low, high = float(low), float(high)
    if high < 0:
        return f"{confidence:.0%} CI {abs(high):.1f}–{abs(low):.1f}%"
    if low > 0:
        return f"{confidence:.0%} CI {low:.1f}–{high:.1f}%"
    return f"{confidence:.0%} CI {signed(low)}% to {signed(high)}%"


def arrow(value) -> str:
    if not finite(value):
        return "n/a"
    value = float(value)
    return f"↓ {abs(value):.1f}%" if value < 0 else f"↑ {value:.1f}%"


def how(method: str, rank) -> str:
    if method == "full":
        return "full fine-tuning"
    if method == "lora":
        return f"LoRA r{int(rank)}"
    return "untuned"


# ---------------------------------------------------------------------------- findings, phrased


def _ci(interval) -> str:
    """A change's CI in points: '95% CI −1.0 to +7.0'."""
    return ci_text(interval.low, interval.high, interval.confidence) if interval else "CI n/a"


def _arrow_ci(interval) -> str:
    return arrow_ci(interval.low, interval.high, interval.confidence) if interval else "CI n/a"


def _significant(interval) -> bool:
    return interval is not None and interval.excludes_zero


def check_part(finding: Finding) -> str:
    """'; accuracy +1.0 points, 95% CI −10.0 to +12.0': the task's correctness metric beside its
    headline where the finding carries it (a gain it does not show is not one; where the two
    go significantly opposite ways, it decides), else ''."""
    check = finding.facts.get("check")
    if check is None:
        return ""
    seeds = ", seeds disagree" if _significant(check.interval) and check.verdict == NOT_SIGNIFICANT else ""
    return f"; {metric_name(check.what)} {signed(check.effect.value)} points, {_ci(check.interval)}{seeds}"


def quality_part(finding: Finding) -> dict:
    """'accuracy +23.3 points (+80%)' with its CI, significant or not."""
    effect = finding.effect
    interval = finding.interval
    if effect.value == 0 and interval and interval.low == interval.high == 0:
        # Every resample's paired difference is zero: the two answered alike sample by sample (an
        # endpoint serving the very weights it is compared with, say) — not a finding of no effect.
        return {"text": f"{metric_name(finding.what)} identical: no sample scores differently", "ci": "",
                "significant": None}
    rel = f" ({signed(effect.relative_pct, 0)}%)" if finite(effect.relative_pct) else ""
    ci = _ci(interval)
    if finding.facts.get("seed_diffs"):
        agree = "" if finding.facts.get("seeds_agree") else ", seeds disagree"
        ci += f"; per seed {finding.facts['seed_diffs']}{agree}"
    ci += check_part(finding)
    # Significant as the analysis called it: the interval excludes zero and, with several
    # training seeds, every seed's difference has its sign.
    return {"text": f"{metric_name(finding.what)} {signed(effect.value)} points{rel}", "ci": ci,
            "significant": _significant(finding.interval) and finding.verdict != NOT_SIGNIFICANT}


def latency_split_text(finding: Finding) -> str:
    """'fewer output tokens ↓ 95.0% (95% CI …), faster per token ↓ 40.0% (…)': the two parts a
    latency change splits into (ftmatrix.analysis.latency_split), or '' where not measured."""
    facts = finding.facts or {}
    words = {"tokens": ("fewer output tokens", "more output tokens"),
             "per_token": ("faster per token", "slower per token")}
    parts = []
    for part, (down, up) in words.items():
        effect = facts.get(part)
        if effect is None or not finite(effect.value):
            continue
        interval = facts.get(f"{part}_interval")
        if part == "tokens" and effect.value == 0 and interval and interval.low == interval.high == 0:
            parts.append("the same output tokens")       # answers of equal length: the split is all per-token
            continue
        parts.append(f"{down if effect.value < 0 else up} {arrow(effect.value)} [{_arrow_ci(interval)}]")
    return ", ".join(parts)


def latency_part(finding: Finding) -> dict:
    """'latency ↓ 97.0%' with its CI (samples and timing rounds), the rounds, and its split into
    fewer output tokens and faster per token. Significant only as the analysis called it: the
    CI excludes zero and every timing round agrees."""
    facts = finding.facts or {}
    ci = _arrow_ci(finding.interval)
    if facts.get("rounds"):
        agree = "" if facts.get("rounds_agree") else ", rounds disagree"
        ci += f", {facts['rounds']} timing round{'s' if facts['rounds'] != 1 else ''}{agree}"
    split = latency_split_text(finding)
    if split:
        ci += f"; {split}"
    return {"text": f"latency {arrow(finding.effect.value)}", "ci": ci,
            "significant": finding.verdict in (FASTER, SLOWER) if finding.verdict != "n/a" else None}


def rank_part(finding: Finding) -> dict:
    """'Spearman ρ = +0.80' with its CI and permutation p, or why there is none."""
    if finding.effect is None:
        return {"text": finding.note or "n/a", "ci": "", "significant": None}
    interval = finding.interval
    ci = (f"{interval.confidence:.0%} CI {signed(interval.low, 2)} to {signed(interval.high, 2)}" if interval
          else "CI n/a")
    if finite(finding.facts.get("permutation_p")):
        ci += f", permutation p = {float(finding.facts['permutation_p']):.2f}"
    return {"text": f"Spearman ρ = {signed(finding.effect.value, 2)}", "ci": ci,
            "significant": finding.verdict in (findings.POSITIVE_CORRELATION, findings.NEGATIVE_CORRELATION)}


def highlight_part(finding: Finding) -> dict:
    if finding.what == findings.LATENCY:
        return latency_part(finding)
    if finding.topic == findings.LORA_RANK:
        return rank_part(finding)
    if finding.verdict == findings.NO_EFFECTS:
        return {"text": "no significant positive transfer or forgetting in any cell", "ci": "", "significant": None}
    return quality_part(finding)


def highlight_subject(finding: Finding) -> str:
    subject, variant = finding.subject, finding.subject.variant
    task = subject.eval_task
    if finding.topic in (findings.VS_LARGER, findings.VS_API):
        who = (f"{variant.model} ({how(variant.method, variant.rank)} on {task})" if variant.method != "base"
               else f"untuned {variant.model}")
        them = (f"{subject.reference.model} (API)" if finding.topic == findings.VS_API
                else f"untuned {subject.reference.model}")
        return f"{task}: {who} vs {them}"
    if finding.topic == findings.VS_OWN_BASE:
        return f"{task}: {variant.model} {how(variant.method, variant.rank)} vs untuned {subject.reference.model}"
    if finding.topic == findings.FULL_VS_BEST_LORA:
        return f"{task}: {variant.model} full fine-tuning vs best LoRA (r{subject.reference.rank})"
    if finding.topic == findings.LORA_RANK:
        return (f"{task}: LoRA rank vs {metric_name(finding.what)} ({variant.model}, ranks "
                f"{' '.join(map(str, subject.ranks))})")
    if finding.topic in (findings.FORGETTING, findings.POSITIVE_TRANSFER, findings.NOT_IN_RIGHT_ANSWERS):
        # The topic (forgetting, positive transfer) stands before the subject already.
        return f"{variant.model} {how(variant.method, variant.rank)} on {variant.train_task} → {task}"
    return "cross-task effects"


def highlights(tables: dict, confidence: float) -> list[dict]:
    """The TL;DR: ``ftmatrix.findings.highlights`` phrased, one line per topic and subject (a
    comparison's quality and latency findings share a line)."""
    out, lines = [], {}
    for finding in findings.highlights(tables, confidence):
        key = (finding.topic, finding.subject)
        if key not in lines:
            lines[key] = {"topic": finding.topic, "subject": highlight_subject(finding), "parts": []}
            out.append(lines[key])
        lines[key]["parts"].append(highlight_part(finding))
    return out


def _cost_text(facts) -> str:
    mine, theirs = facts.get("cost_per_1k_usd"), facts.get("reference_cost_per_1k_usd")
    if finite(mine) and finite(theirs):
        return f", {money(mine)} instead of {money(theirs)} per 1,000 samples"
    return ""


def stand_in_text(finding: Finding) -> str:
    subject, variant = finding.subject, finding.subject.variant
    task, big = subject.eval_task, subject.reference.model
    score = next(p for p in finding.parts if p.what != findings.LATENCY)
    speed = next((p for p in finding.parts if p.what == findings.LATENCY), None)
    if finding.verdict == findings.FALLS_SHORT:
        return (f"On {task}, no fine-tuned {variant.model} variant reaches the untuned {big}: the best, "
                f"{how(variant.method, variant.rank)}, is {metric_name(score.what)} {signed(score.effect.value)} "
                f"points behind ({_ci(score.interval)}{check_part(score)}); keep the larger model for this task or "
                f"train longer.")
    verdict = "better than" if score.verdict == SIGNIFICANT_UP else "not significantly different from"
    quality = (f"{metric_name(score.what)} {signed(score.effect.value)} points ({_ci(score.interval)}"
               f"{check_part(score)}), {verdict} the larger model")
    who = f"{variant.model} with {how(variant.method, variant.rank)}"
    cost = _cost_text(finding.facts)
    if finding.verdict == findings.CAN_STAND_IN:
        change = arrow(speed.effect.value) if speed else "n/a"
        return (f"On {task}, {who} can stand in for {big}: {quality}, with latency {change} "
                f"({_arrow_ci(speed.interval if speed else None)}){cost}.")
    lat = f"latency {arrow(speed.effect.value)}, not faster" if speed else "latency not measured"
    return (f"On {task}, {who} is at least as good as {big} ({quality}) but brings no latency gain here "
            f"({lat}{cost}); the larger model is the simpler choice.")


def full_or_lora_text(finding: Finding) -> str:
    facts = finding.facts
    wins, losses, ties = facts["full_better_on"], facts["lora_better_on"], facts["no_difference_on"]
    n = len(finding.parts)
    if finding.verdict == findings.PREFER_FULL:
        return (f"Prefer full fine-tuning: it beats the best LoRA rank significantly on {len(wins)} of {n} trained "
                f"tasks ({', '.join(wins)}).")
    if finding.verdict == findings.LORA_ENOUGH:
        share = facts.get("lora_trainable_pct")
        share = f"; LoRA trains {share[0]:.2g}–{share[1]:.2g}% of the parameters" if share else ""
        return (f"LoRA is enough here: full fine-tuning is not significantly better than the best LoRA rank on "
                f"{'the trained task' if n == 1 else f'any of the {n} trained tasks'}"
                f"{' (LoRA is better on ' + ', '.join(losses) + ')' if losses else ''}{share}.")
    return (f"Full fine-tuning vs LoRA depends on the task: full is better on {', '.join(wins)}"
            f"{'; LoRA on ' + ', '.join(losses) if losses else ''}"
            f"{'; no significant difference on ' + ', '.join(ties) if ties else ''}.")


NUMBER_WORDS = {2: "two", 3: "three", 4: "four", 5: "five"}


def rank_choice_text(finding: Finding) -> str:
    if finding.verdict == findings.HIGHER_RANKS_HELP:
        best = ", ".join(f"r{p.facts['best_rank']}" if p.facts.get("best_rank") is not None else "n/a"
                         for p in finding.parts)
        return (f"Higher LoRA ranks help on {', '.join(p.subject.eval_task for p in finding.parts)} (significant "
                f"positive rank–score correlation); use the best rank there ({best}).")
    if finding.verdict == findings.TOO_FEW_RANKS:
        needs, has = finding.facts["needs_ranks"], finding.facts.get("n_ranks") or 0
        if has < 3:
            text = f"Add at least {NUMBER_WORDS.get(needs, needs)} LoRA ranks to the study to measure whether rank matters."
        else:
            confidence = finding.facts.get("confidence")
            at = f" at {confidence:.0%}" if confidence else ""
            text = (f"Whether LoRA rank matters is not measured: with {NUMBER_WORDS.get(has, has)} ranks no rank–score "
                    f"correlation can be significant{at} (it takes {NUMBER_WORDS.get(needs, needs)}).")
        sufficient = finding.facts.get("smallest_sufficient") or ()
        if sufficient:
            text += (" The smallest rank not significantly below the best: "
                     + ", ".join(f"r{rank} on {task}" for task, rank in sufficient) + ".")
        return text
    text = "LoRA rank barely matters: no trained task shows a significant rank–score correlation."
    sufficient = finding.facts.get("smallest_sufficient_ranks") or ()
    if sufficient:
        span = f"r{sufficient[0]}" + (f" to r{sufficient[-1]}" if len(sufficient) > 1 else "")
        text += (f" The smallest rank not significantly below the best is {span} across tasks; choose it to save "
                 f"memory and training time.")
    return text


def forgetting_text(finding: Finding) -> str:
    if finding.verdict == findings.NO_FORGETTING:
        samples = "/".join(map(str, finding.facts["samples_per_task"]))
        return (f"No significant forgetting was measured (with {samples} evaluation samples per task; smaller "
                f"losses would go unseen).")
    subject, variant = finding.subject, finding.subject.variant
    pairs = sorted({f"{p.subject.variant.train_task} → {p.subject.eval_task}" for p in finding.parts})
    return (f"Fine-tuning costs skills it was not trained for ({'; '.join(pairs)}): the worst is "
            f"{how(variant.method, variant.rank)} on {variant.train_task}, {metric_name(finding.what)} "
            f"{signed(finding.effect.value)} points on {subject.eval_task}. If you need both tasks, evaluate on both "
            f"and mix their training data.")


def length_limit_text(finding: Finding) -> str:
    facts = finding.facts
    return (f"Untuned models run to the length limit: {finding.subject.variant.model} on {finding.subject.eval_task} "
            f"hits max_new_tokens on {num(finding.effect.value, 0)}% of samples "
            f"({num(facts['output_tokens_mean'], 0)} output tokens on average, against "
            f"{num(facts['tuned_output_tokens_mean'], 0)} after fine-tuning). Latency follows output length; set "
            f"max_new_tokens with care when comparing untuned models.")


def abstaining_text(finding: Finding) -> str:
    facts, share = finding.facts, finding.effect.value
    text = (f"On {finding.subject.eval_task}, {share:.0f}% of the questions have no answer, so always abstaining "
            f"scores {share:.1f} {metric_name(finding.what)}; {facts['cells_below']} of {facts['cells']} cells score "
            f"significantly below that.")
    if finding.verdict == findings.ANSWERING_MEASURED:
        text += (f" Judge answering and abstaining apart: the best answerer is {facts['best_answerer']} "
                 f"(HasAns F1 {num(facts['has_answer_f1'])}, NoAns F1 {num(facts['no_answer_f1'])}).")
    elif finding.verdict == findings.ONLY_ABSTAINING:
        text += (" No cell answers any answerable question (HasAns F1 0 everywhere): what F1 there is comes "
                 "from abstaining.")
    return text


def seeds_text(finding: Finding) -> str:
    if finding.verdict == findings.ONE_SEED:
        return ("Each variant was trained with one seed: the intervals cover evaluation-sample noise only. "
                "Add seeds to the config to measure training variance.")
    subject, variant = finding.subject, finding.subject.variant
    return (f"Training seeds matter up to {num(finding.effect.value)} points (standard deviation across "
            f"{finding.facts['n_seeds']} seeds, {how(variant.method, variant.rank)} on {variant.train_task} → "
            f"{subject.eval_task}); the CIs above include this variance.")


def _rates(values) -> str:
    return ", ".join(f"{float(v):.0e}".replace("e-0", "e-") for v in values)


def learning_rate_text(finding: Finding) -> str:
    f = finding.facts
    method = {"full": "full fine-tuning", "lora": "LoRA"}[finding.subject.variant.method]
    who = f"{finding.subject.variant.model} {method}"
    if finding.verdict == findings.ONE_RATE:
        return (f"{who} was trained at one learning rate ({_rates(f['swept_rates'])}): nothing was selected. Give "
                f"train.learning_rate a list to train every rate and evaluate the one with the lowest validation loss.")
    text = (f"{who}: the sweep over {_rates(f['swept_rates'])} selected {_rates(f['selected_rates'])} on the "
            f"validation split ({f['n_variants']} variant{'s' if f['n_variants'] != 1 else ''}"
            f"{', ' + str(f['diverged']) + ' of ' + str(f['n_runs']) + ' runs diverged' if f['diverged'] else ''}). "
            f"Against one rate (the sweep's middle, {_rates([f['middle_rate']])}), the selected rate lowers the "
            f"validation loss on {f['better_than_middle']} of {f['n_variants']}")
    if finding.effect is not None:
        text += f" (median {finding.effect.value:.3f})"
    text += "; the comparisons above are at each variant's selected rate."
    if finding.verdict == findings.WIDEN_SWEEP:
        edges = "; ".join(f"{e['train_task']}{' r' + str(e['rank']) if e['rank'] else ''}"
                          f"{' seed ' + str(e['seed']) if e['seed'] else ''} at the {e['edge']} rate"
                          for e in f["at_edge"])
        text += f" Widen the sweep: the best rate may lie outside it for {edges}."
    return text


TAKEAWAY_TEXT = {
    findings.STAND_IN: stand_in_text,
    findings.FULL_OR_LORA: full_or_lora_text,
    findings.WHICH_RANK: rank_choice_text,
    findings.FORGETTING: forgetting_text,
    findings.LENGTH_LIMIT: length_limit_text,
    findings.ABSTAINING: abstaining_text,
    findings.SEEDS: seeds_text,
    findings.LEARNING_RATE: learning_rate_text,
}


def takeaways(matrix, tables: dict, confidence: float) -> list[str]:
    """Practical advice: ``ftmatrix.findings.takeaways`` phrased, one sentence or two each."""
    return [TAKEAWAY_TEXT[finding.topic](finding) for finding in findings.takeaways(matrix, tables, confidence)]


# ---------------------------------------------------------------------------- sections


def sweep_rows(table) -> list[dict]:
    """The learning-rate section's table: one row per fine-tuned variant, its rates and validation
    losses, the selected one marked, a variant at the edge of its sweep flagged."""
    out = []
    for r in findings.records(table):
        key = (r["model"], r["method"], int(r["rank"]), r["train_task"], int(r["seed"]))
        if not out or out[-1]["key"] != key:
            out.append({"key": key, "label": f"{r['model']} {how(r['method'], r['rank'])} on {r['train_task']}"
                                             f"{' seed ' + str(int(r['seed'])) if int(r['seed']) else ''}",
                        "runs": [], "edge": r.get("at_edge") or ""})
        out[-1]["runs"].append({"lr": _rates([r["learning_rate"]]),
                                "loss": "diverged" if findings.truthy(r["diverged"]) else num(r["valid_loss_after"], 3),
                                "selected": findings.truthy(r["selected"])})
    return out


def results_tables(matrix) -> list[dict]:
    """Per evaluation task: one row per cell with the headline (CI), other metrics, latency, cost."""
    out = []
    for task in sorted(matrix["eval_task"].unique()):
        part = matrix[matrix["eval_task"] == task]
        headline = part["headline_metric"].iloc[0]
        metrics = [c for c in part.columns if c.startswith("metric_") and c != f"metric_{headline}"
                   and part[c].notna().any() and not _is_count_metric(c[len("metric_"):])][:6]
        rows = []
        for r in part.to_dict("records"):
            rows.append({
                "label": r["label"], "n": int(r["n"]),
                "headline": num(r["headline"]),
                "ci": f"{num(r['headline_ci_low'])}–{num(r['headline_ci_high'])}",
                "metrics": [num(r.get(m), 2) for m in metrics],
                "latency": seconds(r.get("latency_mean_s")), "p95": seconds(r.get("latency_p95_s")),
                "ttft": seconds(r.get("ttft_mean_s")), "tokens": num(r.get("output_tokens_mean")),
                "hit": num(r.get("hit_limit_pct"), 0), "cost": money(r.get("cost_per_1k_usd")),
                "api": money(r.get("api_cost_per_1k_usd")) if "api_cost_per_1k_usd" in r else None,
                "method": r["method"],
            })
        kind = part["task_kind"].iloc[0]
        out.append({"task": task, "kind": kind, "metric": metric_name(headline, kind),
                    "metrics": [metric_name(m[len("metric_"):], kind) for m in metrics], "rows": rows,
                    "api_name": part["api_name"].iloc[0] if "api_name" in part else None})
    return out


def _is_count_metric(name: str) -> bool:
    return name == "total" or name.endswith("_total") or name.startswith("n_")


def training_rows(matrix) -> list[dict]:
    trained = matrix[matrix["method"] != "base"]
    out = []
    seen = set()
    for r in trained.to_dict("records"):
        key = (r["model"], r["method"], r["rank"], r["train_task"], r["seed"])
        if key in seen:
            continue
        seen.add(key)
        out.append({"label": r["label"], "steps": num(r.get("train_steps"), 0), "epochs": num(r.get("train_epochs"), 1),
                    "tokens": count(r.get("train_tokens")), "lr": f"{r['learning_rate']:.1e}"
                    if finite(r.get("learning_rate")) else "n/a",
                    "loss": f"{num(r.get('heldout_loss_before'), 3)} → {num(r.get('heldout_loss_after'), 3)}",
                    "final_loss": num(r.get("train_final_loss"), 3),
                    "trainable": f"{count(r.get('trainable_params'))} ({num(r.get('trainable_pct'), 2)}%)",
                    "wall": seconds(r.get("train_wall_time_s")),
                    "memory": num(r.get("train_peak_memory_mb"), 0), "cost": money(r.get("train_cost_usd"))})
    return out


def _grading_text(kind: str) -> str:
    """How the task kind extracts an answer and what counts as correct (its ``grading``)."""
    from ftmatrix.tasks import get_task

    return get_task(kind).grading or "n/a: the task kind does not describe its grading"


def format_share_rows(table, confidence: float) -> list[dict]:
    """Each in-task fine-tuning gain under the headline's reading of the answers and under the
    other one, with the share of the gain that survives (from the vs_base table)."""
    out = []
    for r in _records(table):
        if not _truthy(r.get("in_task")) or not isinstance(r.get("other_grading"), str):
            continue
        out.append({**r, "how": how(r.get("method", "full"), r.get("rank") or 0),
                    "metric": metric_name(r.get("headline_metric", "")),
                    "diff_text": signed(r.get("diff")),
                    "ci_text": ci_text(r.get("diff_ci_low"), r.get("diff_ci_high"), confidence),
                    "other_text": signed(r.get("other_diff")),
                    "other_ci_text": ci_text(r.get("other_diff_ci_low"), r.get("other_diff_ci_high"), confidence),
                    "survives_text": f"{num(r.get('survives_pct'), 0)}%" if finite(r.get("survives_pct")) else "n/a",
                    "format_text": f"{num(r.get('format_rate_reference'), 0)}% → {num(r.get('format_rate_value'), 0)}%"})
    return out


def _split_of_row(row: dict, confidence: float) -> str:
    """'; fewer output tokens ↓ 95.0% […], faster per token ↓ 3.1% […]' for a comparison row."""
    finding = findings.latency("", findings.Subject(), row, confidence)
    split = latency_split_text(finding) if finding else ""
    return f"; {split}" if split else ""


def _check_text(row: dict, confidence: float) -> str:
    """'; accuracy +1.0 points, 95% CI −10.0 to +12.0': the task's correctness metric beside its
    headline, where it has one (ftmatrix.analysis.correctness_check)."""
    if not row.get("check_metric") or not finite(row.get("check_diff")):
        return ""
    seeds = (", seeds disagree" if is_significant(row.get("check_diff_ci_low"), row.get("check_diff_ci_high"))
             and row.get("check_significance") == NOT_SIGNIFICANT else "")
    return (f"; {metric_name(row['check_metric'])} {signed(row['check_diff'])} points, "
            f"{ci_text(row.get('check_diff_ci_low'), row.get('check_diff_ci_high'), confidence)}{seeds}")


def comparison_rows(table, confidence: float, *, only_in_task: bool = False, with_effect: bool = False) -> list[dict]:
    out = []
    for r in _records(table):
        if only_in_task and not _truthy(r.get("in_task")):
            continue
        out.append({**r,
                    "diff_text": signed(r.get("diff")),
                    "ci_text": ci_text(r.get("diff_ci_low"), r.get("diff_ci_high"), confidence)
                    + (f"; per seed {r['seed_diffs']}" if r.get("seed_diffs") else "") + _check_text(r, confidence),
                    "significant": is_significant(r.get("diff_ci_low"), r.get("diff_ci_high"))
                    and r.get("significance") != NOT_SIGNIFICANT,
                    "latency_text": arrow(r.get("latency_rel_pct")),
                    "latency_ci": arrow_ci(r.get("latency_rel_ci_low"), r.get("latency_rel_ci_high"), confidence)
                    + _split_of_row(r, confidence),
                    "how": how(r.get("method", "full"), r.get("rank") or 0),
                    "metric": metric_name(r.get("headline_metric", ""))})
    return out


def api_rows(matrix, table, confidence: float) -> list[dict]:
    """"Fine-tuned local vs API": every in-task fine-tuned variant against every model behind an
    endpoint (the vs_larger_base rows whose larger model is one), with both sides' headline,
    mean latency and cost per 1,000 samples beside the difference and its interval."""
    if "engine" not in matrix:
        return []
    endpoints = set(matrix.loc[matrix["engine"] == "openai", "model"])
    first_seed = {}
    for r in matrix.to_dict("records"):
        key = (r["model"], r["method"], int(r["rank"]), r["train_task"], r["eval_task"])
        if key not in first_seed or int(r["seed"]) < int(first_seed[key]["seed"]):
            first_seed[key] = r
    out = []
    for c in comparison_rows(table, confidence):
        if c.get("larger_model") not in endpoints or not _truthy(c.get("in_task")):
            continue
        mine = first_seed.get((c["model"], c["method"], int(c["rank"]), c["train_task"], c["eval_task"]))
        theirs = first_seed.get((c["larger_model"], "base", 0, "none", c["eval_task"]))
        if mine is None or theirs is None:
            continue

        def side(r):
            return {"headline": num(r.get("headline")),
                    "headline_ci": ci_text(r.get("headline_ci_low"), r.get("headline_ci_high"), confidence,
                                           of_change=False),
                    "latency": seconds(r.get("latency_mean_s")),
                    "latency_ci": (f"{seconds(r.get('latency_mean_ci_low'))}–{seconds(r.get('latency_mean_ci_high'))}"
                                   if finite(r.get("latency_mean_ci_low")) else "CI n/a"),
                    "cost": money(r.get("cost_per_1k_usd")), "failed": int(r.get("n_failed") or 0)}

        out.append({**c, "local": side(mine), "api": side(theirs)})
    return out


def _truncate(text: str, limit: int, keep_end: bool = False) -> str:
    text = str(text)
    if len(text) <= limit:
        return text
    return "…" + text[-limit:] if keep_end else text[:limit] + "…"


def sample_predictions(matrix, tables: dict, predictions: dict[str, list[dict]], per_task: int,
                       max_chars: int) -> list[dict]:
    """The first ids of each eval task, as answered by the bases and the in-task full / best LoRA."""
    if per_task <= 0:
        return []
    best_rank = {(r["model"], r["eval_task"]): r.get("best_rank") for r in _records(tables["full_vs_lora"])
                 if _truthy(r.get("in_task"))}
    out = []
    for task in sorted(matrix["eval_task"].unique()):
        part = matrix[matrix["eval_task"] == task].sort_values(["model", "method", "rank", "seed"])
        chosen = []
        for r in part.to_dict("records"):
            if r["seed"] != part["seed"].min():
                continue
            if r["method"] == "base" or (r["train_task"] == task and (
                    r["method"] == "full" or (r["method"] == "lora" and (
                        best_rank.get((r["model"], task)) in (None, r["rank"]))))):
                chosen.append(r)
        if not chosen:
            continue
        first = predictions.get(chosen[0]["cell"], [])
        ids = [str(p.get("id")) for p in first[:per_task]]
        headline = chosen[0]["headline_metric"]
        samples = []
        for sample_id in ids:
            prompt = reference = None
            outputs = []
            for r in chosen:
                pred = next((p for p in predictions.get(r["cell"], []) if str(p.get("id")) == sample_id), None)
                if pred is None:
                    continue
                prompt = prompt or pred.get("prompt")
                reference = reference if reference is not None else pred.get("reference")
                score = (pred.get("scores") or {}).get(headline)
                outputs.append({"label": r["label"], "generated": _truncate(pred.get("generated", ""), max_chars),
                                "extracted": _truncate(pred.get("extracted", ""), 200),
                                "score": num(score, 2) if finite(score) else "n/a",
                                "hit_limit": bool(pred.get("hit_limit"))})
            prompt_text = prompt if isinstance(prompt, str) else json.dumps(prompt, ensure_ascii=False)
            samples.append({"id": sample_id, "prompt": _truncate(prompt_text or "", max_chars, keep_end=True),
                            "reference": _truncate(json.dumps(reference, ensure_ascii=False), max_chars),
                            "outputs": outputs})
        out.append({"task": task, "metric": metric_name(headline), "samples": samples})
    return out


def _merge_versions(blocks: Iterable[dict]) -> dict[str, str]:
    seen: dict[str, set] = {}
    for block in blocks:
        for name, version in (block or {}).items():
            seen.setdefault(name, set()).add(str(version))
    return {name: " / ".join(sorted(v)) for name, v in sorted(seen.items())}


def _engines_text(matrix) -> str:
    """Which engine generated how many cells, and which one timed the latency."""
    engines = matrix["engine"].value_counts().to_dict() if "engine" in matrix else {"transformers": len(matrix)}

    def which(name: str, n: int) -> str:
        # With more than one engine, each names its models (the matrix's engine column has every cell's).
        models = (", ".join(dict.fromkeys(matrix.loc[matrix["engine"] == name, "model"]))
                  if len(engines) > 1 and "model" in matrix else "")
        return f"{name} ({n} cell{'s' if n != 1 else ''}{': ' + models if models else ''})"

    quality = ", ".join(which(name, n) for name, n in sorted(engines.items()))
    timers = sorted(e for e in matrix["timing_engine"].dropna().unique()
                    if e != "openai") if "timing_engine" in matrix else []
    timing = f"latency timed by {' and '.join(timers) or 'transformers'} in the timing rounds"
    if len(timers) > 1:
        timing += " (cells timed by different engines: their latencies are not comparable)"
    if engines.get("openai"):
        timing += "; an endpoint's latency is every streamed request's"
    return f"quality pass: {quality}; {timing}"


def setup_section(config: dict, matrix, metrics_docs: list[CellMetrics], task_meta: dict[str, TaskMeta],
                  manifests: dict[str, ModelManifest], train_docs: list[TrainMetrics]) -> dict:
    """``config`` is the validated study configuration (every default filled in)."""
    models = []
    for m in config["models"]:
        if m["source"] == "api":
            # A model behind an endpoint: its URL and model id, never its key (only the variable's name).
            api = m["api"]
            where = (f"transformers serve of {api['serve']['model']} on 127.0.0.1" if api["serve"]
                     else redact(api["base_url"]))
            models.append({"name": m["name"], "source": f"api ({where})", "id": api["model"],
                           "revision": "n/a", "params": "n/a", "finetune": False, "trust_remote_code": False})
            continue
        manifest = manifests[m["name"]]
        models.append({"name": m["name"], "source": m["source"], "id": manifest.id,
                       "revision": manifest.resolved_revision, "params": count(manifest.params),
                       "finetune": m["finetune"], "trust_remote_code": manifest.trust_remote_code})
    tasks = []
    headline = {r["eval_task"]: r["headline_metric"] for r in matrix.to_dict("records")}
    for t in config["tasks"]:
        meta = task_meta[t["name"]]
        tasks.append({"name": t["name"], "kind": t["kind"], "source": _source_text(t["source"]),
                      "revision": meta.revision,
                      "train": _count_text(meta.counts["train"]), "eval": _count_text(meta.counts["eval"]),
                      "max_new_tokens": t["max_new_tokens"], "metric": metric_name(headline.get(t["name"], "")),
                      "licence": meta.licence, "split": _split_text(meta.split), "grading": _grading_text(t["kind"])})
    train = config["train"]
    lora = config["lora"]
    lr = train["learning_rate"]
    alpha = lora["alpha"]
    hyper = [
        ("methods", ", ".join(config["methods"])),
        ("seeds", _per_task(config, "seeds", ", ".join(map(str, config["seeds"])))),
        ("learning rate", _per_task(config, "learning_rate", f"full {lr['full']}, LoRA {lr['lora']}")
         + " (as recorded per run below)"),
        ("epochs / max steps", f"{_per_task(config, 'epochs', str(train['epochs']))} / "
                               f"{train['max_steps'] if train['max_steps'] > 0 else 'no limit'}"),
        ("batch size", f"{train['per_device_batch_size']} × {train['gradient_accumulation_steps']} "
                       f"accumulation steps"),
        ("max length (tokens)", train["max_length"]),
        ("schedule", f"{train['lr_scheduler']}, warm-up ratio {train['warmup_ratio']}, weight decay "
                     f"{train['weight_decay']}"),
        ("precision (training)", train["precision"]),
        ("generation engines", _engines_text(matrix)),
        ("LoRA ranks", ", ".join(map(str, lora["ranks"]))),
        ("LoRA alpha", f"{alpha['value']} × r" if alpha["rule"] == "proportional" else f"{alpha['value']} (fixed)"),
        ("LoRA dropout / targets", f"{lora['dropout']} / {lora['target_modules']}"
                                   f"{' (rsLoRA)' if lora['use_rslora'] else ''}"),
    ]
    hyper = [(key, _v(value)) for key, value in hyper]
    evaluate = config["evaluate"]
    stops = sorted({s for d in metrics_docs for s in d.generation.decoding.stop_tokens})
    decoding = [
        ("decoding", "greedy (no sampling, one beam)"),
        ("max new tokens", ", ".join(f"{t['name']}: {t['max_new_tokens']}" for t in config["tasks"])),
        ("stop tokens", ", ".join(stops) or "the model's end of turn"),
        ("quality batch size", evaluate["batch_size"]),
        ("latency", "not timed" if evaluate["latency_samples"] == 0 else
                    f"batch size 1, {evaluate['latency_samples'] or 'all'} samples per cell, each timed in "
                    f"{evaluate['timing_rounds']} rounds (one job per round holding the whole machine, the cells' "
                    f"order turned each round), after {evaluate['warmup']} warm-up generations per cell and round; "
                    f"intervals resample rounds and samples"),
        ("LoRA at inference", "merged into the weights" if evaluate["merge_lora"] else "adapter kept"),
        ("precision (inference)", ", ".join(sorted({str(p) for p in matrix["precision"].dropna()})) or "n/a"),
        ("thinking mode", "on (enable_thinking: true)" if config["enable_thinking"] else
                          "off (enable_thinking: false)"),
        ("answers graded", f"{evaluate['grading']} for the headline (evaluate.grading); both readings and the share "
                           f"of answers in the asked form are in the matrix"),
        ("confidence intervals", f"{evaluate['confidence']:.0%}, percentile bootstrap, "
                                 f"{evaluate['bootstrap_resamples']} resamples, seed {evaluate['bootstrap_seed']}"),
    ]
    decoding = [(key, _v(value)) for key, value in decoding]
    hardware = []
    seen = set()
    for device in [d.generation.hardware for d in metrics_docs] + [d.hardware for d in train_docs]:
        key = (device["device"], device["gpu"], device.get("platform"), device.get("cpu_count"),
               device.get("torch_threads"), device.get("cpu_capability"))
        if key not in seen:
            seen.add(key)
            hardware.append({"device": device["device"], "gpu": device["gpu"] or "—",
                             "platform": device.get("platform") or "—", "cpus": device.get("cpu_count"),
                             "threads": device.get("torch_threads"),
                             "kernels": device.get("cpu_capability") or "—"})
    return {"models": models, "tasks": tasks, "hyper": hyper, "decoding": decoding, "hardware": hardware,
            "thinking": config["enable_thinking"], "training": training_rows(matrix),
            "projection": cost_projection(config)}


def _hours(value: float) -> str:
    return f"{value:.2f}" if value < 1 else f"{value:,.1f}"


def cost_projection(config: dict) -> dict | None:
    """The study's FLOPs and GPU-hours on one stated GPU (ftmatrix.resources.project_study), for a
    study of hub models whose published shapes are known (the reference study); None otherwise."""
    from ftmatrix.resources import GPUS, lora_params_estimate, project_study, shape_of

    if not all(m["source"] == "hub" and shape_of(m) for m in config["models"]):
        return None
    projection = project_study(config)
    gpu = GPUS["h100-sxm"]
    stages = [(stage, [j for j in projection["jobs"] if j["stage"] == stage]) for stage in ("train", "evaluate")]
    rows = [(f"{stage} ({len(jobs)} jobs)", f"{sum(j['flops'] for j in jobs) / 1e15:,.1f} PFLOP, "
                                            f"{_hours(sum(j['hours'] for j in jobs))} GPU-hours") for stage, jobs in stages]
    rows.append(("total", f"{_hours(projection['hours'])} GPU-hours, {money(projection['usd'])} at "
                          f"{money(config['cost']['gpu_hour_usd'])} per GPU-hour"))
    for m in config["models"]:
        if m["finetune"] and "lora" in config["methods"]:
            shape = shape_of(m)
            rows.append((f"LoRA trainable parameters, {m['name']}", ", ".join(
                f"r{r}: {count(lora_params_estimate(shape, m['params_b'], r))} "
                f"({100 * shape.lora_params(r) / shape.total_params():.1f}%)" for r in config["lora"]["ranks"])))
    return {"gpu": f"one {gpu.name} ({gpu.bf16_tflops:.0f} TFLOP/s bf16 dense peak), {projection['mfu']:.0%} of it "
                   f"sustained; training rows of half of max_length, answers of max_new_tokens (the most a cell "
                   f"can cost), each decoding step at least {projection['assumptions']['decode_step_floor_s'] * 1e3:.0f} ms",
            "rows": rows}


def _per_task(config: dict, key: str, study_wide: str) -> str:
    """A study-wide setting, then each task that sets its own ('0; <task>: 0, 1')."""
    def text(value) -> str:
        if isinstance(value, dict):
            return ", ".join(f"{'LoRA' if k == 'lora' else k} {text(v)}" for k, v in value.items())
        if isinstance(value, list):
            return " / ".join(map(str, value)) if key == "learning_rate" else ", ".join(map(str, value))
        return str(value)

    own = [f"{t['name']}: {text(t[key])}" for t in config["tasks"] if t.get(key) is not None]
    return "; ".join([study_wide, *own])


def _count_text(value) -> str:
    """A row count from meta.json: a number, or {'written': …, 'available': …} ('300 of 412 available')."""
    if isinstance(value, dict):
        written, available = value.get("written"), value.get("available")
        if written is None:
            return "—"
        return f"{written} of {available}" if available not in (None, written) else str(written)
    return "—" if value is None else str(value)


def _split_text(value) -> str:
    if isinstance(value, dict):
        return "; ".join(f"{k}: {v}" for k, v in value.items() if not isinstance(v, (dict, list)))
    return "—" if value is None else str(value)


def _v(value):
    """A setting for display: 'n/a' where the config has none."""
    return "n/a" if value is None or value == "None" else value


def _source_text(source: dict) -> str:
    kind = source.get("type")
    if kind == "hub":
        subset = f" ({source['subset']})" if source.get("subset") else ""
        return f"hub: {source.get('id')}{subset}"
    if kind == "demo":
        return f"demo world, seed {source.get('seed', 0)}"
    if kind == "local":
        return f"local files ({source.get('format')})"
    return str(kind)


def study_arguments(configfiles, config_args=()) -> str:
    """The end of a snakemake command that selects this study: the --config values, then the
    study files in the order they were given (the Snakefile reads config.yaml first, by
    itself), shell-quoted. Both options take several values, so they come last."""
    from ftmatrix.integrity import format_study_arguments

    return format_study_arguments(configfiles, config_args)


def reproducibility_section(config: dict, config_hash: str | None, matrix, metrics_docs: list[dict],
                            train_docs: list[dict], task_meta: dict, manifests: dict, configfiles,
                            config_args=()) -> dict:
    from ftmatrix.provenance import library_versions

    states = sorted({(str(c), str(d)) for c, d in zip(matrix["git_commit"], matrix["git_dirty"])})
    configs = sorted({str(h) for h in matrix["config_hash"].dropna()})
    files = [str(p) for p in configfiles or []]
    selects = study_arguments(files, config_args)
    results = f"results/{config['study']}"
    commands = [
        ("run (or resume) the whole study", f"snakemake --cores all{selects}"),
        ("redo the analysis, figures and journal only", f"snakemake --cores all --forcerun analyse_matrix{selects}"),
        ("rebuild the matrix from the evaluation results",
         f"snakemake --cores all --forcerun aggregate_matrix{selects}"),
        ("what would rerun, and why", f"snakemake -n --cores all{selects}"),
        ("Snakemake's report (figures and tables with captions)",
         f"snakemake --report {results}/report.html{selects}"),
    ]
    libraries = _merge_versions([d.provenance["libraries"] for d in metrics_docs + train_docs])
    report_libs = library_versions(REPORT_LIBRARIES)
    data = [{"task": name, "revision": meta.revision,
             "fingerprint": ", ".join(f"{k}: {v}" for k, v in sorted(meta.fingerprints.items())),
             "seed": meta.data_seed} for name, meta in sorted(task_meta.items())]
    models = [{"name": name, "revision": m.resolved_revision, "trust_remote_code": m.trust_remote_code}
              for name, m in sorted(manifests.items())]
    return {"commits": [{"commit": c, "dirty": d == "True"} for c, d in states],
            "mixed_commits": len({c for c, _ in states}) > 1,
            "config_hash": config_hash, "cell_config_hashes": configs,
            "stale_config": bool(config_hash) and configs != [config_hash],
            "configfiles": files, "commands": commands, "libraries": libraries,
            "report_libraries": {k: v for k, v in report_libs.items() if v},
            "data": data, "models": models, "thinking": config["enable_thinking"],
            "config_json": json.dumps(config, indent=1, sort_keys=True, default=str)}


# ---------------------------------------------------------------------------- rendering


def figure_uri(path: Path) -> str:
    data = base64.b64encode(Path(path).read_bytes()).decode("ascii")
    return f"data:image/png;base64,{data}"


def environment():
    from jinja2 import Environment, FileSystemLoader, StrictUndefined
    from markupsafe import Markup

    def finalize(value):
        # Markup (the inline CSS) is the project's own text; everything else is masked, then escaped.
        if isinstance(value, Markup):
            return value
        return redact(value) if isinstance(value, str) else value

    env = Environment(loader=FileSystemLoader(str(TEMPLATE_DIR)), autoescape=True, undefined=StrictUndefined,
                      finalize=finalize, trim_blocks=True, lstrip_blocks=True)
    env.filters.update({"num": num, "signed": signed, "seconds": seconds, "money": money, "metric": metric_name,
                        "anchor": anchor})
    return env


def decontamination_notes(report_files) -> list[str]:
    """One sentence per training task: how many of its training and validation rows overlapped an
    eval row of the study, and what was done with them (ftmatrix.decontaminate)."""
    from ftmatrix.records import Decontamination

    notes = []
    for path in report_files:
        report = Decontamination.read(path)
        parts = []
        for split, name in (("train", "training"), ("valid", "validation")):
            c = report.counts[split]
            parts.append(f"{c['overlapping']} of {c['rows']} {name} rows")
        found = "; ".join(f"{task}: {n}" for task, n in report.overlapping_by_eval_task.items()) or "none"
        action = {"drop": "left out of training", "warn": "kept (policy warn)", "stop": "none found"}[report.policy]
        notes.append(f"{report.task}: {' and '.join(parts)} overlapped eval rows (same normalised prompt or a shared "
                     f"run of {report.ngram} words; by eval task — {found}); {action}. Eval rows are never dropped.")
    return notes


def render(context: dict) -> str:
    env = environment()
    css = (TEMPLATE_DIR / STYLESHEET).read_text(encoding="utf-8")
    return env.get_template(TEMPLATE).render(css=css, **context)


def journal_context(*, matrix_file, analysis_dir, figures_dir, metrics_files, predictions_files, task_meta_files,
                    model_manifests, train_metrics_files, config: dict, config_hash: str | None = None,
                    configfiles=(), config_args=(), decontamination_files=()) -> dict:
    from ftmatrix.aggregate import read_manifests, read_matrix, read_task_meta
    from ftmatrix.analysis import TABLES, read_predictions, read_table
    from ftmatrix.figures import FIGURES
    from ftmatrix.selection import read_sweep_table

    matrix = read_matrix(matrix_file)
    tables = {name: read_table(Path(analysis_dir) / f"{name}.csv") for name in TABLES}
    tables["lr_sweep"] = read_sweep_table(Path(analysis_dir) / "lr_sweep.csv")
    figures = {}
    for name in FIGURES:
        path = Path(figures_dir) / f"{name}.png"
        if not path.is_file():
            raise DataError(f"{path}: figure missing; run `snakemake {path}`.")
        figures[name] = figure_uri(path)
    confidence = float(matrix["confidence"].iloc[0])
    report = config["report"]
    metrics_docs = [CellMetrics.read(path) for path in metrics_files]
    train_docs = [TrainMetrics.read(path) for path in train_metrics_files]
    task_meta = read_task_meta(task_meta_files)
    manifests = read_manifests(model_manifests)
    predictions = read_predictions(predictions_files or [])
    return {
        "study": {"name": config["study"], "description": config["description"].strip(),
                  "cells": len(matrix), "variants": len(matrix.drop_duplicates(
                      ["model", "method", "rank", "train_task", "seed"])),
                  "eval_tasks": sorted(matrix["eval_task"].unique()), "confidence": confidence},
        "sections": SECTIONS,
        "highlights": highlights(tables, confidence),
        "takeaways": takeaways(matrix, tables, confidence),
        "setup": setup_section(config, matrix, metrics_docs, task_meta, manifests, train_docs),
        "decontamination": decontamination_notes(decontamination_files),
        "results": results_tables(matrix),
        "transfer": comparison_rows(tables["transfer"], confidence),
        "format_share": format_share_rows(tables["vs_base"], confidence),
        "vs_larger": comparison_rows(tables["vs_larger_base"], confidence),
        "vs_api": api_rows(matrix, tables["vs_larger_base"], confidence),
        "full_vs_lora": comparison_rows(tables["full_vs_lora"], confidence),
        "rank_correlation": _records(tables["rank_correlation"]),
        "lora_rank": _records(tables["lora_rank"]),
        "sweeps": sweep_rows(tables["lr_sweep"]),
        "seeds": _records(tables["seeds"]),
        "several_seeds": any(finite(r.get("n_seeds")) and float(r["n_seeds"]) > 1 for r in _records(tables["seeds"])),
        "samples": sample_predictions(matrix, tables, predictions, report["samples_per_task"],
                                      report["max_sample_chars"]),
        "figures": figures,
        "repro": reproducibility_section(config, config_hash, matrix, metrics_docs, train_docs, task_meta,
                                         manifests, configfiles, config_args),
    }


def build_journal(*, matrix_file, analysis_dir, figures_dir, metrics_files, predictions_files, task_meta_files,
                  model_manifests, train_metrics_files, config: dict, html_file, config_hash: str | None = None,
                  configfiles=(), config_args=(), decontamination_files=()) -> Path:
    """Render results/journal/journal.html; prints where it is."""
    from ftmatrix.io import write_text

    context = journal_context(matrix_file=matrix_file, analysis_dir=analysis_dir, figures_dir=figures_dir,
                              metrics_files=metrics_files, predictions_files=predictions_files,
                              task_meta_files=task_meta_files, model_manifests=model_manifests,
                              train_metrics_files=train_metrics_files, config=config, config_hash=config_hash,
                              configfiles=configfiles, config_args=config_args,
                              decontamination_files=decontamination_files)
    html = render(context)
    write_text(html_file, html)
    where = Path(html_file).resolve()
    log.info("journal: %d highlights, %d takeaways -> %s", len(context["highlights"]), len(context["takeaways"]),
             where)
    print(f"ftmatrix: the journal is at {where}", file=sys.stderr, flush=True)
    return where


def write_journal_pdf(html_file, pdf_file) -> Path:
    """journal.html -> journal.pdf with WeasyPrint (print styles in report/journal.css)."""
    from ftmatrix.io import atomic_path

    try:
        import weasyprint
    except (ImportError, OSError) as exc:   # OSError: the system's pango libraries are missing
        raise FtmatrixError(f"{pdf_file}: WeasyPrint cannot run ({exc}). Install it with its system libraries "
                            f"(Debian: apt-get install libpango-1.0-0 libpangoft2-1.0-0 libharfbuzz0b "
                            f"libharfbuzz-subset0 fonts-dejavu-core).") from None
    html_file = Path(html_file)
    html = html_file.read_text(encoding="utf-8")
    with atomic_path(pdf_file, suffix=".pdf") as tmp:
        weasyprint.HTML(string=html, base_url=str(html_file.parent)).write_pdf(str(tmp))
    where = Path(pdf_file).resolve()
    print(f"ftmatrix: the journal (PDF) is at {where}", file=sys.stderr, flush=True)
    return where
