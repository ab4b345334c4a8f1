"""Answer extraction, normalisation and metrics of the three task kinds: plain, tested code.

Scales: every per-sample rate score is 0 or 100 (SQuAD F1: 0–100), so the mean of a score
over rows is a percentage; absolute errors are in the answer's own units. A corpus metric
that is undefined on the rows given (an empty subset, no numeric answers) is ``None``.

- SQuAD v2: exact match and F1 exactly as the official v2.0 evaluation script defines them
  (normalise: lower-case, drop punctuation, drop the articles a/an/the, collapse whitespace;
  gold answers that normalise to nothing are dropped and an unanswerable question's only gold
  is the empty string; maximum over gold answers; F1 is 1/0 when either side has no tokens),
  overall and split into HasAns / NoAns (HasAns: the question lists gold answers).
- OpenMathInstruct-2: a final answer equals the gold when it does after maths-aware
  normalisation (the dataset's conventions: units, thousands separators, 'x = 5', percent
  answers written in percent) or by math-verify (symbolic and numeric equivalence); a response
  that commits to two different answers equals neither. Absolute error on answers that parse
  as numbers, parse rate.
- ARC: the label the generated text commits to (several labels offered is no label), accuracy,
  macro-F1 over the gold labels and the share of outputs with no label.

Two readings of every generation (both are scored, see ftmatrix.scoring): *strict*, the answer
in exactly the form the prompt asks for (ARC: the response is the label; maths: the boxed
answer; SQuAD: the whole response is the span, "unanswerable" abstains), and *lenient*, a
best-effort extraction from whatever the model wrote (prefixes, markdown, prose, hedges).

How a SQuAD abstention is told from an answer: the prompt names one abstention word,
"unanswerable" (strict reading: only that word abstains). The lenient reading also takes
sentences that say the context does not answer ("The context does not say.", "This question
cannot be answered from the context.", "N/A") as abstentions, since they are about the
question and never a span of a context; words that can be spans ("None", "unknown", "never",
"nothing") are answers, because SQuAD v2 has questions whose gold answer is exactly such a
word (the dev set has "None"), and erasing them would mark those correct answers wrong.

Every function here accepts any string (empty, huge, repetitive, odd Unicode) without raising.
"""

from __future__ import annotations

import collections
import contextlib
import functools
import re
import signal
import string
import threading
import unicodedata
from decimal import Decimal, localcontext
from fractions import Fraction
from typing import Iterable, Sequence

import numpy as np

# --------------------------------------------------------------------------------------
# Shared helpers
# --------------------------------------------------------------------------------------

_THINK_BLOCK = re.compile(r"<think>.*?</think>", re.DOTALL)
# Long runs squeezed before any reading: spaces, blank lines and markdown marks (a model spending
# its budget on newlines, a row of stars), and one punctuation mark repeated. They carry no answer,
# and the readers' patterns, written for ordinary text, would read a long run once from each of
# its characters (seconds to minutes on a few thousand).
_LONG_BLANK_RUN = re.compile(r"[\s*_`]{16,}")
_SPACE_RUN = re.compile(r"[^\S\n]{2,}")
_REPEATED_MARK = re.compile(r"([^\w\s])\1{10,}")


def _squeeze_runs(text: str) -> str:
    text = _LONG_BLANK_RUN.sub(lambda m: "\n\n" if "\n" in m.group(0) else " ", text)
    text = _SPACE_RUN.sub(" ", text)
    return _REPEATED_MARK.sub(lambda m: m.group(1) * 10, text)


def strip_thinking(text: str) -> str:
    """The answer part of a response: Qwen3-style ``<think>…</think>`` blocks dropped (an
    unclosed block means no answer was given), long runs of spaces, blank lines, markdown marks or
    one punctuation mark squeezed (_squeeze_runs)."""
    text = text or ""
    if "</think>" in text and "<think>" not in text.split("</think>")[0]:
        # The opening tag was part of the prompt (the chat template adds it): keep what follows.
        text = text.rsplit("</think>", 1)[1]
    if "</think>" in text:
        text = _THINK_BLOCK.sub("", text)
    if "<think>" in text:
        text = text.split("<think>", 1)[0]
    return _squeeze_runs(text)


def _mean(values: Sequence[float]) -> float | None:
    return float(sum(values) / len(values)) if values else None


# --------------------------------------------------------------------------------------
# SQuAD v2 (official v2.0 definitions)
# --------------------------------------------------------------------------------------

_PUNCTUATION = frozenset(string.punctuation)
_ARTICLES = re.compile(r"\b(a|an|the)\b", re.UNICODE)


def squad_normalize(text: str) -> str:
    """Lower-case, remove punctuation, remove a/an/the, collapse whitespace (official order)."""
    text = (text or "").lower()
    text = "".join(ch for ch in text if ch not in _PUNCTUATION)
    text = _ARTICLES.sub(" ", text)
    return " ".join(text.split())


def squad_tokens(text: str) -> list[str]:
    return squad_normalize(text).split() if text else []


def squad_exact(gold: str, prediction: str) -> int:
    """1 when the normalised strings are equal, else 0 (one gold answer)."""
    return int(squad_normalize(gold) == squad_normalize(prediction))


def squad_f1(gold: str, prediction: str) -> float:
    """Token-overlap F1 in 0–1 (one gold answer); 1/0 when either side has no tokens."""
    gold_tokens = squad_tokens(gold)
    pred_tokens = squad_tokens(prediction)
    if not gold_tokens or not pred_tokens:
        return float(gold_tokens == pred_tokens)
    common = collections.Counter(gold_tokens) & collections.Counter(pred_tokens)
    same = sum(common.values())
    if same == 0:
        return 0.0
    precision = same / len(pred_tokens)
    recall = same / len(gold_tokens)
    return 2 * precision * recall / (precision + recall)


def squad_golds(answers: Iterable[str]) -> list[str]:
    """Gold answers as the official script uses them: those that normalise to something, else ['']."""
    golds = [a for a in answers if squad_normalize(a)]
    return golds or [""]


def squad_score(prediction: str, answers: Sequence[str]) -> dict:
    """Per-question {'exact': 0|100, 'f1': 0–100}, maximum over the gold answers."""
    golds = squad_golds(answers)
    exact = max(squad_exact(g, prediction) for g in golds)
    f1 = max(squad_f1(g, prediction) for g in golds)
    return {"exact": 100.0 * exact, "f1": 100.0 * f1}


_QUOTE_PAIRS = {('"', '"'), ("'", "'"), ("`", "`"), ("“", "”"), ("‘", "’"), ("«", "»"), ("„", "“"), ("„", "”")}
SQUAD_ABSTAIN_WORD = "unanswerable"
# What a response that gives no answer at all reads as — nothing, only thinking, cut off inside
# its thinking, a bare 'Answer:' — rather than the abstention '' (which the official scoring
# credits on an unanswerable question: a model that rambles past its token budget would earn it).
# A mark no gold answer holds: every question scores 0 with it, and it is no abstention.
SQUAD_NO_ANSWER = "∅"
# Markdown emphasis and code marks: '**Answer:** Paris', '*Paris*', '`Paris`'.
_EMPHASIS = re.compile(r"\*\*|__|(?<!\w)[*_`]+|[*_`]+(?!\w)")
# What a response names as its source: 'the context', 'the provided passage', 'the document above'
# (and, in a lead-in, 'the information provided').
_SOURCE_NOUNS = "context|passage|text|article|paragraph|document"
_NORMAL_SOURCE = (r"(?:(?:provided|given|above|following)\s+)?(?:" + _SOURCE_NOUNS + r")"
                  r"(?:\s+(?:above|provided|given|you\s+(?:provided|gave)))?")
_SOURCE = _NORMAL_SOURCE.replace(
    _SOURCE_NOUNS, _SOURCE_NOUNS + r"|information(?:\s+in\s+the\s+(?:passage|context|text))?")
_LEAD_IN = re.compile(
    r"^(?:i['’]?d\s+be\s+happy\s+to\s+help\s*[,!.]\s*)?"
    r"(?:(?:so|thus|therefore|hence|ok(?:ay)?|sure|certainly|alright|great(?:\s+question)?)\s*[,!.]\s*"
    r"|(?:so|thus|therefore|hence)\s+(?=(?:the\s+)?(?:final\s+)?answer\b)|well\s*,\s*)?"
    r"(?:(?:based\s+on|according\s+to|from|given|in|after\s+(?:reviewing|reading)|looking\s+at"
    r"|as\s+(?:mentioned|stated|described|given)\s+in)\s+(?:the\s+)?"
    + _SOURCE + r"\s*[,:]\s*)?",
    re.IGNORECASE)
_ANSWER_PREFIX = re.compile(
    r"^(?:here\s+is\s+|here['’]s\s+)?(?:the\s+|my\s+)?(?:final\s+|short\s+|correct\s+|extracted\s+)?"
    r"(?:answer|response|span|output)"
    r"(?:\s+(?:to\s+(?:the|this)\s+question\s+)?(?:is|would\s+be|will\s+be)(?![\w'’])\s*:?|\s*[:：\-–—]+)\s*"
    r"|^i\s+would\s+answer\s*:\s*",
    re.IGNORECASE)
# A bullet or number opening a line: '- Paris', '• Paris', '1. Paris'.
_BULLET = re.compile(r"^(?:[-•*]|\d{1,2}[.)])\s+")
# The abstention patterns read normalised text (squad_normalize): the source's article is gone
# and "doesn't" is 'doesnt'. What a source does not do when it does not answer:
_SOURCE_VERBS = ("say|mention|specify|state|provide|contain|include|give|answer|indicate|tell|address|discuss|describe"
                 "|name|identify|list|explain|clarify|reveal|offer|talk|refer|make|cover|detail")
_ABSTAIN = re.compile(
    r"(?:(?:this\s+|the\s+)?question\s+is\s+|it\s+is\s+|its\s+)?"
    r"(?:unanswerable|not\s+answerable|cannot\s+be\s+answered|cant\s+be\s+answered|can\s+not\s+be\s+answered"
    r"|no\s+answer(?:\s+(?:found|given|provided|available))?)"
    r"(?:\s+(?:from|with|based\s+on|given)\s+(?:given\s+|provided\s+)?(?:context|passage|text|information)(?:\s+provided)?)?"
)
# Sentences that say the context does not answer: about the question, never a span of the context.
_PROSE_ABSTAIN = re.compile(
    r"\b(?:cannot|can\s*not|cant|could\s+not|couldnt)\s+be\s+(?:answered|determined|found)\b"
    r"|\b" + _NORMAL_SOURCE + r"\s+(?:does|do|did)\s*(?:not|nt)\s+"
    r"(?:(?:actually|explicitly|directly|specifically|clearly|really)\s+)?"
    r"(?:" + _SOURCE_VERBS + r")\b"
    r"|\b(?:not|never)\s+(?:(?:explicitly|directly|specifically|clearly)\s+)?(?:mentioned|stated|specified|provided"
    r"|given|found|answered|addressed|discussed|available|included|present|named|identified)\s+(?:anywhere\s+)?"
    r"(?:in|by)\s+" + _NORMAL_SOURCE + r"\b"
    r"|\b(?:answer|information)\s+is\s+not\s+(?:(?:available|provided|given|found|present|stated)\s+)?in\s+"
    + _NORMAL_SOURCE + r"\b"
    r"|\b" + _NORMAL_SOURCE + r"\s+(?:lacks|is\s+silent)\b"
    r"|\bno\s+(?:(?:specific|explicit|direct|clear|further|additional|relevant)\s+)?"
    r"(?:information|mention|answer|indication|details?)\s+(?:(?:provided|given|available)\s+)?"
    r"(?:about|on|of|regarding|for|in|is|was|to|found)\b"
    r"|\bthere\s+is\s+no\s+answer\b"
    r"|\b(?:information|answer|this|that|it)\s+(?:is\s+not|isnt|was\s+not|wasnt)\s+"
    r"(?:(?:explicitly|directly|specifically|clearly)\s+)?"
    r"(?:provided|given|stated|mentioned|specified|available|named)\b"
    r"|\b(?:unable|not\s+possible|impossible)\s+to\s+(?:answer|determine|tell|say)"
    r"(?:\s+(?:this|that|it|from|based|with|given|answer|without|question)\b|\s*$"
    r"|\b.*\b(?:from|based\s+on|in|with)\s+" + _NORMAL_SOURCE + r"\b)"
    r"|\b(?:cannot|can\s*not|cant)\s+answer\b"
    r"|\b" + _NORMAL_SOURCE + r"\s+(?:says\s+nothing|makes\s+no\s+(?:reference|mention)"
    r"|(?:does\s*not|doesnt)\s+have\s+(?:any\s+)?information)\b"
    r"|\bnothing\s+in\s+" + _NORMAL_SOURCE + r"\b|\bis\s+not\s+in\s+" + _NORMAL_SOURCE + r"\b"
    r"|\b(?:it|but|and)\s+(?:does\s*not|doesnt)\s+(?:mention|say|state|specify|discuss|address|talk|refer|clarify"
    r"|reveal|explain|describe|cover|detail)\b"
    r"|\b(?:i|we)\s+(?:cannot|can\s*not|cant|am\s+unable\s+to|are\s+unable\s+to|could\s+not|couldnt|was\s+unable\s+to"
    r"|am\s+not\s+able\s+to|was\s+not\s+able\s+to)\s+(?:answer|find|determine|tell)\b"
    r"|\b(?:im|were)\s+(?:unable|not\s+able)\s+to\s+(?:answer|find|determine|tell)\b"
    r"|\b(?:i|we)\s+(?:do\s+not|dont)\s+have\s+enough\s+information\b"
    r"|^(?:i\s+(?:do\s*not|dont)\s+know|i\s+am\s+not\s+sure|im\s+not\s+sure|no\s+idea)\b"
    r"|\b(?:not|isnt)\s+enough\s+(?:information|context)\b|\binsufficient\s+information\b"
    r"|\bunanswerable\b|\bnot\s+answerable\b"
)
# Bare abstentions that name no passage: 'Not mentioned.', 'Not stated here', 'I don't know.'
# ('unknown', 'unclear', 'never' and 'none' are answers: the dev set has such spans.)
_BARE_ABSTAIN = re.compile(
    r"(?:it\s+is\s+|its\s+|this\s+is\s+|that\s+is\s+|answer\s+is\s+|sorry\s+)?"
    r"(?:not\s+(?:(?:explicitly|directly|specifically|clearly)\s+)?"
    r"(?:mentioned|stated|specified|provided|indicated|said|given|found|available|applicable|named)"
    r"(?:\s+(?:anywhere|explicitly|directly|here))?|none\s+mentioned|na"
    r"|i\s+(?:do\s*not|dont|don\s+t)\s+know|i\s+(?:am|m)\s+not\s+sure|im\s+not\s+sure|no\s+idea"
    r"|(?:cannot|can\s*not|cant)\s+(?:say|tell|determine)|impossible\s+to\s+(?:say|tell|determine)"
    r"|it\s+(?:does\s*not|doesnt)\s+say|not\s+enough\s+context|not\s+(?:anywhere\s+)?in\s+" + _NORMAL_SOURCE +
    r"|(?:this|that|it)\s+(?:is\s+not|isnt)\s+(?:mentioned|stated|specified|given|provided)"
    r"|no\s+(?:information|mention|details?)(?:\s+(?:given|provided|available))?)")


