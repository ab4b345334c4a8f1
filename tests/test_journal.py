"""The journal's content: findings computed from the tables, marked when not significant, advice
chosen by rules, untrusted text escaped, self-contained, and partial grids saying n/a."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pandas as pd
import pytest

from ftmatrix.analysis import analyse_matrix
from ftmatrix.figures import FIGURES, draw_figures
from ftmatrix.journal import SECTIONS, arrow_ci, build_journal, highlights, redact, takeaways
from tests.test_aggregate_tree import (PLANTED_SCRIPT, aggregate, mean_score_statistic, study_config,
                                       write_results_tree, write_sweeps)


def build(root: Path, config: dict, *, hostile: bool = False, figures: bool = True, edit=None) -> dict:
    tree = write_results_tree(root, config, hostile=hostile)
    if edit:
        edit(tree)
    results = root / "results"
    matrix = aggregate(tree)
    analyse_matrix(matrix, tree.predictions, results / "analysis", resamples=300, seed=0, confidence=0.95,
                   statistic_for=mean_score_statistic)
    write_sweeps(tree, results / "analysis")
    if figures:
        draw_figures(matrix, results / "analysis", results / "figures")
    else:   # journal-only tests: reuse a tiny placeholder PNG for every figure
        from ftmatrix.figures import FIGURES

        (results / "figures").mkdir(parents=True, exist_ok=True)
        png = bytes.fromhex("89504e470d0a1a0a0000000d4948445200000001000000010806000000"
                            "1f15c4890000000d49444154789c6360000002000001e221bc330000000049454e44ae426082")
        for name in FIGURES:
            (results / "figures" / f"{name}.png").write_bytes(png)
    html = build_journal(matrix_file=matrix, analysis_dir=results / "analysis", figures_dir=results / "figures",
                         metrics_files=tree.metrics, predictions_files=tree.predictions, task_meta_files=tree.task_meta,
                         model_manifests=tree.manifests, train_metrics_files=tree.train_metrics, config=config,
                         html_file=results / "journal" / "journal.html", config_hash="cafecafecafecafe",
                         configfiles=["studies/demo.yaml"])
    tables = {p.stem: pd.read_csv(p) for p in (results / "analysis").glob("*.csv")}
    return {"tree": tree, "html": html, "text": html.read_text(encoding="utf-8"), "tables": tables,
            "matrix": pd.read_csv(matrix)}


@pytest.fixture(scope="module")
def journal(tmp_path_factory):
    return build(tmp_path_factory.mktemp("j"), study_config(ranks=(4, 16, 64)), hostile=True, figures=False)


def test_every_section_is_there(journal):
    headings = re.findall(r"<h2>(.*?)</h2>", journal["text"])
    assert [h.replace("&amp;", "&") for h in headings] == [s for s in SECTIONS]


def test_model_output_is_escaped_and_the_page_has_no_script(journal):
    text = journal["text"]
    assert "<script" not in text.lower()
    assert "onerror=" not in text.replace("onerror=&#34;", "")     # only as escaped text
    assert "&lt;script&gt;document.title=&#39;PWNED&#39;" in text
    assert "Content-Security-Policy" in text and "default-src 'none'" in text


def test_self_contained(journal):
    text = journal["text"]
    assert not re.search(r"""(src|href)=["']?(https?:)?//""", text)
    assert "<link" not in text
    srcs = re.findall(r'<img src="([^"]+)"', text)
    assert len(srcs) == len(FIGURES) and all(s.startswith("data:image/png;base64,") for s in srcs)


def test_highlights_are_computed_from_the_tables(journal):
    t = journal["tables"]["vs_larger_base"]
    row = t[(t["method"] == "full") & (t["train_task"] == "arc") & (t["eval_task"] == "arc")].iloc[0]
    expected = f"accuracy {row['diff']:+.1f} points".replace("-", "−")
    assert expected in journal["text"]
    assert f"latency ↓ {abs(row['latency_rel_pct']):.1f}%" in journal["text"]
    assert arrow_ci(row["latency_rel_ci_low"], row["latency_rel_ci_high"], 0.95) in journal["text"]


