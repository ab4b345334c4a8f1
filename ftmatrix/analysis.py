"""The comparisons the study is for, each with a paired bootstrap confidence interval.

Reads results/matrix.csv and every cell's predictions.jsonl and writes
results/analysis/*.csv:

- ``vs_base.csv``        each fine-tuned cell against its own untuned base (quality and latency,
                         absolute and relative change);
- ``vs_larger_base.csv`` each variant of a smaller model against every base model with more
                         parameters (the reference study's headline comparison);
- ``full_vs_lora.csv``   full fine-tuning against the best LoRA rank per (model, training task,
                         evaluation task);
- ``lora_rank.csv``      the score at every LoRA rank (and full fine-tuning) with its CI;
- ``rank_correlation.csv`` Spearman correlation of LoRA rank and score, with a CI;
- ``transfer.csv``       training task × evaluation task: change against the base, labelled
                         positive transfer / forgetting only where the CI excludes zero;
- ``seeds.csv``          mean and spread across seeds, and CIs that include seed variance.

How the intervals are made. Cells evaluated on the same task are aligned by sample id.
Each bootstrap resample draws one set of sample positions, shared by every cell of that
task (the *paired* bootstrap: both sides of a difference see the same samples), and the
task's own corpus metric (``ftmatrix.tasks.get_task(kind).metrics``) is computed on it.
A variant trained with several seeds is a *group*: each resample also draws the seeds
with replacement and averages them, so its interval includes seed-to-seed variance. With
one seed this is the plain paired bootstrap. Intervals are percentile intervals.

Every table has a fixed set of columns and is written even when the grid is partial (no
base, one rank, one task, one seed): rows that cannot be computed say why in ``note``.
"""

from __future__ import annotations

import logging
import math
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Sequence

import numpy as np

from ftmatrix.errors import DataError
from ftmatrix.grid import NO_TASK, cell_from_path
from ftmatrix.numeric import finite

log = logging.getLogger("ftmatrix")

Statistic = Callable[[Sequence[dict]], float]

GROUP_KEYS = ["model", "method", "rank", "train_task"]

SIGNIFICANT_UP = "better"
SIGNIFICANT_DOWN = "worse"
NOT_SIGNIFICANT = "no significant change"
FASTER = "faster"      # latency: lower is better
SLOWER = "slower"


def task_statistic(kind: str, headline: str) -> Statistic:
    """The task's corpus metric ``headline`` over prediction rows (vectorised where the task offers it)."""
    from ftmatrix.bootstrap import metric_statistic
    from ftmatrix.errors import ConfigError
    from ftmatrix.tasks import get_task

    try:
        task = get_task(kind)
    except ConfigError as exc:
        raise DataError(f"the matrix names task kind {kind!r}, which this run cannot resolve ({exc}). Run the "
                        f"analysis with the study file that produced it (its task_modules).") from None
    return metric_statistic(task, headline)


def correctness_metric(kind: str) -> str | None:
    """The task kind's correctness metric (``TaskKind.correctness``); None where it has none or
    the kind cannot be resolved here (its headline statistic then says why)."""
    from ftmatrix.errors import ConfigError
    from ftmatrix.tasks import get_task

    try:
        return get_task(kind).correctness
    except ConfigError:
        return None


def resample_indices(n: int, resamples: int, seed: int) -> np.ndarray:
    """The (resamples × n) positions ftmatrix.bootstrap draws for n samples and this seed.

    Drawn exactly as ``ftmatrix.bootstrap.paired_bootstrap_diff`` draws them, so a two-cell
    difference here equals that function's result; shared by every cell of a task (paired).
    """
    from ftmatrix.bootstrap import _index_chunks

    rng = np.random.default_rng(seed)
    return np.concatenate(list(_index_chunks(rng, n, resamples)))


@dataclass
class BootstrapSettings:
    """The bootstrap's settings: the validated config's evaluate.bootstrap_resamples,
    evaluate.bootstrap_seed and evaluate.confidence."""

    resamples: int
    seed: int
    confidence: float

    @property
    def percentiles(self) -> tuple[float, float]:
        tail = (1.0 - self.confidence) / 2.0 * 100.0
        return tail, 100.0 - tail


def _stable_seed(*parts) -> int:
    return zlib.crc32("|".join(map(str, parts)).encode())


def _number(value) -> float:
    return float(value) if finite(value) else math.nan


def verdict(low, high) -> str:
    if not (finite(low) and finite(high)):
        return "n/a"
    if low > 0:
        return SIGNIFICANT_UP
    if high < 0:
        return SIGNIFICANT_DOWN
    return NOT_SIGNIFICANT


@dataclass
class Group:
    """One variant without its seed on one evaluation task: all its seeds' cells."""
    model: str
    method: str
    rank: int
    train_task: str
    eval_task: str
    cells: list[str] = field(default_factory=list)   # cell paths, one per seed
    seeds: list[int] = field(default_factory=list)

    @property
    def key(self) -> tuple:
        return (self.model, self.method, self.rank, self.train_task, self.eval_task)

    @property
    def label(self) -> str:
        if self.method == "base":
            return self.model
        how = "full" if self.method == "full" else f"LoRA r{self.rank}"
        return f"{self.model} {how}·{self.train_task}"