def _fold_quotes(text: str) -> str:
    """Typographic apostrophes as ASCII ones: 'doesn’t' reads as "doesn't"."""
    return text.replace("’", "'").replace("‘", "'")


def is_abstention(text: str) -> bool:
    """Does the text decline to answer? 'unanswerable' and its variants ('No answer.', 'cannot be
    answered', 'N/A', 'Not mentioned.', 'I don't know.'), and sentences saying the context does not
    answer ('The context does not say.', 'Not mentioned in the provided text.'). Words that can be
    answers themselves ('None', 'unknown', 'unclear', 'never') are answers."""
    text = _fold_quotes(text or "")
    if re.fullmatch(r"\s*n\s*/\s*a\s*\.?\s*", text, re.IGNORECASE):
        return True
    normal = squad_normalize(text)
    return bool(_ABSTAIN.fullmatch(normal) or _BARE_ABSTAIN.fullmatch(normal) or _PROSE_ABSTAIN.search(normal))


def _unquote(line: str) -> str:
    for _ in range(3):  # '"Paris"', '“Paris.”', "'Paris'." — quotes around the whole answer only
        bare = line[:-1].rstrip() if line.endswith(".") else line
        if len(bare) >= 2 and (bare[0], bare[-1]) in _QUOTE_PAIRS:
            line = bare[1:-1].strip()
        else:
            break
    return line


# Clause breaks inside one line: sentence ends, commas, semicolons and colons, dashes, brackets.
# A run of spaces is entered at its start only ((?<!\s)): read once, not once from each of its spaces.
_CLAUSE_BREAK = re.compile(r"(?<![.!?;:,])[.!?;:,]+\s+|(?<!\s)\s*[(\[]|[(\[]|[)\]]\s*|(?<!\s)\s+[-–—]+\s+")
# A clause that says nothing about the answer (normalised): politeness, lead-ins, connectives.
_FILLER = re.compile(
    r"(?:(?:i\s*m|i\s+am|we\s+are)\s+)?(?:sorry|afraid)|unfortunately|apologies|regrettably|sadly|alas|hmm|well|so"
    r"|ok|okay|sure|no|however|but|note|though|although|that\s+said|in\s+short|to\s+be\s+honest"
    r"|(?:based\s+on|according\s+to|from|given|looking\s+at|after\s+reading|after\s+reviewing|in)\s+"
    + _NORMAL_SOURCE + r"|")
# After an abstention, a guess ('… but it is probably Paris', 'If I had to guess: Paris', '…, but
# it suggests Paris'): the response then hedges between the two. Explanations of an abstention
# ('It only mentions the 1990s', 'it is focused on his youth') are no guess.
_GUESS = re.compile(
    r"\b(?:probably|possibly|perhaps|maybe|likely|presumably|my\s+(?:best\s+)?guess|if\s+i\s+(?:had|have)\s+to\s+guess"
    r"|i\s+(?:would|d)\s+(?:guess|say)|i\s+(?:guess|suspect)"
    r"|i\s+(?:think|believe|assume)\s+(?!(?:that\s+)?(?:the\s+)?(?:context|passage|text|article|paragraph|document"
    r"|question|information|it\s+is\s+not|this\s+is\s+not|there\s+is\s+no)\b)"
    r"|(?:it|this|that|answer)\s+(?:might|may|could|would)\s+be|suggests|implies)\b")
# '… ; the answer is Paris': an answer after all (not '…. Therefore, the answer is: unanswerable').
_ANSWER_AFTER_ALL = re.compile(r"(?:(?:but|however|so|therefore|thus|still)\s*,?\s+)?(?:the\s+)?answer\s+is\s+(\S.*)",
                               re.IGNORECASE)
# An abstention that qualifies an answer given before it: 'Paris, though the context does not say
# so directly', 'Paris (the passage doesn't state it)' — not a remark on another detail ('1997.
# The context does not specify the month.'), after which the answer stands.
_CAVEAT_VERBS = (r"(?:say|state|stated|confirm|confirmed|mention|mentioned|name|named|give|given|specify|specified"
                 r"|provide|provided)")
_CAVEAT = re.compile(
    r"(?:\bnot|nt)\s+(?:(?:explicitly|directly|specifically|clearly|actually)\s+)?(?:\w+\s+){0,2}" + _CAVEAT_VERBS
    + r"\s+(?:so|it|this|that)\b"
    r"|(?:\bnot|nt)\s+(?:explicitly|directly|specifically|clearly|actually)\s+(?:\w+\s+)?" + _CAVEAT_VERBS
    + r"(?:\s+(?:in|by)\s+" + _NORMAL_SOURCE + r")?\s*$")
# The start of reasoning rather than of an answer: 'It talks about …', 'The passage covers …'.
_REASONING_START = re.compile(
    r"(?:it|this|that|there|he|she|they|we|i|its|context|passage|text|article|paragraph|document|question"
    r"|information)\b")
_MAX_ANSWER_BEFORE_REMARK_WORDS = 6
# Two answers offered as alternatives with a word of doubt: 'Paris or possibly Lyon', 'maybe
# Paris or Lyon'. (A bare 'X or Y' stays an answer: about one gold span in a hundred is one.)
_ALTERNATIVE = re.compile(
    r"\bor\s+(?:possibly|perhaps|maybe|probably|alternatively)\b|\bor\s+(?:it\s+)?(?:might|may|could)\s+be\b")
_DOUBT = re.compile(r"\b(?:possibly|perhaps|maybe|probably)\b|^(?:it\s+|this\s+|the\s+answer\s+)?(?:could|might|may)\s+"
                    r"(?:also\s+)?be\b")
_OR = re.compile(r"\bor\b")


def _offers_alternatives_doubtfully(line: str) -> bool:
    """'Paris or possibly Lyon', 'maybe Paris or Lyon', 'It could be Paris or Lyon' (linear time)."""
    line = line.lower()
    doubt = _DOUBT.search(line)
    return bool(_ALTERNATIVE.search(line) or (doubt and _OR.search(line, doubt.end())))


# A line that only introduces the answer: 'Sure!', 'Great question!', 'Sure, I can help with
# that.', 'Here is the answer.', a heading '### Final Answer'.
_INTRODUCTION = re.compile(
    r"#*\s*(?:(?:sure|okay|ok|certainly|of\s+course|alright|absolutely|great|great\s+question|sure\s+thing"
    r"|no\s+problem|happy\s+to\s+help|i['’]?d\s+be\s+happy\s+to\s+help|i\s+would\s+be\s+happy\s+to\s+help)\b[\s!.,]*)*"
    r"(?:(?:i\s+can\s+help(?:\s+you)?\s+with\s+that|here\s+is\s+(?:the|my)\s+answer\b[^.!?:]*"
    r"|here['’]s\s+(?:the|my)\s+answer\b[^.!?:]*"
    r"|let\s+me\s+(?:find|look|check|read|see)\b[^.!?]*"
    r"|(?:the\s+|my\s+)?(?:final\s+|short\s+|extracted\s+)?(?:answer|response|span|output))[\s!.]*)?",
    re.IGNORECASE)


# A citation after the answer: 'Paris, as stated in the context.'
_CITED = re.compile(r"(?:,|(?<![\s,]))\s+as\s+(?:stated|mentioned|described|noted|given)\s+in\s+(?:the\s+)?" + _SOURCE + r"\s*\.?$",
                    re.IGNORECASE)


def _without_lead_in(raw: str) -> str:
    """A line without markdown emphasis, a bullet and a lead-in ('Based on the context, ')."""
    return _LEAD_IN.sub("", _BULLET.sub("", _EMPHASIS.sub("", raw).strip()), count=1)


def _clean_line(raw: str) -> str:
    """A line without markdown emphasis, a bullet, a lead-in, an answer prefix and a citation."""
    line = _ANSWER_PREFIX.sub("", _without_lead_in(raw), count=1).strip()
    return _CITED.sub("", line).strip()


def _guesses(clause: str) -> bool:
    """Does a clause after an abstention guess or answer after all?"""
    if is_abstention(clause):
        return False
    folded = _fold_quotes(clause.strip())
    after_all = _ANSWER_AFTER_ALL.match(folded)
    if after_all and not is_abstention(after_all.group(1)):
        return True
    return bool(_GUESS.search(folded.lower().replace("'", " ")))


def _full_abstention(normal: str) -> bool:
    return bool(_ABSTAIN.fullmatch(normal) or _BARE_ABSTAIN.fullmatch(normal))


def _line_reading(line: str) -> tuple[str, str]:
    """How one (cleaned) line reads, and its span: ('abstain', '') when it declines to answer and
    offers nothing else (reasoning before the abstention included); ('hedge', '') when it both
    answers and abstains ('Paris, though the context does not say so', 'The context does not say,
    but it is probably Paris', 'Paris or unanswerable') or offers alternatives with a word of
    doubt; else ('answer', span) — the line, or the answer before a remark on another detail
    ('1997. The context does not specify the month.' reads 1997)."""
    folded = _fold_quotes(line)
    clauses = [c.strip() for c in _CLAUSE_BREAK.split(folded) if c and c.strip()]
    content = [c for c in clauses if not _FILLER.fullmatch(squad_normalize(c))]
    if not is_abstention(folded) and not any(is_abstention(c) for c in content):
        return ("hedge", "") if _offers_alternatives_doubtfully(line) else ("answer", line)
    first = content[0] if content else ""
    normal = squad_normalize(first)
    if not first or is_abstention(first):
        sides = [squad_normalize(side) for side in re.split(r"\s+or\s+|/", first)]
        if len(sides) > 1 and any(_full_abstention(side) for side in sides) and any(
                side and not is_abstention(side) for side in sides):
            return "hedge", ""  # 'Paris or unanswerable'
        return ("hedge", "") if any(_guesses(c) for c in content[1:]) else ("abstain", "")
    if _REASONING_START.match(normal) or len(normal.split()) > _MAX_ANSWER_BEFORE_REMARK_WORDS:
        # Reasoning that leads to the abstention — unless it guesses after it.
        abstains_at = next((i for i, c in enumerate(content) if is_abstention(c)), len(content))
        return ("hedge", "") if any(_guesses(c) for c in content[abstains_at + 1:]) else ("abstain", "")
    if _CAVEAT.search(squad_normalize(folded)):
        return "hedge", ""
    return "answer", _unquote(first.rstrip(".!?;:, "))


def _caveat_line(line: str) -> bool:
    """A later line that takes the answer back: 'However, the context does not actually say.',
    'The passage does not say.' (a side remark on another detail — 'The context doesn't say the
    month.' — does not)."""
    normal = squad_normalize(_fold_quotes(_HEADING_LABEL.sub("", line)))
    if not is_abstention(line):
        return False
    bare = _CONNECTIVE.sub("", normal)
    return bool(_CAVEAT.search(normal) or _full_abstention(bare) or _SOURCE_SILENT.fullmatch(bare))


# A connective opening a later line: 'However, …' (normalised).
_CONNECTIVE = re.compile(r"^(?:but|however|though|although|note|that\s+said)\s+")
# A later line that only says the source is silent: 'The passage does not say.' (normalised).
_SOURCE_SILENT = re.compile(_NORMAL_SOURCE + r"\s+(?:does|do|did)\s*(?:not|nt)\s+(?:actually\s+)?"
                            r"(?:say|mention|state|specify|answer)(?:\s+(?:this|that|it|so))?")


# A label opening a later line: 'Reasoning: …', '**Evidence:** …'.
_HEADING_LABEL = re.compile(r"^[#*_\s]*[A-Z][A-Za-z]*(?:\s+[A-Za-z]+)?[*_]*\s*:[*_]*\s*")
# Headings and remarks a later line may hold: not an answer.
_HEADINGS = re.compile(
    r"(?:final\s+|short\s+|key\s+|supporting\s+)?(?:explanation|reasoning|justification|rationale|analysis|summary"
    r"|sources?|notes?|evidence|answer|context|references?|reasons?|thanks|thank\s+you)"
    r"|(?:paragraph|sentence|line|section)\s+\d+")
_MAX_LISTED_WORDS = 3