def test_spanning_zero_is_marked_not_significant():
    tables = {name: pd.DataFrame() for name in ("vs_larger_base", "transfer", "rank_correlation")}
    tables["full_vs_lora"] = pd.DataFrame([
        {"model": "m", "train_task": "a", "eval_task": "a", "in_task": True, "headline_metric": "f1", "best_rank": 8,
         "diff": 3.0, "diff_ci_low": -1.0, "diff_ci_high": 7.0, "rel_pct": 5.0},
        {"model": "m", "train_task": "b", "eval_task": "b", "in_task": True, "headline_metric": "f1", "best_rank": 8,
         "diff": 9.0, "diff_ci_low": 2.0, "diff_ci_high": 15.0, "rel_pct": 12.0},
    ])
    found = highlights(tables, 0.95)
    assert [h["parts"][0]["significant"] for h in found] == [False, True]
    assert found[0]["parts"][0]["ci"] == "95% CI −1.0 to +7.0"


def test_a_model_against_an_endpoint_serving_its_own_weights_reads_as_the_same_answers():
    """An untuned model against an API row that serves the very same weights: every paired
    difference is zero, which the TL;DR says as such, not as '+0.0 points (95% CI +0.0 to +0.0)
    not significant'; a zero mean with differences that cancel keeps its interval."""
    tables = {name: pd.DataFrame() for name in ("transfer", "full_vs_lora", "rank_correlation")}
    row = {"model": "big", "method": "base", "rank": 0, "train_task": "none", "eval_task": "arc", "in_task": False,
           "larger_model": "big-api", "larger_is_api": True, "headline_metric": "accuracy", "rel_pct": 0.0,
           "diff": 0.0, "diff_ci_low": 0.0, "diff_ci_high": 0.0, "significance": "not significant"}
    tables["vs_larger_base"] = pd.DataFrame([row, {**row, "eval_task": "squad_v2", "diff_ci_low": -4.0,
                                                   "diff_ci_high": 4.0}])
    same, cancelled = highlights(tables, 0.95)
    assert same["parts"][0] == {"text": "accuracy identical: no sample scores differently", "ci": "", "significant": None}
    assert cancelled["parts"][0]["ci"] == "95% CI −4.0 to +4.0" and cancelled["parts"][0]["significant"] is False


def test_a_cross_task_line_names_its_effect_once():
    """The TL;DR line of a transfer cell: the effect as its topic, then which variant on which task."""
    tables = {name: pd.DataFrame() for name in ("vs_larger_base", "full_vs_lora", "rank_correlation")}
    tables["transfer"] = pd.DataFrame([
        {"model": "m", "method": "lora", "rank": 16, "train_task": "reading", "eval_task": "choice", "in_task": False,
         "headline_metric": "f1", "diff": 9.0, "diff_ci_low": 2.0, "diff_ci_high": 15.0, "rel_pct": 40.0,
         "effect": "positive transfer", "significance": "significant improvement"},
    ])
    (line,) = highlights(tables, 0.95)
    assert line["topic"] == "positive transfer"
    assert line["subject"] == "m LoRA r16 on reading → choice"


def test_takeaways_follow_the_data(tmp_path):
    """Same study shape, different outcomes: the advice changes with them."""
    def lora_as_good_as_full(tree):
        folder = tree.root / "results" / "eval"
        for task in ("arc", "openmath", "squad_v2"):
            full = (folder / f"demo-small/full/r0/{task}/seed0/{task}" / "predictions.jsonl").read_text()
            for rank in (4, 16, 64):
                (folder / f"demo-small/lora/r{rank}/{task}/seed0/{task}" / "predictions.jsonl").write_text(full)

    plain = build(tmp_path / "plain", study_config(ranks=(4, 16, 64)), figures=False)
    tied = build(tmp_path / "tied", study_config(ranks=(4, 16, 64)), figures=False, edit=lora_as_good_as_full)
    advice = [takeaways(j["matrix"], j["tables"], 0.95) for j in (plain, tied)]
    assert any(a.startswith("LoRA is enough here") for a in advice[1])
    assert not any(a.startswith("LoRA is enough here") for a in advice[0])
    # Three ranks cannot show a rank–score correlation: neither says rank barely matters; with
    # LoRA's answers the same at every rank, r4 is sufficient on every task.
    assert not any("LoRA rank barely matters" in a for a in advice[0] + advice[1])
    assert any(a.startswith("Whether LoRA rank matters is not measured: with three ranks")
               and "r4 on arc, r4 on openmath, r4 on squad_v2" in a for a in advice[1])
    assert any(a.startswith("Fine-tuning costs skills") and "openmath → squad_v2" in a for a in advice[0])
    assert any("can stand in for demo-large" in a for a in advice[0])
    assert any("one seed" in a for a in advice[0])