class Study:
    """The matrix plus every cell's predictions, with cached paired bootstrap distributions."""

    def __init__(self, matrix, predictions: dict[str, list[dict]], settings: BootstrapSettings,
                 statistic_for: Callable[[str, str], Statistic] = task_statistic):
        self.matrix = matrix.reset_index(drop=True)
        self.settings = settings
        self.predictions = predictions
        self._statistic_for = statistic_for
        self._statistics: dict[tuple, Statistic] = {}
        self._indices: dict[int, np.ndarray] = {}
        self._cell_cache: dict[tuple, tuple[float, np.ndarray]] = {}
        self._latency_cache: dict[tuple, tuple[float, np.ndarray]] = {}
        self._by_id: dict[str, dict[str, dict]] = {}
        self.rows = {r["cell"]: r for r in self.matrix.to_dict("records")}
        for cell in self.rows:
            if cell not in predictions:
                raise DataError(f"results/eval/{cell}/predictions.jsonl: not among the analysis inputs; "
                                f"rerun `snakemake --forcerun aggregate_matrix` so matrix and predictions agree.")
        self.groups: dict[tuple, Group] = {}
        for row in self.matrix.sort_values(["model", "method", "rank", "train_task", "eval_task", "seed"]) \
                .to_dict("records"):
            key = (row["model"], row["method"], int(row["rank"]), row["train_task"], row["eval_task"])
            group = self.groups.setdefault(key, Group(*key))
            group.cells.append(row["cell"])
            group.seeds.append(int(row["seed"]))

    # -- per-cell facts -------------------------------------------------------------------

    def row(self, cell: str) -> dict:
        return self.rows[cell]

    def headline_name(self, eval_task: str) -> str:
        names = {r["headline_metric"] for r in self.rows.values() if r["eval_task"] == eval_task}
        return sorted(names)[0] if names else ""

    def correctness_name(self, eval_task: str) -> str:
        """The task's correctness metric where it differs from the headline (ARC's accuracy beside
        macro-F1), else ''."""
        kinds = {r["task_kind"] for r in self.rows.values() if r["eval_task"] == eval_task}
        names = sorted({correctness_metric(k) for k in kinds} - {None})
        return names[0] if names and names[0] != self.headline_name(eval_task) else ""

    def on_correctness(self) -> "Study":
        """The same study scored on each task's correctness metric instead of its headline (tasks
        without one keep the headline); built once."""
        cache = self.__dict__.setdefault("_readings", {})
        if "correctness" not in cache:
            matrix = self.matrix.copy()
            matrix["headline_metric"] = [correctness_metric(kind) or headline for kind, headline
                                         in zip(matrix["task_kind"], matrix["headline_metric"])]
            cache["correctness"] = Study(matrix, self.predictions, self.settings, self._statistic_for)
        return cache["correctness"]

    def higher_is_better(self, eval_task: str) -> bool:
        values = {bool(r["higher_is_better"]) for r in self.rows.values() if r["eval_task"] == eval_task}
        return values != {False}

    def is_endpoint(self, model: str) -> bool:
        """A model behind an OpenAI-compatible endpoint (an API): larger than every local model."""
        return any(r.get("engine") == "openai" for r in self.rows.values() if r["model"] == model)

    def params(self, model: str):
        values = [r["model_params"] for r in self.rows.values() if r["model"] == model]
        values = [v for v in values if finite(v)]
        return values[0] if values else None

    def statistic(self, cell: str) -> Statistic:
        row = self.rows[cell]
        key = (row["task_kind"], row["headline_metric"])
        if key not in self._statistics:
            self._statistics[key] = self._statistic_for(*key)
        return self._statistics[key]

    def by_id(self, cell: str) -> dict[str, dict]:
        if cell not in self._by_id:
            table = {}
            for number, pred in enumerate(self.predictions[cell], start=1):
                if "id" not in pred:
                    raise DataError(f"results/eval/{cell}/predictions.jsonl, line {number}: no 'id'; "
                                    f"rerun this cell's scoring.")
                if str(pred["id"]) in table:
                    raise DataError(f"results/eval/{cell}/predictions.jsonl, line {number}: the id {pred['id']!r} "
                                    f"appears twice, so samples cannot be paired; rerun this cell's evaluation.")
                table[str(pred["id"])] = pred
            self._by_id[cell] = table
        return self._by_id[cell]

    def common_ids(self, cells: Iterable[str], timed: bool = False) -> tuple[str, ...]:
        common = None
        for cell in cells:
            ids = self.by_id(cell)
            keys = {i for i, p in ids.items() if not timed or finite(p.get("latency_s"))}
            common = keys if common is None else common & keys
        return tuple(sorted(common or ()))

    # -- bootstrap distributions ---------------------------------------------------------

    def indices(self, n: int) -> np.ndarray:
        """Resample positions for n aligned samples, the same for every cell (paired)."""
        if n not in self._indices:
            self._indices[n] = resample_indices(n, self.settings.resamples, self.settings.seed)
        return self._indices[n]

    def cell_distribution(self, cell: str, ids: tuple[str, ...]) -> tuple[float, np.ndarray]:
        """(statistic on the aligned samples, its value on every paired resample)."""
        key = (cell, ids)
        if key not in self._cell_cache:
            from ftmatrix.bootstrap import Vectorised

            table = self.by_id(cell)
            rows = [table[i] for i in ids]
            statistic = self.statistic(cell)
            if isinstance(statistic, Vectorised):
                prepared = statistic.prepare(rows)
                point, dist = prepared.full(), np.asarray(prepared.on_indices(self.indices(len(ids))), dtype=float)
            else:
                point = statistic(rows)
                dist = np.array([_number(statistic([rows[j] for j in sample])) for sample in self.indices(len(ids))],
                                dtype=float)
            self._cell_cache[key] = (_number(point), dist)
        return self._cell_cache[key]

    def timing_distribution(self, cell: str, ids: tuple[str, ...]) -> dict:
        """A cell's timing over the timed samples ``ids``: {part: (mean, its value on every
        resample)} for ``latency``, ``ttft`` (time to first token), ``decode`` (latency − TTFT)
        and ``further`` (output tokens after the first), and ``rounds`` (mean latency of each
        timing round). A resample draws the samples (the same positions for every cell: paired)
        and this cell's rounds with replacement (a slow spell hits one cell's round, so rounds
        are drawn per cell), so the intervals cover round-to-round variation too."""
        key = (cell, ids)
        if key not in self._latency_cache:
            from ftmatrix.bootstrap import hierarchical_means, round_weights

            table = self.by_id(cell)
            rows = [table[i] for i in ids]
            latency = np.array([p.get("latency_rounds_s") or [p["latency_s"]] for p in rows], dtype=float).T
            ttft = np.array([p.get("ttft_rounds_s") or [p.get("ttft_s", math.nan)] for p in rows], dtype=float).T
            further = np.array([max(int(p.get("timed_output_tokens") or p["output_tokens"]) - 1, 0) for p in rows],
                               dtype=float)
            idx = self.indices(len(ids))
            rng = np.random.default_rng(_stable_seed(self.settings.seed, "rounds", cell))
            weights = round_weights(rng, latency.shape[0], idx.shape[0])
            lat_dist = hierarchical_means(latency, idx, weights)
            ttft_dist = hierarchical_means(ttft, idx, weights)
            self._latency_cache[key] = {
                "latency": (float(latency.mean()), lat_dist),
                "ttft": (float(ttft.mean()), ttft_dist),
                "decode": (float(latency.mean() - ttft.mean()), lat_dist - ttft_dist),
                "further": (float(further.mean()), further[idx].mean(axis=1)),
                "rounds": latency.mean(axis=1),
            }
        return self._latency_cache[key]

    def latency_distribution(self, cell: str, ids: tuple[str, ...]) -> tuple[float, np.ndarray]:
        return self.timing_distribution(cell, ids)["latency"]

    def _seed_draws(self, group: Group, resamples: int, tag) -> np.ndarray | None:
        if len(group.cells) == 1:
            return None
        rng = np.random.default_rng(_stable_seed(self.settings.seed, "seeds", *group.key, tag))
        return rng.integers(0, len(group.cells), size=(len(group.cells), resamples))

    @staticmethod
    def _over_seeds(parts, draws):
        points = np.array([p for p, _ in parts])
        if draws is None:
            return float(points[0]), parts[0][1]
        stacked = np.stack([d for _, d in parts])            # seeds × resamples
        return float(points.mean()), stacked[draws, np.arange(stacked.shape[1])].mean(axis=0)

    def group_distribution(self, group: Group, ids: tuple[str, ...], latency: bool = False):
        """(mean over seeds, distribution that resamples samples and, with several seeds, seeds)."""
        if latency:
            return self.group_timing(group, ids)["latency"]
        parts = [self.cell_distribution(cell, ids) for cell in group.cells]
        return self._over_seeds(parts, self._seed_draws(group, len(parts[0][1]), False))

    def group_timing(self, group: Group, ids: tuple[str, ...]) -> dict:
        """``timing_distribution`` of a group: every part averaged over its seeds, the seeds drawn
        with replacement (the same draws for every part, so the parts stay consistent)."""
        cells = [self.timing_distribution(cell, ids) for cell in group.cells]
        draws = self._seed_draws(group, len(cells[0]["latency"][1]), True)
        out = {part: self._over_seeds([c[part] for c in cells], draws)
               for part in ("latency", "ttft", "decode", "further")}
        rounds = min(len(c["rounds"]) for c in cells)
        out["rounds"] = np.mean([c["rounds"][:rounds] for c in cells], axis=0)
        return out

    def seed_agreement(self, treatment: Group, reference: Group, ids: tuple[str, ...], reference_value: float,
                       diff: float) -> dict:
        """Does a difference hold for every training seed? {'seed_diffs', 'seeds_agree'}: each seed
        of the treatment against the same seed of the reference where it has one, else against
        the reference's value; {} when both groups have one seed."""
        if len(treatment.cells) < 2 and len(reference.cells) < 2:
            return {}
        by_seed = dict(zip(reference.seeds, reference.cells)) if len(reference.cells) > 1 else {}
        diffs = [self.cell_distribution(cell, ids)[0]
                 - (self.cell_distribution(by_seed[seed], ids)[0] if seed in by_seed else reference_value)
                 for seed, cell in zip(treatment.seeds, treatment.cells)]
        return {"seed_diffs": " ".join(f"{d:+.2f}" for d in diffs),
                "seeds_agree": bool(all(np.sign(d) == np.sign(diff) for d in diffs))}

    def interval(self, dist: np.ndarray) -> tuple[float, float]:
        dist = dist[np.isfinite(dist)]
        if dist.size < max(2, 0.5 * self.settings.resamples):
            return (math.nan, math.nan)
        low, high = np.percentile(dist, self.settings.percentiles)
        return float(low), float(high)

    # -- comparisons ---------------------------------------------------------------------

    def compare(self, treatment: Group, reference: Group) -> dict:
        """treatment − reference on the same samples: quality and latency, absolute and relative."""
        out = {}
        ids = self.common_ids(treatment.cells + reference.cells)
        out["n_paired"] = len(ids)
        if not ids:
            out["note"] = "n/a: the two cells share no evaluation sample ids"
            return out
        a, a_dist = self.group_distribution(treatment, ids)
        b, b_dist = self.group_distribution(reference, ids)
        out.update(self._difference("", a, a_dist, b, b_dist))
        out.update(self.seed_agreement(treatment, reference, ids, b, out["diff"]))
        timed = self.common_ids(treatment.cells + reference.cells, timed=True)
        out["n_timed_paired"] = len(timed)
        if timed:
            ta, tb = self.group_timing(treatment, timed), self.group_timing(reference, timed)
            out.update(self._difference("latency_", *ta["latency"], *tb["latency"]))
            out.update(latency_split(ta, tb, self.interval))
            # Does the difference hold in every round? Round r of one against round r of the other.
            rounds = min(len(ta["rounds"]), len(tb["rounds"]))
            per_round = ta["rounds"][:rounds] - tb["rounds"][:rounds]
            out["latency_rounds"] = rounds
            out["latency_rounds_agree"] = bool(np.all(np.sign(per_round) == np.sign(out["latency_diff"])))
        return out

    def _difference(self, prefix: str, a: float, a_dist, b: float, b_dist) -> dict:
        diff = a - b
        low, high = self.interval(a_dist - b_dist)
        result = {f"{prefix}reference": b, f"{prefix}value": a, f"{prefix}diff": diff,
                  f"{prefix}diff_ci_low": low, f"{prefix}diff_ci_high": high}
        if finite(b) and b != 0:
            with np.errstate(divide="ignore", invalid="ignore"):
                rel_dist = (a_dist - b_dist) / np.abs(b_dist) * 100.0
            rel_dist[~np.isfinite(rel_dist)] = np.nan
            rlow, rhigh = self.interval(rel_dist)
            result.update({f"{prefix}rel_pct": diff / abs(b) * 100.0, f"{prefix}rel_ci_low": rlow,
                           f"{prefix}rel_ci_high": rhigh})
        else:
            result.update({f"{prefix}rel_pct": math.nan, f"{prefix}rel_ci_low": math.nan,
                           f"{prefix}rel_ci_high": math.nan})
        return result

    def score(self, group: Group) -> dict:
        """A group's score with a CI (samples and, with several seeds, seeds resampled)."""
        ids = self.common_ids(group.cells)
        if not ids:
            return {"value": math.nan, "ci_low": math.nan, "ci_high": math.nan, "n": 0}
        value, dist = self.group_distribution(group, ids)
        low, high = self.interval(dist)
        return {"value": value, "ci_low": low, "ci_high": high, "n": len(ids)}

    def reading(self, grading: str) -> "Study":
        """The same study with every prediction's ``extracted`` and ``scores`` taken from its
        ``grading`` reading ('lenient' or 'strict'); built once."""
        cache = self.__dict__.setdefault("_readings", {})
        if grading not in cache:
            predictions = {}
            for cell, rows in self.predictions.items():
                if any(grading not in row for row in rows):
                    raise DataError(f"results/eval/{cell}/predictions.jsonl: no {grading!r} reading of the answers; "
                                    f"it was scored by an older version — re-score from the saved generations: "
                                    f"snakemake --cores all --forcerun score_cell (with the study's --configfile).")
                predictions[cell] = [{**row, **row[grading]} for row in rows]
            cache[grading] = Study(self.matrix, predictions, self.settings, self._statistic_for)
        return cache[grading]

    # -- helpers over the grid ----------------------------------------------------------

    def base_group(self, model: str, eval_task: str) -> Group | None:
        return self.groups.get((model, "base", 0, NO_TASK, eval_task))

    def trained_groups(self) -> list[Group]:
        return [g for g in self.groups.values() if g.method != "base"]

    def eval_tasks(self) -> list[str]:
        return sorted({g.eval_task for g in self.groups.values()})


