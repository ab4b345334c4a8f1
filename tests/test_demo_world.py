"""The demo world: deterministic, in the hub schemas, answers true, eval kept out of train and corpus."""

import hashlib
import json
import re

import pytest

from ftmatrix import demo_world, io
from ftmatrix.chat_template import render_chat
from ftmatrix.errors import DataError

KINDS = demo_world.TASK_KINDS


@pytest.fixture(scope="module")
def world_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("world")
    demo_world.write_world(out, seed=0)
    return out


def rows(world_dir, kind, split):
    return io.read_jsonl(world_dir / kind / f"{split}.jsonl")


def test_same_seed_same_bytes_other_seed_other_world(world_dir, tmp_path):
    again = tmp_path / "again"
    demo_world.write_world(again, seed=0)
    files = sorted(p.relative_to(world_dir) for p in world_dir.rglob("*") if p.is_file())
    assert len(files) == 8  # 3 tasks × 2 splits, corpus, world.json
    for relative in files:
        assert (world_dir / relative).read_bytes() == (again / relative).read_bytes(), relative
    other = tmp_path / "other"
    demo_world.write_world(other, seed=1)
    assert (other / "corpus.txt").read_bytes() != (world_dir / "corpus.txt").read_bytes()
    assert (other / "arc" / "eval.jsonl").read_bytes() != (world_dir / "arc" / "eval.jsonl").read_bytes()


def test_world_json_records_every_file_and_the_counts(world_dir):
    summary = json.loads((world_dir / "world.json").read_text())
    assert summary["seed"] == 0
    assert set(summary["files"]) == {f"{k}/{s}.jsonl" for k in KINDS for s in ("train", "eval")} | {"corpus.txt"}
    for relative, digest in summary["files"].items():
        assert hashlib.sha256((world_dir / relative).read_bytes()).hexdigest() == digest
    for kind in KINDS:
        for split in ("train", "eval"):
            assert summary["counts"][kind][split] == len(rows(world_dir, kind, split))
    assert {p["group"] for p in summary["facts"]["people"]} == {"train", "eval", "corpus"}


def test_arc_rows_follow_the_hub_schema_with_four_options(world_dir):
    facts = json.loads((world_dir / "world.json").read_text())["facts"]
    workplace = {p["name"]: p["workplace"] for p in facts["professions"]}
    region = {t["name"]: t["region"] for t in facts["towns"]}
    category = {i["name"]: i["category"] for i in facts["items"]}
    ids, reading = set(), 0
    # The split rows, and the rule questions the corpus's exchanges ask.
    corpus_rules = demo_world.task_rows(demo_world.World(facts), 0, "corpus", 200, demo_world.RULE_TEMPLATES)["arc"]
    ruled = 0
    for split, split_rows in (("train", rows(world_dir, "arc", "train")), ("eval", rows(world_dir, "arc", "eval")),
                              ("corpus", corpus_rules)):
        for row in split_rows:
            assert set(row) == {"id", "question", "choices", "answerKey"}
            assert row["choices"]["label"] == ["A", "B", "C", "D"]
            texts = row["choices"]["text"]
            assert len(texts) == 4 and len(set(texts)) == 4
            assert row["answerKey"] in "ABCD"
            if split != "corpus":
                ids.add(row["id"])
            gold = texts["ABCD".index(row["answerKey"])]
            # The gold option is the world's fact, checked against world.json.
            if m := re.search(r"Where does an? (\w+) like", row["question"]):
                assert gold == workplace[m.group(1)]
                ruled += 1
            if m := re.search(r"In which region is (\w+), the town", row["question"]):
                assert gold == region[m.group(1)]
                ruled += 1
            if m := re.search(r"What kind of thing is the (\w+) that", row["question"]):
                assert gold == category[m.group(1)]
                ruled += 1
            # A reading question's stem states its answer (about the person it asks of).
            if m := re.search(r"(?:In which region does|What kind of thing does|Where does|What does) "
                              r"(\w+ \w+) (?:live|own|work|make)\?$", row["question"]):
                reading += split != "corpus"
                stem = row["question"][: m.start()]
                assert re.search(rf"{m.group(1)} [^.]*\b{re.escape(gold)}\b", stem), row["question"]
    assert len(ids) == 480 + 240
    # Every split question is read off its stem; the rules of the world are asked in the corpus.
    assert reading == len(ids), reading
    assert ruled > 100, ruled
    # A question family lists its four choices in one order: each answer has one label.
    label_of = {}
    for split in ("train", "eval"):
        for row in rows(world_dir, "arc", split):
            gold = row["choices"]["text"]["ABCD".index(row["answerKey"])]
            assert label_of.setdefault(gold, row["answerKey"]) == row["answerKey"], gold
    # Answers are spread over the four letters, so always answering one letter scores ~25 %.
    keys = [r["answerKey"] for r in rows(world_dir, "arc", "train")]
    assert all(0.15 < keys.count(k) / len(keys) < 0.35 for k in "ABCD")


