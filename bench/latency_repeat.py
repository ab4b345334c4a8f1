"""Two runs of the same study on the same machine: do their latency findings agree?

Reads the analysis tables (``results/<study>/analysis/*.csv``) and the matrix of two finished
runs and compares every latency comparison they share — each fine-tuned cell against its base
(``vs_base``), each variant against a larger base (``vs_larger_base``), full fine-tuning against
the best LoRA rank (``full_vs_lora``) and training task × evaluation task (``transfer``) — and
the journal's highlighted latency findings (``ftmatrix.findings.highlights``):

- *opposite*: called significant in both runs with opposite signs (faster in one, slower in the
  other) — the failure this pipeline's timing rounds exist to prevent; must be 0;
- *agree*: the same verdict in both runs (faster / slower / no significant change);
- *one-sided*: significant in one run, not significant in the other.

    python bench/latency_repeat.py RUN_A/results/demo RUN_B/results/demo [--json out.json]
    python bench/latency_repeat.py RUN_A/results/demo --rounds-as-runs   # each round alone, no rounds
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

TABLE_KEYS = {
    "vs_base": ["model", "method", "rank", "train_task", "seed", "eval_task"],
    "vs_larger_base": ["model", "method", "rank", "train_task", "eval_task", "larger_model"],
    "full_vs_lora": ["model", "train_task", "eval_task"],
    "transfer": ["model", "method", "rank", "train_task", "eval_task"],
}
SIGNIFICANT = ("faster", "slower")


def verdicts(results: Path) -> dict:
    """(table, key) -> (latency verdict, relative change %, CI) of every timed comparison."""
    from ftmatrix.analysis import read_table
    from ftmatrix.findings import records

    out = {}
    for table, keys in TABLE_KEYS.items():
        for row in records(read_table(results / "analysis" / f"{table}.csv")):
            if row.get("latency_significance") in (None, "n/a"):
                continue
            key = (table, *(str(row[k]) for k in keys))
            out[key] = (row["latency_significance"], row.get("latency_rel_pct"),
                        (row.get("latency_rel_ci_low"), row.get("latency_rel_ci_high")))
    return out


def highlighted(results: Path) -> dict:
    """The journal's TL;DR latency findings: (topic, subject) -> verdict."""
    from ftmatrix import findings
    from ftmatrix.analysis import TABLES, read_table

    tables = {name: read_table(results / "analysis" / f"{name}.csv") for name in TABLES}
    return {(f.topic, repr(f.subject)): (f.verdict, f.effect.value, None)
            for f in findings.highlights(tables, 0.95) if f.what == findings.LATENCY}


def compare(a: dict, b: dict) -> dict:
    shared = sorted(set(a) & set(b))
    opposite = [k for k in shared if a[k][0] in SIGNIFICANT and b[k][0] in SIGNIFICANT and a[k][0] != b[k][0]]
    agree = [k for k in shared if a[k][0] == b[k][0]]
    one_sided = [k for k in shared if (a[k][0] in SIGNIFICANT) != (b[k][0] in SIGNIFICANT)]
    significant_a = sum(a[k][0] in SIGNIFICANT for k in shared)
    significant_b = sum(b[k][0] in SIGNIFICANT for k in shared)
    return {"findings": len(shared), "significant_a": significant_a, "significant_b": significant_b,
            "agree": len(agree), "agree_share": len(agree) / len(shared) if shared else None,
            "one_sided": len(one_sided), "opposite": len(opposite),
            "opposite_findings": [{"finding": list(k), "a": a[k], "b": b[k]} for k in opposite],
            "one_sided_findings": [{"finding": list(k), "a": a[k], "b": b[k]} for k in one_sided]}


def cell_ratios(a: Path, b: Path) -> dict:
    """Per cell, run B's mean latency over run A's: how much the machine's speed moved."""
    import numpy as np
    import pandas as pd

    ma = pd.read_csv(a / "matrix.csv").set_index("cell")
    mb = pd.read_csv(b / "matrix.csv").set_index("cell")
    ratio = (mb["latency_mean_s"] / ma["latency_mean_s"]).dropna()
    inside = ((mb["latency_mean_s"] >= ma["latency_mean_ci_low"]) & (mb["latency_mean_s"] <= ma["latency_mean_ci_high"]))
    return {"cells": int(len(ratio)), "ratio_median": float(np.median(ratio)),
            "ratio_min": float(ratio.min()), "ratio_max": float(ratio.max()),
            "b_mean_inside_a_ci": int(inside.sum())}


