"""Random example inputs for a compiled network: float tensors, or token ids for `input ids: int[N]`.

Reads the graph (input shapes, the `dtype` of input nodes and the `ids` facet of the ops that read them);
imports torch.  Used by tests and by the analyses that run the module.
"""
from __future__ import annotations

import torch


def id_bound(net, name: str) -> int:
    """How many distinct ids input `name` may hold: the smallest vocabulary among the ops reading it."""
    nid = net.graph.inputs[name]
    bounds = [n.spec.ids(n.attrs) for n in net.graph.nodes if nid in n.inputs and n.spec.ids is not None]
    return min(bounds, default=1)


def random_inputs(net, batch: int, generator: torch.Generator | None = None, device=None) -> list[torch.Tensor]:
    """One tensor per network input, batch first: N(0, 1) floats, or uniform ids below the vocabulary."""
    out = []
    for name, shape in net.inputs.items():
        size = (batch,) + tuple(shape)
        if net.graph.nodes[net.graph.inputs[name]].attrs.get("dtype") == "int":
            out.append(torch.randint(0, id_bound(net, name), size, generator=generator, device=device))
        else:
            out.append(torch.randn(size, generator=generator, device=device))
    return out
