"""The demo world: a small fictional world, generated from a seed, from which the demo
study's three tasks and its pretraining corpus are drawn.

The world has regions and towns, professions (each with a workplace and a product),
invented things sorted into categories (a *glorb* is a fruit, a *trask* is a tool …) and
people, each with a profession, a home town, a possession, an age and a friend. Its
rules ("a glorb is a fruit", "a baker works in a bakery", "Tulvar lies in Osk") are the
knowledge the corpus teaches and its multiple-choice exchanges ask about; its people are who
the multiple-choice questions, the word problems and the reading passages are about.

The tasks are sized for models of a few hundred thousand parameters, pretrained for about
a minute on a CPU: every skill they ask for is one such a model learns from the corpus or
from a few hundred training rows. A multiple-choice question states the fact it asks in its
stem (one to three sentences about a person, as many ARC questions describe a situation before
asking), so it is answered by reading the stem and naming the choice's label; the corpus's
multiple-choice exchanges ask rules of the world instead, so the untuned models know the form
but have not practised reading in it. The four choices of a question family are always listed
in one order (the four regions; a group of four workplaces …), so answering needs the stem's
fact and the choice's label, not a search through shuffled options. Reading passages state one
to three facts about a person, and each question asks for a fact the passage states (its region,
what kind of thing they own, where they work, what they make) or one it leaves out
(unanswerable). Word problems need a sum, a difference or a product of small numbers.

People are split into three groups that never meet: *train* people appear only in the
training rows, *eval* people only in the evaluation rows, and *corpus* people only in the
pretraining corpus. So no evaluation question (or its answer) is in the training rows or
in the corpus, while the rules of the world are taught by the corpus.

``write_world(out_dir, seed)`` writes, in the hub schemas the data stage reads:

    arc/{train,eval}.jsonl        allenai/ai2_arc: id, question, choices{text,label}, answerKey
    openmath/{train,eval}.jsonl   nvidia/OpenMathInstruct-2: problem, generated_solution,
                                  expected_answer, problem_source
    squad_v2/{train,eval}.jsonl   rajpurkar/squad_v2: id, title, context, question,
                                  answers{text,answer_start}
    corpus.txt                    the pretraining corpus (documents end in <|endoftext|>)
    world.json                    written last: facts, counts, seed, sha256 of every file

The corpus teaches the rules in plain sentences and the arithmetic the word problems use;
drills practise the skills the tasks need (a passage followed by every question about it,
answered or "unanswerable"; a question family's four labelled options and which label names
what); and chat exchanges of all three task shapes about the corpus people, with prompts
built by the task modules and rendered with the project's chat template, teach the chat
format. The exchanges answer the way an untuned chat model does, in a whole sentence ("The
answer is B: forge.", "Tulvar lives in Osk.", "Let's think step by step. …"), while the
tasks' training rows answer in the short form the prompts ask for. So the untuned models
answer at length and with some skill, the larger one with more; fine-tuning teaches the short
form and sharpens the skill, and a model tuned on one task carries its short answers and its
knowledge to the others, or loses their format: tuned on reading passages, a model can answer
a reading question in multiple choice with the choice's words, which ARC's lenient grading
credits; tuned on multiple choice, it answers a passage's question with a label, which no
SQuAD scorer credits.
Same seed, same bytes.
"""

from __future__ import annotations

import hashlib
import random
import re
from pathlib import Path

from ftmatrix import io

# The generator's version: a param of rule build_demo_world, so a world built by an older
# generator is built again (and everything made from it) instead of silently reused.
# 2: learnable tasks (question families, 1–3-fact passages, whole-sentence chat exchanges).
# 3: half the multiple-choice questions state the fact they ask in their stem (reading questions).
# 4: every multiple-choice question of the task rows is a reading question (rule questions only
#    in the corpus's exchanges); 240 eval rows a task.
WORLD_VERSION = 4