def _listed(raw: str, answer: str) -> bool:
    """Is a later line one more answer, listed on its own: a name or a number ('London', 'New
    York City') or a short bulleted item ('- abstract'); not a restatement of the answer ('In
    1997', 'Paris, France'), a heading ('**Explanation**', '## Notes') or a remark ('Hope that
    helps', 'Stated in paragraph 2')?"""
    stripped = raw.strip()
    if stripped.startswith("#") or re.fullmatch(r"(\*\*|__).+\1", stripped):
        return False  # a heading
    plain = _EMPHASIS.sub("", stripped).strip()
    bulleted = bool(_BULLET.match(plain))
    line = _unquote(_BULLET.sub("", plain))
    words = line.split()
    if not words or len(words) > _MAX_LISTED_WORDS or ":" in line or line[-1] in ".!?":
        return False
    if not bulleted and not all(word[0].isupper() or word[0].isdigit() for word in words):
        return False  # a remark ('Hope that helps'); a bulleted item is listed whatever its case
    normal = squad_normalize(line)
    if not normal or _HEADINGS.fullmatch(normal) or is_abstention(line):
        return False
    return not (answer and (normal in answer or answer in normal))


# After an answer prefix on a later line: words that abstain again or describe the passage
# ('Answer: The year is not mentioned.', '**Answer:** None', 'The answer is unknown.').
_NO_ANSWER_WORDS = re.compile(r"\b(?:not|no|none|nothing|unknown|unclear|unanswerable|cannot|can['’]t|n/?a|outside"
                              r"|information|passage|context|text|mentioned|stated|given|provided)\b|\\", re.IGNORECASE)
_MAX_LATER_ANSWER_WORDS = 4


def _answers_after_all(raw: str) -> bool:
    """Does a later line state a short answer ('The answer is Paris.', '**Answer:** 1997') rather
    than abstain again ('Answer: The year is not mentioned.', 'Answer: None', a boxed
    'unanswerable') or explain ('The answer is outside the scope of the passage.')?"""
    prefix = _ANSWER_PREFIX.match(_without_lead_in(raw))
    rest = _unquote(_clean_line(raw)) if prefix else ""
    return (bool(rest) and len(rest.split()) <= _MAX_LATER_ANSWER_WORDS and not _NO_ANSWER_WORDS.search(rest)
            and not is_abstention(rest) and not _INTRODUCTION.fullmatch(rest))


def _is_verdict(raw: str) -> bool:
    """Does a line state the answer ('**Answer:** Paris', 'Therefore, the answer is Paris.') or
    abstain ('Therefore, the question is unanswerable.')?"""
    plain = _without_lead_in(raw)
    prefix = _ANSWER_PREFIX.match(plain)
    if prefix and plain[prefix.end():].strip():
        return True
    return _line_reading(_clean_line(raw))[0] == "abstain"


# Cached: scoring reads each response several times (the lenient and strict readings, the format).
@functools.lru_cache(maxsize=4096)
def read_squad_response(text: str) -> tuple[str, str]:
    """(how the response reads, its span): ('answer', span), ('abstain', ''), ('hedge', '') or
    ('none', '').

    The answer is the first line that is more than an introduction ('Sure! Here is the answer:',
    'Answer:', '**Final Answer**'), without markdown emphasis, a bullet, a lead-in ('Based on the
    provided context, the answer is'), an answer prefix or surrounding quotes. A response hedges
    when it offers both an answer and an abstention — on one line ('Paris, though the context
    does not say so'; 'The context does not say, but it is probably Paris'), an answer with a later
    line that takes it back ('However, the context does not actually say.'), an answer withdrawn
    right after it is given ('Paris. Wait, that's wrong.', _answer_withdrawn), an abstention with a
    later guess ('If I had to guess: Paris') — or several answers ('Paris or possibly Lyon'; a name
    or number listed on a later line, 'Paris\\nLyon'; a list of bullets). Explanations, remarks
    and asides in brackets on later lines are not read, except that a first line of reasoning
    ('The context states that …') gives way to a later verdict ('Answer: Paris', 'Therefore, the
    question is unanswerable.')."""
    lines = [ln.strip() for ln in strip_thinking(text).splitlines() if ln.strip()]
    at, line = None, ""
    for index, raw in enumerate(lines[:4]):
        line = _unquote(_clean_line(raw))
        # 'Sure! Here is the answer:' announces the next line ('in state X:' ending a response is a span).
        introduces = raw.rstrip("*_` ").endswith(":") or _INTRODUCTION.fullmatch(line) or _INTRODUCTION.fullmatch(
            _EMPHASIS.sub("", raw).strip())
        if line and (index == len(lines) - 1 or not introduces):
            at = index
            break
    if at is None:
        return "none", ""
    kind, span = _line_reading(line)
    if kind == "answer" and _REASONING_START.match(squad_normalize(line)):
        # Reasoning first ('The context states that …'), the verdict on a later line ('Answer: Paris',
        # 'Therefore, the question is unanswerable.'): the last verdict is the reading.
        verdicts = [index for index in range(at + 1, len(lines)) if _is_verdict(lines[index])]
        if verdicts:
            at = verdicts[-1]
            line = _unquote(_clean_line(lines[at]))
            if not line:
                return "none", ""
            kind, span = _line_reading(line)
    if kind == "hedge" or (kind == "answer" and _answer_withdrawn(lines[at:])):
        return "hedge", ""
    answer = squad_normalize(span)
    for raw in lines[at + 1:]:
        later = _clean_line(raw)
        if not later or later[0] in "([":
            continue
        if kind == "abstain":
            body = _HEADING_LABEL.sub("", later)
            if (any(_guesses(c) for c in _CLAUSE_BREAK.split(_fold_quotes(body)) if c and c.strip())
                    or _listed(raw, "") or _answers_after_all(raw)):
                return "hedge", ""
        elif _caveat_line(later) or _listed(raw, answer):
            return "hedge", ""
    return kind, span


def _answer_withdrawn(lines: Sequence[str]) -> bool:
    """Does the response take its answer back right after giving it — the sentence after the
    answer's ('Paris. Wait, that's wrong.') or, where the answer's line has one sentence, the next
    line ('Paris\nActually, I made a mistake.') — and not keep it after all (_withdrawn_at, as a
    maths box is taken back)? A remark on another detail takes nothing back ('1997. The context
    does not specify the month.')."""
    text = "\n".join(lines)
    first_break = re.search(r"[.!?;]+\s+|\n", text)
    return first_break is not None and _withdrawn_at(text, first_break.end()) is not None


def extract_span_strict(text: str) -> str:
    """The span in exactly the form the prompt asks for: the whole response (after any
    thinking) is the answer, and only the prompt's word 'unanswerable' abstains (''); a response
    with nothing after its thinking gives no answer, and one that hedges (read_squad_response)
    commits to none (SQUAD_NO_ANSWER for both)."""
    text = strip_thinking(text).strip()
    if not text or read_squad_response(text)[0] == "hedge":
        return SQUAD_NO_ANSWER
    return "" if squad_normalize(text) == SQUAD_ABSTAIN_WORD else text


def squad_follows_format(text: str) -> bool:
    """Is the response the asked form: one line that, read literally as the span, reads as the
    best-effort extraction does (up to the official normalisation)? 'Paris.' and '"Paris"' are;
    'Answer: Paris', 'The context does not say.', a hedge and 'Paris' plus an explanation are not."""
    literal = strip_thinking(text or "").strip()
    if not literal or "\n" in literal or read_squad_response(literal)[0] == "hedge":
        return False
    return squad_normalize(extract_span_strict(literal)) == squad_normalize(extract_span(literal))


def extract_span(text: str) -> str:
    """The answer span of a SQuAD-style generation, best effort (read_squad_response): an
    abstention becomes ''; a response that gives no answer at all (nothing after its thinking,
    only a prefix) or hedges becomes SQUAD_NO_ANSWER, which no question credits."""
    kind, span = read_squad_response(text)
    if kind in ("none", "hedge"):
        return SQUAD_NO_ANSWER
    return span


def squad_metrics(rows: Sequence[dict]) -> dict:
    """Official overall, HasAns and NoAns exact/F1 (percent) from per-sample scores."""
    exact, f1 = [], []
    has = {"HasAns": ([], []), "NoAns": ([], [])}
    for row in rows:
        scores = row.get("scores") or squad_score(row.get("extracted") or "", row["reference"]["answers"])
        group = "HasAns" if row["reference"]["answers"] else "NoAns"
        exact.append(scores["exact"])
        f1.append(scores["f1"])
        has[group][0].append(scores["exact"])
        has[group][1].append(scores["f1"])
    out = {"exact": _mean(exact), "f1": _mean(f1), "total": len(rows)}
    for group, (ex, f) in has.items():
        out[f"{group}_exact"] = _mean(ex)
        out[f"{group}_f1"] = _mean(f)
        out[f"{group}_total"] = len(ex)
    out["abstain_rate"] = _mean([100.0 * (not (row.get("extracted") or "")) for row in rows])
    return out


# --------------------------------------------------------------------------------------
# OpenMathInstruct-2: maths-aware normalisation
# --------------------------------------------------------------------------------------

_BOX_COMMAND = re.compile(r"\\(?:boxed|fbox)(?![A-Za-z])")
# Numbers longer than this (in characters) are not parsed: no real answer is that long, and
# Python refuses to convert integer strings beyond a few thousand digits.
_MAX_NUMBER_CHARS = 80
_MAX_MAGNITUDE = Fraction(10) ** 300
# Longer "answers" (a runaway generation inside \boxed{}) are compared as written.
_MAX_ANSWER_CHARS = 2000


def _matching_braces(text: str) -> dict[int, int]:
    """Index of each '{' -> index of its closing '}', in one pass (escaped braces skipped)."""
    pairs: dict[int, int] = {}
    stack: list[int] = []
    i = 0
    while i < len(text):
        ch = text[i]
        if ch == "\\":
            i += 2
            continue
        if ch == "{":
            stack.append(i)
        elif ch == "}" and stack:
            pairs[stack.pop()] = i
        i += 1
    return pairs


def _box_spans(text: str) -> list[tuple[int, int, str | None]]:
    """Every ``\\boxed{…}`` / ``\\fbox{…}`` (and ``\\boxed 5``), in order, as (index of the
    command, index after the box, content as written): the one box scanner. The content of an
    unclosed box (a truncated output) is None, and its end is the command's. Linear in the
    text's length."""
    text = text or ""
    matches = list(_BOX_COMMAND.finditer(text))
    if not matches:
        return []
    closing = _matching_braces(text)  # once: scanning from every '{' would be quadratic
    spans: list[tuple[int, int, str | None]] = []
    for match in matches:
        start = match.end()
        while start < len(text) and text[start].isspace():
            start += 1
        if start < len(text) and text[start] == "{":
            if start in closing:
                spans.append((match.start(), closing[start] + 1, text[start + 1:closing[start]]))
            else:
                spans.append((match.start(), match.end(), None))
        else:
            token = re.match(r"[^\s$]+", text[start:start + 200])
            if token:
                spans.append((match.start(), start + token.end(), token.group(0)))
            else:
                spans.append((match.start(), match.end(), None))
    return spans


def last_boxed(text: str) -> str | None:
    """Content of the last ``\\boxed{…}`` (or ``\\fbox{…}``), nested braces included.

    ``\\boxed 5`` (no braces) gives '5'. An unclosed last box (a truncated output) gives None.
    """
    spans = _box_spans(text)
    return spans[-1][2] if spans else None


# LaTeX commands that only style their text: '\text{C}', '\textbf{C}', '\mathtt{C}', '\emph{C}'.
_TEXT_COMMANDS = re.compile(
    r"\\(?:text|textbf|textit|textrm|textsf|texttt|textup|textnormal|emph"
    r"|mathrm|mathbf|mathit|mathsf|mathtt|mbox|operatorname)\s*\{([^{}]*)\}")
# A LaTeX row break (two backslashes) is kept; '\ ' after it is not a spacing command.
_SPACING = re.compile(r"\\\\|\\[,;:! ]|\\q?quad(?![A-Za-z])|\\displaystyle(?![A-Za-z])|\\(?:left|right)(?![A-Za-z])|~")
_BASE_SUBSCRIPT = re.compile(r"(\d+)_\{?\d+\}?")
_DEGREES = re.compile(r"\^\s*\{?\s*\\circ\s*\}?|°|\\circ(?![A-Za-z])|\\degree(?![A-Za-z])")
_SIMPLE = re.compile(r"[A-Za-z0-9.]+")
_MIXED = re.compile(r"(\d+)\s*\\frac\s*\{(\d+)\}\s*\{(\d+)\}")
_SQRT_SHORT = re.compile(r"\\sqrt\s*([0-9A-Za-z])")
# A number and its unit ('5 cm', '12 apples'); words that change the number ('5 thousand', '2
# dozen', '5 squared', '5 less') are no unit.
_UNIT_NUMBER = r"([+-]?(?:\d[\d,]*(?:\.\d*)?|\.\d+)(?:/\d+)?)"
_UNIT_SUFFIX = re.compile(
    _UNIT_NUMBER + r"\s*"
    r"((?!(?:hundreds?|thousands?|millions?|billions?|trillions?|dozens?|squared|cubed|less|more|fewer|times|greater"
    r"|smaller)\b)(?:[A-Za-z]{2,}\.?)(?:\^\{?\d\}?)?(?:\s+[A-Za-z]+\.?)*)"
)
# A one-letter unit after a number, written as text ('5\\text{ m}', '9.8\\mbox{ s}^2'): text mode says
# it is a word, not a variable ('5 m' and '5m' are left alone: 5·m is as likely), unless it is the
# imaginary unit or Euler's number ('2\\text{i}'). Matched before the text commands are unwrapped.
_TEXT_LETTER_UNIT = re.compile(
    _UNIT_NUMBER + r"(?:\s|\\[,;:! ])*\\(?:text|mbox|textrm|textnormal)\s*\{\s*(?![ie]\b)[A-Za-z]\.?\s*\}"
    r"(?:\^\{?\d\}?)?")
