"""Random small .res programs for differential tests (tests/test_qa_replay.py): seeded, bounded.

`program(rng)` draws a file with a few blocks and one network whose body mixes the language's
constructs -- loops (range, enumerate, nested), if/else on loop variables and parameters, groups,
residuals (identity, project, post, zero_init_last, custom shortcut), dense, parallel, block calls with
parameters (recursive ones too), labels with `{i}`, `_:` calls, variables set in bodies (conditionally,
read back after the loop), bound tensors (`-> s{i}`, `from`, `add`, `concat`), shapes that change
between iterations (`in_channels * 2`, strides), splits, asserts, named sizes with `where`.  About half
the drawn programs are valid; the rest fail somewhere, which the tests use too (the first error must not
depend on how the body was run).
"""
from __future__ import annotations

import random


class Gen:
    def __init__(self, rng: random.Random, vector: bool = False, extras: bool = False):
        self.rng = rng
        self.extras = extras  # also ties, contracts, outputs in loops, templated tensor names
        self.depth = 0
        self.vector = vector  # [F] input: linear layers instead of convolutions
        self.loop_vars: list[str] = []
        self.vars: list[str] = ["c"]
        self.tensors: list[str] = []
        self.blocks: list[tuple[str, int]] = []  # (name, number of parameters)
        self.fresh = 0
        self.label_var: str | None = None  # the innermost loop's variable, when that loop reads it
        self.in_block = False
        self.sized = False  # the input has a named size H
        self.in_loop = 0  # fresh labels inside a loop would be E020 at its second run

    def r(self, n: int) -> int:
        return self.rng.randrange(n)

    def pick(self, xs):
        return xs[self.r(len(xs))]

    def name(self, stem: str) -> str:
        self.fresh += 1
        return f"{stem}{self.fresh}"

    # ------------------------------------------------------------ expressions

    def small(self) -> str:
        """An int expression, mostly 4 or 8, sometimes from variables / loop variables."""
        k = self.r(9 if self.extras else 7)
        if k >= 7:  # a named size read by the body (the size analysis then builds each size)
            return "H // 8 + 2" if self.sized and not self.in_block else "4"
        if k == 0 and self.loop_vars:
            return f"{self.pick([4, 8])} + {self.pick(self.loop_vars)} % 2 * 4"
        if k == 1:
            return self.pick(self.vars)
        if k == 2:
            return "in_channels"
        if k == 3:
            return f"{self.pick(self.vars)} * 2 if {self.cond()} else 4"
        return str(self.pick([4, 4, 8, 8, 2]))

    def cond(self) -> str:
        k = self.r(6 if self.extras else 5)
        if k == 5:
            return "H > 24" if self.sized and not self.in_block else "flag"
        if self.loop_vars and k < 3:
            v = self.pick(self.loop_vars)
            return self.pick([f"{v} == 1", f"{v} % 2 == 0", f"{v} > 1", f"{v} < 2 and flag"])
        if k == 3:
            return "flag"
        return f"in_channels > {self.pick([4, 8])}"

    def label(self) -> str:
        k = self.r(6)
        if k == 0 and self.label_var:
            return f"{{{self.label_var}}}: "
        if k == 1 and self.label_var:
            return f"l{{{self.label_var}}}: "
        if k == 2 and not self.in_loop:
            return self.name("n") + ": "
        if k == 3 and self.r(4) == 0:
            return "dup: "
        return ""

    # ------------------------------------------------------------ statements

    def layer(self) -> str:
        c = self.small()
        if self.vector:
            opts = [f"linear({c})", "relu", "layernorm()", f"scale({self.pick(['0.5', '-0.0', '0.0', '1', '1.0'])})",
                    "dropout(0.1)", "identity", "gelu"]
        else:
            opts = [f"conv({c}, 1)", f"conv({c}, 3, padding=1)", "relu", "batchnorm()", "identity",
                    f"conv({c}, 3, stride={self.pick([1, 2])}, padding=1)",
                    f"scale({self.pick(['0.5', '-0.0', '0.0', '1', '1.0'])})"] + ([] if self.in_loop else ["maxpool(2)"])
        return self.label() + self.pick(opts)

    def body(self, n: int | None = None) -> list[str]:
        n = n if n is not None else 1 + self.r(3)
        return [s for _ in range(n) for s in self.stmt()]

    def block_body(self, lines: list[str]) -> str:
        return "{ " + "; ".join(lines) + " }" if all("\n" not in s for s in lines) else "{\n" + "\n".join(lines) + "\n}"

    def stmt(self) -> list[str]:
        if self.depth >= 3:
            return [self.layer()]
        self.depth += 1
        try:
            return self._stmt()
        finally:
            self.depth -= 1

    def _stmt(self) -> list[str]:
        k = self.r(25 if self.extras else 21)
        if k >= 21:
            return self._extra(k)
        if k == 20:
            k = 4 if self.r(2) or self.label_var is None else 10
        if k <= 3:
            return [self.layer()]
        if k == 4:  # a loop over a range, maybe reading the variable
            v = self.pick("ijk")
            if v in self.loop_vars:
                v = self.name("v")
            reads = self.r(2) == 0  # half the loops never read their variable: their bodies repeat
            if reads:
                self.loop_vars.append(v)
            self.in_loop += 1
            outer, self.label_var = self.label_var, v if reads else None
            body = self.body()
            self.in_loop -= 1
            self.label_var = outer
            if reads:
                self.loop_vars.pop()
            return [f"for {v} in range({self.pick([1, 2, 3, 5, 'K'])}) " + self.block_body(body)]
        if k == 5:  # enumerate: channels change between iterations
            v = self.name("e")
            self.loop_vars.append(v)
            old = self.vars
            self.vars = self.vars + ["w"]
            self.in_loop += 1
            outer, self.label_var = self.label_var, v
            body = self.body()
            self.in_loop -= 1
            self.label_var = outer
            self.vars = old
            self.loop_vars.pop()
            xs = self.pick(["[4, 8, 4]", "[4, 4, 4, 4]", "[8, 8]", "[2, 4, 4]"])
            return [f"for {v}, w in enumerate({xs}) " + self.block_body(body)]
        if k == 6:
            then = self.body()
            other = self.body() if self.r(2) else None
            s = f"if {self.cond()} " + self.block_body(then)
            if other:
                s = s.rstrip() + " else " + self.block_body(other)
            return [s]
        if k == 7:
            return [self.label() + "group " + self.block_body(self.body())]
        if k == 8:
            opts = self.pick(["", '(shortcut="project")', '(post="relu", shortcut="project")',
                              '(zero_init_last=true)', "(scale=0.5)", '(shortcut="zeropad")'])
            return [self.label() + "residual" + opts + " " + self.block_body(self.body() + ["batchnorm()"])]
        if k == 9 and not self.vector:
            return [self.label() + "dense " + self.block_body(self.body())]
        if k == 10:
            merge = self.pick(['"add"', '"concat"'])
            branches = []
            end = self.layer_fixed()  # every branch ends the same, so that "add" fits
            share = self.r(3) == 0  # the first branch leaves a tensor (alone or in a list) the next one adds
            for b in range(2 + self.r(2)):
                lab = self.label()
                tail = [end]
                if share and b == 0:
                    tail = [f"{end} -> pt", self.pick(["pl = [pt]", "pl = {0: pt}", "pl = [[pt]]"]), end]
                elif share and b == 1:
                    tail = [end, self.pick(["add(pt)", "add(pl[0])", "add(pl[0][0])"])]
                branches.append(lab + "branch " + self.block_body(self.body(1) + tail))
            if self.r(3) == 0 and self.loop_vars:
                branches.append(f"for q in range(2) {{ branch {{ {end} }} }}")
            lab = f"p{{{self.label_var}}}: " if self.label_var and self.r(2) else self.label()
            return [lab + f"parallel(merge={merge}) {{\n" + "\n".join(branches) + "\n}"]
        if k in (11, 12, 19) and self.blocks:
            name, nparams = self.pick(self.blocks)
            args = ", ".join(self.small() for _ in range(nparams))
            lab = self.pick(["", "", "_: ", self.label()])
            return [f"{lab}{name}({args})"]
        if k == 13:  # a variable set in a body, maybe conditionally, maybe from itself
            v = self.pick(["c", "w2", "c"])
            known = v in self.vars
            if not known:
                self.vars.append(v)
            rhs = self.pick([f"{v} * 2 if {v} < 16 else 4", "4", "8", "in_channels", f"{v} + 0"]) \
                if known else self.pick(["4", "8", "in_channels"])
            if self.r(2):
                return [f"if {self.cond()} {{ {v} = {rhs} }}"]
            return [f"{v} = {rhs}"]
        if k == 14:  # bind and later take back
            if self.loop_vars and self.r(2):
                t = f"s{{{self.pick(self.loop_vars)}}}"
            else:
                t = self.name("t")
                self.tensors.append(t)
            return [f"{self.layer()} -> {t}"]
        if k == 15 and self.tensors:
            t = self.pick(self.tensors)
            return [self.pick([f"add({t})", f"concat({t})", f"from {t}", f"assert {t}.channels > 0"])]
        if k == 16:
            return ["assert in_channels > 0, \"c\"", self.layer()]
        if k == 17 and not self.vector:
            return ["split(2) -> p, q", "from q", "concat(p)"]
        if k == 18:
            end = self.layer_fixed()
            return [f"residual {{ {self.layer()}; {self.layer()}; {end} }} shortcut {{ {end} }}"]
        return [self.layer()]

    def _extra(self, k: int) -> list[str]:
        """Statements that make replay refuse a body (contracts, ties, outputs, computed names)."""
        if self.in_block and k in (21, 24):
            return ["assert in_channels > 0", self.layer()]
        if k == 21:
            return [self.pick(["assert params > 0", "assert macs >= 0, \"m\"", "assert in_channels > 0"])]
        if k == 22 and self.vector:
            return ["linear(8)", self.label() + 'linear(8, tie="first")']
        if k == 23 and self.label_var:
            v = self.label_var
            return [f"{self.layer_fixed()} -> s{{{v}}}", f"from s{{{v}}}"]
        if k == 23:
            return [f"{self.layer_fixed()} -> u0", f"{self.layer_fixed()} -> u1", "concat(u{0..1})"]
        if self.in_block:
            return [self.layer()]
        if self.label_var:
            return [f"output o{{{self.label_var}}}", "from x", self.layer()]
        return ["from x", self.layer()]

    def layer_fixed(self) -> str:
        return self.pick(["linear(8)", "linear(4)"]) if self.vector else self.pick(["conv(8, 1)", "conv(4, 1)"])

    # ------------------------------------------------------------ a file

    def blocks_text(self) -> str:
        out = []
        for b in range(self.r(3) + 1):
            name = f"blk{b}"
            nparams = self.r(3)
            params = ["a", "b", "d"][:nparams]
            old_vars, old_loops, old_t = self.vars, self.loop_vars, self.tensors
            self.vars, self.loop_vars, self.tensors = params + ["in_channels"], [], []
            self.in_block = True
            body = self.body(1 + self.r(3))
            if self.r(4) == 0 and nparams:  # recursion that ends
                body = [f"if {params[0]} > 4 {{ {name}({', '.join([params[0] + ' // 2'] + params[1:])}) }}"] + body
            self.vars, self.loop_vars, self.tensors = old_vars, old_loops, old_t
            self.in_block = False
            plist = ", ".join(p if i < 1 else f"{p} = 4" for i, p in enumerate(params))
            out.append(f"block {name}({plist}) " + self.block_body(body))
            self.blocks.append((name, nparams))
        return "\n".join(out)

    def file(self) -> str:
        blocks = self.blocks_text()
        self.vars = ["c"]
        shape = "[8]" if self.vector else self.pick(["[4, 8, 8]", "[4, 16, 16]", "[4, H, H] where H % 8 == 0"])
        self.sized = "H" in shape
        first = ["first: linear(8)"] if self.vector and self.extras else []
        body = first + self.body(4 + self.r(5))
        tail = "output y"
        return (f"K = {self.pick([2, 3, 4])}\nflag = {self.pick(['true', 'false'])}\n{blocks}\nnetwork n(c = 4) {{\n"
                f"input x: {shape}\n" + "\n".join(body) + f"\n{tail}\n}}\n")


def program(seed: int, extras: bool = False) -> str:
    """A random file; `extras` adds ties, contracts, outputs in loops and computed tensor names (a
    different draw: the plain draw stays what it was, seeds named in tests keep their programs)."""
    rng = random.Random(seed)
    return Gen(rng, vector=rng.random() < 0.3, extras=extras).file()
