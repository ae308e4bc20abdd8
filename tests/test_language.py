"""The language end to end: examples against torchvision, expand round trips,
README examples, the IR's invariants and the networkx export."""
import glob
import re
from pathlib import Path

import pytest

import resdsl
from resdsl import ResdslError

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = sorted(glob.glob(str(ROOT / "examples" / "*.res")))


def _torch_counts(model):
    return sum(p.numel() for p in model.parameters()), sum(b.numel() for b in model.buffers())


TORCHVISION_RESNETS = [
    ("resnet18", {"depth": 18}), ("resnet34", {"depth": 34}), ("resnet50", {"depth": 50}),
    ("resnet101", {"depth": 101}), ("resnet152", {"depth": 152}),
    ("wide_resnet50_2", {"depth": 50, "width_per_group": 128}),
    ("wide_resnet101_2", {"depth": 101, "width_per_group": 128}),
    ("resnext50_32x4d", {"depth": 50, "groups": 32, "width_per_group": 4}),
    ("resnext101_32x8d", {"depth": 101, "groups": 32, "width_per_group": 8}),
    ("resnext101_64x4d", {"depth": 101, "groups": 64, "width_per_group": 4}),
]


@pytest.mark.parametrize("name,params", TORCHVISION_RESNETS, ids=[n for n, _ in TORCHVISION_RESNETS])
def test_resnet_counts_equal_torchvision(name, params):
    import torchvision

    model = getattr(torchvision.models, name)()
    net = resdsl.load(ROOT / "examples" / "resnet.res", **params)
    assert (net.param_count, net.buffer_count) == _torch_counts(model)
    # and the layer names are torchvision's: every parameter-owning layer is a module there
    modules = dict(model.named_modules())
    for n in net.nodes:
        if n.params:
            assert n.name in modules, n.name
            assert sum(p.numel() for p in modules[n.name].parameters(recurse=False)) == n.params


def test_resnet50d_equals_timm():
    import timm

    model = timm.create_model("resnet50d", pretrained=False)
    net = resdsl.load(ROOT / "examples" / "resnet.res", depth=50, variant="d")
    assert (net.param_count, net.buffer_count) == _torch_counts(model)


def _networks():
    from resdsl.loader import load_file

    return [(p, n) for p in EXAMPLES for n in load_file(p).networks]


@pytest.mark.parametrize("path,network", _networks(), ids=[f"{Path(p).name}:{n}" for p, n in _networks()])
def test_examples_lint_and_expand_round_trip(path, network):
    net = resdsl.load(path, network=network)
    net.graph.lint()
    again = resdsl.loads(net.expand(), name="<expanded>")
    again.graph.lint()
    a, b = net.graph, again.graph
    assert [(n.name, n.op, n.shape, n.params, n.buffers, n.inputs, dict(n.attrs)) for n in a.nodes] == \
           [(n.name, n.op, n.shape, n.params, n.buffers, n.inputs, dict(n.attrs)) for n in b.nodes]
    assert a.inputs == b.inputs and a.outputs == b.outputs
    assert [(r.kind, r.input, r.merge, r.branches, r.shortcut) for r in a.regions] == \
           [(r.kind, r.input, r.merge, r.branches, r.shortcut) for r in b.regions]


def test_expand_shows_origin_and_explicit_shortcut():
    text = resdsl.load(ROOT / "examples" / "resnet.res", depth=18).expand()
    assert "} shortcut {" in text and "downsample: group {" in text
    assert re.search(r"conv1: conv\(64, kernel_size=3, padding=1, bias=false\)\s+# .*resnet\.res:\d+ in basic", text)


def _readme_blocks():
    text = (ROOT / "README.md").read_text()
    return re.findall(r"```res\n(.*?)```", text, re.S)


@pytest.mark.parametrize("i", range(len(_readme_blocks())))
def test_readme_examples_elaborate(i):
    src = _readme_blocks()[i]
    if "network " not in src:  # a fragment: wrap it in a network with an input
        src = "network readme() {\n input x: [8, 16, 16]\n" + src + "\n}"
    try:
        resdsl.loads(src, name=f"README-{i}")
    except ResdslError as e:
        if "expect-error" not in src:
            raise
        assert e.first.code in src


def test_readme_has_language_examples():
    assert len(_readme_blocks()) >= 10


def test_duplicate_edges_survive_in_networkx():
    net = resdsl.loads("network t() { input x: [4]; residual { }; output y }")
    add = net.nodes[-1]
    assert add.op == "add" and add.inputs == (0, 0)
    assert net.to_networkx().number_of_edges(0, add.id) == 2


