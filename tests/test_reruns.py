"""Reruns follow the data: on a finished demo study, an edit plans exactly the jobs whose output
it shapes (dry runs of the real Snakemake on the demo run's own tree).

Each rule's params are the slice of the config that shapes its output, in canonical form; the
study hash is written into provenance, never compared. README's "Reruns" section states this.
"""

from __future__ import annotations

import contextlib
import importlib.metadata
import os
import re
import subprocess
import sys

import pytest
import yaml

import ftmatrix.grid

pytestmark = pytest.mark.slow

REPORTING = {"aggregate_matrix", "analyse_matrix", "draw_figures", "build_journal", "journal_pdf", "all"}


def plan(root, *extra, env=None) -> dict[str, int]:
    """Jobs a dry run of the demo study would run, by rule ({} when nothing is to be done)."""
    done = subprocess.run([sys.executable, "-m", "snakemake", "-n", "--cores", "2", *extra,
                           "--configfile", "studies/demo.yaml"], cwd=root, capture_output=True, text=True,
                          timeout=300, env=env)
    text = done.stdout + done.stderr
    assert done.returncode == 0, text[-4000:]
    return jobs_in(text)


def jobs_in(text: str) -> dict[str, int]:
    """A dry run's jobs by rule ({} when nothing is to be done)."""
    if "Nothing to be done" in text:
        return {}
    table = text[text.index("Job stats"):]
    counts = {}
    for line in table.splitlines()[3:]:
        parts = line.split()
        if parts and parts[0] == "total":
            break
        if len(parts) == 2 and parts[1].isdigit():
            counts[parts[0]] = int(parts[1])
    return counts


@contextlib.contextmanager
def edited_study(root, edit=None, text=None):
    """studies/demo.yaml changed for the length of a dry run, then restored byte for byte."""
    path = root / "studies" / "demo.yaml"
    original = path.read_text()
    try:
        if text is None:
            study = yaml.safe_load(original)
            edit(study)
            text = yaml.safe_dump(study, sort_keys=False)
        path.write_text(text)
        yield
    finally:
        path.write_text(original)


def reversed_keys(value):
    if isinstance(value, dict):
        return {k: reversed_keys(value[k]) for k in reversed(list(value))}
    if isinstance(value, list):
        return [reversed_keys(v) for v in value]
    return value


@pytest.fixture(scope="module")
def finished(demo_run):
    root = demo_run["root"]
    assert plan(root) == {}, "the finished demo study would run again unchanged"
    return root


def test_reordered_and_reformatted_study_reruns_nothing(finished):
    original = yaml.safe_load((finished / "studies" / "demo.yaml").read_text())
    # Every mapping's keys in reverse order (task entries as {kind:, name:, …}), block style.
    with edited_study(finished, text=yaml.safe_dump(reversed_keys(original), sort_keys=False,
                                                    default_flow_style=False, width=60)):
        assert plan(finished) == {}


def local_cells(config) -> list:
    """The cells the pipeline generates itself (a model behind an endpoint has rule evaluate_endpoint)."""
    local = {m["name"] for m in config["models"] if m["source"] != "api"}
    return [c for c in ftmatrix.grid.cells(config) if c.variant.model in local]