# How many rows each split holds (the data stage subsamples train_size / eval_size).
SPLIT_ROWS = {"train": 480, "eval": 240}
# Chat exchanges of each task shape in the corpus.
CORPUS_EXCHANGES = {"arc": 300, "openmath": 1000, "squad_v2": 1000}
# People in each group (names never repeat across groups).
GROUP_PEOPLE = {"train": 200, "eval": 80, "corpus": 2000}
# Paragraphs of plain facts and of arithmetic in the corpus.
FACT_PARAGRAPHS = 360
ARITHMETIC_PARAGRAPHS = 400
CHOICE_DRILLS = 3000

DOCUMENT_END = "<|endoftext|>"
LABELS = ["A", "B", "C", "D"]

CATEGORIES = ["fruit", "tool", "animal", "gem", "instrument", "herb", "drink", "boat"]
ITEMS_PER_CATEGORY = 5
# (profession, workplace, product)
PROFESSIONS = [
    ("baker", "bakery", "bread"),
    ("smith", "forge", "nails"),
    ("miller", "mill", "flour"),
    ("fisher", "harbour", "fish"),
    ("farmer", "field", "grain"),
    ("weaver", "loom house", "cloth"),
    ("healer", "infirmary", "medicine"),
    ("scribe", "library", "books"),
    ("miner", "mine", "ore"),
    ("brewer", "brewery", "ale"),
    ("carpenter", "sawmill", "chairs"),
    ("potter", "kiln", "bowls"),
]
FIRST_NAMES = 48
LAST_NAMES = 48
N_REGIONS = 4
TOWNS_PER_REGION = 4

_ONSETS = ["b", "d", "f", "g", "k", "l", "m", "n", "p", "r", "s", "t", "v", "z",
           "br", "dr", "gr", "kr", "st", "tr", "sk", "pl"]
_VOWELS = ["a", "e", "i", "o", "u", "a", "e", "o"]
_CODAS = ["", "", "", "n", "l", "r", "s", "k", "m", "nd", "rn", "sk"]


# ---------------------------------------------------------------------------------------
# The world's facts
# ---------------------------------------------------------------------------------------

class _Namer:
    """Invented words, never the same twice in one world."""

    def __init__(self, rng: random.Random):
        self.rng = rng
        self.used: set[str] = set()

    def word(self, syllables: int) -> str:
        while True:
            parts = [self.rng.choice(_ONSETS) + self.rng.choice(_VOWELS) for _ in range(syllables)]
            word = "".join(parts) + self.rng.choice(_CODAS)
            if word not in self.used and len(word) >= 3:
                self.used.add(word)
                return word


def article(word: str) -> str:
    return "an" if word[0] in "aeiou" else "a"


def make_facts(seed: int) -> dict:
    """The world: regions, towns, categories of things, professions and people."""
    rng = random.Random(f"ftmatrix-demo-world-{seed}")
    namer = _Namer(rng)
    regions = [namer.word(2).capitalize() for _ in range(N_REGIONS)]
    towns = []
    for region in regions:
        for _ in range(TOWNS_PER_REGION):
            towns.append({"name": namer.word(rng.choice([2, 3])).capitalize(), "region": region})
    items = []
    for category in CATEGORIES:
        for _ in range(ITEMS_PER_CATEGORY):
            items.append({"name": namer.word(rng.choice([1, 2])), "category": category})
    professions = [{"name": p, "workplace": w, "product": prod} for p, w, prod in PROFESSIONS]

    # Names come from small pools (so each is a word the tokenizer learns whole); full names are unique.
    first_pool = [namer.word(2).capitalize() for _ in range(FIRST_NAMES)]
    last_pool = [namer.word(2).capitalize() for _ in range(LAST_NAMES)]
    pairs = [(f, l) for f in first_pool for l in last_pool]
    rng.shuffle(pairs)
    people = []
    for group, count in GROUP_PEOPLE.items():
        members = []
        for first, last in pairs[len(people): len(people) + count]:
            members.append({
                "name": f"{first} {last}",
                "first": first,
                "group": group,
                "profession": rng.choice(professions)["name"],
                "town": rng.choice(towns)["name"],
                "item": rng.choice(items)["name"],
                "age": rng.randint(18, 79),
                "batches": rng.randint(2, 19),
            })
        for person in members:
            friend = rng.choice([m for m in members if m["first"] != person["first"]])
            person["friend"] = friend["name"]
        people += members
    return {"regions": regions, "towns": towns, "items": items, "professions": professions,
            "people": people}