@pytest.mark.parametrize("name,config", [
    ("base_only", study_config(methods=("base",), tasks=("arc",))),
    ("one_rank_no_base", study_config(methods=("full", "lora"), models=("demo-small",), tasks=("arc",), ranks=(8,))),
])
def test_partial_grids_say_na(tmp_path, name, config):
    j = build(tmp_path, config, figures=False)
    assert "n/a" in j["text"]
    if name == "base_only":
        assert "the study has no LoRA variants" in j["text"]
    else:
        assert "at least 3 LoRA ranks" in j["text"]


def test_reproducibility_section(journal):
    text = journal["text"]
    assert "0123456789abcdef0123456789abcdef01234567" in text and "(clean)" in text
    assert "cafecafecafecafe" in text
    # the study file as given on the command line; config.yaml is read by the Snakefile itself,
    # and a second --configfile would replace the first (argparse keeps the last)
    assert "snakemake --cores all --configfile studies/demo.yaml" in text
    assert "--configfile config.yaml" not in text and text.count("--configfile") == text.count(" --configfile ")
    assert "evarc0123456789" in text           # data fingerprints
    assert "sha-demo-small" in text            # model revisions


def test_tokens_are_masked():
    assert redact("token hf_abcdefghijklmnopqrstuvwxyz0123 here") == "token hf_*** here"
    assert redact("hf_short") == "hf_short"


def test_journal_refuses_missing_figures(tmp_path):
    from ftmatrix.errors import DataError

    tree = write_results_tree(tmp_path, study_config(methods=("base",), tasks=("arc",)))
    matrix = aggregate(tree)
    analyse_matrix(matrix, tree.predictions, tmp_path / "analysis", resamples=100, seed=0, confidence=0.95,
                   statistic_for=mean_score_statistic)
    write_sweeps(tree, tmp_path / "analysis")
    with pytest.raises(DataError, match="figure missing"):
        build_journal(matrix_file=matrix, analysis_dir=tmp_path / "analysis", figures_dir=tmp_path / "nowhere",
                      metrics_files=tree.metrics, predictions_files=tree.predictions, task_meta_files=tree.task_meta,
                      model_manifests=tree.manifests, train_metrics_files=tree.train_metrics, config=tree.config,
                      html_file=tmp_path / "journal.html")
    assert not (tmp_path / "journal.html").exists()


def test_sample_predictions_show_the_planted_answer_as_text(journal):
    assert "Sample predictions" in journal["text"]
    first = json.loads((journal["tree"].root / "results" / "eval" / "demo-large/base/r0/none/seed0/arc" /
                        "predictions.jsonl").read_text().splitlines()[0])
    assert first["generated"].startswith(PLANTED_SCRIPT)
    assert f"sample <code>{first['id']}</code>" in journal["text"]


def test_several_seeds_get_their_table_and_advice(tmp_path):
    j = build(tmp_path, study_config(methods=("base", "full"), models=("demo-small",), tasks=("arc", "squad_v2"),
                                     seeds=(0, 1)), figures=False)
    seeds = j["tables"]["seeds"]
    assert (seeds["n_seeds"] == 2).all() and seeds["sd"].notna().all()
    assert "CI (samples and seeds)" in j["text"]
    worst = seeds["sd"].max()
    assert f"Training seeds matter up to {worst:.1f} points" in j["text"]


