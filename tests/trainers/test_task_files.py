"""Tasks with no local copy in ../shared/data (QNLI, QQP, MNLI, BoolQ train) read small files the
tests write in the released format; malformed files fail naming the file, the line and the field.
Hub loading cannot run offline, so the hub record converters are checked on records shaped like
the hub's rows instead."""
import json

import pytest

from trainers.tasks import TASKS, DataError
from trainers.tasks.superglue import hub_multirc, hub_wsc

MNLI_HEAD = ["index", "promptID", "pairID", "genre", "sentence1_binary_parse", "sentence2_binary_parse",
             "sentence1_parse", "sentence2_parse", "sentence1", "sentence2"]


def write_tsv(path, header, rows):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join("\t".join(r) for r in [header, *rows]) + "\n")


def write_jsonl(path, records):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in records))


def mnli_row(i, s1, s2, gold, dev=False):
    parses = ["( x )", "( y )", "(ROOT x)", "(ROOT y)"]
    labels = [gold] * (5 if dev else 1)
    return [str(i), "31193", f"{i}n", "government", *parses, s1, s2, *labels, gold]


def test_glue_tasks_without_local_copies_read_their_released_layout(tmp_path):
    g = tmp_path / "glue"
    write_tsv(g / "QNLI" / "train.tsv", ["index", "question", "sentence", "label"],
              [["0", "What is it?", "It is a \"cat\".", "entailment"], ["1", "Who?", "Nobody", "not_entailment"]])
    write_tsv(g / "QNLI" / "dev.tsv", ["index", "question", "sentence", "label"], [["0", "q", "s", "not_entailment"]])
    write_tsv(g / "QQP" / "train.tsv", ["id", "qid1", "qid2", "question1", "question2", "is_duplicate"],
              [["133273", "213221", "213222", "How is the life?", "How is life?", "1"],
               ["402555", "536040", "536041", "Why?", "Why not?", "0"]])
    write_tsv(g / "QQP" / "dev.tsv", ["id", "qid1", "qid2", "question1", "question2", "is_duplicate"],
              [["1", "2", "3", "a", "b", "0"]])
    write_tsv(g / "MNLI" / "train.tsv", MNLI_HEAD + ["label1", "gold_label"],
              [mnli_row(0, "A man sleeps.", "A man rests.", "entailment"),
               mnli_row(1, "It rains.", "It is dry.", "contradiction")])
    dev_head = MNLI_HEAD + [f"label{i}" for i in range(1, 6)] + ["gold_label"]
    write_tsv(g / "MNLI" / "dev_matched.tsv", dev_head, [mnli_row(0, "a", "b", "neutral", dev=True)])
    write_tsv(g / "MNLI" / "dev_mismatched.tsv", dev_head, [mnli_row(0, "c", "d", "contradiction", dev=True),
                                                             mnli_row(1, "e", "f", "entailment", dev=True)])

    load = lambda task, split: TASKS[task].load(split, source="local", data_dir=tmp_path)  # noqa: E731
    qnli = load("qnli", "train")
    assert [(e.text_a, e.text_b, e.label) for e in qnli] == [("What is it?", 'It is a "cat".', 0), ("Who?", "Nobody", 1)]
    assert [(e.text_a, e.text_b, e.label) for e in load("qqp", "train")] == [
        ("How is the life?", "How is life?", 1), ("Why?", "Why not?", 0)]
    assert [(e.text_a, e.text_b, e.label) for e in load("mnli", "train")] == [
        ("A man sleeps.", "A man rests.", 0), ("It rains.", "It is dry.", 2)]
    assert [e.label for e in load("mnli", "dev")] == [1]
    assert [(e.text_a, e.label) for e in load("mnli", "dev_mismatched")] == [("c", 2), ("e", 0)]
    assert TASKS["mnli"].extra_eval_splits == ("dev_mismatched",)


def test_boolq_train_in_the_released_jsonl_layout(tmp_path, data_dir):
    write_jsonl(tmp_path / "superglue" / "BoolQ" / "train.jsonl", [
        {"question": "do iran and afghanistan speak the same language", "passage": "Persian language -- ...",
         "idx": 0, "label": True},
        {"question": "is a wolf a dog", "passage": "Wolf -- ...", "idx": 1, "label": False}])
    train = TASKS["boolq"].load("train", source="local", data_dir=tmp_path)
    assert [(e.text_a[:6], e.text_b[:4], e.label) for e in train] == [("do ira", "Pers", 1), ("is a w", "Wolf", 0)]
    dev = TASKS["boolq"].load("dev", source="local", data_dir=data_dir)
    assert len(dev) == 3270 and sum(e.label for e in dev) == 2033  # README: True 2033, False 1237


