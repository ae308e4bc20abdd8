"""Can this network be lowered to PyTorch?  Every rule a name or value must satisfy for code generation.

Reads a named `Graph` (after `ir.assign_names`): each node's and scope's qualified name, the network
parameters.  Writes nothing; returns located diagnostics.  `elaborate` runs it, so `check` refuses what
the PyTorch backend could not build, and the backend (resdsl/backends/pytorch.py) is total over the rest:
it never judges a name or value itself, it only asserts these rules.

The rules:
  * every component of a layer name becomes the name of an `nn.Module` child, so it must be a plain
    name ([A-Za-z0-9_]+) and must not be an attribute of `torch.nn.Module`/`nn.Sequential` or of the
    generated class (`training`, `forward`, `state_dict`, `_modules`, `input_names`, ...): torch's
    `add_module` refuses those, and `.eval()` would overwrite a child called `training`; nor a Python
    keyword, which torch.fx's generated code writes as `self.def(x)`  (E019);
  * module trees nest at most MAX_MODULE_DEPTH levels: forward, state_dict and FX recurse once per
    level, and Python's recursion limit is finite  (E040);
  * network parameter values are plain data (int, float, string, bool, none, lists and dicts of
    them): they are written into the generated file as literals  (E014).
Input and output names, parameter names, and block and network names are never refused here: the
backend maps any of them to safe Python identifiers (or string constants) itself.
"""
from __future__ import annotations

import keyword
import re

from .diagnostics import Diagnostic
from .evaluate import FrozenDict
from .ir import Graph
from .limits import MODULE_DEPTH_CEILING

# dir(torch.nn.Module()) | dir(torch.nn.Sequential()) with torch 2.x (tests/test_backend.py checks that
# this covers the installed torch), plus what the generated classes define.
MODULE_ATTRIBUTES = frozenset("""
T_destination _apply _backward_hooks _backward_pre_hooks _buffers _call_impl _compiled_call_impl
_forward_hooks _forward_hooks_always_called _forward_hooks_with_kwargs _forward_pre_hooks
_forward_pre_hooks_with_kwargs _get_backward_hooks _get_backward_pre_hooks _get_item_by_idx _get_name
_is_full_backward_hook _load_from_state_dict _load_state_dict_post_hooks _load_state_dict_pre_hooks
_maybe_warn_non_full_backward_hook _modules _named_members _non_persistent_buffers_set _parameters
_register_load_state_dict_pre_hook _register_state_dict_hook _replicate_for_data_parallel
_save_to_state_dict _slow_forward _state_dict_hooks _state_dict_pre_hooks _version _wrapped_call_impl
add_module append apply bfloat16 buffers call_super_init children compile cpu cuda double dump_patches
eval extend extra_repr float forward get_buffer get_extra_state get_parameter get_submodule half insert
ipu load_state_dict modules mtia named_buffers named_children named_modules named_parameters parameters
pop register_backward_hook register_buffer register_forward_hook register_forward_pre_hook
register_full_backward_hook register_full_backward_pre_hook register_load_state_dict_post_hook
register_load_state_dict_pre_hook register_module register_parameter register_state_dict_post_hook
register_state_dict_pre_hook requires_grad_ set_extra_state set_submodule share_memory state_dict to
to_empty train training type xpu zero_grad
input_names output_names input_shapes output_shapes compiled_params feature_info code resdsl_network
resdsl_source reset_parameters _resdsl_build
""".split())

MAX_MODULE_DEPTH = MODULE_DEPTH_CEILING  # one limit: limits.py says why (torch walks the tree recursively)


_PLAIN_NAME = re.compile(r"[A-Za-z0-9_]+")  # used with fullmatch: `$` would let a trailing newline through


def _plain_name(text: str) -> bool:
    return _PLAIN_NAME.fullmatch(text) is not None


def _name_problem(component: str) -> str | None:
    if not _plain_name(component):
        return "is not a plain name (letters, digits and underscores)"
    if keyword.iskeyword(component) or component == "self":
        return "is a Python keyword (or `self`): torch.fx's generated code writes child modules as `self.NAME`"
    # dunders, and ___names: torch.compile patches `___needs_generation_tag_patch` onto nn.Module at run time
    if component.startswith("__") and component.endswith("__") or component.startswith("___") or \
            component in MODULE_ATTRIBUTES:
        return "is an attribute of torch.nn.Module (or of the generated class), so it cannot name a child module"
    return None


def _plain_value(v: object, depth: int = 0) -> bool:
    if depth > 50:
        return False
    if v is None or type(v) in (bool, int, float, str):
        return True
    if type(v) is tuple:
        return all(_plain_value(x, depth + 1) for x in v)
    if isinstance(v, FrozenDict):
        return all(type(k) in (int, str, bool) or k is None for k in v) and \
            all(_plain_value(x, depth + 1) for x in v.values())
    return False


def check(graph: Graph, max_errors: int = 50) -> list[Diagnostic]:
    """Diagnostics for every name or value of `graph` that PyTorch code generation could not express."""
    diags: list[Diagnostic] = []
    seen: set[tuple[str, object]] = set()
    items = [(s.name, s.label, s.hint, s.span, "block call" if s.kind == "block" else s.kind)
             for s in graph.scopes if s.parent is not None]
    items += [(n.name, n.label, n.op, n.span, "layer") for n in graph.nodes if n.op != "input"]
    problems: dict[str, str | None] = {}  # per distinct last component: most layers share a few names
    for name, label, hint, span, what in items:
        parts = name.split(".")
        own = parts[-1]
        if len(parts) > MAX_MODULE_DEPTH and ("depth", None) not in seen:
            seen.add(("depth", None))
            diags.append(Diagnostic("E040", f"layer `{name[:80]}` is nested {len(parts)} modules deep; PyTorch "
                                    f"modules nest at most {MAX_MODULE_DEPTH} deep here", span,
                                    hint="drop some labels or groups: each labeled group and block call is a level"))
        problem = problems[own] if own in problems else problems.setdefault(own, _name_problem(own))
        if problem is None or (own, span) in seen:
            continue
        seen.add((own, span))
        fix = own.strip("_") + "_" if _plain_name(own.strip("_") + "_") and \
            _name_problem(own.strip("_") + "_") is None else "layer_"
        if label is not None:
            hint_text = f"rename the label, e.g. `{fix}:`"
        else:
            hint_text = f"the {what} is named after `{hint}`; give it a label, e.g. `{fix}: {hint}...`"
        diags.append(Diagnostic("E019", f"layer name `{own[:80]}` {problem}", span, hint=hint_text))
        if len(diags) >= max_errors:
            return diags
    for key, value in graph.params.items():
        if not _plain_value(value):
            diags.append(Diagnostic("E014", f"network parameter `{key}` has a value that cannot be written as a "
                                    f"Python literal ({type(value).__name__})", graph.nodes[0].span,
                                    hint="use numbers, strings, booleans, lists and dicts"))
    return diags