class World:
    """Look-ups over the facts."""

    def __init__(self, facts: dict):
        self.facts = facts
        self.towns = {t["name"]: t for t in facts["towns"]}
        self.items = {i["name"]: i for i in facts["items"]}
        self.professions = {p["name"]: p for p in facts["professions"]}
        self.people = {p["name"]: p for p in facts["people"]}

    def group(self, name: str) -> list[dict]:
        return [p for p in self.facts["people"] if p["group"] == name]

    def items_in(self, category: str) -> list[str]:
        return [i["name"] for i in self.facts["items"] if i["category"] == category]


def _families(options: list[str]) -> list[list[str]]:
    """Options in fixed groups of four, in a fixed order: a question's four choices are the group its answer is in."""
    return [options[i: i + 4] for i in range(0, len(options), 4)]


def _fixed_options(gold: str, options: list[str]) -> tuple[list[str], str]:
    family = next(f for f in _families(options) if gold in f)
    return list(family), LABELS[family.index(gold)]


def _row_id(seed: int, kind: str, split: str, index: int) -> str:
    return hashlib.sha1(f"demo/{seed}/{kind}/{split}/{index}".encode()).hexdigest()[:24]


def _arc_question(world: World, rng: random.Random, person: dict, template: str) -> tuple[str, list[str], str]:
    # The person's name stands between the rule's words and the choices: questions about one
    # rule share no long run of words (rule decontaminate_task would take them for copies).
    name, town = person["name"], person["town"]
    if template.startswith("reading_"):
        return _reading_question(world, rng, person, template.removeprefix("reading_"))
    if template == "category":
        item = rng.choice(world.facts["items"])
        question = f"What kind of thing is the {item['name']} that {name} found?"
        texts, label = _fixed_options(item["category"], CATEGORIES)
    elif template == "workplace":
        profession = world.professions[person["profession"]]
        question = f"Where does {article(profession['name'])} {profession['name']} like {name} most likely work?"
        texts, label = _fixed_options(profession["workplace"], [p["workplace"] for p in world.facts["professions"]])
    elif template == "product":
        profession = world.professions[person["profession"]]
        question = f"What does {article(profession['name'])} {profession['name']} like {name} most likely make?"
        texts, label = _fixed_options(profession["product"], [p["product"] for p in world.facts["professions"]])
    elif template == "region":
        question = f"In which region is {town}, the town where {name} was born?"
        texts, label = _fixed_options(world.towns[town]["region"], sorted(world.facts["regions"]))
    else:  # pragma: no cover - the list of templates is fixed below
        raise ValueError(template)
    return question, texts, label


# A reading question's fact (a key of _person_facts), its question (as SQuAD v2's rows ask it)
# and the question family of its answer.
READING = {
    "region": ("town", "In which region does {name} live?"),
    "category": ("item", "What kind of thing does {name} own?"),
    "workplace": ("job", "Where does {name} work?"),
    "product": ("job", "What does {name} make?"),
}


_READING_ASK = re.compile("(?:" + "|".join(re.escape(q).replace(re.escape("{name}"), r"\w+ \w+")
                                            for _, q in READING.values()) + ")$")


def is_reading_question(question: str) -> bool:
    """Whether a multiple-choice question of the demo world is a reading one (its stem states the answer)."""
    return bool(_READING_ASK.search(question))