def _cb(**overrides):
    return {"premise": "p", "hypothesis": "h", "label": "neutral", "idx": 0} | overrides


@pytest.mark.parametrize("task, folder, records, message", [
    ("cb", "CB", [_cb(), {"premise": "p", "label": "neutral"}], r"val.jsonl:2: hypothesis: missing field"),
    ("cb", "CB", [_cb(label="maybe")], r"val.jsonl:1: label: not a valid label .*\(got 'maybe'\)"),
    ("cb", "CB", [_cb(premise=3)], r"val.jsonl:1: premise: must be str \(got 3\)"),
    ("cb", "CB", [], r"cb: the dev split is empty \(.*val.jsonl\)"),
    ("wic", "WiC", [{"word": "w", "sentence1": "a w", "sentence2": "w b", "start1": 2, "end1": 3,
                     "start2": 0, "end2": 1, "label": "yes"}], r"val.jsonl:1: label: not a valid label"),
    ("wic", "WiC", [{"word": "w", "sentence1": "a w", "sentence2": "w b", "start1": 2, "end1": 9,
                     "start2": 0, "end2": 1, "label": True}], r"val.jsonl:1: start1: character span \[2, 9\)"),
    ("wsc", "WSC", [{"text": "He ran", "target": {"span1_index": 0, "span1_text": "He", "span2_index": 0},
                     "label": True}], r"val.jsonl:1: target.span2_text: missing field"),
    ("copa", "COPA", [{"premise": "p", "choice1": "a", "choice2": "b", "question": "why", "label": 0}],
     r"val.jsonl:1: question: must be one of cause, effect \(got 'why'\)"),
    ("multirc", "MultiRC", [{"idx": 0, "passage": {"text": "t", "questions": [
        {"question": "q", "idx": 0, "answers": [{"text": "a", "idx": 0, "label": 1}, {"text": "b", "idx": 1}]}]}}],
     r"val.jsonl:1: passage.questions\[0\].answers\[1\].label: missing field"),
])
def test_malformed_jsonl_names_file_line_and_field(tmp_path, task, folder, records, message):
    write_jsonl(tmp_path / "superglue" / folder / "val.jsonl", records)
    with pytest.raises(DataError, match=message):
        TASKS[task].load("dev", source="local", data_dir=tmp_path)


def test_broken_json_line_is_named(tmp_path):
    path = tmp_path / "superglue" / "CB" / "val.jsonl"
    write_jsonl(path, [_cb()])
    path.write_text(path.read_text() + '{"premise": "p",\n')
    with pytest.raises(DataError, match=r"val.jsonl:2: not a JSON record"):
        TASKS["cb"].load("dev", source="local", data_dir=tmp_path)


def test_malformed_glue_file_without_local_copy(tmp_path):
    write_tsv(tmp_path / "glue" / "QNLI" / "dev.tsv", ["index", "question", "sentence", "label"],
              [["0", "q", "s", "entailment"], ["1", "q", "s", "yes"]])
    with pytest.raises(DataError, match=r"dev.tsv:3: label: not a valid label \(valid: entailment, not_entailment\)"):
        TASKS["qnli"].load("dev", source="local", data_dir=tmp_path)


def test_hub_rows_become_the_same_examples_as_the_released_files(data_dir):
    """aps/super_glue flattens WSC's target and MultiRC's answers; converted, they match the JSONL."""
    local = TASKS["wsc"].load("dev", source="local", data_dir=data_dir)[0]
    rec = json.loads((data_dir / "superglue" / "WSC" / "val.jsonl").open().readline())
    hub_row = {"text": rec["text"], **rec["target"], "idx": 0, "label": int(rec["label"])}
    assert hub_wsc(hub_row) == [local]

    local_mrc = TASKS["multirc"].load("dev", source="local", data_dir=data_dir)
    first = json.loads((data_dir / "superglue" / "MultiRC" / "val.jsonl").open().readline())["passage"]
    q, a = first["questions"][0], first["questions"][0]["answers"][0]
    hub_row = {"paragraph": first["text"], "question": q["question"], "answer": a["text"],
               "idx": {"paragraph": 0, "question": q["idx"], "answer": a["idx"]}, "label": a["label"]}
    assert hub_multirc(hub_row) == [local_mrc[0]]

    cb = TASKS["cb"]
    local_cb = cb.load("dev", source="local", data_dir=data_dir)[0]
    raw = json.loads((data_dir / "superglue" / "CB" / "val.jsonl").open().readline())
    assert cb.hub_parse(raw | {"label": local_cb.label}) == [local_cb]  # the hub stores class ids
