"""resdsl: a language and compiler for residual network architectures.

    >>> import resdsl
    >>> net = resdsl.load("examples/resnet.res", depth=50)
    >>> net.param_count
    25557032
"""
from .diagnostics import Diagnostic, ResdslError
from .limits import Limits
from .network import Network, load, loads

__version__ = "0.1.0"


def compile(source, network: str | None = None, seed: int | None = None, features_only: bool = False,
            out_indices=None, **params):
    """Load a .res file (or take a `Network`) and build its `torch.nn.Module`.

        model = resdsl.compile("examples/resnet.res", depth=50)

    With `features_only=True` (timm's convention) forward returns a list of intermediate feature maps
    instead: `out_indices` picks them by index among the feature points (default: all of them) or by
    layer/scope name; `model.feature_info` lists their module, channels and reduction.
    """
    net = source if isinstance(source, Network) else load(source, network=network, **params)
    if not features_only:
        if out_indices is not None:
            raise TypeError("out_indices needs features_only=True")
        return net.to_torch(seed=seed)
    import dataclasses

    from .backends import features, pytorch
    graph, feats = features.plan(net.graph, out_indices)
    return pytorch.build(dataclasses.replace(net, graph=graph), seed=seed, features=feats)

_ZOO = frozenset({"create", "get_network", "list_models"})


def __getattr__(name: str):
    """The model zoo (`resdsl.create`, ...) is imported when first asked for: loading a file does not need
    it, and it would add its imports (difflib, the variants table) to every `import resdsl`."""
    if name in _ZOO:
        from . import models

        return getattr(models, name)
    raise AttributeError(f"module 'resdsl' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | _ZOO)


__all__ = ["load", "loads", "compile", "create", "get_network", "list_models", "Network", "ResdslError", "Diagnostic", "Limits", "__version__"]