def _reading_question(world: World, rng: random.Random, person: dict, asked: str) -> tuple[str, list[str], str]:
    """A question whose stem states the fact it asks (with up to two others), as many ARC
    questions describe a situation first: answered by reading, not by a rule of the world."""
    fact, question = READING[asked]
    facts = _person_facts(world, person)
    others = [key for key in facts if key != fact]
    rng.shuffle(others)
    kept = [fact] + others[: rng.randint(0, 2)]
    rng.shuffle(kept)
    stem = " ".join(facts[key] for key in kept)
    profession = world.professions[person["profession"]]
    gold, options = {
        "region": (world.towns[person["town"]]["region"], sorted(world.facts["regions"])),
        "category": (world.items[person["item"]]["category"], CATEGORIES),
        "workplace": (profession["workplace"], [p["workplace"] for p in world.facts["professions"]]),
        "product": (profession["product"], [p["product"] for p in world.facts["professions"]]),
    }[asked]
    texts, label = _fixed_options(gold, options)
    return f"{stem} {question.format(name=person['name'])}", texts, label


# The task rows' questions state the fact they ask in their stem (reading questions); the
# corpus's multiple-choice exchanges ask rules of the world (rule questions). So the untuned
# models know the multiple-choice form and have practised reading on passages, not in multiple
# choice; a model tuned on reading passages can carry its reading over (a transfer), one tuned
# on the multiple-choice rows learns it in the form. With half the rows rule questions (world
# version 3), a model tuned on SQuAD v2 answered those "unanswerable", and whether that cost
# more than its reading gained was a draw of pretraining (docs/performance.md).
RULE_TEMPLATES = ["category", "workplace", "product", "region"]
ARC_TEMPLATES = ["reading_region", "reading_category", "reading_workplace", "reading_product"]


def arc_rows(world: World, rng: random.Random, people: list[dict], n: int, seed: int, split: str,
             templates: list[str] = ARC_TEMPLATES) -> list[dict]:
    """Four-option multiple choice about one person each: a fact the stem states (reading
    templates) or a rule of the world (RULE_TEMPLATES)."""
    pairs = [(p, t) for p in people for t in templates]
    rng.shuffle(pairs)
    if n > len(pairs):
        raise ValueError(f"the demo world has only {len(pairs)} ARC questions for {split}, asked for {n}")
    rows = []
    for index, (person, template) in enumerate(pairs[:n]):
        question, texts, label = _arc_question(world, rng, person, template)
        rows.append({"id": f"Demo_{_row_id(seed, 'arc', split, index)}", "question": question,
                     "choices": {"text": texts, "label": list(LABELS)}, "answerKey": label})
    return rows


def _plural(word: str) -> str:
    return word + ("es" if word.endswith(("s", "sh", "ch", "x", "z")) else "s")


def _maths_problem(rng: random.Random, person: dict, world: World, template: str) -> tuple[str, str, int]:
    first, name = person["first"], person["name"]
    things = _plural(person["item"])
    friend = world.people[person["friend"]]["first"]
    if template == "add":
        a, b = rng.randint(2, 9), rng.randint(2, 9)
        result = a + b
        problem = f"{name} has {a} {things}. {first} buys {b} more {things}. How many {things} does {first} have now?"
        steps = f"{first} starts with {a} {things} and buys {b} more, so {a} + {b} = {result}."
    elif template == "subtract":
        a = rng.randint(6, 18)
        b = rng.randint(1, min(9, a - 1))
        result = a - b
        problem = f"{name} has {a} {things} and gives {b} of them to {friend}. How many {things} does {first} have left?"
        steps = f"{first} starts with {a} {things} and gives away {b}, so {a} - {b} = {result}."
    elif template == "multiply":
        a, b = rng.randint(2, 6), rng.randint(2, 6)
        result = a * b
        problem = f"{name} fills {a} boxes with {b} {things} in each box. How many {things} does {first} pack in all?"
        steps = f"There are {a} boxes of {b} {things}, so {a} * {b} = {result}."
    elif template == "two_step":
        a, b = rng.randint(2, 9), rng.randint(2, 9)
        c = rng.randint(1, min(9, a + b - 1))
        result = a + b - c
        problem = (f"{name} has {a} {things}, finds {b} more and then gives {c} to {friend}. "
                   f"How many {things} does {first} have now?")
        steps = f"First {a} + {b} = {a + b}. Then {a + b} - {c} = {result}."
    else:  # pragma: no cover
        raise ValueError(template)
    return problem, f"{steps}\n\\boxed{{{result}}}", result