def _log_latency(further, ttft, decode, further_own):
    """log(TTFT + further tokens × time per further token), the per-token time being
    decode / further_own (NaN where a side generated no further token)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        per_token = np.where(further_own > 0, decode / np.where(further_own > 0, further_own, 1), np.nan)
        return np.log(ttft + further * per_token)


def latency_split(treatment: dict, reference: dict, interval) -> dict:
    """Why one is faster: the ratio of mean latencies split into *fewer output tokens* and
    *faster per token*, from mean latency = mean TTFT + mean further tokens × time per further
    token (exact; ``Study.timing_distribution``). The log-ratio is split by the Shapley rule
    over the two factors — tokens, and the speed pair (TTFT, time per further token): each
    factor's share is the change of log latency when that factor alone takes the treatment's
    value, averaged over the two orders of substitution — so the shares add up exactly to
    the log-ratio, and as percentages ((e^share − 1) × 100) they multiply up to the latency
    change. Intervals from the same resamples as the latency's (samples, rounds, seeds)."""
    def shares(a_further, a_ttft, a_decode, b_further, b_ttft, b_decode):
        a = _log_latency(a_further, a_ttft, a_decode, a_further)
        b = _log_latency(b_further, b_ttft, b_decode, b_further)
        a_tokens_b_speed = _log_latency(a_further, b_ttft, b_decode, b_further)
        b_tokens_a_speed = _log_latency(b_further, a_ttft, a_decode, a_further)
        tokens = 0.5 * ((a_tokens_b_speed - b) + (a - b_tokens_a_speed))
        return tokens, (a - b) - tokens

    def pct(value):
        with np.errstate(over="ignore", invalid="ignore"):
            return (np.exp(value) - 1.0) * 100.0

    parts = ("further", "ttft", "decode")
    points = shares(*(np.array(treatment[p][0]) for p in parts), *(np.array(reference[p][0]) for p in parts))
    dists = shares(*(treatment[p][1] for p in parts), *(reference[p][1] for p in parts))
    out = {}
    for name, point, dist in zip(("tokens", "per_token"), points, dists):
        dist = pct(dist)
        dist[~np.isfinite(dist)] = np.nan
        low, high = interval(dist)
        out.update({f"latency_{name}_pct": float(pct(point)), f"latency_{name}_ci_low": low,
                    f"latency_{name}_ci_high": high})
    return out


