"""Subcommands (filled in by the stage's implementation)."""


def add_parsers(subparsers) -> None:
    """Register subcommands on the top-level ``promptmix`` parser."""
