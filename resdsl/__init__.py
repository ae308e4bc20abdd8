"""resdsl: a language and compiler for residual network architectures.

    >>> import resdsl
    >>> net = resdsl.load("examples/resnet.res", depth=50)
    >>> net.param_count
    25557032
"""
from .diagnostics import Diagnostic, ResdslError
from .limits import Limits
from .network import Network, load, loads
from .models import create, get_network, list_models

__version__ = "0.1.0"


def compile(source, network: str | None = None, seed: int | None = None, **params):
    """Load a .res file (or take a `Network`) and build its `torch.nn.Module`.

        model = resdsl.compile("examples/resnet.res", depth=50)
    """
    net = source if isinstance(source, Network) else load(source, network=network, **params)
    return net.to_torch(seed=seed)

__all__ = ["load", "loads", "compile", "create", "get_network", "list_models", "Network", "ResdslError", "Diagnostic", "Limits", "__version__"]