# ---------------------------------------------------------------------------- the tables

# The task's correctness metric beside its headline (check_*: see correctness_check): a headline
# win it does not bear out is not significant.
# ``verdict_metric``: the metric ``significance`` follows (the headline, or the correctness
# metric where the two went significantly opposite ways).
CHECK_COLUMNS = ["check_metric", "check_reference", "check_value", "check_diff", "check_diff_ci_low",
                 "check_diff_ci_high", "check_significance", "verdict_metric"]
COMPARISON_COLUMNS = ["n_paired", "reference", "value", "diff", "diff_ci_low", "diff_ci_high", "rel_pct",
                      "rel_ci_low", "rel_ci_high", "seed_diffs", "seeds_agree", "significance", *CHECK_COLUMNS,
                      "n_timed_paired", "latency_reference",
                      "latency_value", "latency_diff", "latency_diff_ci_low", "latency_diff_ci_high",
                      "latency_rel_pct", "latency_rel_ci_low", "latency_rel_ci_high", "latency_rounds",
                      "latency_rounds_agree", "latency_significance", "latency_tokens_pct", "latency_tokens_ci_low",
                      "latency_tokens_ci_high", "latency_per_token_pct", "latency_per_token_ci_low",
                      "latency_per_token_ci_high"]

# How much of a gain is format: the same comparison under the other reading of the answers
# (strict where the headline is lenient, and the reverse), and the share of the gain left.
GRADING_COLUMNS = ["grading", "other_grading", "other_reference", "other_value", "other_diff",
                   "other_diff_ci_low", "other_diff_ci_high", "survives_pct", "format_rate_reference",
                   "format_rate_value"]
VS_BASE_COLUMNS = (["model", "method", "rank", "train_task", "seed", "eval_task", "label", "in_task",
                    "headline_metric"] + COMPARISON_COLUMNS + GRADING_COLUMNS + ["note"])
VS_LARGER_COLUMNS = (["model", "method", "rank", "train_task", "eval_task", "label", "n_seeds", "in_task",
                      "larger_model", "larger_is_api", "model_params", "larger_model_params", "headline_metric"]
                     + COMPARISON_COLUMNS + ["note"])
FULL_VS_LORA_COLUMNS = (["model", "train_task", "eval_task", "in_task", "headline_metric", "best_rank",
                         "lora_ranks", "n_seeds"] + COMPARISON_COLUMNS + ["note"])
LORA_RANK_COLUMNS = ["model", "method", "rank", "train_task", "eval_task", "in_task", "headline_metric",
                     "n_seeds", "n", "value", "ci_low", "ci_high", "note"]
RANK_CORRELATION_COLUMNS = ["model", "train_task", "eval_task", "in_task", "headline_metric", "n_ranks",
                            "ranks", "spearman", "ci_low", "ci_high", "permutation_p", "undefined_resamples",
                            "significance", "best_rank", "smallest_sufficient_rank", "note"]
TRANSFER_COLUMNS = (["model", "method", "rank", "train_task", "eval_task", "in_task", "headline_metric",
                     "n_seeds"] + COMPARISON_COLUMNS + ["effect", "note"])
SEEDS_COLUMNS = ["model", "method", "rank", "train_task", "eval_task", "headline_metric", "n_seeds", "seeds",
                 "mean", "sd", "min", "max", "ci_low", "ci_high", "vs_base_diff", "vs_base_ci_low",
                 "vs_base_ci_high", "vs_base_significance", "note"]

