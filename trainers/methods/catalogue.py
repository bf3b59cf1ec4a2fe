"""`peftsearch methods`: each method's trainable-parameter count on a backbone, at its defaults."""
from __future__ import annotations

import copy

from trainers.backbone import load_backbone
from trainers.methods.base import METHODS


def method_lines(backbone: str) -> list[str]:
    """``name<TAB>count<TAB>description`` per method; ``n/a`` and the reason where it cannot apply."""
    base = load_backbone(backbone, num_labels=2)
    lines = []
    for name in METHODS:
        cls = METHODS[name]
        method = cls.from_params({})
        try:
            bb = copy.deepcopy(base)
            model = method.apply(bb)
            count = str(sum(p.numel() for p in method.method_parameters(model)))
            note = ""
        except ValueError as e:
            count, note = "n/a", f" (not applicable: {e})"
        lines.append(f"{name}\t{count}\t{cls.description}{note}")
    return lines
