"""The study's figures, each as PNG and SVG, drawn from the matrix and the analysis tables.

- ``transfer_heatmap``   training task × evaluation task, change against the base (full fine-tuning
                         and the LoRA rank with the largest in-task gain), significant cells marked;
- ``quality_vs_latency`` per evaluation task: headline metric against mean latency, with the
                         Pareto front (nothing else is both better and faster) marked;
- ``lora_rank``          score against LoRA rank with CI bands, full fine-tuning and the base as lines;
- ``full_vs_lora``       full fine-tuning minus the best LoRA, with CIs;
- ``latency_split``      mean latency split into time to first token and per-token time × output tokens.

A figure whose data the study lacks (no LoRA, no base, …) is still written, saying what is
missing, so the workflow's outputs are the same for every grid.
"""

from __future__ import annotations

import logging
import math
from pathlib import Path

import numpy as np

from ftmatrix.analysis import verdict_follows_check
from ftmatrix.numeric import finite

log = logging.getLogger("ftmatrix")

FIGURES = ("transfer_heatmap", "quality_vs_latency", "lora_rank", "full_vs_lora", "latency_split", "lr_sweep")
FORMATS = ("png", "svg")
METHOD_STYLE = {"base": ("#555555", "s"), "full": ("#c0392b", "o"), "lora": ("#2471a3", "^")}
DPI = 110


def _pyplot():
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    plt.rcParams.update({
        "svg.hashsalt": "ftmatrix",          # stable ids in the SVG: same data, same file
        "font.family": "DejaVu Sans",
        "font.size": 9,
        "axes.titlesize": 10,
        "axes.spines.top": False,
        "axes.spines.right": False,
        "figure.dpi": DPI,
    })
    return plt


def _save(fig, out_dir: Path, name: str) -> list[Path]:
    from ftmatrix.io import atomic_path

    paths = []
    for fmt in FORMATS:
        path = Path(out_dir) / f"{name}.{fmt}"
        metadata = {"Date": None} if fmt == "svg" else {"Software": None}
        with atomic_path(path, suffix=f".{fmt}") as tmp:
            fig.savefig(tmp, format=fmt, dpi=DPI, bbox_inches="tight", metadata=metadata)
        paths.append(path)
    fig.clf()
    return paths


def _placeholder(plt, title: str, message: str):
    fig, ax = plt.subplots(figsize=(6, 1.6))
    ax.set_axis_off()
    ax.set_title(title)
    ax.text(0.5, 0.45, message, ha="center", va="center", wrap=True, color="#555555")
    return fig


def _grid(plt, n: int, width: float = 4.2, height: float = 3.3, max_cols: int = 3):
    cols = max(1, min(max_cols, n))
    rows = max(1, math.ceil(n / cols))
    fig, axes = plt.subplots(rows, cols, figsize=(width * cols, height * rows), squeeze=False)
    flat = list(axes.flat)
    for ax in flat[n:]:
        ax.set_axis_off()
    return fig, flat[:n]


def _log_seconds(ax) -> None:
    """A log-scaled seconds axis labelled 0.005, 0.01, 0.02 … rather than in powers of ten."""
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    ax.set_xscale("log")
    ax.xaxis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
    ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    ax.xaxis.set_minor_formatter(NullFormatter())


def _shared_legend(fig, axes) -> None:
    """One legend under all panels (instead of one per panel, over the data)."""
    seen = {}
    for ax in axes:
        for handle, label in zip(*ax.get_legend_handles_labels()):
            seen.setdefault(label, handle)
    rows = 1 if len(seen) <= 4 else 2
    fig.tight_layout(rect=(0, 0.06 * rows + 0.04, 1, 1))
    if seen:
        fig.legend(list(seen.values()), list(seen), loc="lower center", ncol=min(len(seen), 4), fontsize=8,
                   frameon=False)


def _short_metric(name: str, matrix=None, eval_task: str | None = None) -> str:
    """The metric's display name, as the evaluation task's kind declares it."""
    from ftmatrix.tasks import metric_display

    kind = None
    if matrix is not None and "task_kind" in matrix:
        kinds = matrix.loc[matrix["eval_task"] == eval_task, "task_kind"]
        kind = kinds.iloc[0] if len(kinds) else None
    return metric_display(name, kind)


# ---------------------------------------------------------------------------- figures