TABLES = {
    "vs_base": VS_BASE_COLUMNS,
    "vs_larger_base": VS_LARGER_COLUMNS,
    "full_vs_lora": FULL_VS_LORA_COLUMNS,
    "lora_rank": LORA_RANK_COLUMNS,
    "rank_correlation": RANK_CORRELATION_COLUMNS,
    "transfer": TRANSFER_COLUMNS,
    "seeds": SEEDS_COLUMNS,
}


def quality_verdict(low, high, higher_is_better: bool = True) -> str:
    """'better' / 'worse' / 'no significant change' for a quality difference's CI."""
    result = verdict(low, high)
    if not higher_is_better:
        result = {SIGNIFICANT_UP: SIGNIFICANT_DOWN, SIGNIFICANT_DOWN: SIGNIFICANT_UP}.get(result, result)
    return result


def latency_verdict(low, high, rounds_agree: bool = True) -> str:
    """'faster' / 'slower' / 'no significant change' for a latency difference (lower is better):
    significant only when its interval (samples and timing rounds resampled) excludes zero and
    it has the same sign in every timing round."""
    result = verdict(low, high)
    if result in (SIGNIFICANT_UP, SIGNIFICANT_DOWN) and not rounds_agree:
        return NOT_SIGNIFICANT
    return {SIGNIFICANT_UP: SLOWER, SIGNIFICANT_DOWN: FASTER}.get(result, result)


def correctness_check(study: Study, treatment: Group, reference: Group) -> dict:
    """treatment − reference on the task's correctness metric (``TaskKind.correctness``), on the
    same samples and resamples as the headline; {} where the task has none or no ids are shared.
    Significant under the headline's own rule: the interval excludes zero and, with several
    training seeds, every seed's difference has its sign."""
    name = study.correctness_name(treatment.eval_task)
    ids = study.common_ids(treatment.cells + reference.cells) if name else ()
    if not ids:
        return {}
    view = study.on_correctness()
    a, a_dist = view.group_distribution(treatment, ids)
    b, b_dist = view.group_distribution(reference, ids)
    low, high = view.interval(a_dist - b_dist)
    out = {"check_metric": name, "check_reference": b, "check_value": a, "check_diff": a - b,
           "check_diff_ci_low": low, "check_diff_ci_high": high, "check_significance": quality_verdict(low, high)}
    seeds = view.seed_agreement(treatment, reference, ids, b, a - b)
    if out["check_significance"] != NOT_SIGNIFICANT and seeds.get("seeds_agree") is False:
        # The rule the headline follows: with several training seeds, every seed must go the same way.
        out["check_significance"] = NOT_SIGNIFICANT
        out["check_seed_diffs"] = seeds["seed_diffs"]          # for the note; not a column
    return out


# How the task's correctness metric (``TaskKind.correctness``: ARC's accuracy beside its
# macro-F1) moderates a significant headline verdict. Where the two are significant in opposite
# directions, the right answers decide. Where the correctness metric shows nothing, a headline
# difference in a ``confirm`` direction is not significant: against the untuned base a gain
# (the journal never reports a gain the right answers do not show; a loss stands on the
# headline, as the base's own score does); between two alternatives (full vs LoRA, smaller vs
# larger, one LoRA rank vs another) a win of either side.
GAINS = (SIGNIFICANT_UP,)
WINS = (SIGNIFICANT_UP, SIGNIFICANT_DOWN)


def verdict_follows_check(row: dict) -> bool:
    """Whether a comparison row's verdict follows the task's correctness metric against its
    headline (``verdict_metric``; a row read back from a table may hold NaN for a missing name)."""
    check = row.get("check_metric")
    return isinstance(check, str) and row.get("verdict_metric") == check != row.get("headline_metric")


def _add_note(result: dict, note: str) -> None:
    result["note"] = "; ".join(part for part in (result.get("note"), note) if part)


def _confirm(study: Study, treatment: Group, result: dict, confirm: tuple[str, ...]) -> None:
    """A significant headline verdict checked on the correctness metric (``result``'s check_*
    keys): kept where that metric's difference is significant the same way; turned to the
    correctness metric's verdict where it is significant the other way; not significant where
    it shows nothing and the verdict is in a ``confirm`` direction. The note says why."""
    check, headline_verdict = result.get("check_significance"), result["significance"]
    if not result.get("check_metric") or headline_verdict not in WINS or check == headline_verdict:
        return
    from ftmatrix.tasks import metric_display

    kind = next((study.row(c)["task_kind"] for c in treatment.cells), None)
    headline = metric_display(study.headline_name(treatment.eval_task), kind)
    name = metric_display(result["check_metric"], kind)
    ci = (f"{study.settings.confidence:.0%} CI {result['check_diff_ci_low']:+.1f} to {result['check_diff_ci_high']:+.1f}"
          if finite(result.get("check_diff_ci_low")) and finite(result.get("check_diff_ci_high")) else "CI n/a")
    if result.get("check_seed_diffs"):
        ci += f"; the training seeds disagree on its sign: {result['check_seed_diffs']}"
    if check in WINS:
        result["significance"] = check
        result["verdict_metric"] = result["check_metric"]
        _add_note(result, f"{headline} and {name} disagree: {headline} {result['diff']:+.1f} points but {name} "
                          f"{result['check_diff']:+.1f} points ({ci}); the verdict follows {name}, which counts "
                          f"right answers")
    elif headline_verdict in confirm:
        result["significance"] = NOT_SIGNIFICANT
        result["unconfirmed"] = True          # read by transfer(); not a column
        _add_note(result, f"the {headline} difference does not show in {name}, which counts right answers "
                          f"({name} {result['check_diff']:+.1f} points, {ci})")


def _judge(study: Study, treatment: Group, reference: Group, result: dict, confirm: tuple[str, ...]) -> dict:
    """The quality verdict of a comparison ``result`` (Study.compare's): its interval, the training
    seeds' agreement, then the correctness metric's check (``_confirm``)."""
    result["significance"] = quality_verdict(result.get("diff_ci_low"), result.get("diff_ci_high"),
                                             study.higher_is_better(treatment.eval_task))
    result["verdict_metric"] = study.headline_name(treatment.eval_task)
    if result["significance"] != NOT_SIGNIFICANT and result.get("seeds_agree") is False:
        # An interval over seeds and samples can exclude zero while one seed goes the other way.
        result["significance"] = NOT_SIGNIFICANT
        _add_note(result, f"the training seeds disagree on the sign ({result['seed_diffs']})")
    if result.get("n_paired"):
        result.update(correctness_check(study, treatment, reference))
        _confirm(study, treatment, result, confirm)
    return result