_ASSIGNMENT = re.compile(r"([A-Za-z])\s*=\s*(.+)", re.DOTALL)
_THOUSANDS = re.compile(r"[+-]?\d{1,3}(?:,\d{3})+(?:\.\d+)?")
_DECIMAL = re.compile(r"[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d{1,3})?")
_SIGNED_PART = r"\(?([+-]?(?:\d+(?:\.\d*)?|\.\d+))\)?"
_RATIO = re.compile(rf"([+-]?){_SIGNED_PART}/{_SIGNED_PART}")
_LETTER_CHOICE = re.compile(r"\(([A-Za-z])\)")
_SPACED_THOUSANDS = re.compile(r"(?<![\d.])\d{1,3}(?: \d{3})+(?:\.\d+)?(?![\d.])")
# A comma and a space between digits: a list ('1, 330'), not a thousands separator ('1,330').
_LISTED = re.compile(r"\d,\s+\d")
_SPACE_OUTSIDE_NUMBERS = re.compile(r"(?<!\d)\s+|\s+(?!\d)")
# Minus signs and dashes a model may write for '-' (NFKC keeps them).
_MINUS = str.maketrans({"\u2212": "-", "\u2012": "-", "\u2013": "-", "\ufe63": "-", "\uff0d": "-"})


def _decimal_fraction(text: str) -> Fraction | None:
    if len(text) > _MAX_NUMBER_CHARS or not _DECIMAL.fullmatch(text):
        return None
    mantissa, _, exponent = text.lower().partition("e")
    value = Fraction(mantissa) if mantissa not in ("", "+", "-") else None
    if value is None:
        return None
    if exponent:
        value *= Fraction(10) ** int(exponent)
    return value


def _as_fraction(text: str) -> Fraction | None:
    """A number written as an integer, decimal, or ratio of them (after normalisation)."""
    if not text or len(text) > _MAX_NUMBER_CHARS:
        return None
    value = _decimal_fraction(text)
    if value is None:
        ratio = _RATIO.fullmatch(text)
        if ratio:
            numerator = _decimal_fraction(ratio.group(2))
            denominator = _decimal_fraction(ratio.group(3))
            if numerator is None or denominator in (None, 0):
                return None
            value = numerator / denominator * (-1 if ratio.group(1) == "-" else 1)
    if value is None or abs(value) > _MAX_MAGNITUDE:
        return None
    return value


def _canonical_number(value: Fraction) -> str:
    """One spelling per rational number: a plain decimal when it terminates, else p/q."""
    q = value.denominator
    twos = fives = 0
    while q % 2 == 0:
        q //= 2
        twos += 1
    while q % 5 == 0:
        q //= 5
        fives += 1
    if q != 1 or max(twos, fives) > 40:
        return f"{value.numerator}/{value.denominator}"
    with localcontext() as ctx:
        ctx.prec = 400
        text = format(Decimal(value.numerator) / Decimal(value.denominator), "f")
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return "0" if text in ("-0", "") else text


def _frac_part(x: str) -> str:
    x = x.strip()
    return x if _SIMPLE.fullmatch(x) else f"({x})"


def _replace_fracs(s: str, depth: int = 0) -> str:
    """``\\frac{a}{b}`` (nested braces allowed) and ``\\frac12`` -> 'a/b', '(a+1)/(b)', …"""
    if depth > 20 or "\\frac" not in s:
        return s
    out: list[str] = []
    closing = _matching_braces(s)  # once: scanning from every unclosed '{' would be quadratic
    i = 0
    while True:
        j = s.find("\\frac", i)
        if j < 0:
            out.append(s[i:])
            break
        out.append(s[i:j])
        k = j + 5
        args = []
        while len(args) < 2:
            while k < len(s) and s[k] == " ":
                k += 1
            if k < len(s) and s[k] == "{":
                if k not in closing:
                    break
                args.append(s[k + 1:closing[k]])
                k = closing[k] + 1
            elif k < len(s) and s[k].isascii() and s[k].isalnum():
                args.append(s[k])
                k += 1
            else:
                break
        if len(args) < 2:
            out.append("\\frac")
            i = j + 5
            continue
        numerator, denominator = (_replace_fracs(arg, depth + 1) for arg in args)
        text = f"{_frac_part(numerator)}/{_frac_part(denominator)}"
        previous = next((piece[-1] for piece in reversed(out) if piece), "")
        if previous.isdigit():
            text = f"({text})"  # '2\\frac{1}{2}' inside a longer expression: keep it apart from the 2
        out.append(text)
        i = k
    return "".join(out)


def _normalize_math_once(s: str, listed: bool = False) -> str:
    """One pass of normalize_math_answer; ``listed``: the answer is a list ('1, 330'), whose
    commas are never thousands separators."""
    s = unicodedata.normalize("NFKC", s).translate(_MINUS).strip()
    boxed = last_boxed(s)
    if boxed is not None:
        s = boxed
    letter_unit = _TEXT_LETTER_UNIT.fullmatch(s.rstrip(". "))
    if letter_unit:
        s = letter_unit.group(1)
    for _ in range(10):
        replaced = _TEXT_COMMANDS.sub(lambda m: m.group(1), s)
        if replaced == s:
            break
        s = replaced
    s = s.replace("\\$", "").replace("$", "")
    s = s.replace("\\dfrac", "\\frac").replace("\\tfrac", "\\frac")
    s = _SPACING.sub(lambda m: m.group(0) if m.group(0) == "\\\\" else " ", s)
    s = _DEGREES.sub("", s)
    s = s.replace("\\%", "").replace("%", "")
    s = s.replace("{,}", ",")
    s = " ".join(s.split()).strip()
    s = s.rstrip(".").strip()
    unit = _UNIT_SUFFIX.fullmatch(s)
    if unit:
        s = unit.group(1)
    assignment = _ASSIGNMENT.fullmatch(s)
    if assignment and "=" not in assignment.group(2).replace("\\le", "").replace("\\ge", ""):
        s = assignment.group(2).strip()
    mixed = _MIXED.fullmatch(s)
    if mixed and int(mixed.group(3)) != 0 and len(s) < _MAX_NUMBER_CHARS:
        value = int(mixed.group(1)) + Fraction(int(mixed.group(2)), int(mixed.group(3)))
        return _canonical_number(value)
    s = _replace_fracs(s)
    s = _SQRT_SHORT.sub(lambda m: f"\\sqrt{{{m.group(1)}}}", s)
    # '40 000' (from '40\\ 000' or '40\\,000') is one number; '1 2' is two, and stays apart.
    s = _SPACED_THOUSANDS.sub(lambda m: m.group(0).replace(" ", ""), s)
    s = _SPACE_OUTSIDE_NUMBERS.sub("", s)
    base = _BASE_SUBSCRIPT.fullmatch(s)
    if base:  # '1001_8': the dataset writes the digits alone ('1001')
        s = base.group(1)
    if _THOUSANDS.fullmatch(s):
        s = s.replace(",", ", ") if listed else s.replace(",", "")  # a list keeps its ', '

    if s.startswith("+"):
        s = s[1:]
    value = _as_fraction(s)
    if value is not None:
        return _canonical_number(value)
    choice = _LETTER_CHOICE.fullmatch(s)
    if choice:
        s = choice.group(1)
    if s.isascii() and s.isalpha():
        s = s.lower()
    return s


def normalize_math_answer(answer: str) -> str:
    """A canonical spelling of a final answer, for exact-match comparison.

    Handles: a surrounding ``\\boxed{}`` (nested braces), ``$``, ``\\text{}``/units after a
    number ('5 cm', '45 granola bars'), percentages ('50\\%' -> '50'), degrees, LaTeX spacing
    (``\\,``, ``\\!``, ``\\left``/``\\right``, ``\\quad``), thousands separators ('1,000',
    '1{,}000'), ``\\frac``/``\\dfrac``/``\\tfrac`` (braced or '\\frac12'), mixed numbers, a
    leading 'x =' and case of word answers. Rational numbers get one spelling: '0.5', '1/2',
    '\\frac{1}{2}' and '.50' all become '0.5'; '\\frac{7}{3}' becomes '7/3'. An answer longer than
    2000 characters is left as written.
    """
    s = answer if isinstance(answer, str) else str(answer)
    if len(s) > _MAX_ANSWER_CHARS:
        return s  # no final answer is this long: compared as written (and in bounded time)
    # '1, 330' (several answers, as several boxes are joined) is a list, never the number 1,330.
    listed = bool(_LISTED.search(s))
    # Each pass can expose another layer (a box in a box, 'x = y = 3'): repeat to a fixed point.
    for _ in range(8):
        t = _normalize_math_once(s, listed)
        if t == s:
            break
        s = t
    return s


def parse_number(answer: str) -> Fraction | None:
    """The answer's exact rational value when it is a number ('1,000', '\\frac{3}{4}', '12.5\\%', '$5')."""
    return _as_fraction(normalize_math_answer(answer))


# math-verify (the checker lighteval and open-r1 use) decides what the normalisation above
# cannot: '\\sqrt{12}' = '2\\sqrt{3}', '10^3' = '1000', '\\pi/2' = '\\frac{\\pi}{2}', reordered
# polynomials, intervals, sets, matrices. Its parse and its comparison each stop after
# _VERIFY_TIMEOUT_S (a timed-out comparison counts as different); its timeout is a SIGALRM
# alarm, which only the main thread may set, so elsewhere it runs without one and the length
# limit alone bounds the time. Answers longer than the limit are compared by normalisation only.
_VERIFY_MAX_CHARS = 300
_VERIFY_TIMEOUT_S = 5
_PERCENT = re.compile(r"\\%|%|\\text\s*\{\s*percent\s*\}|(?<![A-Za-z])percent(?![A-Za-z])")
_ALTERNATIVES = re.compile(r"(?<![A-Za-z\\])(?:or|either)(?![A-Za-z])|\\(?:vee|lor)(?![A-Za-z])")


def _verify_timeout() -> int | None:
    return _VERIFY_TIMEOUT_S if threading.current_thread() is threading.main_thread() else None


@functools.lru_cache(maxsize=8192)
def _verify_parse(answer: str) -> tuple:
    """math-verify's reading of one final answer (a tuple of sympy objects and strings)."""
    from math_verify import parse

    body = answer.strip().strip("$").strip()
    try:
        parsed = tuple(parse(f"${body}$", parsing_timeout=_verify_timeout()))
    except Exception:  # math-verify swallows its own errors; anything else means "unreadable"
        return ()
    # It reads a prefix when it cannot read the whole ('2c' as 2, '\\frac{3}{2}c' as 3/2): such a
    # reading does not count, so '2c' never equals '2d'.
    read = _verify_spelling(next((p for p in parsed if isinstance(p, str)), ""))
    whole = _verify_spelling(body)
    return () if whole != read and whole.startswith(read) else parsed


def _verify_spelling(latex: str) -> str:
    """The spelling math-verify reports what it read in: no spaces, no \\left/\\right, \\frac."""
    latex = re.sub(r"\\(?:left|right)(?![A-Za-z])|\s+", "", latex)
    return re.sub(r"\\[dt]frac(?![A-Za-z])", r"\\frac", latex)


def _verified_equal(prediction: str, gold: str) -> bool:
    if len(prediction) > _VERIFY_MAX_CHARS or len(gold) > _VERIFY_MAX_CHARS:
        return False
    gold_parsed, pred_parsed = _verify_parse(gold), _verify_parse(prediction)
    if not gold_parsed or not pred_parsed:
        return False
    from math_verify import verify

    try:
        return bool(verify(list(gold_parsed), list(pred_parsed), timeout_seconds=_verify_timeout()))
    except Exception:
        return False


def _percent_verdict(prediction: str, gold: str) -> bool | None:
    """The dataset's percent convention, when either side carries a percent sign.

    A percentage answer is written in percent, with or without its sign: gold '80\\%' takes
    '80' and '80\\%' but not '0.8'; gold '80' takes '80\\%'. A gold below 1 without a sign is a
    fraction or probability: gold '0.25' takes '25\\%' but not '0.25\\%'. None when neither side
    has a sign, or a side is not a number (then the usual comparison decides)."""
    pred_percent, gold_percent = bool(_PERCENT.search(prediction)), bool(_PERCENT.search(gold))
    if not (pred_percent or gold_percent):
        return None
    pred_value, gold_value = parse_number(_PERCENT.sub("", prediction)), parse_number(_PERCENT.sub("", gold))
    if pred_value is None or gold_value is None:
        return None
    if gold_percent:
        return pred_value == gold_value
    return pred_value / 100 == gold_value or (pred_value == gold_value and abs(gold_value) >= 1)


def _offers_alternatives(answer: str) -> bool:
    """'4 \\text{ or } 5', 'either 4 or 5': more than one answer offered."""
    return bool(_ALTERNATIVES.search(_TEXT_COMMANDS.sub(lambda m: f" {m.group(1)} ", answer)))


def math_equal(prediction: str, gold: str) -> bool:
    """Does the final answer ``prediction`` equal ``gold``? An empty answer never does.

    The same answer after normalisation (units, thousands separators, 'x =', LaTeX spelling:
    see normalize_math_answer), or equal by math-verify; percentages by the dataset's
    convention (_percent_verdict); an answer that offers alternatives ('4 or 5') equals only a
    gold that does too; two numbers only where they agree to three significant figures as well
    (math-verify's six-decimal rounding would take '0.0' for 1/2598960)."""
    prediction = prediction if isinstance(prediction, str) else str(prediction)
    gold_norm = normalize_math_answer(gold)
    if not gold_norm or not normalize_math_answer(prediction):
        return False
    if _offers_alternatives(prediction) and not _offers_alternatives(gold):
        return False
    percent = _percent_verdict(prediction, gold)
    if percent is not None:
        return percent
    if normalize_math_answer(prediction) == gold_norm:
        return True
    return _verified_equal(prediction, gold) and _numerically_close(prediction, gold)