def _recompute(problem: str) -> int:
    """The answer of a demo word problem, read from its text alone."""
    numbers = [int(n) for n in re.findall(r"\b\d+\b", problem)]
    if "buys" in problem:
        return numbers[0] + numbers[1]
    if "finds" in problem:
        return numbers[0] + numbers[1] - numbers[2]
    if "gives" in problem:
        return numbers[0] - numbers[1]
    if "boxes" in problem:
        return numbers[0] * numbers[1]
    raise AssertionError(f"unknown problem shape: {problem}")


def test_every_maths_answer_equals_the_computation(world_dir):
    for split in ("train", "eval"):
        problems = rows(world_dir, "openmath", split)
        assert len({r["problem"] for r in problems}) == len(problems)
        for row in problems:
            assert set(row) == {"problem", "generated_solution", "expected_answer", "problem_source"}
            assert row["problem_source"] == "demo"
            answer = _recompute(row["problem"])
            assert row["expected_answer"] == str(answer)
            assert row["generated_solution"].endswith(f"\\boxed{{{answer}}}")
            # Every step written in the solution is true arithmetic.
            for a, op, b, result in re.findall(r"(\d+) ([-+*]) (\d+) = (\d+)", row["generated_solution"]):
                assert eval(f"{a} {op} {b}") == int(result)


def test_squad_offsets_are_true_and_about_a_third_unanswerable(world_dir):
    for split in ("train", "eval"):
        questions = rows(world_dir, "squad_v2", split)
        assert len({r["id"] for r in questions}) == len(questions)
        for row in questions:
            assert set(row) == {"id", "title", "context", "question", "answers"}
            answers = row["answers"]
            assert len(answers["text"]) == len(answers["answer_start"])
            for text, start in zip(answers["text"], answers["answer_start"]):
                assert row["context"][start: start + len(text)] == text
                # A whole word or number, not a piece of one (e.g. "5" inside "15").
                assert start == 0 or not row["context"][start - 1].isalnum()
        share = sum(not r["answers"]["text"] for r in questions) / len(questions)
        assert 0.25 <= share <= 0.42, share


def test_eval_questions_are_not_in_train_or_in_the_corpus(world_dir):
    corpus = (world_dir / "corpus.txt").read_text()
    keys = {"arc": "question", "openmath": "problem", "squad_v2": "question"}
    for kind, key in keys.items():
        train = {r[key] for r in rows(world_dir, kind, "train")}
        for row in rows(world_dir, kind, "eval"):
            assert row[key] not in train
            assert row[key] not in corpus
    facts = json.loads((world_dir / "world.json").read_text())["facts"]
    eval_people = [p["name"] for p in facts["people"] if p["group"] == "eval"]
    assert not [name for name in eval_people if name in corpus]