def _comparison(study: Study, treatment: Group, reference: Group, confirm: tuple[str, ...] = GAINS) -> dict:
    result = _judge(study, treatment, reference, study.compare(treatment, reference), confirm)
    result["latency_significance"] = latency_verdict(result.get("latency_diff_ci_low"),
                                                     result.get("latency_diff_ci_high"),
                                                     result.get("latency_rounds_agree", True))
    if result["latency_significance"] == NOT_SIGNIFICANT and \
            verdict(result.get("latency_diff_ci_low"), result.get("latency_diff_ci_high")) != NOT_SIGNIFICANT:
        _add_note(result, "latency: the CI excludes zero but the timing rounds disagree on the sign")
    if "n_timed_paired" in result and not result["n_timed_paired"]:
        _add_note(result, "latency n/a: no timed samples in common")
    return result


def _seed_group(study: Study, group: Group, seed: int, cell: str) -> Group:
    return Group(group.model, group.method, group.rank, group.train_task, group.eval_task, [cell], [seed])


def vs_base(study: Study) -> list[dict]:
    rows = []
    for group in study.trained_groups():
        base = study.base_group(group.model, group.eval_task)
        for seed, cell in zip(group.seeds, group.cells):
            row = {"model": group.model, "method": group.method, "rank": group.rank,
                   "train_task": group.train_task, "seed": seed, "eval_task": group.eval_task,
                   "label": study.row(cell)["label"], "in_task": group.train_task == group.eval_task,
                   "headline_metric": study.row(cell)["headline_metric"]}
            if base is None:
                row["note"] = f"n/a: the study has no base variant of {group.model} on {group.eval_task}"
            else:
                treatment = _seed_group(study, group, seed, cell)
                row.update(_comparison(study, treatment, base))
                row.update(other_grading(study, treatment, base, row.get("diff")))
            rows.append(row)
    return rows


def other_grading(study: Study, treatment: Group, reference: Group, diff) -> dict:
    """treatment − reference under the other reading of the answers, on the same samples, and
    the percentage of the headline's difference that it keeps (``survives_pct``)."""
    gradings = {study.row(c).get("grading") for c in treatment.cells + reference.cells}
    if len(gradings) != 1 or not isinstance(next(iter(gradings)), str):
        return {}
    grading = next(iter(gradings))
    other = "strict" if grading == "lenient" else "lenient"
    out = {"grading": grading, "other_grading": other,
           "format_rate_value": float(np.mean([_number(study.row(c).get("format_rate")) for c in treatment.cells])),
           "format_rate_reference": float(np.mean([_number(study.row(c).get("format_rate"))
                                                   for c in reference.cells]))}
    ids = study.common_ids(treatment.cells + reference.cells)
    if not ids:
        return out
    view = study.reading(other)
    a, a_dist = view.group_distribution(treatment, ids)
    b, b_dist = view.group_distribution(reference, ids)
    low, high = view.interval(a_dist - b_dist)
    out.update({"other_reference": b, "other_value": a, "other_diff": a - b, "other_diff_ci_low": low,
                "other_diff_ci_high": high})
    if finite(diff) and diff != 0:
        out["survives_pct"] = (a - b) / diff * 100.0
    return out


def vs_larger_base(study: Study) -> list[dict]:
    rows = []
    models = sorted({g.model for g in study.groups.values()})
    for group in study.groups.values():
        mine = study.params(group.model)
        if study.is_endpoint(group.model):
            continue
        for other in models:
            if other == group.model:
                continue
            larger = study.base_group(other, group.eval_task)
            theirs = study.params(other)
            # An API model counts as larger than any local one ("small fine-tuned vs API").
            bigger = study.is_endpoint(other) or (mine is not None and theirs is not None and theirs > mine)
            if larger is None or not bigger:
                continue
            row = {"model": group.model, "method": group.method, "rank": group.rank,
                   "train_task": group.train_task, "eval_task": group.eval_task, "label": group.label,
                   "n_seeds": len(group.cells), "in_task": group.train_task == group.eval_task,
                   "larger_model": other, "larger_is_api": study.is_endpoint(other),
                   "model_params": mine, "larger_model_params": theirs,
                   "headline_metric": study.headline_name(group.eval_task)}
            row.update(_comparison(study, group, larger, WINS))
            rows.append(row)
    if not rows:
        unknown = [m for m in models if study.params(m) is None]
        note = (f"n/a: parameter counts unknown for {', '.join(unknown)} (manifest 'params')" if unknown
                else "n/a: the study has no base model larger than another model")
        rows.append({"note": note})
    return rows


def _lora_by_rank(study: Study, model: str, train_task: str, eval_task: str) -> dict[int, Group]:
    return {g.rank: g for g in study.groups.values()
            if (g.model, g.method, g.train_task, g.eval_task) == (model, "lora", train_task, eval_task)}


def _fine_tuned_triples(study: Study) -> list[tuple[str, str, str]]:
    return sorted({(g.model, g.train_task, g.eval_task) for g in study.trained_groups()})


def full_vs_lora(study: Study) -> list[dict]:
    rows = []
    for model, train_task, eval_task in _fine_tuned_triples(study):
        full = study.groups.get((model, "full", 0, train_task, eval_task))
        loras = _lora_by_rank(study, model, train_task, eval_task)
        row = {"model": model, "train_task": train_task, "eval_task": eval_task,
               "in_task": train_task == eval_task, "headline_metric": study.headline_name(eval_task),
               "lora_ranks": " ".join(str(r) for r in sorted(loras))}
        if full is None or not loras:
            row["note"] = "n/a: " + ("no full fine-tuning" if full is None else "no LoRA") + " in the study"
            rows.append(row)
            continue
        # The best rank is chosen on the evaluation scores themselves, which favours LoRA slightly.
        sign = 1.0 if study.higher_is_better(eval_task) else -1.0
        scores = {rank: sign * study.score(g)["value"] for rank, g in loras.items()}
        best = max(sorted(scores), key=lambda r: (scores[r] if finite(scores[r]) else -math.inf))
        row.update({"best_rank": best, "n_seeds": len(full.cells)})
        row.update(_comparison(study, full, loras[best], WINS))
        rows.append(row)
    return rows


