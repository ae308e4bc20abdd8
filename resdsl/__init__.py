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
__all__ = ["load", "loads", "Network", "ResdslError", "Diagnostic", "Limits", "__version__"]