def single_round_verdicts(results: Path, round_index: int) -> dict:
    """The verdicts one timing round alone would give (a single timed pass, sample-only bootstrap):
    the design before timing rounds, on this run's own measurements."""
    from ftmatrix.aggregate import read_matrix
    from ftmatrix.analysis import ANALYSES, TABLES, BootstrapSettings, Study, frame, read_predictions
    from ftmatrix.findings import records

    files = sorted(results.glob("eval/**/predictions.jsonl"))
    predictions = read_predictions(files)
    for rows in predictions.values():
        for row in rows:
            if row.get("latency_rounds_s"):
                row["latency_rounds_s"] = [row["latency_rounds_s"][round_index]]
                row["ttft_rounds_s"] = [row["ttft_rounds_s"][round_index]]
                row["latency_s"] = row["latency_rounds_s"][0]
    study = Study(read_matrix(results / "matrix.csv"), predictions, BootstrapSettings(1000, 0, 0.95))
    out = {}
    for table, keys in TABLE_KEYS.items():
        for row in records(frame(ANALYSES[table](study), TABLES[table])):
            if row.get("latency_significance") in (None, "n/a"):
                continue
            out[(table, *(str(row[k]) for k in keys))] = (row["latency_significance"], row.get("latency_rel_pct"),
                                                          None)
    return out


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("run_a", type=Path, help="results/<study> of the first run")
    parser.add_argument("run_b", type=Path, nargs="?", help="results/<study> of the second run")
    parser.add_argument("--json", type=Path)
    parser.add_argument("--rounds-as-runs", action="store_true",
                        help="compare the rounds of run_a with each other, each analysed alone as a single timed "
                             "pass with the sample-only bootstrap (the design without rounds)")
    args = parser.parse_args(argv)
    if args.rounds_as_runs:
        import itertools

        import pandas as pd

        rounds = int(pd.read_csv(args.run_a / "matrix.csv")["timing_rounds"].max())
        single = [single_round_verdicts(args.run_a, r) for r in range(rounds)]
        worst = 0
        for i, j in itertools.combinations(range(rounds), 2):
            r = compare(single[i], single[j])
            worst = max(worst, r["opposite"])
            print(f"round {i + 1} vs round {j + 1}, each alone: {r['findings']} latency findings; significant "
                  f"{r['significant_a']} / {r['significant_b']}; same verdict {r['agree']} "
                  f"({100 * r['agree_share']:.1f}%); significant with opposite signs {r['opposite']}")
        return 0
    report = {"comparisons": compare(verdicts(args.run_a), verdicts(args.run_b)),
              "highlights": compare(highlighted(args.run_a), highlighted(args.run_b)),
              "cells": cell_ratios(args.run_a, args.run_b)}
    for name in ("comparisons", "highlights"):
        r = report[name]
        share = f"{100 * r['agree_share']:.1f}%" if r["agree_share"] is not None else "n/a"
        print(f"{name}: {r['findings']} latency findings; significant in A {r['significant_a']}, in B "
              f"{r['significant_b']}; same verdict {r['agree']} ({share}); significant in one run only "
              f"{r['one_sided']}; significant with opposite signs {r['opposite']}")
    c = report["cells"]
    print(f"cells: B/A mean latency median {c['ratio_median']:.3f} (range {c['ratio_min']:.3f}–{c['ratio_max']:.3f}); "
          f"B's mean inside A's CI for {c['b_mean_inside_a_ci']} of {c['cells']}")
    if args.json:
        args.json.write_text(json.dumps(report, indent=1, default=str))
    return 1 if report["comparisons"]["opposite"] or report["highlights"]["opposite"] else 0


if __name__ == "__main__":
    sys.exit(main())