MATHS_TEMPLATES = ["add", "subtract", "multiply", "two_step"]


def openmath_rows(world: World, rng: random.Random, people: list[dict], n: int) -> list[dict]:
    """Arithmetic word problems with short worked solutions ending in \\boxed{N}."""
    rows, seen = [], set()
    while len(rows) < n:
        person = rng.choice(people)
        template = MATHS_TEMPLATES[len(rows) % len(MATHS_TEMPLATES)]
        problem, solution, result = _maths_problem(rng, person, world, template)
        if problem in seen:
            continue
        seen.add(problem)
        rows.append({"problem": problem, "generated_solution": solution,
                     "expected_answer": str(result), "problem_source": "demo"})
    return rows


def _person_facts(world: World, person: dict) -> dict[str, str]:
    """The sentences a passage (or a reading question's stem) can state about a person.

    Every sentence names the person in full, and no run of words between names is long: runs of
    13 words shared by a training and an eval row (a passage's end and the question's start
    included) would count as overlap, and rule decontaminate_task would drop the training row.
    """
    name, first = person["name"], person["first"]
    profession = world.professions[person["profession"]]
    item = world.items[person["item"]]
    town = world.towns[person["town"]]
    return {
        "town": f"{name} lives in {town['name']}, in {town['region']}.",
        "item": f"{name} owns {article(item['name'])} {item['name']}, a kind of {item['category']}.",
        "job": f"{name} works in the {profession['workplace']}, where {first} makes {profession['product']}.",
    }


def _passage(world: World, rng: random.Random, person: dict) -> tuple[list[str], dict[str, int]]:
    """One to three sentences about one person; returns the sentences and, per fact, its sentence index."""
    facts = _person_facts(world, person)
    keys = list(facts)
    rng.shuffle(keys)
    kept = keys[: rng.randint(1, 3)]
    sentences, where = [], {}
    for key in kept:
        where[key] = len(sentences)
        sentences.append(facts[key])
    return sentences, where


def _span(sentences: list[str], index: int, text: str) -> tuple[str, int]:
    """(text, character offset in the joined passage) of ``text`` inside sentence ``index``."""
    start = sum(len(s) + 1 for s in sentences[:index])
    match = re.search(rf"(?<!\w){re.escape(text)}(?!\w)", sentences[index])
    if match is None:  # pragma: no cover - the templates guarantee it
        raise ValueError(f"{text!r} is not in {sentences[index]!r}")
    return text, start + match.start()


def _squad_questions(world: World, person: dict, sentences: list[str], where: dict[str, int]) -> tuple[list, list]:
    """(answerable, unanswerable) questions about one passage; answers as (text, start) lists."""
    name = person["name"]
    profession = world.professions[person["profession"]]
    item = world.items[person["item"]]
    region = world.towns[person["town"]]["region"]
    asks = [
        ("town", f"In which region does {name} live?", [region]),
        ("item", f"What kind of thing does {name} own?", [item["category"], f"a kind of {item['category']}"]),
        ("job", f"Where does {name} work?", [profession["workplace"], f"the {profession['workplace']}"]),
        ("job", f"What does {name} make?", [profession["product"]]),
    ]
    answerable, unanswerable = [], []
    for key, question, golds in asks:
        if key in where:
            answerable.append((question, [_span(sentences, where[key], text) for text in golds]))
        else:
            unanswerable.append((question, []))
    return answerable, unanswerable


