"""Generation subcommands: ``caption`` and ``prompts`` (cli_captions), ``generate`` and ``reproduce`` (cli_images)."""


def add_parsers(subparsers) -> None:
    from . import cli_captions, cli_images

    cli_captions.add_parsers(subparsers)
    cli_images.add_parsers(subparsers)