# math-verify compares numbers rounded to six decimal places, an absolute tolerance: it takes
# '0.0' for 1/2598960 and '0.000001' for '0.0000012'. Where both sides are numbers its verdict
# stands only when they also agree to three significant figures (a relative difference below
# this): ordinary answers are judged by math-verify alone ('0.166667' for 1/6), tiny ones are not.
_RELATIVE_TOLERANCE = 1e-3
# How long sympy may take to evaluate one answer's number (seconds; see _time_limit).
_EVALF_TIMEOUT_S = 5


def _numeric_value(answer: str) -> float | None:
    """The answer's value when it is a number: exact for a plain one, else as math-verify reads it
    ('10^{-6}', '\\frac{\\sqrt{2}}{10^6}'); None for anything that is not one number."""
    exact = parse_number(answer)
    if exact is not None:
        return float(exact)
    if len(answer) > _VERIFY_MAX_CHARS:
        return None
    numbers = [item for item in _verify_parse(answer) if getattr(item, "is_number", False)]
    if len(numbers) != 1:
        return None
    try:
        with _time_limit(_EVALF_TIMEOUT_S):
            value = complex(numbers[0].evalf())
    except (TypeError, ValueError, ArithmeticError, TimeoutError):
        return None
    return value.real if value.imag == 0 else None


@contextlib.contextmanager
def _time_limit(seconds: float):
    """Raise TimeoutError in the block after ``seconds`` (a SIGALRM timer, as math-verify's own
    timeout: the main thread only; elsewhere the block runs unbounded). Sympy's evalf of an
    answer like '(\\sum 1/n^2)!' runs for minutes."""
    if threading.current_thread() is not threading.main_thread() or not hasattr(signal, "setitimer"):
        yield
        return

    def expire(*_):
        raise TimeoutError(f"over {seconds} s")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def _numerically_close(prediction: str, gold: str) -> bool:
    """True unless both answers are numbers that differ by more than _RELATIVE_TOLERANCE of the gold
    (a gold of 0 takes only 0)."""
    pred_value, gold_value = _numeric_value(prediction), _numeric_value(gold)
    if pred_value is None or gold_value is None:
        return True
    return abs(pred_value - gold_value) <= abs(gold_value) * _RELATIVE_TOLERANCE


def all_boxed(text: str) -> list[str]:
    """Contents of every closed ``\\boxed{…}`` / ``\\fbox{…}`` (and ``\\boxed 5``), in order; an
    unclosed or empty box is left out. Linear in the text's length."""
    contents = (content.strip() for _, _, content in _box_spans(text) if content is not None)
    return [content for content in contents if content]


# More distinct boxes than this are never compared pairwise (a runaway generation).
_MAX_BOXES_COMPARED = 8


# Words between two different boxes that make the later one a correction of the earlier: 'Wait,
# no.', "that's wrong", 'I made a mistake', 'Actually, let me redo this', 'is incorrect'.
_CORRECTION_MARK = re.compile(
    r"\b(?:wait|oops|actually|mistake|error|wrong|incorrect|correction|on\s+second\s+thought|i\s+meant"
    r"|should\s+(?:be|have\s+been)|let\s+me\s+(?:re-?do|re-?calculate|re-?compute|re-?check|re-?evaluate|correct|fix"
    r"|try\s+again))\b|\bno\s*[,.!;:]",
    re.IGNORECASE)


# Right after the last box, the response takes it back: 'Wait, that's wrong.', 'Hmm, this is
# incorrect.', 'Actually, I made a mistake.', '\\boxed{7} is wrong.' A verdict on the box itself,
# opening what follows it and ending its clause; not a remark on a method ('It is wrong to add
# them'), on another answer ('(The other root is extraneous, so it is not correct.)') or a note ('a
# common mistake is 17'). Matched on a short window with its leading marks and spaces stripped,
# so no two of its quantifiers take the same characters (a long run of spaces is read once).
_WITHDRAWN = re.compile(
    r"(?:(?:wait|hmm+|oops|oh|actually|no|but|however|sorry)\b[\s,.!]*)*"
    r"(?:(?:(?:that|this|it|my\s+(?:final\s+)?answer|the\s+(?:final\s+)?answer(?:\s+above)?)(?:['’]s|\s+is|\s+was)"
    r"|is|was)\s+(?:(?:actually|clearly|definitely|also)\s+)?(?:wrong|incorrect|not\s+(?:right|correct))"
    r"|i\s+made\s+(?:a|an)\s+(?:mistake|error))(?=\s*(?:[.!,;:]|$))",
    re.IGNORECASE)
_WITHDRAWAL_WINDOW = 200
# After a withdrawal, the response checks again and keeps the answer: 'Yes, 12 is correct.',
# "actually it's right" (not 'The correct answer is 15').
_REAFFIRMED = re.compile(r"\byes\b|\b(?:it|that|this|\d+)\s*(?:['’]s|\s+is)\s+(?:(?:actually|indeed)\s+)?"
                         r"(?:right|correct)\b", re.IGNORECASE)


def _withdrawn_at(text: str, end: int) -> int | None:
    """Where the text right after a box that ends at ``end`` takes it back (_WITHDRAWN: 'Wait,
    that's wrong.') and does not keep it after all (_REAFFIRMED); None when it does not."""
    window = text[end:end + _WITHDRAWAL_WINDOW]
    stripped = window.lstrip(" \t\r\n$.*_`)]\\")
    match = _WITHDRAWN.match(stripped)
    if not match:
        return None
    after = end + len(window) - len(stripped) + match.end()
    return None if _REAFFIRMED.search(text, after) else after


def standing_boxes(text: str) -> list[str]:
    """Contents of the closed boxes of a response (after any thinking), less those it corrects: a
    box followed by a different one with a correction between them ('\\boxed{5}. Wait, that's
    wrong … \\boxed{7}') is superseded, and so is the last box where the text right after it
    takes it back ('\\boxed{12}. Wait, that's wrong.': no box stands, the response withdrew its
    answer). A note after the last box ('a common mistake is 17') takes nothing back, and different
    boxes with no correction between them are all answers ('\\boxed{4} or \\boxed{5}')."""
    text = strip_thinking(text)
    spans = [(start, end, content.strip()) for start, end, content in _box_spans(text)
             if content is not None and content.strip()]
    if spans and _withdrawn_at(text, spans[-1][1]) is not None:
        return []
    standing = []
    for i, (_, end, content) in enumerate(spans):
        if i + 1 < len(spans):
            following_start, _, following = spans[i + 1]
            if (normalize_math_answer(following) != normalize_math_answer(content)
                    and _CORRECTION_MARK.search(text, end, following_start)):
                continue
        standing.append(content)
    return standing


def committed_boxes(text: str) -> list[str]:
    """The distinct answers a response commits to in ``\\boxed{}`` (after any thinking; boxes it
    corrects left out, see standing_boxes): equal boxes ('\\boxed{0.5}' … '\\boxed{\\frac12}')
    count once, the last spelling kept."""
    boxes = standing_boxes(text)
    distinct: list[str] = []
    for box in boxes:
        if len(distinct) > _MAX_BOXES_COMPARED:
            distinct.append(box)
            continue
        same = [i for i, seen in enumerate(distinct)
                if normalize_math_answer(seen) == normalize_math_answer(box) or math_equal(box, seen)]
        distinct = [seen for i, seen in enumerate(distinct) if i not in same] + [box]
    return distinct


_UNCLOSED_BOX = re.compile(r"^\$*\s*\\(?:boxed|fbox)\s*\{(?!.*\})")
# 'The answer is 5', 'Answer: 5' — not a verdict on an answer ('this answer is correct: 5 * 2 = 10').
_ANSWER_IS = re.compile(r"answer\s*(?:is|:)(?!\s*:?\s*(?:correct|right|wrong|incorrect|true|false|valid|verified)\b)"
                        r"\s*:?\s*([^\n]+)", re.IGNORECASE)
_PLAIN_NUMBER = re.compile(r"[+-]?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?")
# Right before a number: the word that makes it a step's name, not a quantity.
_NAMES_A_STEP = re.compile(r"\b(?:step|equation|eq\.)\s*[#(]?\s*\Z", re.IGNORECASE)
_LAST_NUMBER = re.compile(r"[+-]?(?:(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?|\.\d+)(?:\s*/\s*\d+)?")


def _cut_final_box(text: str) -> str | None:
    """What the final box holds when the response (after any thinking) ends inside it, unclosed:
    its final answer cut off by the token budget; None when it does not."""
    text = strip_thinking(text)
    spans = _box_spans(text)
    if not spans or spans[-1][2] is not None:
        return None
    return text[spans[-1][1]:].strip().removeprefix("{").strip()


def extract_math_answer_strict(text: str) -> str:
    """The answer in the form the prompt asks for: what the response puts in ``\\boxed{}``;
    '' without a box, or when the last box is cut off (an earlier box is not the final answer).
    Several different boxed answers are all returned, joined by ', ' (a response that commits to
    '4' and to '5' matches neither)."""
    if _cut_final_box(text) is not None:
        return ""
    return ", ".join(committed_boxes(text))


def math_follows_format(text: str) -> bool:
    """Does the response put its answer in ``\\boxed{}``, as the prompt asks (and close it)?"""
    return bool(committed_boxes(text)) and _cut_final_box(text) is None


def extract_math_answer(text: str) -> str:
    """Best-effort final answer: the boxed answer(s) as in the strict form; where the text takes
    the final box back ('\\boxed{12}. Wait, that's wrong.'), the last number after that, else no
    answer; without a box, what follows the last 'answer is' / 'Answer:' (a cut-off 'answer is
    \\boxed{58' reads 58); where the final box is cut off, the plain number in it, else no answer;
    else the last number; else '' (no answer)."""
    boxed = extract_math_answer_strict(text)
    if boxed:
        return boxed
    cut = _cut_final_box(text)
    text = strip_thinking(text).replace("\u2212", "-")
    spans = [span for span in _box_spans(text) if span[2] is not None and span[2].strip()]
    withdrawn = _withdrawn_at(text, spans[-1][1]) if spans and cut is None else None
    if withdrawn is not None:
        # The final box taken back: only what follows counts, its last number ('Wait, that's
        # wrong. … so x = 15.', 'The answer is not 12, it is 15.'); the working before it is withdrawn.
        return _last_number(text, withdrawn)
    stated = None
    for stated in _ANSWER_IS.finditer(text):
        pass
    if stated is not None:
        answer = stated.group(1).strip().rstrip(".").strip()
        answer = _UNCLOSED_BOX.sub("", answer).strip()  # a truncated 'answer is \\boxed{58'
        if answer:
            return answer
    if cut is not None:
        # The final box was cut off: a plain number in it is the answer it was writing (as after
        # 'answer is'); anything else ('\\boxed{\\frac{1}{2') is no answer, and the last number
        # (inside that box) is not one either.
        cut = cut.replace("\u2212", "-")
        return cut if _PLAIN_NUMBER.fullmatch(cut) else ""
    return _last_number(text)


def _last_number(text: str, start: int = 0) -> str:
    """The last number of text[start:] that is not the name of a step ('I made a mistake in
    step 2', 'Step 3:', 'equation (1)'); '' when there is none."""
    number = None
    for match in _LAST_NUMBER.finditer(text, start):
        if not _NAMES_A_STEP.search(text, max(start, match.start() - 16), match.start()):
            number = match
    return number.group(0).replace(" ", "") if number is not None else ""


def math_score(prediction: str, gold: str) -> dict:
    """{'exact_match': 0|100, 'abs_error': float|None, 'parsed': 0|100|None}.

    ``abs_error`` is |prediction − gold| when both are numbers; ``parsed`` says whether the
    prediction is a number, and is None when the gold answer is not one (e.g. '2\\sqrt{5}').
    """
    gold_value = parse_number(gold)
    pred_value = parse_number(prediction) if prediction else None
    score = {"exact_match": 100.0 * math_equal(prediction, gold), "abs_error": None, "parsed": None}
    if gold_value is not None:
        score["parsed"] = 100.0 * (pred_value is not None)
        if pred_value is not None:
            score["abs_error"] = float(abs(pred_value - gold_value))
    return score


def math_metrics(rows: Sequence[dict]) -> dict:
    """Exact match (percent), absolute error (mean, median, count) on numeric answers, parse rate.

    ``parse_rate``: of the rows whose gold answer is a number, the percentage whose prediction
    is a number too (the rows with an absolute error); ``answer_rate``: rows with any answer.
    """
    exact, errors, parsed, answered = [], [], [], []
    for row in rows:
        scores = row.get("scores") or math_score(row.get("extracted") or "", row["reference"]["answer"])
        exact.append(scores["exact_match"])
        if scores.get("abs_error") is not None:
            errors.append(scores["abs_error"])
        if scores.get("parsed") is not None:
            parsed.append(scores["parsed"])
        answered.append(100.0 * bool(row.get("extracted")))
    return {
        "exact_match": _mean(exact),
        "abs_error_mean": _mean(errors),
        "abs_error_median": float(np.median(errors)) if errors else None,
        "n_parsed": len(errors),
        "n_numeric": len(parsed),
        "parse_rate": _mean(parsed),
        "answer_rate": _mean(answered),
        "total": len(rows),
    }


# --------------------------------------------------------------------------------------
# ARC: choice labels
# --------------------------------------------------------------------------------------

DEFAULT_LABELS = ("A", "B", "C", "D", "E")
POSITION_NAMES = "ABCDEFGHIJ"
# After 'A' a lower-case word usually means the article ('A ball rolls'), not the label;
# these words commonly follow a label instead ('A because …').
_LABEL_FOLLOWERS = {"because", "since", "as", "is", "which", "and", "with", "for", "from", "would", "will",
                    "best", "correct", "seems", "should", "must", "or", "vs", "versus", "also", "does", "doesn",
                    "isn"}