def transfer_heatmap(plt, matrix, tables):
    table = tables["transfer"]
    table = table[table["diff"].notna()] if "diff" in table else table.iloc[0:0]
    title = "Change against the untuned base (training task × evaluation task)"
    if table.empty:
        return _placeholder(plt, title, "n/a: the study has no fine-tuned variant with a base to compare with")
    panels = []
    for model in sorted(table["model"].unique()):
        mine = table[table["model"] == model]
        full = mine[mine["method"] == "full"]
        if not full.empty:
            panels.append((f"{model}\nfull fine-tuning", full))
        lora = mine[mine["method"] == "lora"]
        if not lora.empty:
            in_task = lora[lora["in_task"].astype(bool)]
            gains = (in_task if not in_task.empty else lora).groupby("rank")["diff"].mean()
            rank = int(gains.idxmax())
            panels.append((f"{model}\nLoRA r{rank} (largest in-task gain)", lora[lora["rank"] == rank]))
    train_tasks = sorted(table["train_task"].unique())
    eval_tasks = sorted(table["eval_task"].unique())
    limit = float(np.nanmax(np.abs(table["diff"].astype(float)))) or 1.0
    panel_width = max(3.0, 1.5 * len(eval_tasks))
    fig, axes = plt.subplots(1, len(panels), figsize=(1.6 + panel_width * len(panels), 2.0 + 0.8 * len(train_tasks)),
                             squeeze=False, layout="constrained")
    image, against = None, False
    for ax, (name, part) in zip(axes.flat, panels):
        values = np.full((len(train_tasks), len(eval_tasks)), np.nan)
        for row in part.to_dict("records"):
            i, j = train_tasks.index(row["train_task"]), eval_tasks.index(row["eval_task"])
            values[i, j] = row["diff"]
            significant = row["significance"] in ("better", "worse")
            # The table's verdict followed the task's correctness metric, which went significantly the
            # other way (ARC: macro-F1 up, accuracy down): the cell's number is not its verdict's sign.
            decided = significant and verdict_follows_check(row)
            against = against or decided
            text = f"{row['diff']:+.1f}{'†' if decided else '*' if significant else ''}"
            ax.text(j, i, text, ha="center", va="center", fontsize=9,
                    fontweight="bold" if significant else "normal",
                    color="black" if abs(row["diff"]) < 0.6 * limit else "white")
        image = ax.imshow(values, cmap="RdBu", vmin=-limit, vmax=limit, aspect="auto")
        ax.set_xticks(range(len(eval_tasks)), eval_tasks)
        ax.set_yticks(range(len(train_tasks)), train_tasks)
        ax.set_xlabel("evaluation task")
        if ax is axes.flat[0]:
            ax.set_ylabel("training task")
        ax.set_title(name)
        for spine in ax.spines.values():
            spine.set_visible(False)
    label = "change vs base (points)\n* = significant" + ("\n† = right answers went the other way" if against else "")
    fig.colorbar(image, ax=list(axes.flat), shrink=0.8, label=label)
    fig.suptitle(title, x=0.02, ha="left")
    return fig


def _pareto(points: list[tuple[float, float, bool]]) -> list[int]:
    """Indices of points no other point beats on both latency (lower) and quality (better)."""
    front = []
    for i, (lat_i, q_i, hib) in enumerate(points):
        sign = 1 if hib else -1
        dominated = any((lat_j <= lat_i and sign * q_j >= sign * q_i) and (lat_j < lat_i or sign * q_j > sign * q_i)
                        for j, (lat_j, q_j, _) in enumerate(points) if j != i)
        if not dominated:
            front.append(i)
    return front


def variant_points(matrix, eval_task: str) -> list[dict]:
    """Seed-averaged headline and latency of every variant on one evaluation task."""
    part = matrix[matrix["eval_task"] == eval_task]
    out = []
    for key, group in part.groupby(["model", "method", "rank", "train_task"], sort=True):
        model, method, rank, train_task = key
        label = model if method == "base" else \
            f"{model} {'full' if method == 'full' else f'LoRA r{int(rank)}'}·{train_task}"
        out.append({"model": model, "method": method, "rank": int(rank), "train_task": train_task, "label": label,
                    "quality": float(group["headline"].mean()),
                    "ci_low": float(group["headline_ci_low"].mean()) if group["headline_ci_low"].notna().all()
                    else math.nan,
                    "ci_high": float(group["headline_ci_high"].mean()) if group["headline_ci_high"].notna().all()
                    else math.nan,
                    "latency": float(group["latency_mean_s"].mean()) if "latency_mean_s" in group and
                    group["latency_mean_s"].notna().any() else math.nan,
                    "higher_is_better": bool(group["higher_is_better"].iloc[0]) if "higher_is_better" in group
                    else True,
                    "metric": group["headline_metric"].iloc[0], "n_seeds": len(group)})
    return out