def test_the_quality_batch_size_reruns_the_quality_passes_and_no_timing(finished, demo_run):
    with edited_study(finished, lambda s: s["evaluate"].update(batch_size=s["evaluate"]["batch_size"] // 2)):
        jobs = plan(finished)
    assert "train_variant" not in jobs and "build_model" not in jobs and "prepare_task" not in jobs
    assert jobs.get("evaluate_cell", 0) == len(local_cells(demo_run["config"]))
    assert "time_round" not in jobs


@pytest.mark.parametrize("edit", [
    lambda s: s["evaluate"].update(warmup=s["evaluate"]["warmup"] + 1),
    lambda s: s["evaluate"].update(latency_samples=s["evaluate"]["latency_samples"] - 1),
], ids=["warmup", "latency_samples"])
def test_a_timing_setting_re_times_every_round_and_generates_no_quality_pass(finished, demo_run, edit):
    with edited_study(finished, edit):
        jobs = plan(finished)
    assert jobs.get("time_round") == demo_run["config"]["evaluate"]["timing_rounds"], jobs
    assert "evaluate_cell" not in jobs and "train_variant" not in jobs
    assert set(jobs) <= {"time_round", "score_cell"} | REPORTING, jobs


def test_one_more_timing_round_adds_one_timing_job(finished, demo_run):
    rounds = demo_run["config"]["evaluate"]["timing_rounds"]
    with edited_study(finished, lambda s: s["evaluate"].update(timing_rounds=rounds + 1)):
        jobs = plan(finished)
    # The new round, and the existing ones again: a round's cell order depends on the count.
    assert jobs.get("time_round") == rounds + 1 and "evaluate_cell" not in jobs, jobs


def test_a_models_price_reruns_only_the_reporting(finished):
    with edited_study(finished, lambda s: s["models"][1].update(hour_usd=4.0)):
        jobs = plan(finished)
    assert jobs and set(jobs) <= REPORTING and "aggregate_matrix" in jobs, jobs


@pytest.mark.parametrize("edit", [
    lambda s: s["cost"].update(gpu_hour_usd=s["cost"]["gpu_hour_usd"] * 2),
    lambda s: s.update(description=s["description"] + " Edited."),
    lambda s: s.setdefault("report", {}).update(samples_per_task=1),
], ids=["cost", "description", "report"])
def test_prices_words_and_report_settings_rerun_only_the_reporting(finished, edit):
    with edited_study(finished, edit):
        jobs = plan(finished)
    assert jobs and set(jobs) <= REPORTING, jobs
    assert "build_journal" in jobs


def study_after(root, edit) -> dict:
    """The validated demo study as it would be after ``edit``."""
    import ftmatrix.config

    with edited_study(root, edit):
        return ftmatrix.config.load(root / "config.yaml", [root / "studies" / "demo.yaml"])


@pytest.mark.parametrize("method", ["lora", "full"])
def test_a_new_learning_rate_reruns_only_that_methods_trainings_and_what_they_feed(finished, demo_run, method):
    config = demo_run["config"]
    rate = config["train"]["learning_rate"][method]
    new = (rate[0] if isinstance(rate, list) else rate) / 2

    def edit(study):
        study["train"]["learning_rate"][method] = new

    before, after = (set(ftmatrix.grid.runs(c)) for c in (config, study_after(finished, edit)))
    new_runs = after - before
    changed = {run.variant for run in new_runs}
    assert new_runs and {run.variant.method for run in new_runs} == {method}
    with edited_study(finished, edit):
        jobs = plan(finished)
    # every new run is trained (no other), its variant's rate selected again, and only its cells
    # can be evaluated again (which, a checkpoint decides once the selection has run)
    assert jobs["train_variant"] == len(new_runs)
    assert jobs["select_learning_rate"] == len(changed)
    assert jobs.get("evaluate_cell", 0) <= len(changed) * len(config["tasks"])
    # Timing rounds cover every cell the pipeline runs (all its latencies measured under the same
    # conditions), so a retrained variant re-times them all, once per round.
    assert jobs.get("time_round", 0) in (0, config["evaluate"]["timing_rounds"])
    assert set(jobs) <= {"train_variant", "select_learning_rate", "tabulate_sweeps", "evaluate_cell",
                         "time_round", "score_cell"} | REPORTING


def test_a_tasks_own_epochs_retrain_only_that_tasks_variants_and_what_they_feed(finished, demo_run):
    config = demo_run["config"]
    task = next(t for t in config["tasks"] if t.get("epochs") is None)
    assert config["train"]["epochs"] != 4

    def edit(study):
        next(t for t in study["tasks"] if t["name"] == task["name"])["epochs"] = 4

    runs = [run for run in ftmatrix.grid.runs(config) if run.variant.train_task == task["name"]]
    with edited_study(finished, edit):
        jobs = plan(finished)
    # Every run trained on that task (each rate of a sweep), none on another; its variants'
    # rates selected again, and only their cells can be evaluated again.
    assert jobs["train_variant"] == len(runs), jobs
    assert jobs["select_learning_rate"] == len({run.variant for run in runs}), jobs
    assert jobs.get("evaluate_cell", 0) <= len({run.variant for run in runs}) * len(config["tasks"])
    assert set(jobs) <= {"train_variant", "select_learning_rate", "tabulate_sweeps", "evaluate_cell",
                         "time_round", "score_cell"} | REPORTING, jobs


def test_checkpoint_bookkeeping_reruns_nothing(finished):
    with edited_study(finished, lambda s: s["train"].update(save_steps=s["train"]["save_steps"] + 7,
                                                            save_total_limit=5)):
        assert plan(finished) == {}


def test_a_new_demo_world_generator_rebuilds_the_world_and_what_was_made_from_it(finished):
    """A checkout whose demo-world generator changed (a new WORLD_VERSION) does not reuse a world
    an older one built: the world, the models pretrained on it, its tasks and everything after."""
    module = finished / "ftmatrix" / "demo_world.py"
    original = module.read_text()
    version = int(re.search(r"^WORLD_VERSION = (\d+)$", original, re.M).group(1))
    try:
        module.write_text(original.replace(f"WORLD_VERSION = {version}\n", f"WORLD_VERSION = {version + 1}\n"))
        jobs = plan(finished)
    finally:
        module.write_text(original)
    assert jobs.get("build_demo_world") == 1, jobs
    assert {"build_model", "prepare_task", "train_variant", "evaluate_cell"} <= set(jobs), jobs


def test_a_new_lora_rank_adds_only_its_own_trainings_and_cells(finished, demo_run):
    config = demo_run["config"]
    new_rank = 2
    assert new_rank not in config["lora"]["ranks"]

    def edit(study):
        study["lora"]["ranks"] = study["lora"]["ranks"] + [new_rank]

    after = study_after(finished, edit)
    new_runs = set(ftmatrix.grid.runs(after)) - set(ftmatrix.grid.runs(config))
    new_cells = set(ftmatrix.grid.cells(after)) - set(ftmatrix.grid.cells(config))
    assert {run.variant.rank for run in new_runs} == {new_rank} and new_cells
    with edited_study(finished, edit):
        jobs = plan(finished)
    assert jobs["train_variant"] == len(new_runs)
    assert jobs["select_learning_rate"] == len({run.variant for run in new_runs})
    assert jobs["evaluate_cell"] == len(new_cells)
    # The rounds time every cell the pipeline runs, the new ones too, so every such cell is re-scored.
    assert jobs["time_round"] == config["evaluate"]["timing_rounds"]
    assert jobs["score_cell"] == len(local_cells(after))
    assert set(jobs) <= {"train_variant", "select_learning_rate", "tabulate_sweeps", "evaluate_cell",
                         "score_cell", "time_round"} | REPORTING


def test_another_study_in_the_same_checkout_keeps_its_own_outputs(finished):
    """A second study (the demo under another name, smaller evaluation) plans every job in its own
    folders and touches none of the finished demo's."""
    study = yaml.safe_load((finished / "studies" / "demo.yaml").read_text())
    study["study"] = "demo-b"
    for task in study["tasks"]:
        task["eval_size"] = 20
    (finished / "studies" / "demo-b.yaml").write_text(yaml.safe_dump(study, sort_keys=False))
    try:
        done = subprocess.run([sys.executable, "-m", "snakemake", "-n", "--cores", "2", "--configfile",
                               "studies/demo-b.yaml"], cwd=finished, capture_output=True, text=True, timeout=300)
    finally:
        (finished / "studies" / "demo-b.yaml").unlink()
    text = done.stdout + done.stderr
    assert done.returncode == 0, text[-4000:]
    paths = set(re.findall(r"(?:results|data|logs)/[\w.-]+/[^\s,]*", text))
    assert "results/demo-b/matrix.csv" in paths and "results/demo-b/journal/journal.html" in paths
    assert not [p for p in paths if p.startswith(("results/demo/", "data/demo/tasks", "data/demo/models"))]
    # … and the finished demo is still finished.
    assert plan(finished) == {}


def test_a_declared_size_reruns_only_the_journal_and_is_checked_against_the_manifest(finished):
    """params_b sizes jobs and shapes no computed output (only the journal, whose GPU-hour
    projection is sized from it); 405 B for a model of a few hundred thousand parameters draws a
    warning naming the entry and the real size."""
    def huge(study):
        study["models"][0]["params_b"] = 405

    with edited_study(finished, huge):
        done = subprocess.run([sys.executable, "-m", "snakemake", "-n", "--cores", "2", "--configfile",
                               "studies/demo.yaml"], cwd=finished, capture_output=True, text=True, timeout=300)
    text = done.stdout + done.stderr
    assert done.returncode == 0, text[-3000:]
    assert jobs_in(text).items() <= {"build_journal": 1, "journal_pdf": 1, "all": 1}.items(), text[-3000:]
    assert "models entry 'demo-small' declares params_b: 405" in text and "set it to" in text


@contextlib.contextmanager
def edited_module(root, relative: str):
    """A module of the finished demo's own checkout edited (a line appended) for the length of a
    dry run, then restored byte for byte."""
    path = root / relative
    original = path.read_text()
    try:
        path.write_text(original + "\n# edited\n")
        yield
    finally:
        path.write_text(original)


def test_a_change_in_how_answers_are_scored_rescores_that_kind_from_its_saved_generations(finished, demo_run):
    """Scores are a function of the generations and the grading code: an edit of one kind's task
    module re-scores that kind's cells (seconds each) and the reporting, and generates, times and
    trains nothing."""
    kinds = {t["name"]: t["kind"] for t in demo_run["config"]["tasks"]}
    kind = kinds[sorted(kinds)[0]]
    with edited_module(finished, f"ftmatrix/tasks/{kind}.py"):
        jobs = plan(finished)
    cells = [c for c in ftmatrix.grid.cells(demo_run["config"]) if kinds[c.eval_task] == kind]
    assert jobs.get("score_cell") == len(cells), jobs
    assert set(jobs) - {"score_cell"} <= REPORTING, jobs
    # The shared grading code re-scores every cell.
    with edited_module(finished, "ftmatrix/metrics.py"):
        jobs = plan(finished)
    assert jobs.get("score_cell") == len(ftmatrix.grid.cells(demo_run["config"])), jobs
    assert set(jobs) - {"score_cell"} <= REPORTING, jobs


def test_another_version_of_the_maths_grader_rescores_every_cell_from_its_saved_generations(finished, demo_run,
                                                                                         tmp_path):
    """math-verify decides which maths answers count: a study planned where another version of it
    is installed (its distribution metadata first on the path, as after `pip install -U`)
    re-scores every cell and the reporting, and generates, times and trains nothing."""
    installed = importlib.metadata.version("math-verify")
    other = tmp_path / "site" / "math_verify-99.0.dist-info"
    other.mkdir(parents=True)
    (other / "METADATA").write_text("Metadata-Version: 2.1\nName: math-verify\nVersion: 99.0\n")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(other.parent),
                                                                   os.environ.get("PYTHONPATH")])))
    probe = subprocess.run([sys.executable, "-c", "import importlib.metadata as m; print(m.version('math-verify'))"],
                           env=env, capture_output=True, text=True, check=True)
    assert probe.stdout.strip() == "99.0" != installed
    jobs = plan(finished, env=env)
    assert jobs.get("score_cell") == len(ftmatrix.grid.cells(demo_run["config"])), jobs
    assert set(jobs) - {"score_cell"} <= REPORTING, jobs


@pytest.mark.parametrize("module, stages", [
    ("ftmatrix/analysis.py", {"analyse_matrix", "draw_figures", "build_journal", "journal_pdf"}),
    ("ftmatrix/figures.py", {"draw_figures", "build_journal", "journal_pdf"}),
    ("ftmatrix/findings.py", {"build_journal", "journal_pdf"}),
    ("ftmatrix/journal.py", {"build_journal", "journal_pdf"}),
])
def test_a_change_in_the_reporting_code_redoes_that_stage_and_what_follows_it(finished, module, stages):
    with edited_module(finished, module):
        jobs = plan(finished)
    assert set(jobs) - {"all"} == stages, jobs
