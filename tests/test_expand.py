"""`resdsl expand` round trip: its output is a .res file that elaborates to the same IR.

Programs are generated (seeded, so the run is reproducible) with every statement
kind inside branches, shortcuts and parallel branches: layers, labels, `->`
bindings, `from`, `output`, assignments, `for`, `if`/`else`, groups, block calls,
and nested residual / dense / parallel regions.  The IR of the expanded text
must equal the original's node for node (qualified name, op, attributes,
operands, shape, parameters) with the same inputs and outputs.
"""
from __future__ import annotations

import random
from collections import Counter

import pytest

import resdsl
from resdsl.diagnostics import ResdslError

C = 4  # every tensor keeps 4 channels and 8x8 maps, so any bound tensor can feed any merge

BLOCK = "block unit(c) {\n    conv(c, 3, padding=1)\n    relu\n}\n"


class Gen:
    """A random program; `kinds` counts the statement kinds written inside region bodies."""

    def __init__(self, seed: int):
        self.r = random.Random(seed)
        self.n = 0
        self.kinds: Counter = Counter()

    def fresh(self, stem: str) -> str:
        self.n += 1
        return f"{stem}{self.n}"

    def body(self, depth: int, names: list[str], in_region: bool, indent: str) -> list[str]:
        out: list[str] = []
        names = list(names)  # bindings made here are visible later in this body only
        for _ in range(self.r.randint(1, 4)):
            out += self.stmt(depth, names, in_region, indent)
        return out

    def stmt(self, depth: int, names: list[str], in_region: bool, ind: str) -> list[str]:
        choices = ["layer", "label", "bind", "from", "output", "assign", "for", "if", "group", "call"]
        if depth < 3:
            choices += ["residual", "residual", "dense", "parallel"]
        kind = self.r.choice(choices)
        if kind == "from" and not names:
            kind = "layer"
        if in_region:
            self.kinds[kind] += 1
        r = self.r
        if kind == "layer":
            return [ind + r.choice(["relu", f"conv({C}, 3, padding=1)", "batchnorm()", "identity"])]
        if kind == "label":
            return [ind + f"{self.fresh('l')}: " + r.choice(["relu", f"conv({C}, 1)"])]
        if kind == "bind":
            name = self.fresh("t")
            names.append(name)
            return [ind + f"conv({C}, 3, padding=1) -> {name}"]
        if kind == "from":
            return [ind + f"from {r.choice(names)}"]
        if kind == "output":
            return [ind + f"output {self.fresh('o')}"]
        if kind == "assign":
            v = self.fresh("c")
            return [ind + f"{v} = {C}", ind + f"conv({v}, 1)"]
        if kind == "for":
            return [ind + f"for i in range({r.randint(1, 2)}) {{", ind + "    relu", ind + "}"]
        if kind == "if":
            flag = r.choice(["true", "false"])
            return ([ind + f"if {flag} {{"] + self.body(depth + 1, names, in_region, ind + "    ")
                    + [ind + "} else {"] + self.body(depth + 1, names, in_region, ind + "    ") + [ind + "}"])
        if kind == "group":
            return [ind + f"{self.fresh('g')}: group {{"] + self.body(depth + 1, names, in_region, ind + "    ") + [ind + "}"]
        if kind == "call":
            return [ind + (f"{self.fresh('u')}: " if r.random() < 0.5 else "") + f"unit({C})"]
        if kind == "residual":
            args = r.choice(["", '(shortcut="project")', '(post="relu")', "(scale=0.5)", "(drop_path=0.1)"])
            head = [ind + f"residual{args} {{"] + self.body(depth + 1, names, True, ind + "    ")
            if not args and r.random() < 0.6:
                self.kinds["shortcut"] += 1
                head += [ind + "} shortcut {"] + self.body(depth + 1, names, True, ind + "    ")
            return head + [ind + "}"]
        if kind == "dense":
            return ([ind + "dense {"] + self.body(depth + 1, names, True, ind + "    ") + [ind + "}", ind + f"conv({C}, 1)"])
        lines = [ind + 'parallel(merge="add") {']
        for _ in range(r.randint(1, 3)):
            lines += [ind + "    branch {"] + self.body(depth + 1, names, True, ind + "        ") + [ind + "    }"]
        return lines + [ind + "}"]

    def program(self) -> str:
        lines = self.body(0, ["x"], False, "    ")
        return BLOCK + "network n() {\n    input x: [4, 8, 8]\n" + "\n".join(lines) + "\n}\n"


def ir(net) -> tuple:
    g = net.graph
    nodes = [(n.name, n.op, dict(n.attrs), tuple(g.nodes[i].name for i in n.inputs), n.shape, n.params)
             for n in g.nodes]
    return (nodes, {k: g.nodes[i].name for k, i in g.inputs.items()}, {k: g.nodes[i].name for k, i in g.outputs.items()})


def test_expand_output_elaborates_to_the_same_ir():
    checked, kinds = 0, Counter()
    for seed in range(250):
        gen = Gen(seed)
        text = gen.program()
        try:
            net = resdsl.loads(text)
        except ResdslError:
            continue  # e.g. a `from` whose tensor is out of scope: the generator does not track everything
        checked += 1
        kinds += gen.kinds
        flat = net.expand()
        again = resdsl.loads(flat, name="<expanded>")
        assert ir(again) == ir(net), f"seed {seed}:\n{text}\n--- expanded:\n{flat}"
    assert checked >= 150, checked  # (196 of 250 when written)
    # every statement kind was exercised inside region bodies, many times over
    assert all(kinds[k] >= 20 for k in ("layer", "label", "bind", "from", "output", "assign", "for", "if",
                                          "group", "call", "residual", "dense", "parallel", "shortcut")), kinds


@pytest.mark.parametrize("body", [
    # a part that ends on `from` hands that tensor to the merge
    "    conv(4, 3, padding=1) -> a\n    relu\n    residual {\n        conv(4, 3, padding=1)\n        from a\n    }",
    "    relu\n    parallel {\n        branch {\n            from x\n        }\n        branch {\n            conv(4, 1)\n        }\n    }",
    "    relu\n    dense {\n        relu\n        from x\n    }",
    "    relu -> a\n    relu\n    residual {\n        relu\n    } shortcut {\n        from a\n    }",
])
def test_parts_ending_on_from(body):
    net = resdsl.loads("network n() {\n    input x: [4, 8, 8]\n" + body + "\n}\n")
    again = resdsl.loads(net.expand())
    assert ir(again) == ir(net)