def quality_vs_latency(plt, matrix, tables):
    tasks = sorted(matrix["eval_task"].unique())
    title = "Quality against latency (Pareto front: no other variant is both better and faster)"
    fig, axes = _grid(plt, len(tasks))
    for ax, task in zip(axes, tasks):
        points = [p for p in variant_points(matrix, task) if finite(p["latency"]) and finite(p["quality"])]
        if not points:
            ax.set_axis_off()
            ax.text(0.5, 0.5, f"{task}: no timed samples", ha="center", transform=ax.transAxes)
            continue
        front = _pareto([(p["latency"], p["quality"], p["higher_is_better"]) for p in points])
        for method, (color, marker) in METHOD_STYLE.items():
            mine = [p for p in points if p["method"] == method]
            if not mine:
                continue
            yerr = np.array([[p["quality"] - p["ci_low"] if finite(p["ci_low"]) else 0 for p in mine],
                             [p["ci_high"] - p["quality"] if finite(p["ci_high"]) else 0 for p in mine]])
            ax.errorbar([p["latency"] for p in mine], [p["quality"] for p in mine], yerr=np.clip(yerr, 0, None),
                        fmt=marker, color=color, ecolor=color, alpha=0.8, elinewidth=0.8, capsize=2,
                        markersize=5, label=method, linestyle="none")
        ordered = sorted((points[i] for i in front), key=lambda p: p["latency"])
        ax.plot([p["latency"] for p in ordered], [p["quality"] for p in ordered], color="#f39c12", lw=1.5,
                drawstyle="steps-post", zorder=0, label="Pareto front")
        ax.scatter([p["latency"] for p in ordered], [p["quality"] for p in ordered], s=110, facecolors="none",
                   edgecolors="#f39c12", linewidths=1.5, zorder=3)
        for p in ordered:
            ax.annotate(p["label"], (p["latency"], p["quality"]), textcoords="offset points", xytext=(4, 4),
                        fontsize=7, color="#333333")
        _log_seconds(ax)
        ax.set_xlabel("mean latency per sample (s, batch size 1, log scale)")
        ax.set_ylabel(f"{_short_metric(points[0]['metric'], matrix, task)} (%)")
        ax.set_title(task)
    fig.suptitle(title, x=0.02, ha="left")
    _shared_legend(fig, axes)
    return fig


def lora_rank(plt, matrix, tables):
    table = tables["lora_rank"]
    title = "Score against LoRA rank (bands: CI; lines: full fine-tuning and the base)"
    lora = table[table["method"] == "lora"] if not table.empty else table
    if lora.empty:
        return _placeholder(plt, title, "n/a: the study has no LoRA variants")
    triples = sorted({(r["model"], r["train_task"], r["eval_task"]) for r in lora.to_dict("records")},
                     key=lambda t: (t[0], t[1] != t[2], t[1], t[2]))
    fig, axes = _grid(plt, len(triples), width=3.6, height=2.8)
    for ax, (model, train_task, eval_task) in zip(axes, triples):
        part = lora[(lora["model"] == model) & (lora["train_task"] == train_task) & (lora["eval_task"] == eval_task)]
        part = part.sort_values("rank")
        ranks = part["rank"].astype(float).to_numpy()
        ax.plot(ranks, part["value"], "o-", color=METHOD_STYLE["lora"][0], label="LoRA")
        if part["ci_low"].notna().all():
            ax.fill_between(ranks, part["ci_low"].astype(float), part["ci_high"].astype(float),
                            color=METHOD_STYLE["lora"][0], alpha=0.2, linewidth=0)
        full = table[(table["method"] == "full") & (table["model"] == model) & (table["train_task"] == train_task)
                     & (table["eval_task"] == eval_task)]
        if not full.empty:
            f = full.iloc[0]
            ax.axhline(f["value"], color=METHOD_STYLE["full"][0], lw=1.2, label="full FT")
            if finite(f["ci_low"]) and finite(f["ci_high"]):
                ax.axhspan(f["ci_low"], f["ci_high"], color=METHOD_STYLE["full"][0], alpha=0.08, linewidth=0)
        base = matrix[(matrix["model"] == model) & (matrix["method"] == "base") & (matrix["eval_task"] == eval_task)]
        if not base.empty:
            ax.axhline(float(base["headline"].iloc[0]), color=METHOD_STYLE["base"][0], lw=1, ls="--", label="base")
        ax.set_xscale("log", base=2)
        ax.set_xticks(ranks, [str(int(r)) for r in ranks])
        ax.minorticks_off()
        ax.set_xlabel("LoRA rank r")
        ax.set_ylabel(f"{_short_metric(part['headline_metric'].iloc[0], matrix, eval_task)} (%)")
        where = "in task" if train_task == eval_task else "cross-task"
        ax.set_title(f"{model}: {train_task} → {eval_task} ({where})", fontsize=8.5)
        ax.legend(fontsize=7, loc="best")
    fig.suptitle(title, x=0.02, ha="left")
    fig.tight_layout()
    return fig