_MARKS = r"[*_`\s]*"  # markdown emphasis around a label or a prefix: '**Answer:** C', '**C**'
_LABEL = r"[(\[]?\s*([A-Za-z0-9])\s*[)\]]?(?![A-Za-z0-9])"
# A statement of the answer: 'answer is C', 'Answer: C', 'the best option is C', 'Correct
# option: C', 'go with C', 'I choose C'. A bare 'option C' is only a mention (_MENTION).
_EXPLICIT = re.compile(
    r"\b(?:answer(?:\s+(?:is|would\s+be|will\s+be|should\s+be|must\s+be))?"
    r"|(?:option|choice)(?:\s+(?:is|would\s+be|will\s+be|should\s+be|must\s+be)|\s*[:=])"
    r"|(?:go|going|went)\s+with|(?:choose|chose|pick|select|opt\s+for)"
    r")" + _MARKS + r"[:=\-–]?" + _MARKS + r"(?:(?:option|choice|label)\s+)?" + _LABEL,
    re.IGNORECASE,
)
# A conclusion after reasoning: 'D is wrong, so B', 'therefore it is C.', 'so option C', and a
# correction: 'B. Actually, C.'
_CONCLUSION = re.compile(
    r"\b(?:so|therefore|thus|hence|actually)\b,?\s*(?:(?:it|that)(?:['’]s|\s+is|\s+must\s+be|\s+would\s+be)\s+)?"
    r"(?:(?:option|choice)\s+)?" + _MARKS + _LABEL + r"(?=[\s.,;:!*_)]|$)",
    re.IGNORECASE,
)
# A label set against the one it replaces: "not B, it's C", 'not B but C'.
_INSTEAD = re.compile(
    r"\bnot\s+" + _MARKS + r"[(\[]?\s*[A-Za-z0-9]\s*[)\]]?(?![A-Za-z0-9])[*_`]*\s*[,;]?\s*(?:but\s+|rather\s+)?"
    r"(?:(?:it|that)(?:['’]s|\s+is)\s+)?" + _MARKS + _LABEL + r"(?=[\s.,;:!*_)]|$)",
    re.IGNORECASE,
)
# A label called right: 'C is correct', 'B is the right answer', 'C is the answer'.
_AFFIRMED = re.compile(
    r"(?<![A-Za-z0-9])" + _LABEL + r"\s+(?:is|seems|must\s+be)\s+(?:the\s+)?(?:right|correct|best|true|answer)\b",
    re.IGNORECASE,
)
# Right before 'answer is C': a second possibility, not the answer ('Another possible answer is C').
_ALTERNATIVE_BEFORE = re.compile(r"\b(?:(?:another|alternative|second|one\s+other)\s+"
                                 r"(?:(?:possible|plausible|valid|correct|acceptable|good)\s+)?"
                                 r"|the\s+other\s+(?:possible|plausible)\s+)\Z", re.IGNORECASE)
# Right before 'choose C' (or 'answer is C'): a choice described as a mistake, not made ('It is a
# common mistake to choose A', 'the trap is to pick A', 'many students would choose A', 'it is
# tempting to go with A').
_MISTAKEN_BEFORE = re.compile(
    r"(?:\b(?:mistake|error|trap|temptation|pitfall)\s+(?:is\s+|would\s+be\s+)?"
    r"|\b(?:wrong|incorrect|tempting|misleading)\s+)to\s+(?:say\s+(?:that\s+)?(?:the\s+)?)?\Z"
    r"|\b(?:some|many|most)\s+(?:people|students|readers|pupils)\s+(?:(?:might|may|would|could|often|will|tend\s+to)\s+)*\Z",
    re.IGNORECASE)
# Statements of the answer, strongest first.
_STATEMENTS = (_EXPLICIT, _CONCLUSION, _INSTEAD, _AFFIRMED)
# A bare mention of a choice, weaker than any statement: 'Option A: …', 'choice B'.
_MENTION = re.compile(r"\b(?:option|choice)\s+" + _MARKS + _LABEL, re.IGNORECASE)
_LEADING = re.compile(_MARKS + _LABEL)
# A line or sentence holding only a label: 'C', '**C.**', '(C)', 'Option C.'
_BARE_LINE = re.compile(r"[*_(\[\s]*(?:(?:[Oo]ption|[Cc]hoice)\s+[*_(\[]*)?([A-Za-z0-9])[)\].:*_\s]*")
# More labels joined to the one found: 'C and D', 'A, B, C or D', 'B/C', 'B; C', 'B or maybe C',
# 'B, or possibly C', 'B (or C)', 'B (possibly C)', 'B and/or C', 'B vs C', 'A and option B'.
_MORE_LABELS = re.compile(
    r"[*_`]*(?:\s*(?:,|/|&|\+|;)\s*(?:(?:or|and)\s+)?|\s+(?:and/or|or|and|vs\.?|versus)\s+|\s*\(\s*(?:or\s+|(?=(?:maybe|possibly|perhaps)\s)))"
    r"(?:(?:maybe|possibly|perhaps)\s+)?(?:(?:[Oo]ption|[Cc]hoice)\s+)?" + _MARKS + _LABEL)
_SENTENCE_BREAK = re.compile(r"\n|(?<=[.!?])\s+")
# Words right after a label saying it is not the answer: 'D is wrong', 'A is incorrect', 'B would
# be wrong', 'C is also incorrect', "D doesn't fit", 'B?' (asked about).
_REJECTED = re.compile(
    r"\s*\?|\s*(?:is|are|seems?|looks?|would\s+be)\s+(?:(?:all|both|also|clearly|definitely|obviously)\s+)?"
    r"(?:wrong|incorrect|false|not\b|unlikely|out\b|eliminated|ruled\s+out)"
    r"|\s*(?:isn|aren|doesn|don|wouldn)['’]t\b|\s*(?:does|do|would)\s+not\b",
    re.IGNORECASE)
# The end of a clause after a label: 'B; C.', 'B; C or D'.
_CLAUSE_END = re.compile(r"\s*[)\]]?[ \t]*(?:[.,;:!?*_`\n]|$|(?:or|and)\b)")
# A verb right after a label joined in brackets: a clause about it ('B (or C is a distractor)').
_VERB_AFTER = re.compile(r"\s+(?:is|are|was|were|seems?|looks?|would|could|might|may|can|has|does)\b", re.IGNORECASE)
# A rejection that covers every label joined before it: 'B and C are wrong'.
_PLURAL_REJECTION = re.compile(r"\s*(?:are|aren['’]t|do|don['’]t|seem|look)\b", re.IGNORECASE)
# Words right before a label that set it aside: 'not B', "wouldn't go with B", 'I would not
# choose \boxed{B}', 'rather than B'.
_NEGATED = re.compile(
    r"(?:\bnot|cannot|n['’]t|\bnever|\brather\s+than|\binstead\s+of|\bexcept)"
    r"(?:\s+(?:choose|chose|pick|select|say|be|go\s+with|opt\s+for))?[\s*_`$(\[\\]*\Z",
    re.IGNORECASE)
# Quotation marks around a box: a format restated ('the format "\boxed{A}"'), not an answer.
_QUOTE_BEFORE = re.compile(r"[\"'“‘«`]\$*\Z")
_QUOTE_AFTER = re.compile(r"\$*[\"'”’»`]")
# A box asked about: '\boxed{B}?'
_ASKED = re.compile(r"\s*\?")
# One box joined to the next: '\boxed{B} or \boxed{C}', '\boxed{B}, $\boxed{C}$'.
_BOX_JOINER = re.compile(
    r"\s*(?:,|/|&|;|and/or|or|and|vs\.?|versus)?\s*(?:(?:maybe|possibly|perhaps)\s+)?\$*\\(?:boxed|fbox)(?![A-Za-z])")
# What closes a box's maths or emphasis right after it: '$', '\]', '\)', '**'.
_AFTER_BOX = re.compile(r"(?:\$+|\\[\])]|[*_`]+)*")
# In a box: LaTeX's 'or' and 'and' symbols.
_LATEX_OR = re.compile(r"\\(?:lor|vee)(?![A-Za-z])")
_LATEX_AND = re.compile(r"\\(?:land|wedge)(?![A-Za-z])")
# An answer prefix in a box: '\boxed{\text{Answer: C}}', '\boxed{\text{The answer is C}}', '\boxed{Option C}'.
_BOX_PREFIX = re.compile(
    r"(?:the\s+)?(?:final\s+|correct\s+|best\s+)?(?:answer|option|choice)\b(?:\s+(?:is|would\s+be))?"
    r"\s*[:=\-–]?\s*(?:(?:option|choice)\s+)?",
    re.IGNORECASE)
# Between a label and its choice's text in a box: 'C. text', 'C: text', 'C) text', 'C - text',
# 'C — text', 'C, text', 'C (text)'; after a closed label '(C) text', '(C) - text'.
_LABEL_THEN_TEXT = re.compile(r"\s*[.:)\]]\s+\S|\s*[,\-–—]\s*\S|\s+\(\S")
_CLOSED_LABEL_THEN_TEXT = re.compile(r"\s*[.:,\-–—]?\s*\S")
# A box is read from its first this many characters: a label and a choice's text fit, and a
# runaway box (thousands nested) is read in linear time.
_MAX_BOX_CHARS = 500
# A letter or digit standing alone: a label a box's text may name ('Both B and C').
_STANDALONE = re.compile(r"(?<![A-Za-z0-9])[A-Za-z0-9](?![A-Za-z0-9])")


def _article_like(token: str, rest: str) -> bool:
    """'A ball', 'a dog': the letter starts a phrase instead of naming a choice."""
    follower = re.match(r"\s+([A-Za-z]+)", rest)
    if not follower or rest[:1] in ").]:":
        return False
    word = follower.group(1)
    if token == "a" or token.islower():
        return word.lower() not in _LABEL_FOLLOWERS
    if token == "A":
        return word[0].islower() and word.lower() not in _LABEL_FOLLOWERS
    return False


def _choice_key(text: str) -> str:
    return " ".join(unicodedata.normalize("NFKC", text).strip().rstrip(".").split())


def _choice_named(line: str, labels: Sequence[str], choices: Sequence[str]) -> str | None:
    """The label of the choice whose text the line repeats (exactly; else ignoring case when
    only one choice matches that way: 'RR' and 'Rr' are different choices)."""
    if not line:
        return None
    for label, choice in zip(labels, choices):
        if _choice_key(choice) == line:
            return label
    folded = [label for label, choice in zip(labels, choices) if _choice_key(choice).casefold() == line.casefold()]
    return folded[0] if len(folded) == 1 else None


def _committed(offered: set[str]) -> str:
    """The one label offered; '' for a hedge between several."""
    return next(iter(offered)) if len(offered) == 1 else ""


def _dismissed(text: str, start: int, end: int) -> bool:
    """Is the label named in text[start:end] set aside: negated just before ('not B', "wouldn't
    go with B") or rejected just after ('B is wrong', 'B would be wrong', 'B?')?"""
    return bool(_NEGATED.search(text, max(0, start - 40), start) or _REJECTED.match(text, end))


def _joined(text: str, end: int, known) -> tuple[set[str], int]:
    """The labels joined on at ``end`` ('… and D', '…, or possibly C', '… (or C)') and where they
    stop. A joined label rejected on its own ('C, D is wrong', 'C; D is wrong') is not offered,
    nor one that opens a new clause ('C; B seems tempting'); one rejected with those before it
    ('B and C are wrong') is, and the rejection covers all."""
    offered: set[str] = set()
    end = _past_choice_words(text, end)
    while (more := _MORE_LABELS.match(text, end)):
        token = more.group(1)
        if not known(token) or _article_like(token, text[more.end(1):]):
            break
        if ";" in text[end:more.start(1)] and not _CLAUSE_END.match(text, more.end(1)):
            break  # 'C; B seems tempting': a new clause, not a second answer
        if "(" in text[end:more.start(1)] and _VERB_AFTER.match(text, more.end(1)):
            break  # 'B (or C is a distractor)': a remark on C, not a second answer ('B (or C too)' is)
        after = _past_choice_words(text, more.end())
        rejected = _REJECTED.match(text, after)
        if rejected and not _PLURAL_REJECTION.match(rejected.group(0)):
            break
        offered.add(known(token))
        end = after
    return offered, end


# A choice's words in brackets right after its label ('B (harbour)', as _choices_as_labels writes
# them and as many responses do), not a bracket that offers another label ('B (or C)').
_CHOICE_WORDS_AFTER = re.compile(r"[ \t]*\((?!\s*(?:or|and|maybe|possibly|perhaps)\b)[^()\n]{1,80}\)")


def _past_choice_words(text: str, end: int) -> int:
    """Where a label's offer goes on past the choice's words in brackets after it: so 'B (harbour)
    or C (forge)' offers both, and 'B (harbour) is wrong' sets B aside."""
    words = _CHOICE_WORDS_AFTER.match(text, end)
    return words.end() if words else end


def _offer(text: str, match: re.Match, known) -> tuple[set[str], int] | None:
    """The labels offered where ``match`` names one (itself and any joined to it: 'C and D',
    'B/C') and where the offer ends; None when the letter is an article ('A ball') or not a
    label of the question."""
    token = match.group(1)
    if not known(token) or _article_like(token, text[match.end(1):]):
        return None
    joined, end = _joined(text, match.end(), known)
    return {known(token)} | joined, end


