"""Backends: code generators from the IR.

`pytorch` lowers a Network to a standalone PyTorch file and builds modules
from it; `modules` holds the small nn.Modules that file needs.  torch is only
imported when a backend is used.
"""