def full_vs_lora(plt, matrix, tables):
    table = tables["full_vs_lora"]
    title = "Full fine-tuning minus the best LoRA (points; bars: CI)"
    table = table[table["diff"].notna()] if "diff" in table else table.iloc[0:0]
    if table.empty:
        return _placeholder(plt, title, "n/a: the study needs both full fine-tuning and LoRA for this comparison")
    table = table.sort_values(["model", "in_task", "train_task", "eval_task"], ascending=[True, False, True, True])
    labels = [f"{r['model']}: {r['train_task']} → {r['eval_task']} (LoRA r{int(r['best_rank'])})"
              for r in table.to_dict("records")]
    y = np.arange(len(table))[::-1]
    fig, ax = plt.subplots(figsize=(7.5, 0.9 + 0.32 * len(table)))
    diff = table["diff"].astype(float).to_numpy()
    low = table["diff_ci_low"].astype(float).to_numpy()
    high = table["diff_ci_high"].astype(float).to_numpy()
    colors = [METHOD_STYLE["full"][0] if lo > 0 else METHOD_STYLE["lora"][0] if hi < 0 else "#888888"
              for lo, hi in zip(low, high)]
    ax.hlines(y, np.where(np.isfinite(low), low, diff), np.where(np.isfinite(high), high, diff), colors=colors, lw=2)
    ax.scatter(diff, y, color=colors, zorder=3)
    ax.axvline(0, color="black", lw=0.8)
    ax.set_yticks(y, labels, fontsize=8)
    ax.set_xlabel("full − best LoRA (points of the headline metric); right of 0: full is better")
    ax.set_title(title, loc="left")
    fig.tight_layout()
    return fig


def latency_split(plt, matrix, tables):
    title = "Where the time goes: time to first token + per-token time × further output tokens"
    tasks = sorted(matrix["eval_task"].unique())
    needed = ["ttft_mean_s", "tpot_mean_s", "latency_mean_s"]
    if not all(c in matrix for c in needed) or matrix["ttft_mean_s"].isna().all():
        return _placeholder(plt, title, "n/a: no timed samples")
    panels = []
    for task in tasks:
        part = matrix[(matrix["eval_task"] == task) & ((matrix["method"] == "base") | (matrix["train_task"] == task))]
        rows = []
        for key, group in part.groupby(["model", "method", "rank", "train_task"], sort=True):
            model, method, rank, train_task = key
            tokens = group["output_tokens_timed_mean"] if "output_tokens_timed_mean" in group and \
                group["output_tokens_timed_mean"].notna().all() else group["output_tokens_mean"]
            ttft = float(group["ttft_mean_s"].mean())
            # tpot_s (weighted by tokens) makes the bar add up to the mean latency exactly.
            per_token = group["tpot_s"] if "tpot_s" in group and group["tpot_s"].notna().any() else group["tpot_mean_s"]
            tpot = float(per_token.mean()) if per_token.notna().any() else 0.0
            further = max(float(tokens.mean()) - 1.0, 0.0)
            label = model if method == "base" else f"{model} {'full' if method == 'full' else f'LoRA r{int(rank)}'}"
            rows.append((label, ttft, tpot * further, float(group["latency_mean_s"].mean()), float(tokens.mean())))
        panels.append((task, rows))
    fig, axes = _grid(plt, len(panels), width=4.6, height=0.9 + 0.36 * max(len(r) for _, r in panels))
    for ax, (task, rows) in zip(axes, panels):
        y = np.arange(len(rows))[::-1]
        first = np.array([r[1] for r in rows])
        rest = np.array([r[2] for r in rows])
        ax.barh(y, first, color="#8e44ad", label="time to first token")
        ax.barh(y, rest, left=first, color="#48c9b0", label="per-token time × further tokens")
        ax.scatter([r[3] for r in rows], y, marker="|", s=120, color="black", label="measured mean latency",
                   zorder=3)
        for yi, r in zip(y, rows):
            ax.text(max(r[1] + r[2], r[3]), yi, f"  {r[4]:.0f} tok", va="center", fontsize=7)
        ax.set_yticks(y, [r[0] for r in rows], fontsize=8)
        ax.set_xlabel("seconds per sample (batch size 1)")
        ax.set_title(f"{task} (bases and in-task variants)")
        ax.margins(x=0.18)
    fig.suptitle(title, x=0.02, ha="left")
    _shared_legend(fig, axes)
    return fig


