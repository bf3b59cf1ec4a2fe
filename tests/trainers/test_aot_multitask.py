"""AoT multi-task serving: one frozen backbone answers a batch whose rows belong to different
tasks, each row reading its own task's fused tables and head (METHODS.md, "Multi-task").

Three tasks with different heads (2 classes, 3 classes, regression) are trained for a few steps
on real RTE pairs over each tiny architecture, saved as artefacts, and served together."""
import pytest
import torch

from trainers.backbone import load_backbone
from trainers.methods import METHODS
from trainers.methods.aot_multitask import MultiTaskAoT
from trainers.testing import ARCHITECTURES

TASKS = {"two": 2, "three": 3, "regression": 1}
PARAMS = {"aot_fc": {"rank": 8, "dropout": 0.0}, "aot_kron": {"rank": 4, "dropout": 0.0}}


def encode(tokenizer, rows):
    return dict(tokenizer([r.text_a for r in rows], [r.text_b for r in rows], return_tensors="pt",
                          padding=True, truncation=True, max_length=48))


def train_task(path, method, num_labels, rows, seed):
    """A few AdamW steps of one task; returns its fused model (for reference) and artefact."""
    torch.manual_seed(seed)
    bb = load_backbone(path, num_labels=num_labels)
    m = METHODS[method].from_params(PARAMS[method])
    model = m.apply(bb).train()
    labels = (torch.tensor([float(i) for i in range(len(rows))]) if num_labels == 1
              else torch.tensor([i % num_labels for i in range(len(rows))]))
    opt = torch.optim.AdamW(m.param_groups(model, lr=1e-2, weight_decay=0.0))
    for _ in range(3):
        model(**encode(bb.tokenizer, rows), labels=labels).loss.backward()
        opt.step()
        opt.zero_grad()
    model.eval()
    m.fuse(model)
    return model, m.inference_state(model), bb.tokenizer


@pytest.fixture(scope="module", params=[(a, m) for a in ARCHITECTURES for m in ("aot_fc", "aot_kron")],
                ids=lambda p: f"{p[0]}-{p[1]}")
def served(request, backbones, rte_rows, tmp_path_factory):
    arch, method = request.param
    out = tmp_path_factory.mktemp(f"artefacts-{arch}-{method}")
    models, paths = {}, {}
    for seed, (task, n) in enumerate(TASKS.items()):
        models[task], state, tokenizer = train_task(backbones[arch], method, n, rte_rows, seed)
        paths[task] = out / f"{task}.pt"
        torch.save(state, paths[task])
    return MultiTaskAoT.load(backbones[arch], paths), models, tokenizer


def test_a_mixed_batch_gives_each_row_its_own_tasks_logits(served, rte_rows):
    multi, models, tokenizer = served
    rows = rte_rows * 3  # every sentence pair once per task, interleaved
    task_ids = torch.tensor([i % 3 for i in range(len(rows))])
    inputs = encode(tokenizer, rows)
    out = multi(**inputs, task_ids=task_ids)
    assert set(out) == set(TASKS)
    with torch.no_grad():
        for t, task in enumerate(multi.tasks):
            idx, logits = out[task]
            assert torch.equal(idx, (task_ids == t).nonzero().squeeze(1))
            assert logits.shape == (len(idx), TASKS[task])
            alone = models[task](**{k: v[idx] for k, v in inputs.items()}).logits
            torch.testing.assert_close(logits, alone, atol=1e-5, rtol=1e-4)


def test_rows_read_their_own_tasks_tables(served, rte_rows):
    """The same rows served as task 0 and with task 1's tables under task 0's head differ: the
    lookup is per row, not per batch."""
    multi, _, tokenizer = served
    inputs = encode(tokenizer, rte_rows)
    n = len(rte_rows)
    as_two = multi(**inputs, task_ids=torch.zeros(n, dtype=torch.long))["two"][1]
    keys = torch.ones(n, dtype=torch.long)[:, None] * multi.editor.edit.vocab + inputs["input_ids"]
    with torch.no_grad(), multi.editor.editing(keys):
        seq = multi.editor.backbone.base_model(**inputs)[0]
        swapped = torch.func.functional_call(multi.head, multi.heads["two"], (seq,))
    assert not torch.allclose(as_two, swapped, atol=1e-4)


def test_bad_task_ids_and_foreign_artefacts_fail_in_one_line(served, backbones, rte_rows):
    multi, _, tokenizer = served
    inputs = encode(tokenizer, rte_rows)
    with pytest.raises(ValueError, match=r"^task_ids: one index in \[0, 3\) per row"):
        multi(**inputs, task_ids=torch.full((len(rte_rows),), 3))
    bb = load_backbone(backbones["bert"], num_labels=2)
    lora = METHODS["lora"].from_params({})
    state = lora.inference_state(lora.apply(bb))
    with pytest.raises(ValueError, match=r"^states\.lora_task: expected fused AoT tables edit\.fused\.0\.\."):
        MultiTaskAoT(load_backbone(backbones["bert"], num_labels=2), {"lora_task": state})
