"""Decontamination (ftmatrix.decontaminate): training and validation rows that overlap any eval row
of the study are left out, however the copy is disguised; eval rows are never dropped."""

from __future__ import annotations

import json
import random

import pytest

from ftmatrix import io
from ftmatrix.data import prepare_task
from ftmatrix.decontaminate import decontaminate_task, normalise
from ftmatrix.errors import DataError
from ftmatrix.records import Decontamination

WORDS = ("river mountain copper planet shadow lantern harvest engine crystal meadow signal garden voyage "
         "thunder pocket silver orbit canyon feather marble whisper glacier ember timber").split()


def arc_rows(n: int, seed: int = 0) -> list[dict]:
    """ARC-shaped rows (hub schema), each question 16 distinct-ish words long."""
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        question = " ".join(rng.choice(WORDS) for _ in range(16)) + f" number {i}?"
        rows.append({"id": f"q{i}", "question": question,
                     "choices": {"text": [f"answer {i} one", f"answer {i} two", f"answer {i} three"],
                                 "label": ["A", "B", "C"]},
                     "answerKey": "B"})
    return rows


def example(ident: str, question: str, answer: str = "B") -> dict:
    prompt = (f"Question: {question}\n\nA. one\nB. two\nC. three\n\n"
              f"Answer with the label of the correct choice (A, B or C) and nothing else.")
    return {"id": ident, "prompt": [{"role": "user", "content": prompt}],
            "completion": [{"role": "assistant", "content": answer}], "reference": {"label": answer}}


def run(tmp_path, train, valid, evals, **kw):
    folder = tmp_path / "in"
    folder.mkdir(exist_ok=True)
    io.write_jsonl(folder / "train.jsonl", train)
    io.write_jsonl(folder / "valid.jsonl", valid)
    eval_files = {}
    for name, rows in evals.items():
        eval_files[name] = folder / f"{name}-eval.jsonl"
        io.write_jsonl(eval_files[name], rows)
    out = tmp_path / "out"
    report = decontaminate_task("t", folder / "train.jsonl", folder / "valid.jsonl", eval_files, out / "train.jsonl",
                                out / "valid.jsonl", out / "report.json", **kw)
    return report, io.read_jsonl(out / "train.jsonl"), io.read_jsonl(out / "valid.jsonl")


def questions(n, seed=0):
    return [row["question"] for row in arc_rows(n, seed)]


def test_normalisation_sees_through_case_punctuation_width_and_invisible_characters():
    plain = normalise("What is the boiling point of water")
    for disguised in ("What is the boiling point of water ?", "what is the BOILING point of water",
                      "What is the boiling\u200b point of water", "What\u00a0is the boiling point of\n water!",
                      "Ｗｈａｔ is the boiling point of water", "What is the boil\u00ading point of water"):
        assert normalise(disguised) == plain, disguised


@pytest.mark.parametrize("disguise", [lambda q: q + " ?", lambda q: q.replace(" ", " \u200b", 3),
                                      lambda q: q.upper(), lambda q: "\ufeff" + q.replace("?", " ? ")])
def test_eval_rows_copied_into_training_with_a_disguise_are_all_dropped(tmp_path, disguise):
    qs = questions(60)
    evals = [example(f"e{i}", q) for i, q in enumerate(qs[:20])]
    train = [example(f"t{i}", disguise(q)) for i, q in enumerate(qs[:20])]        # 20 leaked copies
    train += [example(f"t{i}", q) for i, q in enumerate(qs[20:], start=20)]     # 40 clean rows
    report, kept, _ = run(tmp_path, train, [], {"t": evals})
    assert report.counts["train"] == {"rows": 60, "overlapping": 20, "dropped": 20, "written": 40}
    assert sorted(r["id"] for r in kept) == sorted(f"t{i}" for i in range(20, 60))
    assert report.overlapping_by_eval_task == {"t": 20}
    assert sorted(report.eval_rows_overlapping["t"]) == sorted(f"e{i}" for i in range(20))


def test_a_shared_run_of_thirteen_words_inside_a_longer_prompt_is_overlap(tmp_path):
    qs = questions(30)
    evals = [example(f"e{i}", q) for i, q in enumerate(qs[:10])]
    words = qs[0].split()
    embedded = "Background reading for this unit. " + " ".join(words[2:15]) + " and then something else entirely."
    train = [example("t0", embedded), example("t1", " ".join(words[2:14]) + " different ending here")]
    train += [example(f"t{i}", q) for i, q in enumerate(qs[10:], start=2)]
    report, kept, _ = run(tmp_path, train, [], {"t": evals})
    assert "t0" not in {r["id"] for r in kept} and len(kept) == 21  # 13 shared words: out; 12: kept
    assert report.overlaps[0]["reason"] == "shares 13 words"


def test_the_prompts_fixed_wording_is_not_overlap(tmp_path):
    qs = questions(40)
    report, kept, _ = run(tmp_path, [example(f"t{i}", q) for i, q in enumerate(qs[:30])], [],
                          {"t": [example(f"e{i}", q) for i, q in enumerate(qs[30:])]})
    assert report.counts["train"]["overlapping"] == 0 and len(kept) == 30
    assert report.template_ngrams > 0


def test_validation_rows_that_overlap_eval_rows_are_dropped_too(tmp_path):
    qs = questions(30)
    evals = [example(f"e{i}", q) for i, q in enumerate(qs[:5])]
    valid = [example("v0", qs[0] + "!"), example("v1", qs[10])]
    report, _, kept_valid = run(tmp_path, [example(f"t{i}", q) for i, q in enumerate(qs[11:])], valid,
                                {"t": evals})
    assert [r["id"] for r in kept_valid] == ["v1"]
    assert report.counts["valid"] == {"rows": 2, "overlapping": 1, "dropped": 1, "written": 1}