def lr_sweep(plt, matrix, tables):
    """Validation loss against learning rate: a panel per method and training task, a line per
    LoRA rank (seeds averaged), the selected rate of each line ringed."""
    table = tables["lr_sweep"]
    title = "Validation loss against learning rate (ringed: the rate selected; seeds averaged)"
    if table.empty:
        return _placeholder(plt, title, "n/a: the study fine-tunes nothing")
    panels = sorted({(r["model"], r["method"], r["train_task"]) for r in table.to_dict("records")},
                    key=lambda p: (p[0], p[1] != "full", p[2]))
    fig, axes = _grid(plt, len(panels), width=3.6, height=2.8)
    for ax, (model, method, task) in zip(axes, panels):
        part = table[(table["model"] == model) & (table["method"] == method) & (table["train_task"] == task)]
        for rank in sorted(part["rank"].unique()):
            line = part[part["rank"] == rank]
            finite_rows = line[line["valid_loss_after"].map(finite)]
            curve = finite_rows.groupby("learning_rate")["valid_loss_after"].mean().sort_index()
            label = "full" if method == "full" else f"r{int(rank)}"
            (drawn,) = ax.plot(curve.index, curve.to_numpy(), "o-", ms=3.5, lw=1.2, label=label)
            chosen = finite_rows[finite_rows["selected"].astype(str) == "True"]
            for rate in sorted(set(chosen["learning_rate"])):
                ax.plot([rate], [curve.loc[rate]], "o", ms=9, mfc="none", mec=drawn.get_color(), mew=1.5)
            for rate in sorted(set(line[~line["valid_loss_after"].map(finite)]["learning_rate"])):
                ax.axvline(rate, color=drawn.get_color(), ls=":", lw=1)
        ax.set_xscale("log")
        ax.set_xlabel("learning rate")
        ax.set_ylabel("validation loss")
        ax.set_title(f"{model}: {'full FT' if method == 'full' else 'LoRA'} on {task}", fontsize=8.5)
        ax.legend(fontsize=7, loc="best")
    fig.suptitle(title, x=0.02, ha="left")
    fig.tight_layout()
    return fig


DRAWERS = {
    "transfer_heatmap": transfer_heatmap,
    "quality_vs_latency": quality_vs_latency,
    "lora_rank": lora_rank,
    "full_vs_lora": full_vs_lora,
    "latency_split": latency_split,
    "lr_sweep": lr_sweep,
}


def draw_figures(matrix_file, analysis_dir, figures_dir) -> dict[str, list[Path]]:
    """Write results/figures/<name>.{png,svg} for every figure; returns the paths by figure."""
    from ftmatrix.aggregate import read_matrix
    from ftmatrix.analysis import TABLES, read_table
    from ftmatrix.selection import read_sweep_table

    plt = _pyplot()
    matrix = read_matrix(matrix_file)
    tables = {name: read_table(Path(analysis_dir) / f"{name}.csv") for name in TABLES}
    tables["lr_sweep"] = read_sweep_table(Path(analysis_dir) / "lr_sweep.csv")
    out = {}
    for name in FIGURES:
        fig = DRAWERS[name](plt, matrix, tables)
        out[name] = _save(fig, Path(figures_dir), name)
        plt.close(fig)
        log.info("figure: %s -> %s", name, ", ".join(str(p) for p in out[name]))
    return out