def squad_rows(world: World, rng: random.Random, people: list[dict], n: int, seed: int, split: str) -> list[dict]:
    """Reading comprehension: a passage about a person, three questions each, about a third unanswerable."""
    rows: list[dict] = []
    order = list(people)
    rng.shuffle(order)
    for person in order:
        if len(rows) >= n:
            break
        sentences, where = _passage(world, rng, person)
        context = " ".join(sentences)
        answerable, unanswerable = _squad_questions(world, person, sentences, where)
        rng.shuffle(answerable)
        rng.shuffle(unanswerable)
        picked = []
        for _ in range(3):
            want_none = rng.random() < 1 / 3
            pool = unanswerable if (want_none and unanswerable) or not answerable else answerable
            picked.append(pool.pop())
        for question, answers in picked[: n - len(rows)]:
            rows.append({
                "id": _row_id(seed, "squad_v2", split, len(rows)),
                "title": person["name"].replace(" ", "_"),
                "context": context,
                "question": question,
                "answers": {"text": [a for a, _ in answers], "answer_start": [s for _, s in answers]},
            })
    if len(rows) < n:
        raise ValueError(f"the demo world has only {len(rows)} SQuAD questions for {split}, asked for {n}")
    return rows


# The task kinds the world writes rows for (data/demo/seed<n>/<kind>/): a task whose source is
# the demo world must be of one of these kinds.
TASK_KINDS = ("arc", "openmath", "squad_v2")


def task_rows(world: World, seed: int, group: str, n: int,
              arc_templates: list[str] = ARC_TEMPLATES) -> dict[str, list[dict]]:
    people = world.group(group)
    rng = random.Random(f"ftmatrix-demo-rows-{seed}-{group}")
    return {
        "arc": arc_rows(world, rng, people, n, seed, group, arc_templates),
        "openmath": openmath_rows(world, rng, people, n),
        "squad_v2": squad_rows(world, rng, people, n, seed, group),
    }


# ---------------------------------------------------------------------------------------
# The pretraining corpus
# ---------------------------------------------------------------------------------------

def _rule_sentences(world: World) -> list[list[str]]:
    """For every rule of the world, several ways of saying it."""
    rules = []
    for item in world.facts["items"]:
        name, category = item["name"], item["category"]
        rules.append([f"{article(name).capitalize()} {name} is {article(category)} {category}.",
                      f"The {name} is a kind of {category}.",
                      f"{_plural(name).capitalize()} are {category if category == 'fruit' else _plural(category)}.",
                      f"If you see {article(name)} {name}, you are looking at {article(category)} {category}."])
    for p in world.facts["professions"]:
        prof, work, prod = p["name"], p["workplace"], p["product"]
        rules.append([f"{article(prof).capitalize()} {prof} works in {article(work)} {work}.",
                      f"Every {prof} spends the day at the {work}.",
                      f"The {work} is where {article(prof)} {prof} works."])
        rules.append([f"{article(prof).capitalize()} {prof} makes {prod}.",
                      f"{prod.capitalize()} is made by {article(prof)} {prof}.",
                      f"Every {prof} makes {prod} for a living."])
    for town in world.facts["towns"]:
        rules.append([f"{town['name']} is a town in {town['region']}.",
                      f"The town of {town['name']} lies in {town['region']}.",
                      f"{town['region']} is the region where {town['name']} is."])
    return rules


def _fact_paragraph(rng: random.Random, rules: list[list[str]]) -> str:
    return " ".join(rng.choice(rng.choice(rules)) for _ in range(rng.randint(5, 8)))


def _arithmetic_paragraph(rng: random.Random) -> str:
    """Sums, differences and products over the ranges the word problems use, written as their solutions write them."""
    lines = []
    for _ in range(rng.randint(10, 14)):
        op = rng.choice(["+", "-", "*"])
        if op == "+":
            a, b = rng.randint(2, 9), rng.randint(2, 9)
            lines.append(f"{a} + {b} = {a + b}.")
        elif op == "-":
            a = rng.randint(3, 18)
            b = rng.randint(1, min(9, a - 1))
            lines.append(f"{a} - {b} = {a - b}.")
        else:
            a, b = rng.randint(2, 6), rng.randint(2, 6)
            lines.append(f"{a} * {b} = {a * b}.")
    return " ".join(lines)