def test_warn_keeps_the_rows_and_stop_names_them(tmp_path):
    qs = questions(30)
    evals = [example("e0", qs[0])]
    train = [example("t0", qs[0] + " ?")] + [example(f"t{i}", q) for i, q in enumerate(qs[1:], start=1)]
    report, kept, _ = run(tmp_path, train, [], {"t": evals}, policy="warn")
    assert len(kept) == 30 and report.counts["train"]["overlapping"] == 1 and report.counts["train"]["dropped"] == 0
    with pytest.raises(DataError, match=r"train\.jsonl, line 1 \(id t0\) overlaps t eval row e0.*policy: drop"):
        run(tmp_path, train, [], {"t": evals}, policy="stop")


def test_kept_rows_are_byte_identical_and_the_report_reads_back(tmp_path):
    qs = questions(20)
    train = [example(f"t{i}", q) for i, q in enumerate(qs[:15])]
    run(tmp_path, train, [], {"t": [example(f"e{i}", q) for i, q in enumerate(qs[15:])]})
    assert (tmp_path / "out" / "train.jsonl").read_bytes() == (tmp_path / "in" / "train.jsonl").read_bytes()
    report = Decontamination.read(tmp_path / "out" / "report.json")
    assert report.counts["train"]["written"] == 15
    assert set(report.provenance["inputs"]) >= {str(tmp_path / "in" / "train.jsonl")}


def test_two_tasks_from_one_source_with_different_eval_sizes_leak_nothing(tmp_path):
    """The issue's case: two tasks carved from one file with different eval_size; the task with
    the smaller eval set trains on the other's extra eval rows until decontaminated."""
    source = tmp_path / "arc.jsonl"
    source.write_text("".join(json.dumps(r) + "\n" for r in arc_rows(200)))
    tasks = {}
    for name, eval_size in (("small", 40), ("large", 80)):
        cfg = {"name": name, "kind": "arc", "train_size": 1000, "eval_size": eval_size, "valid_size": 10,
               "source": {"type": "local", "format": "hub_jsonl", "train": str(source)}}
        prepare_task(cfg, tmp_path / name, data_seed=0, root=tmp_path)
        tasks[name] = tmp_path / name
    eval_ids = {n: {r["id"] for r in io.read_jsonl(f / "eval.jsonl")} for n, f in tasks.items()}
    small_train = {r["id"] for r in io.read_jsonl(tasks["small"] / "train.jsonl")}
    leaked = small_train & eval_ids["large"]
    assert len(leaked) >= 20                                          # the contamination is real
    out = tmp_path / "clean"
    report = decontaminate_task("small", tasks["small"] / "train.jsonl", tasks["small"] / "valid.jsonl",
                                {n: f / "eval.jsonl" for n, f in tasks.items()}, out / "train.jsonl",
                                out / "valid.jsonl", out / "report.json")
    kept = {r["id"] for r in io.read_jsonl(out / "train.jsonl")}
    kept_valid = {r["id"] for r in io.read_jsonl(out / "valid.jsonl")}
    assert not kept & (eval_ids["small"] | eval_ids["large"])
    assert not kept_valid & (eval_ids["small"] | eval_ids["large"])
    assert report.overlapping_by_eval_task.get("large", 0) >= len(leaked)
    assert kept == small_train - leaked                               # nothing else was lost
    # The eval files are untouched.
    assert {r["id"] for r in io.read_jsonl(tasks["small"] / "eval.jsonl")} == eval_ids["small"]


def test_the_journal_says_what_was_compared_and_left_out(tmp_path):
    from ftmatrix.journal import decontamination_notes

    qs = questions(30)
    train = [example("t0", qs[0] + " ?")] + [example(f"t{i}", q) for i, q in enumerate(qs[1:20], start=1)]
    evals = [example("e0", qs[0])] + [example(f"e{i}", q) for i, q in enumerate(qs[25:], start=1)]
    run(tmp_path, train, [example("v0", qs[20])], {"t": evals})
    (note,) = decontamination_notes([tmp_path / "out" / "report.json"])
    assert note.startswith("t: 1 of 20 training rows and 0 of 1 validation rows overlapped eval rows")
    assert "by eval task — t: 1); left out of training" in note


def test_training_reads_the_decontaminated_rows(tmp_path, root):
    """In the workflow, each training job's data is decontaminate_task's output, never the
    prepared file itself (a dry run of the real Snakemake)."""
    import subprocess
    import sys

    done = subprocess.run([sys.executable, "-m", "snakemake", "-s", str(root / "Snakefile"), "-d", str(tmp_path),
                           "-n", "-p", "--cores", "1", "train", "--configfile",
                           str(root / "studies" / "slurm-test.yaml")], capture_output=True, text=True, timeout=300)
    text = done.stdout + done.stderr
    assert done.returncode == 0, text[-3000:]
    jobs = text.split("\nrule ")
    training = [job for job in jobs if job.startswith("train_variant:")]
    assert training
    for job in training:
        line = next(l for l in job.splitlines() if l.strip().startswith("input:"))
        assert "data/slurm-test/decontaminated/arc/train.jsonl" in line
        assert "data/slurm-test/decontaminated/arc/valid.jsonl" in line
        assert "data/slurm-test/tasks/arc/train.jsonl" not in line
