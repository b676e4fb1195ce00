"""``PublishConfig``: the settings of stage ``publish``."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from ..config import StageConfig, field
from ..errors import ConfigError, InputError


@dataclasses.dataclass
class PublishConfig(StageConfig):
    """The ``publish`` section: arguments of ``promptmix publish`` (:func:`promptmix.publishing.publish.publish_run`)."""

    _section = "publish"

    repo_id: str = field(help="Hub dataset repo, e.g. me/promptmix-shtb-fake", metavar="ORG/NAME")
    version: str = field(help="semantic version X.Y.Z; tagged vX.Y.Z on the Hub", metavar="X.Y.Z")
    push: bool = field(False, help="push to the Hub (needs a token: HF_TOKEN or `hf auth login`); false: only "
                                   "write local_dir. `promptmix publish` pushes unless --dry-run (or --no-push)")
    local_dir: Path | None = field(None, runtime=True, help="write the repo to this folder too (default: RUN/publish when push is "
                                              "false, none when pushing)")
    private: bool = field(False, help="create the Hub repo private")
    branch: str | None = field(None, help="Hub branch to commit to (default main)")
    force: bool = field(False, help="replace an existing version tag")
    notes: str | None = field(None, help="what changed in this version (version history, commit message)")
    license: str | None = field(None, help="license id; default: derived from the models and the real dataset")
    pretty_name: str | None = field(None, help="the dataset's display name on the Hub")
    notice: str | None = field(None, help="a notice shown at the top of the dataset card")
    real: str | None = field(None, metavar="DIR_OR_ID", help="real dataset (folder or Hub id) if it moved since the run "
                                                            "(default: the one recorded in RUN/captions/info.json)")

    def validate(self) -> None:
        from .publish import check_repo_id, parse_version

        try:
            check_repo_id(self.repo_id)
        except InputError as exc:
            raise ConfigError(f"publish.repo_id: {_strip_flag(exc)}") from None
        try:
            parse_version(str(self.version))
        except InputError as exc:
            raise ConfigError(f"publish.version: {_strip_flag(exc)}") from None


def _strip_flag(exc: Exception) -> str:
    """``"--version: expected ..."`` -> ``"expected ..."`` (the config names the key itself)."""
    import re

    return re.sub(r"^--[\w-]+: ", "", str(exc))