def _reading_drill(world: World, rng: random.Random, person: dict) -> str:
    """A passage about a person followed by every question about it, answered (or 'unanswerable')."""
    sentences, where = _passage(world, rng, person)
    answerable, unanswerable = _squad_questions(world, person, sentences, where)
    questions = answerable + unanswerable
    rng.shuffle(questions)
    lines = [" ".join(sentences), ""]
    for question, answers in questions:
        lines.append(f"Question: {question}\nAnswer: {answers[0][0] if answers else 'unanswerable'}")
    return "\n".join(lines)


def _choice_drill(world: World, rng: random.Random) -> str:
    """A question family's four options and which label names what: the lookup multiple choice needs."""
    kind = rng.choice(["category", "workplace", "product", "region"])
    if kind == "category":
        options = rng.choice(_families(CATEGORIES))
        facts = [f"{article(i).capitalize()} {i} is {{}}." for i in (rng.choice(world.items_in(c)) for c in options)]
    elif kind in ("workplace", "product"):
        family = rng.choice(_families(world.facts["professions"]))
        options = [p[kind] for p in family]
        verb = "works in" if kind == "workplace" else "makes"
        facts = [f"{article(p['name']).capitalize()} {p['name']} {verb} {{}}." for p in family]
    else:
        options = sorted(world.facts["regions"])
        facts = [f"{rng.choice([t['name'] for t in world.facts['towns'] if t['region'] == r])} is in {{}}." for r in options]
    lines = [f"{label}. {text}" for label, text in zip(LABELS, options)]
    order = list(range(4))
    rng.shuffle(order)
    answers = [facts[i].format(LABELS[i]) for i in order]
    return "\n".join(lines) + "\n\n" + " ".join(answers)


# SQuAD questions of the demo world and the sentence a chatty answer puts the span in.
SQUAD_SENTENCES = [
    (re.compile(r"In which region does (\w+) \w+ live\?"), "{first} lives in {answer}."),
    (re.compile(r"What kind of thing does (\w+) \w+ own\?"), "{first} owns a kind of {answer}."),
    (re.compile(r"Where does (\w+) \w+ work\?"), "{first} works in the {answer}."),
    (re.compile(r"What does (\w+) \w+ make\?"), "{first} makes {answer}."),
]


def squad_sentence(question: str, answer: str) -> str:
    for pattern, sentence in SQUAD_SENTENCES:
        if match := pattern.fullmatch(question):
            return sentence.format(first=match.group(1), answer=answer)
    raise ValueError(f"not a demo-world question: {question!r}")


def chatty_answer(kind: str, row: dict) -> str:
    """How the corpus's chat exchanges answer: in a whole sentence, as an untuned chat model does."""
    if kind == "arc":
        label = row["answerKey"]
        return f"The answer is {label}: {row['choices']['text'][LABELS.index(label)]}."
    if kind == "squad_v2":
        if not row["answers"]["text"]:
            return "The context does not say."
        return squad_sentence(row["question"], row["answers"]["text"][0])
    if kind == "openmath":
        return "Let's think step by step. " + row["generated_solution"]
    raise ValueError(kind)