def test_a_stand_in_must_be_faster():
    def row(task, rel, verdict):
        return {"model": "small", "method": "full", "rank": 0, "train_task": task, "eval_task": task, "in_task": True,
                "larger_model": "large", "headline_metric": "f1", "significance": "no significant change",
                "value": 50.0, "diff": -1.0, "diff_ci_low": -5.0, "diff_ci_high": 3.0, "latency_value": 1.0,
                "latency_rel_pct": rel, "latency_rel_ci_low": rel - 5, "latency_rel_ci_high": rel + 5,
                "latency_significance": verdict}

    tables = {name: pd.DataFrame() for name in ("full_vs_lora", "rank_correlation", "transfer", "seeds")}
    tables["vs_larger_base"] = pd.DataFrame([row("a", -80.0, "faster"), row("b", 30.0, "slower")])
    matrix = pd.DataFrame([{"model": m, "method": meth, "rank": 0, "train_task": tt, "eval_task": t,
                            "cost_per_1k_usd": c, "headline_metric": "f1"}
                           for t in ("a", "b") for m, meth, tt, c in (("small", "full", t, 0.01),
                                                                       ("large", "base", "none", 0.05))])
    advice = takeaways(matrix, tables, 0.95)
    assert advice[0].startswith("On a, small with full fine-tuning can stand in for large")
    assert "latency ↓ 80.0% (95% CI 75.0–85.0%)" in advice[0] and "$0.0100 instead of $0.05" in advice[0]
    assert advice[1].startswith("On b, small with full fine-tuning is at least as good as large")
    assert "no latency gain" in advice[1]


def test_study_arguments_are_quoted_and_come_last_in_the_order_given():
    import shlex

    from ftmatrix.journal import study_arguments

    args = study_arguments(["studies/my study.yaml", "/abs/extra.yaml"], ["hf_home='cache dir'"])
    assert shlex.split(args) == ["--config", "hf_home='cache dir'", "--configfile", "studies/my study.yaml",
                                 "/abs/extra.yaml"]
    assert study_arguments([], []) == ""


def test_learning_rate_section_shows_every_run_and_flags_sweeps_to_widen(journal):
    """Each variant's rates with their validation losses, the selected one in bold, an edge flagged;
    the takeaway states the sweep against one rate."""
    text = journal["text"]
    section = text[text.index("<h2>Learning rate</h2>"):text.index("<h2>LoRA rank</h2>")]
    sweep = journal["tables"]["lr_sweep"]
    assert sweep.groupby(["model", "method", "rank", "train_task", "seed"])["selected"].sum().eq(1).all()
    for row in sweep[sweep["selected"]].to_dict("records"):
        assert f'<span class="b">{float(row["learning_rate"]):.0e}'.replace("e-0", "e-") in section
    edges = sweep[sweep["selected"] & (sweep["at_edge"].fillna("") != "")]
    assert section.count("widen the sweep") == len(edges) > 0
    assert re.search(r"the sweep over [^<]* selected [^<]* on the validation split", text)
    assert "Widen the sweep" in text


def test_the_hardware_table_names_the_cpu_kernels_the_numbers_came_from(journal):
    """Floating-point sums differ between AVX2 and AVX-512 kernels, so the same seed trains a
    different tiny model on another CPU: the journal says which kernels its runs used."""
    text = journal["text"]
    section = text[text.index("<h3>Hardware</h3>"):]
    section = section[:section.index("</table>")]
    assert "<th>CPU kernels</th>" in section and "<td>AVX2</td>" in section


def test_the_device_record_holds_the_cpu_kernels_torch_runs_with():
    import torch

    from ftmatrix.provenance import device_info

    info = device_info()
    assert info["cpu_capability"] == torch.backends.cpu.get_cpu_capability()
    assert info["cpu_capability"] in {"DEFAULT", "AVX2", "AVX512", "ZVECTOR", "VSX", "SVE256", "SVE"} \
        or info["cpu_capability"].startswith(("AVX", "SVE", "NEON"))


def test_the_setup_names_the_engine_that_timed_the_latency():
    import pandas as pd

    from ftmatrix.journal import _engines_text

    matrix = pd.DataFrame({"model": ["small", "large", "api"], "engine": ["vllm", "vllm", "openai"],
                           "timing_engine": ["vllm", "vllm", "openai"]})
    text = _engines_text(matrix)
    assert "openai (1 cell: api), vllm (2 cells: small, large)" in text
    assert "latency timed by vllm in the timing rounds" in text
    mixed = pd.DataFrame({"engine": ["transformers"] * 2, "timing_engine": ["transformers", "vllm"]})
    assert "not comparable" in _engines_text(mixed)
