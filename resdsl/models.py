"""The model zoo by name: `create("resnet50")`, `get_network(...)`, `list_models("resnet*")`.

Every zoo file (`examples/*.res` in a checkout, `resdsl/zoo/` in a wheel; see
`loader.ZOO`) is a model under its own name with its defaults: `unet`,
`hourglass`, and `resnet_vae_encoder` for a file with several networks.  The
one table below, `VARIANTS`, adds the named settings people ask for
(`resnet50` = resnet.res with depth=50), in timm's / torchvision's spelling
where one exists, so their weights load into the model with strict=True.
A file that lands in examples/ is listed without touching this module.

Weights are never downloaded: `weights=` takes a state_dict file, a
state_dict, or a torch module (a torchvision or timm model object).
"""
from __future__ import annotations

import difflib
import fnmatch
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

from .limits import DEFAULT
from .loader import ZOO, load_file
from .network import Network, load


@dataclass(frozen=True)
class ModelSpec:
    """A zoo model: a file in the zoo, the network in it (None: its only one) and parameter settings."""
    file: str
    network: str | None = None
    params: dict = field(default_factory=dict)

    @property
    def path(self) -> Path:
        return ZOO / f"{self.file}.res"


def _v(file: str, **params) -> ModelSpec:
    return ModelSpec(file, None, params)


# name -> (zoo file, parameters).  Names follow torchvision/timm where those have the model.
VARIANTS: dict[str, ModelSpec] = {
    **{f"resnet{d}": _v("resnet", depth=d) for d in (18, 34, 50, 101, 152, 200)},
    **{f"resnet{d}d": _v("resnet", depth=d, variant="d") for d in (18, 34, 50, 101, 152, 200)},
    "wide_resnet50_2": _v("resnet", depth=50, width_per_group=128),
    "wide_resnet101_2": _v("resnet", depth=101, width_per_group=128),
    "resnext50_32x4d": _v("resnet", depth=50, groups=32, width_per_group=4),
    "resnext101_32x8d": _v("resnet", depth=101, groups=32, width_per_group=8),
    "resnext101_64x4d": _v("resnet", depth=101, groups=64, width_per_group=4),
    **{f"resnetv2_{d}": _v("resnet_v2", depth=d) for d in (50, 101, 152, 200)},
    **{f"cifar_resnet{d}": _v("cifar_resnet", depth=d) for d in (20, 32, 44, 56, 110, 1202)},
    **{f"preact_resnet{d}": _v("preact_cifar", depth=d) for d in (164, 1001)},
    "wrn16_8": _v("wrn", depth=16, k=8),
    "wrn28_10": _v("wrn", depth=28, k=10),
    "wrn40_4": _v("wrn", depth=40, k=4),
    **{f"densenet{d}": _v("densenet", depth=d) for d in (121, 161, 169, 201, 264)},
    "densenet_bc100_cifar": _v("densenet", depth=100, cifar=True),
    "hourglass8": _v("hourglass", stacks=8),
    **{f"seresnet{d}": _v("seresnet", depth=d) for d in (18, 34, 50, 101, 152)},
    "seresnext50_32x4d": _v("seresnet", depth=50, groups=32, width_per_group=4),
    "mobilenet_v2_050": _v("mobilenet_v2", width=0.5),
    "mobilenet_v2_140": _v("mobilenet_v2", width=1.4),
    **{f"efficientnet_b{i}": _v("efficientnet", variant=f"b{i}") for i in range(8)},
    **{f"convnext_{v}": _v("convnext", variant=v) for v in ("tiny", "small", "base", "large")},
    "res2net50_26w_4s": _v("res2net", depth=50),
    "res2net50_48w_2s": _v("res2net", depth=50, base_width=48, scale=2),
    "res2net50_14w_8s": _v("res2net", depth=50, base_width=14, scale=8),
    "res2net101_26w_4s": _v("res2net", depth=101),
    "res2next50": _v("res2net", depth=50, base_width=4, cardinality=8),
}


@lru_cache(maxsize=None)
def _file_networks(path: Path) -> tuple[str, ...]:
    return tuple(load_file(path, DEFAULT).networks)


def _zoo_files() -> list[Path]:
    return sorted(ZOO.glob("*.res"))


def registry() -> dict[str, ModelSpec]:
    """Every model name: one per zoo file (or per network of a file with several), then `VARIANTS`."""
    names: dict[str, ModelSpec] = {}
    for path in _zoo_files():
        networks = _file_networks(path)
        if len(networks) == 1:
            names[path.stem] = ModelSpec(path.stem)
        else:
            names.update({f"{path.stem}_{n}": ModelSpec(path.stem, n) for n in networks})
    names.update({k: v for k, v in VARIANTS.items() if v.path.is_file()})
    return names


def list_models(filter: str | Iterable[str] = "", exclude_filters: str | Iterable[str] = "") -> list[str]:
    """Model names, sorted; `filter` / `exclude_filters` are fnmatch patterns (or lists of them), as in timm."""
    include = [filter] if isinstance(filter, str) else list(filter)
    exclude = [exclude_filters] if isinstance(exclude_filters, str) else list(exclude_filters)
    names = sorted(registry())
    if any(include):
        names = [n for n in names if any(fnmatch.fnmatchcase(n, p) for p in include if p)]
    return [n for n in names if not any(fnmatch.fnmatchcase(n, p) for p in exclude if p)]


def spec(name: str) -> ModelSpec:
    """The file and settings behind a model name; a `ValueError` with the nearest names if there is none."""
    table = registry()
    if name not in table:
        near = difflib.get_close_matches(name, table, n=3)
        hint = f"; did you mean {', '.join(near)}?" if near else "; see resdsl.list_models()"
        raise ValueError(f"no zoo model `{name}`{hint}")
    return table[name]


def get_network(name: str, **params) -> Network:
    """The checked `Network` of a zoo model (no torch needed); `params` override the model's settings."""
    s = spec(name)
    return load(s.path, network=s.network, **{**s.params, **params})


def create(name: str, weights=None, seed: int | None = None, **params):
    """A `torch.nn.Module` of a zoo model, like `timm.create_model` (nothing is downloaded).

    `weights`: a path to a saved state_dict, a state_dict, or a torch module whose state_dict is taken
    (`torchvision.models.resnet50()`, a timm model); it is loaded with strict=True.
    """
    model = get_network(name, **params).to_torch(seed=seed)
    if weights is not None:
        model.load_state_dict(_state_dict(weights), strict=True)
    return model


def _state_dict(weights) -> Mapping:
    import torch
    if isinstance(weights, torch.nn.Module):
        return weights.state_dict()
    if isinstance(weights, (str, Path)):
        from .loader import check_regular
        check_regular(weights)  # a FIFO would block torch.load: a diagnostic instead
        data = torch.load(weights, map_location="cpu", weights_only=True)
        # training checkpoints often wrap the weights: {"state_dict": ...} or {"model": ...}
        for key in ("state_dict", "model"):
            if isinstance(data, Mapping) and isinstance(data.get(key), Mapping):
                data = data[key]
        return data
    if isinstance(weights, Mapping):
        return weights
    raise TypeError(f"weights= takes a file path, a state_dict or a torch module, not {type(weights).__name__}")