def _stated(text: str, known, start: int = 0) -> set[str] | None:
    """The labels of the answer the text states from ``start`` on: the last explicit statement
    ('answer is C', 'go with C'), else the last conclusion ('so B', 'Actually, C'), else the last
    'not B, it's C', else the last label called right ('C is correct'). A dismissed match ('I
    would not choose B', 'so B is wrong') is passed over. None when there is no statement."""
    for pattern in _STATEMENTS:
        for match in reversed(list(pattern.finditer(text, start))):
            if pattern is _EXPLICIT and _ALTERNATIVE_BEFORE.search(text, max(0, match.start() - 40), match.start()):
                continue            # 'Another possible answer is C': an offer (_ALSO_OFFERED), not the answer
            if pattern is _EXPLICIT and _MISTAKEN_BEFORE.search(text[max(0, match.start() - 60):match.start()]):
                continue            # 'It is a common mistake to choose A': a choice not made
            offer = _offer(text, match, known)
            if offer and not _dismissed(text, match.start(), offer[1]):
                return offer[0]
    return None


def _mentioned(text: str, known) -> set[str]:
    """The labels of the bare mentions ('Option A: …', 'choice B') that are not dismissed."""
    found: set[str] = set()
    for match in _MENTION.finditer(text):
        offer = _offer(text, match, known)
        if offer and not _dismissed(text, match.start(), offer[1]):
            found |= offer[0]
    return found


def _box_text(content: str) -> str:
    """A box's content as plain text: styling commands unwrapped until none is left
    ('\\text{\\textbf{C}}'), '\\{ \\}' and grouping braces dropped, LaTeX spaces ('\\ ', '\\,') and
    '$' as spaces, '\\&' as '&', '\\lor'/'\\vee' as 'or' and '\\land'/'\\wedge' as 'and';
    whitespace collapsed, a final full stop dropped."""
    text = content.replace("\\{", " ").replace("\\}", " ").replace("\\&", "&")
    text = _LATEX_AND.sub(" and ", _LATEX_OR.sub(" or ", text))
    text = _SPACING.sub(" ", text)
    for _ in range(10):
        unwrapped = _TEXT_COMMANDS.sub(lambda m: m.group(1), text)
        if unwrapped == text:
            break
        text = unwrapped
    text = text.replace("{", " ").replace("}", " ").replace("$", " ")
    return " ".join(text.split()).rstrip(".").strip()


def _names_own_text(label: str, rest: str, labels: Sequence[str], choices: Sequence[str]) -> bool:
    """Is ``rest``, what follows a label in a box, that label's choice text, whole or cut short
    ('C Matter was conserved')?"""
    choice = dict(zip(labels, choices)).get(label)
    rest = _choice_key(rest.strip(" .:;,()[]-–—")).casefold()
    if choice is None or not rest:
        return False
    choice = _choice_key(choice).casefold()
    return len(rest) >= min(3, len(choice)) and choice.startswith(rest)


def _labels_named(text: str, choices: Sequence[str], known) -> set[str]:
    """The question's labels a box's text names as standalone capitals or digits ('Both B and
    C', 'B. text or C. text'), leaving out the choices' own texts, the article 'A' and numbers
    that count something ('4 legs')."""
    for choice in choices:
        key = _choice_key(choice)
        if len(key) > 3:
            text = re.sub(re.escape(key), " ", text, flags=re.IGNORECASE)
    found: set[str] = set()
    for match in _STANDALONE.finditer(text):
        token, rest = match.group(0), text[match.end():]
        if not known(token) or token.islower() or _article_like(token, rest):
            continue
        if token.isdigit() and _article_like("a", rest):  # '4 legs': a quantity
            continue
        found.add(known(token))
    return found


def _box_verdict(content: str, labels: Sequence[str], choices: Sequence[str], known) -> str | None:
    """What one box names: a label ('C', '(C)', 'c', '\\text{\\textbf{C}}', 'Answer: C', 'C. text',
    'C - text', 'C (text)', 'C text' with C's own text), the label of a choice's text, '' when it
    offers several labels ('B, C', 'B; C', '\\{B, C\\}', 'B \\lor C', 'Both B and C', 'B. text or
    C. text'), or None when it names no choice."""
    inner = _box_text(content[:_MAX_BOX_CHARS])
    if not inner:
        return None
    prefix = _BOX_PREFIX.match(inner)
    body = inner[prefix.end():] if prefix and prefix.end() < len(inner) else inner
    for line in (inner, body):
        named = _choice_named(_choice_key(line), labels, choices)
        if named:
            return named
    match = _LEADING.match(body)
    offer = _offer(body, match, known) if match else None
    if offer and offer[1] == len(body):
        return _committed(offer[0])  # the label alone, or labels joined: a hedge
    if offer and len(offer[0]) == 1 and _names_own_text(known(match.group(1)), body[match.end(1):], labels, choices):
        return known(match.group(1))
    if len(_labels_named(body, choices, known)) > 1:
        return ""
    if offer:
        closed = match.group(0).rstrip().endswith((")", "]"))  # '(C) text', 'C) text'
        then_text = (_CLOSED_LABEL_THEN_TEXT.match(body, match.end()) if closed
                     else _LABEL_THEN_TEXT.match(body, match.end(1)))
        if then_text:
            return _committed(offer[0])
    return None


def _rejections(text: str, known) -> dict[str, int]:
    """Where the text last rejects each label outright ('Wait, B is incorrect', 'B would be
    wrong'; a label asked about, 'B?', is not rejected)."""
    last: dict[str, int] = {}
    for match in _STANDALONE.finditer(text):
        token = match.group(0)
        if known(token) and not token.islower():
            rejected = _REJECTED.match(text, match.end())
            if rejected and rejected.group(0).strip() != "?":
                last[known(token)] = match.start()
    return last


def _boxed_choice(text: str, labels: Sequence[str], choices: Sequence[str], known) -> tuple[str, int] | None:
    """The choice the response's boxes commit to, as models tuned on maths (and thinking models)
    end an answer, and where the last box counted ends; None when no box names a choice (the
    other rules then read the text).

    Every closed box is read (_box_verdict); an empty or unclosed one names nothing. A box in
    quotation marks (a format restated), set aside before it ('not \\boxed{B}'), dismissed after
    it ('\\boxed{C} is wrong', '\\boxed{B} would be wrong') or asked about ('Is it \\boxed{B} or
    \\boxed{C}?') does not count. A box followed by another label ('\\boxed{B} or C') offers both.
    Boxes naming different labels ('\\boxed{B} or \\boxed{C}', one per line), or a box offering
    several, are a hedge: '' — unless the text rejects all but one of those labels after boxing
    them ('\\boxed{B} Wait, B is incorrect. The answer is \\boxed{C}.')."""
    counted: list[tuple[str, int]] = []  # (content, end) of the boxes that count, last first
    asked = False  # the next box is asked about, and so is one joined to it ('\\boxed{B} or \\boxed{C}?')
    for start, end, content in reversed(_box_spans(text)):
        if content is None:
            continue
        after = _AFTER_BOX.match(text, end).end()
        asked = bool(_ASKED.match(text, after)) or (asked and _BOX_JOINER.match(text, after) is not None)
        quoted = _QUOTE_BEFORE.search(text, max(0, start - 3), start) and _QUOTE_AFTER.match(text, end)
        if not (asked or quoted or _dismissed(text, start, after)):
            counted.append((content, after))
    boxes: list[tuple[str, int]] = []  # (verdict, end of the box and any labels joined to it)
    for content, after in reversed(counted):
        verdict = _box_verdict(content, labels, choices, known)
        if verdict is None:
            continue
        joined, after = _joined(text, after, known)
        boxes.append((verdict if not joined - {verdict} else "", after))
    if not boxes:
        return None
    verdicts = {verdict for verdict, _ in boxes}
    if len(verdicts) > 1 and "" not in verdicts:
        rejected = _rejections(text, known)
        kept = [(verdict, end) for verdict, end in boxes if rejected.get(verdict, -1) < end]
        if len({verdict for verdict, _ in kept}) == 1:
            boxes, verdicts = kept, {kept[0][0]}
    return (boxes[0][0] if len(verdicts) == 1 else ""), boxes[-1][1]


# Another label offered beside the answer as a second possibility, in a sentence that ends
# there or gives a reason ('…, since …'): 'It could also be C.', 'The answer might be (C) as
# well.', 'C is also correct.', 'C could be right too.', 'C is also a possibility.', 'C would also
# work.' The label is a capital or a digit opening its clause ('However, C …', 'and C …'; not
# 'vitamin C', 'UV-C', 'pH 7.4').
# 'True' is left out: 'C is also true' mostly says a statement is true, not that it answers.
_OFFER_PREDICATE = (r"(?i:(?:considered\s+)?(?:possible|plausible|likely|correct|right|valid|acceptable|defensible)"
                    r"|an?\s+(?:option|possibility|candidate"
                    r"|(?:possible|plausible|valid|correct|good|strong|reasonable)\s+(?:answer|option|choice|candidate)))")
# A label, and the choice's text in brackets after it: 'Option C (condensation) is also correct.'
_OFFER_LABEL = r"[*_`]*\(?([A-Z0-9])\)?[*_`]*(?:\s*\([^()\n]{1,80}\))?"
_OFFER_TOO = r"\s+(?i:too|as\s+well)"
# Doubt closing the offer's sentence: 'C is also possible, but I'm not sure.'
_UNSURE_TEXT = (r",?\s*(?i:but\s+I(?:['’]m|\s+am)\s+not\s+(?:(?:completely|entirely|totally|100%)\s+)?(?:sure|certain))"
                r"(?=[*_`]*\s*(?:[.!]|$))")
_OFFER_END = (r"(?=[*_`)]*\s*(?:[.!]|$|,?\s*(?i:since|because)\b"
               r"|,?\s*(?i:depending\s+on\s+(?:the\s+|your\s+|one['’]s\s+)?(?:interpretation|reading|perspective))"
               r"|" + _UNSURE_TEXT + r"))")
_ALSO_OFFERED = (
    re.compile(r"\b(?i:it|this|that|the\s+(?:correct\s+|right\s+)?answer)\s+(?i:could|might|may)\s+"
               r"(?:(?i:also|equally)\s+be\s+(?:(?i:option|choice)\s+)?" + _OFFER_LABEL +
               r"|be\s+(?:(?i:option|choice)\s+)?" + _OFFER_LABEL + _OFFER_TOO + r")" + _OFFER_END),
    re.compile(r"(?:\b(?i:option|choice|answer|though|although|but|and|however,?"
               r"|\bI(?:['’]d|\s+would|\s+also|\s+do)?\s+(?i:think|guess|believe|suppose|feel|say)(?:\s+that)?"
               r"|(?i:alternatively),?)\s+"
               r"|(?<![A-Za-z0-9]\s)(?<![A-Za-z0-9.\-*_`]))" + _OFFER_LABEL + r"\s+"
               r"(?:(?i:is)\s+(?i:also|equally)\s+" + _OFFER_PREDICATE +
               r"|(?i:could|might|may|would)\s+(?i:also|equally)\s+(?:(?i:be)\s+" + _OFFER_PREDICATE + r"|(?i:work))"
               r"|(?i:is|could\s+be|might\s+be|may\s+be|would\s+be)\s+" + _OFFER_PREDICATE + _OFFER_TOO +
               r"|(?i:would|could|might)\s+(?i:work)" + _OFFER_TOO +
               r"|(?i:also|equally)\s+(?i:fits|works|applies|qualifies)(?:" + _OFFER_TOO + r")?"
               r"|(?i:fits|works)" + _OFFER_TOO + r")"
               + _OFFER_END),
    # 'Alternatively, C could be correct.', 'Alternatively, the answer could be C.'
    re.compile(r"\b(?i:alternatively),?\s+(?:(?:(?i:it|the\s+answer)\s+(?i:could|might|may|would)\s+be\s+"
               r"(?:(?i:option|choice)\s+)?" + _OFFER_LABEL + r")|(?:(?i:option|choice)\s+)?" + _OFFER_LABEL +
               r"\s+(?:(?i:could|might|may|would)\s+be|(?i:is))\s+" + _OFFER_PREDICATE + r")" + _OFFER_END),
    # 'Another possible answer is C.', 'An alternative answer could be C.'
    re.compile(r"\b(?i:another|an\s+alternative|a\s+second|one\s+other|the\s+other\s+(?=(?i:possible|plausible)\b))\s*"
               r"(?:(?i:possible|plausible|valid|correct|acceptable|good)\s+)?(?i:answer|option|choice|possibility)\s+"
               r"(?i:is|would\s+be|could\s+be|might\s+be|may\s+be)\s+(?:(?i:option|choice)\s+)?" + _OFFER_LABEL
               + _OFFER_END),
)
# After an offer, anything that weighs it against the answer, limits it or sets it aside: a
# contrast ('C is also correct. However, …'), a condition, or a rejection ('C is wrong').
_OFFER_WEIGHED = re.compile(
    r"\b(?:but|however|though|although|yet|whereas|while|still|nevertheless|nonetheless|except|unless|if|only"
    r"|less|more|most|better|best|prefer\w*|rather|instead|wrong|incorrect|not|ruled?\s+out|eliminat\w*"
    r"|mistake\w*|error|trap|distractor|misconception|tempting)\b|n['’]t\b",
    re.IGNORECASE)
# Right before an offer, in its sentence: the writer denies it ("I don't think C is also correct").
# Or attributes it to someone else ('Someone might say it could also be C').
_OFFER_DENIED = re.compile(r"(?:(?:\bnot|n['’]t)\s+(?:think|believe|say|agree|that)"
                           r"|\b(?:someone|some(?:\s+\w+)?|one|others?|people)\s+(?:might|may|could|would|will)\s+"
                           r"(?:say|argue|think|claim|suggest)"
                           r"|\bat\s+first(?:\s+(?:glance|sight))?|\bon\s+the\s+surface|\bsuperficially)\b[^.!?\n]*\Z",
                           re.IGNORECASE)
