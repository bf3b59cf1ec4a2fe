"""Input encodings: WiC's target word, WSC's marked spans, COPA's per-choice scoring and MultiRC's
answer options grouped by question, through the real MiniLM tokenizer and a tiny BERT."""
import json

import pytest
import torch
import torch.nn.functional as F
from transformers import AutoModelForSequenceClassification, AutoTokenizer

from trainers.data import make_loader, subsample, units
from trainers.tasks import TASKS
from trainers.tasks.superglue import mark_spans


@pytest.fixture(scope="module")
def tokenizer(minilm_path):
    return AutoTokenizer.from_pretrained(minilm_path)


def dev(task, data_dir):
    return TASKS[task].load("dev", source="local", data_dir=data_dir)


def test_wic_marks_the_target_word_in_both_sentences(data_dir):
    e = dev("wic", data_dir)[0]  # word "class", start1 25 / end1 30, start2 85 / end2 90
    assert e.text_a == "class: An emerging professional *class*."
    assert e.text_b.endswith("showed real *class*.")


def test_wsc_marks_noun_and_pronoun_spans(data_dir):
    e = dev("wsc", data_dir)[0]  # span1 "anyone" at word 32, span2 "him" at word 47
    words = e.text_a.split(" ")
    assert words[32] == "*anyone*" and words[47] == "#him#"
    assert e.text_b == 'Does "him" refer to "anyone"?'
    assert mark_spans("the big dog saw it", [(0, "the big dog", "*", "s1"), (4, "it", "#", "s2")]) == "*the big dog* saw #it#"


def test_copa_is_scored_per_choice(data_dir, tokenizer, tiny_bert):
    task = TASKS["copa"]
    examples = dev("copa", data_dir)[:5]
    assert task.head_size == 1 and task.num_labels == 2
    batch = next(iter(make_loader(examples, tokenizer, max_length=64, batch_size=5, regression=False,
                                  shuffle=False, seed=0, fmt=task.format)))
    assert batch["input_ids"].shape[0] == 10 and batch["labels"].tolist() == [e.label for e in examples]
    # Row 2i + j is (premise + question, choice j) of example i.
    row = batch["input_ids"][3][batch["attention_mask"][3].bool()].tolist()
    assert row == tokenizer(examples[1].text_a, examples[1].choices[1])["input_ids"]
    model = AutoModelForSequenceClassification.from_pretrained(tiny_bert, num_labels=1)
    loss, scores = task.format.forward(model, batch)
    single = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                   token_type_ids=batch["token_type_ids"]).logits.view(5, 2)
    assert scores.shape == (5, 2) and torch.allclose(scores, single)
    assert loss.item() == pytest.approx(F.cross_entropy(single, batch["labels"]).item(), rel=1e-5)
    assert task.format.predict(scores, regression=False).tolist() == single.argmax(-1).tolist()


def test_multirc_answers_are_grouped_by_question(data_dir, tokenizer):
    examples = dev("multirc", data_dir)
    groups = units(examples)
    assert len(examples) == 4848 and len(groups) == 953
    raw = [json.loads(line)["passage"] for line in (data_dir / "superglue" / "MultiRC" / "val.jsonl").open()]
    questions = {q["idx"]: (p["text"], q["question"], len(q["answers"])) for p in raw for q in p["questions"]}
    for g in groups:  # one unit = every answer option of one question, with that question's text
        passage, question, n = questions[g[0].group]
        assert len(g) == n and all(e.group == g[0].group and e.text_b.startswith(question + " ") for e in g)
        assert len({e.text_a for e in g}) == 1 and g[0].text_a.split()[-1] == passage.split()[-1]
    assert "<b>" not in examples[0].text_a and "<br>" not in examples[0].text_a
    some = subsample(examples, 10, seed=3)  # 10 questions, each with all its answer options
    assert len({e.group for e in some}) == 10
    assert len(some) == sum(len(g) for g in groups if g[0].group in {e.group for e in some})
    batch = next(iter(make_loader(some, tokenizer, max_length=128, batch_size=len(some), regression=False,
                                  shuffle=False, seed=0, fmt=TASKS["multirc"].format)))
    assert batch["group"].tolist() == [e.group for e in some]


# ---- dynamic padding -----------------------------------------------------------------------------
class PadToMaxLength:
    """The tokenizer, but every batch padded to ``max_length`` (the fixed padding we do not use)."""

    def __init__(self, tokenizer, max_length: int):
        self.tokenizer, self.max_length = tokenizer, max_length

    def __call__(self, *args, **kwargs):
        return self.tokenizer(*args, **kwargs)

    def pad(self, features, **kwargs):
        return self.tokenizer.pad(features, padding="max_length", max_length=self.max_length, **kwargs)


@pytest.mark.parametrize("task", ["cola", "rte", "copa"])
def test_batches_are_padded_to_their_longest_example(task, data_dir, tokenizer):
    """A batch is as wide as its longest (truncated) example, not max_length: activations scale
    with the batch's own length."""
    t, max_length = TASKS[task], 128
    loader = make_loader(dev(task, data_dir)[:96], tokenizer, max_length=max_length, batch_size=8,
                         regression=t.is_regression, shuffle=False, seed=0, fmt=t.format)
    widths = []
    for batch in loader:
        lengths = batch["attention_mask"].sum(1)
        assert batch["input_ids"].shape[1] == int(lengths.max()) <= max_length
        widths.append(batch["input_ids"].shape[1])
    assert min(widths) < max_length and len(set(widths)) > 1


def test_scores_are_the_same_as_with_batches_padded_to_max_length(data_dir, tokenizer, tiny_bert):
    """The same model scores the same with dynamic and with fixed padding (right padding, an
    encoder pooling [CLS]): the logits within float noise, the metrics exactly."""
    from trainers.loop import evaluate

    task = TASKS["rte"]
    examples = dev("rte", data_dir)[:48]
    model = AutoModelForSequenceClassification.from_pretrained(tiny_bert, num_labels=2).eval()
    n = 256  # the tiny BERT's positions: room for RTE's long pairs, so most batches are shorter
    loaders = [make_loader(examples, tok, max_length=n, batch_size=8, regression=False, shuffle=False, seed=0)
               for tok in (tokenizer, PadToMaxLength(tokenizer, n))]
    widths = [[b["input_ids"].shape[1] for b in dl] for dl in loaders]
    assert widths[1] == [n] * 6 and max(widths[0]) < n  # the two really pad differently
    with torch.no_grad():
        logits = [torch.cat([task.format.forward(model, b)[1] for b in dl]) for dl in loaders]
    assert (logits[0] - logits[1]).abs().max() < 1e-5
    assert evaluate(model, loaders[0], task, "cpu") == evaluate(model, loaders[1], task, "cpu")