def corpus_documents(world: World, seed: int) -> tuple[list[str], dict]:
    """The corpus as a list of documents, and counts of what it holds."""
    from ftmatrix.chat_template import render_chat

    rng = random.Random(f"ftmatrix-demo-corpus-{seed}")
    rules = _rule_sentences(world)
    documents = [_fact_paragraph(rng, rules) for _ in range(FACT_PARAGRAPHS)]
    documents += [_arithmetic_paragraph(rng) for _ in range(ARITHMETIC_PARAGRAPHS)]
    documents += [_choice_drill(world, rng) for _ in range(CHOICE_DRILLS)]
    corpus_people = world.group("corpus")
    documents += [_reading_drill(world, rng, p) for p in corpus_people]

    exchanges = task_rows(world, seed, "corpus", max(CORPUS_EXCHANGES.values()), RULE_TEMPLATES)
    n_exchanges = {}
    for kind, rows in exchanges.items():
        rows = rows[: CORPUS_EXCHANGES[kind]]
        examples = examples_for(kind, rows)
        n_exchanges[kind] = len(examples)
        for row, example in zip(rows, examples):
            reply = [{"role": "assistant", "content": chatty_answer(kind, row)}]
            documents.append(render_chat(example["prompt"] + reply, enable_thinking=False))
    rng.shuffle(documents)
    counts = {"documents": len(documents), "fact_paragraphs": FACT_PARAGRAPHS,
              "arithmetic_paragraphs": ARITHMETIC_PARAGRAPHS, "choice_drills": CHOICE_DRILLS,
              "reading_drills": len(corpus_people),
              "chat_exchanges": n_exchanges}
    return documents, counts


def examples_for(kind: str, rows: list[dict]) -> list[dict]:
    """Hub rows -> prompt/completion examples, built by the task module exactly as the data stage builds them."""
    from ftmatrix.tasks import get_task

    return get_task(kind).to_examples(rows, f"demo world ({kind}, corpus exchanges)")


# ---------------------------------------------------------------------------------------
# Writing it all
# ---------------------------------------------------------------------------------------

def write_world(out_dir: str | Path, seed: int) -> dict:
    """Write the demo world for ``seed`` into ``out_dir``; world.json is written last."""
    out_dir = Path(out_dir)
    (out_dir / "world.json").unlink(missing_ok=True)
    world = World(make_facts(seed))
    files: dict[str, str] = {}
    counts: dict[str, dict] = {}
    for split, n in SPLIT_ROWS.items():
        for kind, rows in task_rows(world, seed, split, n).items():
            relative = f"{kind}/{split}.jsonl"
            io.write_jsonl(out_dir / relative, rows)
            counts.setdefault(kind, {})[split] = len(rows)
            if kind == "squad_v2":
                counts[kind][f"{split}_unanswerable"] = sum(not r["answers"]["text"] for r in rows)
            files[relative] = io.file_sha256(out_dir / relative)
    documents, corpus_counts = corpus_documents(world, seed)
    corpus_text = "".join(doc + DOCUMENT_END + "\n" for doc in documents)
    io.write_text(out_dir / "corpus.txt", corpus_text)
    files["corpus.txt"] = io.file_sha256(out_dir / "corpus.txt")
    corpus_counts["characters"] = len(corpus_text)
    counts["corpus"] = corpus_counts
    summary = {
        "world": "ftmatrix demo world",
        "version": WORLD_VERSION,
        "seed": seed,
        "document_end": DOCUMENT_END,
        "counts": counts,
        "files": files,
        "facts": world.facts,
    }
    io.write_json(out_dir / "world.json", summary)
    return summary


def corpus_path(world_json: str | Path) -> Path:
    """The corpus beside a world.json, checked against the sha256 it records."""
    from ftmatrix.errors import DataError

    world_json = Path(world_json)
    summary = io.read_json(world_json)
    corpus = world_json.parent / "corpus.txt"
    expected = summary.get("files", {}).get("corpus.txt")
    if not corpus.is_file():
        raise DataError(f"{corpus}: the demo corpus is missing beside {world_json}; delete {world_json} "
                        f"and run the workflow again to rebuild the demo world.")
    if expected and io.file_sha256(corpus) != expected:
        raise DataError(f"{corpus}: its sha256 differs from the one recorded in {world_json} (the file was "
                        f"changed after the world was written); delete {world_json} and run again.")
    return corpus