_OFFER_LOOKBACK = 80
# Doubt closing a sentence weighs nothing against the offer: 'C is also possible, but I'm not sure.'
_UNSURE = re.compile(_UNSURE_TEXT)
# An answer that is itself several choices ('D (both A and C)', 'all of the above'): the labels it
# names fitting are its reasons, not offers beside it.
_EVERY_NAMED = re.compile(r"\b(?:(?i:both)\s+(?:(?i:options?|choices?)\s+)?[A-Z0-9]\s+(?i:and)\s+[A-Z0-9]\b"
                          r"|(?i:all|none)\s+of\s+the\s+above\b|(?i:all\s+(?:three|four|of\s+them)\s+(?:are\s+)?correct))")


def _offered_besides(text: str, label: str, known) -> bool:
    """Does the text offer another label beside ``label`` as a second possibility ('The answer
    is B. It could also be C.', 'B, but C is also correct.'), in a sentence that ends there, with
    nothing after it that weighs it against the answer or sets it aside (_OFFER_WEIGHED) or states
    the answer again ('It could also be C. The answer is B.'), and not denied ("I don't think C
    is also correct.")? A sentence opening with 'If' offers nothing ('If …, it could also be C.')."""
    # Each test reads from one offer to the end of the text: the last weighing word and one reading
    # of what follows the last offer standing keep the whole check linear.
    unsure = _UNSURE.sub(lambda match: " " * len(match.group(0)), text)   # same positions
    last_weighed = max((match.start() for match in _OFFER_WEIGHED.finditer(unsure)), default=-1)
    standing = -1
    for pattern in _ALSO_OFFERED:
        for match in pattern.finditer(text):
            # The pattern's one label group that took part ('it could also be C' or 'it could be C too').
            group = next(index for index, token in enumerate(match.groups(), 1) if token)
            other = known(match.group(group))
            if other is None or other == label or last_weighed >= match.end():
                continue
            at = match.start(group)
            before = re.split(r"[.!?\n]", text[max(0, at - _OFFER_LOOKBACK):at])[-1]
            if _OFFER_DENIED.search(before) or re.match(r"\s*(?i:if|when|unless|in\s+case)\b", before):
                continue
            standing = max(standing, match.end())
    if standing < 0 or _EVERY_NAMED.search(text):
        return False
    restated = text[standing:].lstrip(" \t\n.!,;:*_`")
    return not (restated and _read_choice_label(restated, [label], (), known) == label)


def _choices_as_labels(text: str, labels: Sequence[str], choices: Sequence[str]) -> str:
    """The text with each choice's words, where they stand for the choice, written as its label
    with the words in brackets: 'Option C) Precipitation', 'C: Precipitation', 'C - Precipitation'
    and a bare 'Precipitation' all become 'C (Precipitation)', the form an offer's label may take
    (_OFFER_LABEL). So a second choice offered by its words ('B) Condensation. Option C)
    Precipitation is also correct.', 'The answer is B. Precipitation is also correct.') reads as
    one offered by its label. Words already in brackets, or put after another choice's label, are
    left as written; so are choices as short as a label, or that differ only in case ('RR', 'Rr')."""
    labels = [str(label) for label in labels]
    words = {_choice_key(str(choice or "")) for choice in choices}
    words = sorted((w for w in words if 3 <= len(w) <= 80 and not re.search(r"[()\n]", w)), key=len, reverse=True)
    if not words:
        return text
    alternatives = "|".join(re.escape(choice).replace(r"\ ", r"\s+") for choice in words)
    pattern = re.compile(r"(?:\b(?:(?i:option|choice)\s+)?([A-Za-z0-9])\s*[).:\-–]\s+|(?<![\w(]))"
                         r"(" + alternatives + r")(?![\w)])", re.IGNORECASE)

    def rewrite(match: re.Match) -> str:
        label = _choice_named(_choice_key(match.group(2)), labels, choices)
        if label is None:
            return match.group(0)
        named = match.group(1)
        # Another choice's label before the words ('The answer is B. Precipitation …') stays
        # as written: it ends a sentence, or the response mislabels the choice.
        kept = match.start(1) if named and named.upper() == label.upper() else match.start(2)
        return f"{match.group(0)[: kept - match.start(0)]}{label} ({match.group(2)})"

    return pattern.sub(rewrite, text)


def extract_choice_label(text: str, labels: Sequence[str] = DEFAULT_LABELS,
                         choices: Sequence[str] = ()) -> str:
    """The choice label a generation commits to ("C", "C.", "(C)", "C) text", "The answer is C",
    "**Answer:** C", "I'd go with C.", "D is wrong, so B", "c", numeric labels), in the
    dataset's spelling; '' when it names none, or offers several ("C and D", "A, B, C or D",
    "B/C", "B or maybe C", "B (or C)", "\\boxed{B} or \\boxed{C}", "B, but it could also be C",
    "The answer is B. C is also correct."), or takes its answer back ("The answer is B. Wait,
    that's wrong."): a hedge is not an answer.

    Only the row's own labels count, and a label the text sets aside ('not B', "wouldn't choose
    B", 'B is wrong', 'B would be wrong', 'B?') is not the one it commits to. Order: the
    response's boxes (_boxed_choice), unless the text after the last of them states another
    answer (a correction: '\\boxed{B} … The answer is C.'); then the last explicit statement
    ('answer is C', 'go with C'), the last conclusion ('so B', 'Actually, C'), the last 'not B,
    it's C', the last label called right ('C is correct'); then a label opening the text, the
    last line or sentence holding only a label; then the bare mentions ('Option A: …'), when
    they name one label (an analysis going through every option names none); then the text of a
    choice.
    """
    labels = [str(label) for label in labels] or list(DEFAULT_LABELS)
    by_upper = {label.strip().upper(): label for label in labels}
    text = unicodedata.normalize("NFKC", strip_thinking(text or "")).strip()
    if not text:
        return ""

    def known(token: str) -> str | None:
        return by_upper.get(token.upper())

    as_labels = _choices_as_labels(text, labels, choices)
    label = _read_choice_label(text, labels, choices, known)
    if not label and as_labels != text and not _read_choice_label(text, labels, (), known):
        # No label named, but a choice's words are: read them as its label ('The answer is
        # harbour.' as 'The answer is B (harbour).'), with the same statements, hedges and
        # dismissals ('Harbour is wrong. The answer is forge.'). Choices as short as a label are
        # not read this way ('The answer is 8.' names no choice '8' of a question whose labels
        # are letters).
        label = _read_choice_label(as_labels, labels, (), known)
    if not label:
        return ""
    choice = str(choices[labels.index(label)] or "") if len(choices) == len(labels) else ""
    if _label_withdrawn(text, label, choice) or _joined_by_words(as_labels, label, known):
        return ""
    return "" if _offered_besides(as_labels, label, known) else label


def _joined_by_words(as_labels: str, label: str, known) -> bool:
    """Does the answer's statement, with the choices' words read as their labels, join a second
    choice to it ('B) harbour or C) forge', 'The answer is harbour or mill')? A hedge."""
    offered = _stated(as_labels, known)
    if offered is None and (match := _LEADING.match(as_labels)):
        offered = (_offer(as_labels, match, known) or (None, 0))[0]
    return bool(offered) and label in offered and len(offered) > 1


def _label_withdrawn(text: str, label: str, choice: str) -> bool:
    """Does the response take its answer back right after it last names it, by its label or its
    text ('The answer is B. Wait, that's wrong.', 'B. I made a mistake.'), and not keep it after
    all (_withdrawn_at, as a maths box is taken back)? Then it commits to no label."""
    named = r"(?<![A-Za-z0-9])" + re.escape(label) + r"(?![A-Za-z0-9])"
    ends = [match.end() for match in re.finditer(named, text)]
    if len(choice.strip()) >= 3:
        ends += [match.end() for match in re.finditer(re.escape(choice.strip()), text, re.IGNORECASE)]
    return bool(ends) and _withdrawn_at(text, max(ends)) is not None


def _read_choice_label(text: str, labels: list[str], choices: Sequence[str], known) -> str:
    """extract_choice_label's reading, before the check for a second label offered beside it."""
    boxed = _boxed_choice(text, labels, choices, known)
    if boxed is not None:
        label, end = boxed
        later = _stated(text, known, end) if label else None
        return _committed(later) if later and later != {label} else label

    stated = _stated(text, known)
    if stated:
        return _committed(stated)
    first_line = _choice_key(text.splitlines()[0])
    if len(first_line) > 3:  # the text of a choice, e.g. 'C_{6}H_{12}O_{6}' (not a label and more)
        named = _choice_named(first_line, labels, choices)
        if named:
            return named
    match = _LEADING.match(text)
    offer = _offer(text, match, known) if match else None
    if offer and not _REJECTED.match(text, offer[1]):
        return _committed(offer[0])
    for sentence in reversed(_SENTENCE_BREAK.split(text)):
        bare = _BARE_LINE.fullmatch(sentence)
        if bare and known(bare.group(1)):
            return known(bare.group(1))
    mentioned = _mentioned(text, known)
    if mentioned:
        return _committed(mentioned)
    return _choice_named(first_line, labels, choices) or ""


def extract_choice_label_strict(text: str, labels: Sequence[str] = DEFAULT_LABELS) -> str:
    """The label in exactly the form the prompt asks for: the whole response (after any
    thinking) is one of the question's labels as the dataset spells it; else ''."""
    text = strip_thinking(text or "").strip()
    return text if text in [str(label) for label in labels] else ""


def arc_follows_format(text: str, labels: Sequence[str] = DEFAULT_LABELS) -> bool:
    """Is the response one of the question's labels and nothing else, as the prompt asks?"""
    return bool(extract_choice_label_strict(text, labels))


def arc_score(prediction: str, reference: dict) -> dict:
    """{'correct': 0|100, 'no_label': 0|100}."""
    return {"correct": 100.0 * (bool(prediction) and prediction == reference["label"]),
            "no_label": 100.0 * (not prediction)}


def label_position(label: str, labels: Sequence[str]) -> str | None:
    """The choice's position as a letter ('1' of ['1','2','3','4'] -> 'A'); None when absent."""
    try:
        index = list(labels).index(label)
    except ValueError:
        return None
    return POSITION_NAMES[index] if index < len(POSITION_NAMES) else str(index)


def macro_f1(golds: Sequence[str], predictions: Sequence[str | None]) -> float | None:
    """Macro-F1 (percent) over the classes present among the golds; a prediction outside them
    (or None) is a miss for its gold class and no class's false positive."""
    classes = sorted(set(golds))
    if not classes:
        return None
    f1s = []
    for c in classes:
        tp = sum(1 for g, p in zip(golds, predictions) if g == c and p == c)
        gold_n = sum(1 for g in golds if g == c)
        pred_n = sum(1 for p in predictions if p == c)
        f1s.append(2 * tp / (gold_n + pred_n))
    return 100.0 * sum(f1s) / len(f1s)


def arc_positions(rows: Sequence[dict]) -> tuple[list[str], list[str | None]]:
    """Gold and predicted answer positions of ARC rows (labels compared by position, so the
    numeric 1–4 labels of some questions count with A–D rather than as classes of their own)."""
    golds, preds = [], []
    for row in rows:
        labels = row["reference"]["labels"]
        golds.append(label_position(row["reference"]["label"], labels) or "?")
        extracted = row.get("extracted") or ""
        preds.append(label_position(extracted, labels) if extracted else None)
    return golds, preds


def arc_metrics(rows: Sequence[dict]) -> dict:
    """Accuracy, macro-F1 over answer positions, and the share of outputs with no label (percent)."""
    correct, no_label = [], []
    for row in rows:
        scores = row.get("scores") or arc_score(row.get("extracted") or "", row["reference"])
        correct.append(scores["correct"])
        no_label.append(scores["no_label"])
    golds, preds = arc_positions(rows)
    return {"accuracy": _mean(correct), "macro_f1": macro_f1(golds, preds),
            "no_label_rate": _mean(no_label), "total": len(rows)}


class MacroF1Statistic:
    """Vectorised macro-F1 for the bootstrap: one gather and one bincount per chunk of resamples."""

    def __init__(self, golds: Sequence[str], predictions: Sequence[str | None]):
        classes = sorted(set(golds))
        index = {c: i for i, c in enumerate(classes)}
        self.k = len(classes)
        other = self.k  # predictions outside the gold classes, or none
        gold_codes = np.array([index[g] for g in golds], dtype=np.int64)
        pred_codes = np.array([index.get(p, other) if p is not None else other for p in predictions],
                              dtype=np.int64)
        self.codes = gold_codes * (self.k + 1) + pred_codes
        self._value = macro_f1(list(golds), list(predictions))

    @classmethod
    def from_rows(cls, rows: Sequence[dict]) -> "MacroF1Statistic":
        return cls(*arc_positions(rows))

    def full(self) -> float | None:
        return self._value

    def on_indices(self, idx: np.ndarray) -> np.ndarray:
        r = idx.shape[0]
        m = self.k * (self.k + 1)
        if m == 0:
            return np.full(r, np.nan)
        codes = self.codes[idx] + (np.arange(r, dtype=np.int64) * m)[:, None]
        confusion = np.bincount(codes.ravel(), minlength=r * m).reshape(r, self.k, self.k + 1)
        tp = confusion[:, np.arange(self.k), np.arange(self.k)]
        gold_n = confusion.sum(axis=2)
        pred_n = confusion[:, :, : self.k].sum(axis=1)
        present = gold_n > 0
        with np.errstate(divide="ignore", invalid="ignore"):
            f1 = np.where(present, 2 * tp / np.maximum(gold_n + pred_n, 1), 0.0)
            counts = present.sum(axis=1)
            return np.where(counts > 0, 100.0 * f1.sum(axis=1) / np.maximum(counts, 1), np.nan)
