"""One module per `resdsl` subcommand; each defines `register(subparsers)`."""
