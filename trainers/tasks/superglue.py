"""SuperGLUE tasks: the v2 JSONL files as released (../shared/data/superglue) and the hub copy
(aps/super_glue, the parquet export of the original ``super_glue`` dataset).

SuperGLUE's RTE is registered as ``superglue_rte``, apart from GLUE's ``rte``: the two share
their sentences but are separate benchmark entries, with separate files and results.

Input encodings for an encoder classifier:
- BoolQ, CB, RTE: the pair (question, passage) / (premise, hypothesis).
- WiC: the target word, then both sentences with the word's occurrence marked by ``*``.
- WSC: the text with the candidate noun phrase marked ``*…*`` and the pronoun ``#…#``, paired
  with a question naming both spans.
- COPA: per-choice scoring; the premise plus its question ("What was the cause?") is paired
  with each choice (formats.ChoiceFormat).
- MultiRC: (passage, question + candidate answer) per answer option, grouped by question so
  that the metric can take the exact match per question.
"""
from __future__ import annotations

import re

from trainers.tasks.base import (Example, FieldError, JsonlLayout, Task, binary_label, get, label_of,
                                 register_task)
from trainers.tasks.formats import CHOICE

_FILES = {"train": ("train.jsonl",), "dev": ("val.jsonl",)}
_HUB = "aps/super_glue"
CB_LABELS = {"entailment": 0, "contradiction": 1, "neutral": 2}  # the hub's class order
RTE_LABELS = {"entailment": 0, "not_entailment": 1}
COPA_QUESTIONS = {"cause": "What was the cause?", "effect": "What happened as a result?"}


def _named(labels: dict[str, int]):
    """The hub stores class ids; map them back to the released files' label names."""
    names = {v: k for k, v in labels.items()}
    return lambda r: {**r, "label": names.get(r["label"], r["label"])}


# ---- record parsers (one JSONL record -> examples) ------------------------------------------
def parse_boolq(r: dict) -> list[Example]:
    return [Example(get(r, "question"), get(r, "passage"), binary_label(r))]


def parse_pair(labels: dict[str, int]):
    def parse(r: dict) -> list[Example]:
        return [Example(get(r, "premise"), get(r, "hypothesis"), label_of(r, labels))]
    return parse


def parse_copa(r: dict) -> list[Example]:
    question = get(r, "question")
    if question not in COPA_QUESTIONS:
        raise FieldError("question", f"must be one of {', '.join(COPA_QUESTIONS)} (got {question!r})")
    label = get(r, "label", int)
    if label not in (0, 1):
        raise FieldError("label", f"not a valid label (valid: 0, 1) (got {label!r})")
    return [Example(f"{get(r, 'premise')} {COPA_QUESTIONS[question]}", None, label,
                    choices=(get(r, "choice1"), get(r, "choice2")))]


def _mark(sentence: str, start: int, end: int, field: str) -> str:
    if not 0 <= start < end <= len(sentence):
        raise FieldError(field, f"character span [{start}, {end}) is outside the sentence (length {len(sentence)})")
    return f"{sentence[:start]}*{sentence[start:end]}*{sentence[end:]}"


def parse_wic(r: dict) -> list[Example]:
    s1 = _mark(get(r, "sentence1"), get(r, "start1", int), get(r, "end1", int), "start1")
    s2 = _mark(get(r, "sentence2"), get(r, "start2", int), get(r, "end2", int), "start2")
    return [Example(f"{get(r, 'word')}: {s1}", s2, binary_label(r))]


def mark_spans(text: str, spans: list[tuple[int, str, str, str]]) -> str:
    """Wrap each (word index, span text, marker, field) span of the space-split text in its marker."""
    words = text.split(" ")
    for index, span, marker, field in spans:
        n = max(1, len(span.split()))
        if not 0 <= index <= len(words) - n:
            raise FieldError(field, f"word index outside the text ({len(words)} words) (got {index})")
        words[index] = marker + words[index]
        words[index + n - 1] = words[index + n - 1] + marker
    return " ".join(words)


