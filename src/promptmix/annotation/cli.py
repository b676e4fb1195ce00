"""Subcommands of this stage (filled in by the stage's implementation)."""


def add_parsers(subparsers) -> None:
    """Register this stage's subcommands on the top-level ``promptmix`` parser."""
