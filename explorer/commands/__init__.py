"""One module per `explorer` subcommand, each with `register(subparsers)`."""