def parse_wsc(r: dict) -> list[Example]:
    t = get(r, "target", dict)
    noun, pronoun = get(t, "span1_text", where="target"), get(t, "span2_text", where="target")
    text = mark_spans(get(r, "text"), [
        (get(t, "span1_index", int, where="target"), noun, "*", "target.span1_index"),
        (get(t, "span2_index", int, where="target"), pronoun, "#", "target.span2_index")])
    return [Example(text, f'Does "{pronoun}" refer to "{noun}"?', binary_label(r))]


_TAGS = re.compile(r"<br\s*/?>|<[^>]+>")


def parse_multirc(r: dict) -> list[Example]:
    passage = get(r, "passage", dict)
    text = _TAGS.sub(" ", get(passage, "text", where="passage")).strip()
    out = []
    for qi, q in enumerate(get(passage, "questions", list, where="passage")):
        where = f"passage.questions[{qi}]"
        question, group = get(q, "question", where=where), get(q, "idx", int, where=where)
        for ai, a in enumerate(get(q, "answers", list, where=where)):
            w = f"{where}.answers[{ai}]"
            out.append(Example(text, f"{question} {get(a, 'text', where=w)}", binary_label(a, where=w), group=group))
    return out


def hub_multirc(r: dict) -> list[Example]:
    # The hub flattens MultiRC to one row per answer option; idx.question is the global question id.
    text = _TAGS.sub(" ", r["paragraph"]).strip()
    return [Example(text, f"{r['question']} {r['answer']}", int(r["label"]), group=int(r["idx"]["question"]))]


def hub_wsc(r: dict) -> list[Example]:
    keys = ("span1_index", "span2_index", "span1_text", "span2_text")
    return parse_wsc({"text": r["text"], "target": {k: r[k] for k in keys}, "label": bool(r["label"])})


def _sg(name: str, directory: str, parse, *, metric: str = "accuracy", num_labels: int = 2,
        hub_name: str | None = None, hub_parse=None, **kw) -> Task:
    return register_task(Task(
        name=name, benchmark="superglue", metric=metric, num_labels=num_labels,
        hub_path=_HUB, hub_name=hub_name or name, hub_parse=hub_parse or parse,
        layout=JsonlLayout(directory, _FILES, parse), **kw))


_sg("boolq", "BoolQ", parse_boolq, max_epochs=100, patience=10, description="yes/no questions on a passage")
_sg("cb", "CB", parse_pair(CB_LABELS), metric="accuracy_macro_f1", num_labels=3,
    hub_parse=lambda r: parse_pair(CB_LABELS)(_named(CB_LABELS)(r)),
    max_epochs=500, patience=100, description="three-way entailment (CommitmentBank)")
_sg("copa", "COPA", parse_copa, format=CHOICE, max_epochs=500, patience=100,
    description="choice of plausible alternatives (per-choice scoring)")
_sg("multirc", "MultiRC", parse_multirc, metric="f1a_em", hub_parse=hub_multirc,
    max_epochs=10, patience=1, description="multi-answer reading comprehension (answers grouped by question)")
_sg("wic", "WiC", parse_wic, max_epochs=500, patience=20, description="word sense in context")
_sg("wsc", "WSC", parse_wsc, hub_name="wsc.fixed", hub_parse=hub_wsc, max_epochs=500, patience=100,
    description="Winograd coreference (spans marked)")
# The AoT table gives RTE 200/20 without naming a benchmark; SuperGLUE's RTE gets the same.
_sg("superglue_rte", "RTE", parse_pair(RTE_LABELS), hub_name="rte",
    hub_parse=lambda r: parse_pair(RTE_LABELS)(_named(RTE_LABELS)(r)),
    max_epochs=200, patience=20, description="textual entailment (SuperGLUE's copy)")
