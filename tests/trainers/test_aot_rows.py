"""AoT's inference gather (RowAdder): rows gathered into one kept buffer and added in place give
exactly ``hidden + table[ids]``, whatever order of batch shapes, dtypes and grad modes it sees."""
from __future__ import annotations

import pytest
import torch

from trainers.methods.aot import RowAdder


def test_the_kept_buffer_gives_exact_sums_across_shapes_and_modes():
    torch.manual_seed(0)
    table, adder = torch.randn(50, 8), RowAdder()
    shapes = [(4, 9), (2, 3), (6, 11), (1, 1), (6, 11)]  # grow, shrink, grow past, reuse
    for i, shape in enumerate(shapes):
        ids, hidden = torch.randint(0, 50, shape), torch.randn(*shape, 8)
        want = hidden + table[ids]
        mode = torch.inference_mode() if i % 2 else torch.no_grad()
        with mode:
            got = adder(table, ids, hidden.clone())
        assert torch.equal(got, want), shape
    assert sum(b.numel() for b in adder._buffers.values()) == 6 * 11 * 8  # one buffer, the largest batch


def test_in_place_only_without_autograd():
    table = torch.randn(10, 4, requires_grad=True)
    ids, hidden = torch.tensor([[1, 2, 3]]), torch.randn(1, 3, 4, requires_grad=True)
    out = RowAdder()(table, ids, hidden)
    assert out is not hidden
    out.sum().backward()  # the training path keeps the graph
    assert table.grad is not None and hidden.grad is not None
    with torch.no_grad():
        h = torch.randn(1, 3, 4)
        assert RowAdder()(table, ids, h) is h


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_tables_add_into_float_hidden(dtype):
    torch.manual_seed(1)
    table = torch.randn(30, 6).to(dtype)
    ids, hidden = torch.randint(0, 30, (3, 5)), torch.randn(3, 5, 6)
    with torch.no_grad():
        got = RowAdder()(table, ids, hidden.clone())
    assert got.dtype == torch.float32
    assert torch.equal(got, hidden + table[ids].float())
