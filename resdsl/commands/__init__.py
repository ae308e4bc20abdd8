"""One module per `resdsl` subcommand; each defines `register(subparsers)`.

What they share lives in `_common.py` (a leading underscore: not a subcommand); they never import
`resdsl.cli`, which imports them."""
