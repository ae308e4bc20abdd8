"""Step 3 of `resdsl import`: the `Op` graph -> nested statements (residual, dense, parallel regions).

Reads the `Op`s of `trace.py`; writes `Stmt` trees in program order.  With
immediate dominators, an add's two operands fork at its dominator: the
operand that is the fork itself (or torchvision's `downsample` projection) is
the shortcut and the other the branch of a `residual`; a concat that joins
one more tensor than an earlier one, computed from it, is a `dense` step
(DenseNet's `cat([x0, f1, ..., fk])` chain); any other concat is a
`parallel(merge="concat")`.  A tensor used both inside and outside such a
region has no nested spelling and raises `ImportProblem`.
"""
from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field

from .trace import ImportProblem, Op, stated


@dataclass
class Stmt:
    """A layer (`op`), or a region: residual / dense / parallel with bodies of statements (`op`: its merge)."""
    kind: str  # layer | residual | dense | parallel | gate (a product)
    op: Op
    bodies: list[list["Stmt"]] = field(default_factory=list)

    def leaves(self):
        """Every op of the statement, merges of nested regions included."""
        if self.op is not None:
            yield self.op
        for b in self.bodies:
            for s in b:
                yield from s.leaves()


def _dominators(ops: list[Op]) -> list[int]:
    """Immediate dominator of each op (the input dominates itself); ops are in topological order."""
    idom = list(range(len(ops)))
    for o in ops:
        if not o.inputs:
            continue
        d = o.inputs[0]
        for i in o.inputs[1:]:
            a, b = d, i
            while a != b:
                if a > b:
                    a = idom[a]
                else:
                    b = idom[b]
            d = a
        idom[o.id] = d
    return idom


class Structurer:
    def __init__(self, ops: list[Op]):
        self.ops = ops
        self.idom = _dominators(ops)
        self.users: dict[int, set[int]] = defaultdict(set)
        for o in ops:
            for i in o.inputs:
                self.users[i].add(o.id)
        self.base: dict[int, tuple[int, ...]] = {}  # concat -> the tensors it joins, nested concats flattened
        self.by_base: dict[tuple[int, ...], int] = {}
        for o in ops:
            b = sum((self.base.get(i, (i,)) for i in o.inputs), ()) if o.op == "concat" else (o.id,)
            self.base[o.id] = b
            self.by_base.setdefault(b, o.id)

    def sequence(self, start: int, end: int) -> list[Stmt]:
        """Statements computing `end` from `start` (which dominates it)."""
        out: list[Stmt] = []
        e = end
        while e != start:
            o = self.ops[e]
            if o.op == "input":
                raise ImportProblem(f"a second network input reaches {self._name(end)}: import one input")
            if o.op == "add":
                e = self._residual(o, out)
            elif o.op == "concat":
                e = self._concat(o, out)
            elif o.op == "mul" and len(o.inputs) == 2:
                e = self._gate(o, out)
            else:
                out.append(Stmt("layer", o))
                e = o.inputs[0]
        return out[::-1]

    def _name(self, i: int) -> str:
        o = self.ops[i]
        return "`" + ".".join(o.path) + "`" if o.path else f"the {o.op} at step {i}"

    def _check_closed(self, fork: int, merge: int, body: list[Stmt], allowed: set[int] = frozenset()) -> None:
        inside = {o.id for s in body for o in s.leaves()} | {merge} | set(allowed)
        for s in body:
            for o in s.leaves():
                if o.id in allowed:
                    continue
                extra = self.users[o.id] - inside
                if extra:
                    raise ImportProblem(f"the output of {self._name(o.id)} is used both inside and outside the "
                                        f"merge at {self._name(merge)}; only nested residual, dense and parallel "
                                        "regions can be written")

    def _residual(self, o: Op, out: list[Stmt]) -> int:
        if len(o.inputs) != 2:
            raise ImportProblem(f"an add of {len(o.inputs)} tensors at {self._name(o.id)} is not supported")
        f, (a, b) = self._branches(o)
        if not a and not b:
            raise ImportProblem(f"{self._name(f)} is added to itself; write it as a scale by 2")
        # the shortcut: the operand that is the fork itself or a projection; else the second (torchvision's
        # `out += identity`).  Which side is which does not change the sum.
        if not a or (is_projection(a) and not is_projection(b) and b):
            a, b = b, a
        out.append(Stmt("residual", o, bodies=[a] if not b else [a, b]))
        return f

    def _concat(self, o: Op, out: list[Stmt]) -> int:
        parts = self.base[o.id]
        prev = self.by_base.get(parts[:-1])
        if prev is not None and prev != o.id and self._dominates(prev, parts[-1]):
            body = self.sequence(prev, parts[-1])
            self._check_closed(prev, o.id, body, allowed={parts[-1]})
            out.append(Stmt("dense", o, bodies=[body]))
            return prev
        f, bodies = self._branches(o)
        out.append(Stmt("parallel", o, bodies=bodies))
        return f

    def _gate(self, o: Op, out: list[Stmt]) -> int:
        """x * f(x) (squeeze-and-excitation) and other products of two tensors from one fork."""
        f, bodies = self._branches(o)
        out.append(Stmt("gate", o, bodies=bodies))
        return f

    def _branches(self, o: Op) -> tuple[int, list[list[Stmt]]]:
        """The fork of a merge (its immediate dominator) and the statements from it to each operand."""
        f = self.idom[o.id]
        bodies = [self.sequence(f, i) for i in o.inputs]
        for body in bodies:
            self._check_closed(f, o.id, body)
        return f, bodies

    def _dominates(self, a: int, b: int) -> bool:
        while True:
            if a == b:
                return True
            if self.idom[b] == b:
                return False
            b = self.idom[b]


def is_projection(body: list[Stmt]) -> bool:
    """torchvision's downsample: L.0 = 1x1 conv without bias (any stride), L.1 = default batchnorm."""
    if len(body) != 2 or any(s.kind != "layer" for s in body):
        return False
    conv, bn = body[0].op, body[1].op
    ca = stated(conv)
    return (conv.op == "conv" and ca.get("kernel_size") == 1 and ca.get("bias") is False
            and set(ca) <= {"out_channels", "kernel_size", "stride", "bias"}
            and bn.op == "batchnorm" and not stated(bn)
            and conv.path[-1:] == ("0",) and bn.path[-1:] == ("1",) and conv.path[:-1] == bn.path[:-1])