def test_unlabeled_names_are_unique_and_labels_win():
    net = resdsl.loads("""network t() {
        input x: [4]
        relu
        relu_1: linear(4)
        relu
        relu
        output y
    }""")
    assert [n.name for n in net.nodes] == ["x", "relu", "relu_1", "relu_2", "relu_3"]


def test_duplicate_labels_are_an_error():
    with pytest.raises(ResdslError) as e:
        resdsl.loads("network t() {\n input x: [4]\n fc: linear(4)\n fc: linear(4)\n}")
    assert e.value.first.code == "E020"


def test_params_override_and_defaults():
    net = resdsl.load(ROOT / "examples" / "resnet.res", depth=18, classes=10)
    assert net.outputs == {"logits": (10,)}
    assert net.params["depth"] == 18
    with pytest.raises(ResdslError) as e:
        resdsl.load(ROOT / "examples" / "resnet.res", detph=18)
    assert e.value.first.code == "E018" and "did you mean `depth`" in e.value.first.hint


def test_several_errors_reported_in_one_run():
    with pytest.raises(ResdslError) as e:
        resdsl.loads("""network t() {
            input x: [3, 8, 8]
            conv(4, kernel_size=3, strde=1)
            batchnrm()
            linear(10)
        }""")
    codes = [d.code for d in e.value.diagnostics]
    assert codes[:2] == ["E013", "E012"]
    assert e.value.diagnostics[1].hint == "did you mean `batchnorm`?"


def test_residual_mismatch_message():
    with pytest.raises(ResdslError) as e:
        resdsl.loads("""network t() {
    input x: [64, 56, 56]
    residual {
        conv(128, 3, stride=2, padding=1)
    }
}""", name="mm.res")
    d = e.value.first
    assert (d.code, d.span.line, d.span.col) == ("E030", 3, 5)
    assert "[64, 56, 56]" in d.message and "[128, 28, 28]" in d.message
    assert 'shortcut="project"' in d.hint
    assert any("[128, 28, 28]" in n.message for n in d.notes)


def test_imports_relative_std_and_cycles(tmp_path):
    (tmp_path / "lib").mkdir()
    (tmp_path / "lib" / "blocks.res").write_text('import "more.res"\nblock cb(c) { conv(c, kernel_size=1); bn: batchnorm() }\n')
    (tmp_path / "lib" / "more.res").write_text("WIDTH = 12\n")
    main = tmp_path / "main.res"
    main.write_text('import "lib/blocks.res"\nnetwork n() {\n input x: [3, 4, 4]\n a: cb(WIDTH)\n output y\n}\n')
    net = resdsl.load(main)
    assert net.outputs == {"y": (12, 4, 4)} and [n.name for n in net.nodes] == ["x", "a.conv", "a.bn"]
    (tmp_path / "lib" / "more.res").write_text('import "../main.res"\n')
    with pytest.raises(ResdslError) as e:
        resdsl.load(main)
    assert e.value.first.code == "E003" and "main.res" in e.value.first.message
    with pytest.raises(ResdslError) as e:
        resdsl.loads('import "/etc/passwd"\nnetwork n() { input x: [1] }')
    assert e.value.first.code == "E002"


def test_recursive_block_is_an_error():
    with pytest.raises(ResdslError) as e:
        resdsl.loads("block a() { b() }\nblock b() { a() }\nnetwork n() {\n input x: [4]\n a()\n}")
    assert e.value.first.code == "E016"
    assert any("defined here" in n.message for n in e.value.first.notes)


def test_readme_first_network_is_cifar_resnet20_with_projections():
    # independent closed form: 3x3 stem, 3 stages of 3 basic blocks (16/32/64), 1x1 projections
    # where the shape changes, BN (2 params per channel) after every conv, fc 64 -> 10
    p, inp = 3 * 16 * 9 + 2 * 16, 16
    for planes in (16, 32, 64):
        for _ in range(3):
            p += inp * planes * 9 + 2 * planes + planes * planes * 9 + 2 * planes
            if inp != planes:
                p += inp * planes + 2 * planes
            inp = planes
    p += 64 * 10 + 10
    net = resdsl.loads(_readme_blocks()[0], name="README-0")
    assert net.param_count == p == 272_474
    assert "params: 272,474" in (ROOT / "README.md").read_text()


@pytest.mark.parametrize("path", EXAMPLES, ids=[Path(p).name for p in EXAMPLES])
def test_examples_are_canonically_formatted(path):
    from resdsl.fmt import format_source

    text = Path(path).read_text()
    assert format_source(text, path) == text, f"run: resdsl fmt --write {Path(path).name}"
