"""Random programs (tests/qa_programs.py) compiled to torch: the module builds and runs, and torch's own
figures -- parameter numel, output shapes, FlopCounterMode's MACs -- are resdsl's.  Found with it: a block
call whose output nobody reads (`b0(2); from x`) made `resdsl compile` write ` = self.b0(x)`, a file that does
not compile, and `to_torch` raise IndentationError, while `check` said ok."""
import pytest

import resdsl
from qa_programs import program

torch = pytest.importorskip("torch")
from torch.utils.flop_counter import FlopCounterMode  # noqa: E402

DEAD = """
block b0(c) { conv(c, 3, padding=1); maxpool(2) }
network n() {
    input x: [4, 16, 16]
    b0(8)
    from x
    relu
    output y
}
"""


def test_a_block_whose_output_nobody_reads_compiles_and_runs():
    net = resdsl.loads(DEAD)
    model = net.to_torch(seed=0).eval()
    x = torch.randn(2, 4, 16, 16)
    with torch.no_grad():
        y = model(x)
    assert torch.equal(y, torch.relu(x))
    # the block's layer is still built (it has weights, state_dict has them) and counted
    assert sum(p.numel() for p in model.parameters()) == net.param_count == 8 * 4 * 9 + 8
    assert sorted(model.state_dict()) == ["b0.conv.bias", "b0.conv.weight"]
    compile(net.torch_source(), "<generated>", "exec")  # what `resdsl compile` writes is Python


def _torch_figures(net) -> tuple:
    model = net.to_torch(seed=0).eval()
    inputs = [torch.zeros((1,) + tuple(s)) for s in net.inputs.values()]
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        out = model(*inputs)
    outs = out if isinstance(out, tuple) else (out,)
    return (sum(p.numel() for p in model.parameters()), [tuple(o.shape[1:]) for o in outs],
            counter.get_total_flops() // 2)


@pytest.mark.parametrize("extras", [False, True])
def test_random_programs_compile_run_and_count_as_torch_counts(extras):
    checked = 0
    for seed in range(120):
        try:
            net = resdsl.loads(program(seed, extras))
        except resdsl.ResdslError:
            continue
        assert _torch_figures(net) == (net.param_count, list(net.outputs.values()), net.costs().total), seed
        checked += 1
    assert checked >= 35, checked