def lora_rank(study: Study) -> list[dict]:
    rows = []
    for model, train_task, eval_task in _fine_tuned_triples(study):
        groups = sorted(_lora_by_rank(study, model, train_task, eval_task).items())
        full = study.groups.get((model, "full", 0, train_task, eval_task))
        if full is not None:
            groups.append((0, full))
        for rank, group in groups:
            row = {"model": model, "method": group.method, "rank": rank, "train_task": train_task,
                   "eval_task": eval_task, "in_task": train_task == eval_task,
                   "headline_metric": study.headline_name(eval_task), "n_seeds": len(group.cells)}
            row.update(study.score(group))
            rows.append(row)
    return rows


def _spearman_rows(ranks: np.ndarray, scores: np.ndarray) -> np.ndarray:
    """Spearman's rho of ``ranks`` against each row of ``scores`` (rows × len(ranks)); NaN where undefined."""
    from scipy.stats import rankdata

    x = rankdata(ranks)
    x = (x - x.mean()) / np.sqrt(((x - x.mean()) ** 2).sum())
    y = rankdata(scores, axis=1)
    y = y - y.mean(axis=1, keepdims=True)
    norm = np.sqrt((y ** 2).sum(axis=1))
    with np.errstate(divide="ignore", invalid="ignore"):
        rho = (y @ x) / norm
    rho[norm == 0] = np.nan
    return rho


NOT_SIGNIFICANT_CORRELATION = "no significant correlation"
CORRELATION_WORDS = {SIGNIFICANT_UP: "positive", SIGNIFICANT_DOWN: "negative",
                     NOT_SIGNIFICANT: NOT_SIGNIFICANT_CORRELATION, "n/a": "n/a"}


def permutation_p(ranks: Sequence[float], scores: Sequence[float], seed: int = 0, draws: int = 20_000) -> float:
    """Two-sided p of Spearman's rho under random orderings of the scores (exact up to 8 ranks).

    The bootstrap CI covers evaluation-sample noise; this covers the few points a rank sweep
    has: with 3 ranks no ordering is rarer than 2 in 6, so no correlation can be significant.
    """
    import itertools

    scores = np.asarray(scores, dtype=float)
    observed = _spearman_rows(np.asarray(ranks, dtype=float), scores[None, :])[0]
    if not np.isfinite(observed):
        return math.nan
    n = len(scores)
    if n <= 8:
        orders = np.array(list(itertools.permutations(range(n))))
    else:
        rng = np.random.default_rng(seed)
        orders = np.array([rng.permutation(n) for _ in range(draws)])
    rho = _spearman_rows(np.asarray(ranks, dtype=float), scores[orders])
    return float(np.mean(np.abs(rho) >= abs(observed) - 1e-12))


def smallest_permutation_p(n_ranks: int) -> float:
    """The smallest two-sided permutation p any ordering of ``n_ranks`` distinct scores can reach:
    2 / n! (the order and its reverse); 0 beyond 8 ranks, where the test samples orderings."""
    return 2.0 / math.factorial(n_ranks) if 0 < n_ranks <= 8 else 0.0


def ranks_to_test(confidence: float) -> int:
    """The fewest LoRA ranks whose most extreme order has a permutation p below 1 − confidence
    (5 at 95 %: 2/5! = 0.017, against 2/4! = 0.083)."""
    return next(n for n in range(3, 10) if smallest_permutation_p(n) < 1.0 - confidence)


def rank_correlation(study: Study) -> list[dict]:
    """Spearman's rho of LoRA rank and score (≥ 3 ranks) with a bootstrap CI and a permutation p,
    the best rank, and the smallest rank whose score is not significantly below the best one's.

    A correlation is called positive or negative only when the CI excludes zero and the
    permutation p is below 1 − confidence."""
    rows = []
    for model, train_task, eval_task in _fine_tuned_triples(study):
        loras = _lora_by_rank(study, model, train_task, eval_task)
        ranks = sorted(loras)
        if not ranks:
            continue
        row = {"model": model, "train_task": train_task, "eval_task": eval_task,
               "in_task": train_task == eval_task, "headline_metric": study.headline_name(eval_task),
               "n_ranks": len(ranks), "ranks": " ".join(map(str, ranks))}
        ids = study.common_ids([c for r in ranks for c in loras[r].cells])
        if not ids:
            row.update({"significance": "n/a", "note": "n/a: the LoRA cells share no evaluation sample ids"})
            rows.append(row)
            continue
        parts = [study.group_distribution(loras[r], ids) for r in ranks]
        points = np.array([[p for p, _ in parts]])
        sign = 1.0 if study.higher_is_better(eval_task) else -1.0
        best = ranks[int(np.nanargmax(sign * points[0]))] if np.isfinite(points).any() else None
        row["best_rank"] = best
        if best is not None:
            top = parts[ranks.index(best)]
            for rank, (value, dist) in zip(ranks, parts):
                # Below the best as full_vs_lora judges two alternatives: the headline's interval,
                # every training seed's sign, the correctness metric.
                low, high = study.interval(dist - top[1])
                judged = {"n_paired": len(ids), "diff": value - top[0], "diff_ci_low": low, "diff_ci_high": high,
                          **study.seed_agreement(loras[rank], loras[best], ids, top[0], value - top[0])}
                _judge(study, loras[rank], loras[best], judged, WINS)
                if judged["significance"] != SIGNIFICANT_DOWN:
                    row["smallest_sufficient_rank"] = rank
                    break
        if len(ranks) < 3:
            row.update({"significance": "n/a",
                        "note": f"n/a: a rank correlation needs at least 3 LoRA ranks, the study has {len(ranks)}"})
            rows.append(row)
            continue
        dists = np.stack([d for _, d in parts], axis=1)          # resamples × ranks
        rank_values = np.array(ranks, dtype=float)
        rho = float(_spearman_rows(rank_values, points)[0])
        rho_dist = _spearman_rows(rank_values, dists)
        low, high = study.interval(rho_dist)
        p_value = permutation_p(rank_values, points[0], seed=study.settings.seed)
        word = verdict(low, high)
        few = word in (SIGNIFICANT_UP, SIGNIFICANT_DOWN) and not p_value < 1.0 - study.settings.confidence
        row.update({"spearman": rho, "ci_low": low, "ci_high": high, "permutation_p": p_value,
                    "undefined_resamples": int(np.isnan(rho_dist).sum()),
                    "significance": NOT_SIGNIFICANT_CORRELATION if few else CORRELATION_WORDS[word]})
        floor = smallest_permutation_p(len(ranks))
        if not finite(rho):
            row["note"] = "n/a: every rank has the same score"
        elif not floor < 1.0 - study.settings.confidence:
            # No ordering of so few ranks is rare enough: the interval (often one point, as the
            # resamples rarely reorder three scores) would read as a finding it cannot be.
            needed = ranks_to_test(study.settings.confidence)
            row.update({"significance": "n/a",
                        "note": f"n/a: too few ranks to test at {study.settings.confidence:.0%} (any order of "
                                f"{len(ranks)} has permutation p ≥ {floor:.2f}; it takes {needed})"})
        elif not (finite(low) and finite(high)):
            row["note"] = "CI n/a: the scores tie in most resamples"
        elif few:
            row["note"] = (f"the CI excludes zero but {len(ranks)} ranks are too few: a random ordering is this "
                           f"extreme with p = {p_value:.2f}")
        rows.append(row)
    return rows