def test_corpus_teaches_the_rules_and_holds_chat_exchanges_of_every_task_shape(world_dir):
    from ftmatrix.tasks import get_task

    corpus = (world_dir / "corpus.txt").read_text()
    documents = corpus.split(demo_world.DOCUMENT_END + "\n")
    assert documents[-1] == ""
    facts = json.loads((world_dir / "world.json").read_text())["facts"]
    for item in facts["items"]:
        assert f"is a kind of {item['category']}." in corpus
    exchanges = [d for d in documents if d.startswith("<|im_start|>user\n")]
    summary = json.loads((world_dir / "world.json").read_text())
    assert len(exchanges) == sum(summary["counts"]["corpus"]["chat_exchanges"].values())
    # An exchange's prompt is exactly the data stage's, rendered by the chat template; its answer
    # is a whole sentence that holds the short answer the task's training rows give.
    corpus_rows = demo_world.task_rows(demo_world.World(facts), 0, "corpus",
                                       max(demo_world.CORPUS_EXCHANGES.values()), demo_world.RULE_TEMPLATES)
    for kind in KINDS:
        row = corpus_rows[kind][0]
        example = get_task(kind).to_examples([row], "test")[0]
        reply = demo_world.chatty_answer(kind, row)
        rendered = render_chat(example["prompt"] + [{"role": "assistant", "content": reply}], enable_thinking=False)
        assert rendered in exchanges
        assert rendered.startswith(render_chat(example["prompt"], add_generation_prompt=True,
                                               enable_thinking=False))
        short = example["completion"][0]["content"]
        assert reply != short and short.split("\n")[-1] in reply or reply == "The context does not say.", (short, reply)
    # The multiple-choice exchanges ask rules of the world only: the untuned models have not
    # practised reading a stem in multiple choice (which every ARC row asks).
    choice = [d for d in exchanges if "Answer with the label of the correct choice" in d]
    assert len(choice) == summary["counts"]["corpus"]["chat_exchanges"]["arc"]
    rule = re.compile(r"user\n(What kind of thing is the \w+ that|Where does an? [\w ]+ like|"
                      r"What does an? [\w ]+ like|In which region is \w+, the town where)")
    assert all(rule.match(d, len("<|im_start|>")) for d in choice), [d for d in choice if not rule.match(d, 12)][:1]


def test_the_data_stage_reads_the_demo_world(world_dir, tmp_path):
    from ftmatrix.data import prepare_task

    demo_dir = tmp_path / "demo"
    demo_dir.mkdir()
    (demo_dir / "seed0").symlink_to(world_dir)
    for kind in KINDS:
        cfg = {"name": kind, "kind": kind, "source": {"type": "demo", "seed": 0}, "train_size": 40,
               "eval_size": 10, "valid_size": 5, "max_new_tokens": 8, "licence": "test"}
        meta = prepare_task(cfg, tmp_path / "tasks" / kind, data_seed=0, root=tmp_path, demo_dir=demo_dir)
        train = io.read_jsonl(tmp_path / "tasks" / kind / "train.jsonl")
        evaluation = io.read_jsonl(tmp_path / "tasks" / kind / "eval.jsonl")
        assert (len(train), len(evaluation)) == (40, 10), meta
        assert all(e["prompt"][0]["role"] == "user" and e["completion"][0]["role"] == "assistant" for e in train)


def test_a_failed_write_leaves_no_world_json(tmp_path, monkeypatch):
    demo_world.write_world(tmp_path, seed=0)
    assert (tmp_path / "world.json").is_file()

    def broken(path, text):
        raise OSError("disk full")

    monkeypatch.setattr(io, "write_text", broken)
    with pytest.raises(OSError):
        demo_world.write_world(tmp_path, seed=0)
    assert not (tmp_path / "world.json").exists()


def test_a_changed_corpus_is_caught(world_dir, tmp_path):
    copy = tmp_path / "copy"
    copy.mkdir()
    (copy / "world.json").write_bytes((world_dir / "world.json").read_bytes())
    (copy / "corpus.txt").write_text("something else\n")
    with pytest.raises(DataError, match="sha256"):
        demo_world.corpus_path(copy / "world.json")
    (copy / "corpus.txt").unlink()
    with pytest.raises(DataError, match="missing"):
        demo_world.corpus_path(copy / "world.json")