TRANSFER_EFFECTS = {
    (True, SIGNIFICANT_UP): "in-task gain",
    (True, SIGNIFICANT_DOWN): "in-task loss",
    (False, SIGNIFICANT_UP): "positive transfer",
    (False, SIGNIFICANT_DOWN): "forgetting",
}
# A headline gain whose interval excludes zero but that the task's correctness metric does not
# bear out (ARC's macro-F1 up, accuracy not): not a gain, and said apart from "no change".
UNCONFIRMED_GAIN = "gain not in right answers"


def transfer(study: Study) -> list[dict]:
    rows = []
    for group in study.trained_groups():
        base = study.base_group(group.model, group.eval_task)
        in_task = group.train_task == group.eval_task
        row = {"model": group.model, "method": group.method, "rank": group.rank, "train_task": group.train_task,
               "eval_task": group.eval_task, "in_task": in_task,
               "headline_metric": study.headline_name(group.eval_task), "n_seeds": len(group.cells)}
        if base is None:
            row.update({"effect": "n/a", "note": f"n/a: no base variant of {group.model} on {group.eval_task}"})
        else:
            row.update(_comparison(study, group, base))
            row["effect"] = (UNCONFIRMED_GAIN if row.pop("unconfirmed", False)
                             else TRANSFER_EFFECTS.get((in_task, row["significance"]), row["significance"]))
        rows.append(row)
    return rows


def seeds(study: Study) -> list[dict]:
    rows = []
    for group in study.trained_groups():
        row = {"model": group.model, "method": group.method, "rank": group.rank, "train_task": group.train_task,
               "eval_task": group.eval_task, "headline_metric": study.headline_name(group.eval_task),
               "n_seeds": len(group.cells), "seeds": " ".join(map(str, group.seeds))}
        values = np.array([float(study.row(c)["headline"]) for c in group.cells])
        row.update({"mean": float(values.mean()), "min": float(values.min()), "max": float(values.max()),
                    "sd": float(values.std(ddof=1)) if len(values) > 1 else math.nan})
        score = study.score(group)
        row.update({"ci_low": score["ci_low"], "ci_high": score["ci_high"]})
        base = study.base_group(group.model, group.eval_task)
        notes = []
        if base is not None:
            # Judged as the transfer table judges the same group (seeds' agreement, right answers).
            checked = _judge(study, group, base, study.compare(group, base), GAINS)
            row.update({"vs_base_diff": checked.get("diff"), "vs_base_ci_low": checked.get("diff_ci_low"),
                        "vs_base_ci_high": checked.get("diff_ci_high"),
                        "vs_base_significance": checked["significance"]})
            if checked.get("note"):
                notes.append(checked["note"])
        if len(values) < 2:
            notes.append("one seed: spread across seeds n/a, CIs cover sample variance only")
        if base is None:
            notes.append("no base variant: change n/a")
        row["note"] = "; ".join(notes)
        rows.append(row)
    return rows


ANALYSES = {
    "vs_base": vs_base,
    "vs_larger_base": vs_larger_base,
    "full_vs_lora": full_vs_lora,
    "lora_rank": lora_rank,
    "rank_correlation": rank_correlation,
    "transfer": transfer,
    "seeds": seeds,
}


# ---------------------------------------------------------------------------- files


def read_predictions(files: Iterable[str | Path]) -> dict[str, list[dict]]:
    from ftmatrix.io import read_jsonl

    out = {}
    for path in files:
        try:
            cell = cell_from_path(str(path))
        except ValueError:
            raise DataError(f"{path}: not inside a cell folder like results/eval/<model>/<method>/r<rank>/"
                            f"<train_task>/seed<seed>/<eval_task>/.") from None
        out[cell.path] = read_jsonl(path)
    return out


INTEGER_COLUMNS = ("rank", "seed", "n_seeds", "n_paired", "n_timed_paired", "latency_rounds", "best_rank",
                   "n_ranks", "n",
                   "undefined_resamples", "smallest_sufficient_rank")


def frame(rows: list[dict], columns: list[str]):
    """Rows as a DataFrame with exactly ``columns``; count columns stay integers (no '4.0')."""
    import pandas as pd

    table = pd.DataFrame(rows, columns=columns)
    for column in INTEGER_COLUMNS:
        if column in table.columns:
            table[column] = pd.to_numeric(table[column], errors="coerce").round().astype("Int64")
    return table


def write_table(table, path: str | Path) -> None:
    from ftmatrix.io import write_text

    write_text(path, table.to_csv(index=False, float_format="%.10g", lineterminator="\n"))


def analyse(matrix_file, predictions_files, *, settings: BootstrapSettings,
            statistic_for: Callable[[str, str], Statistic] = task_statistic) -> dict:
    """Every analysis table as a DataFrame, keyed by table name."""
    from ftmatrix.aggregate import read_matrix

    study = Study(read_matrix(matrix_file), read_predictions(predictions_files), settings, statistic_for)
    return {name: frame(function(study), TABLES[name]) for name, function in ANALYSES.items()}


def analyse_matrix(matrix_file, predictions_files, analysis_dir, *, resamples: int, seed: int, confidence: float,
                   statistic_for: Callable[[str, str], Statistic] = task_statistic) -> dict[str, Path]:
    """Write results/analysis/<table>.csv for every analysis; returns the paths."""
    settings = BootstrapSettings(resamples=int(resamples), seed=int(seed), confidence=float(confidence))
    tables = analyse(matrix_file, predictions_files, settings=settings, statistic_for=statistic_for)
    out = {}
    for name, table in tables.items():
        path = Path(analysis_dir) / f"{name}.csv"
        write_table(table, path)
        out[name] = path
        log.info("analysis: %s (%d rows) -> %s", name, len(table), path)
    return out


def read_table(path: str | Path):
    import pandas as pd

    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: no analysis table; run `snakemake {path}` first.")
    return pd.read_csv(path, keep_default_na=False, na_values=[""])
