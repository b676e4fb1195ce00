"""Publishing: a run's fake dataset as a versioned Hub dataset repo (``promptmix publish``).

``publish_run(RUN, repo_id=..., version=...)`` builds the repo (:mod:`.layout`: Parquet shards,
card, figures, ``provenance.json``), writes it to a local folder when asked and pushes it as one
commit tagged ``vX.Y.Z`` (:mod:`.publish`).
"""

from .layout import RepoLayout, build_repo, read_provenance, stale_files
from .publish import HubPublishError, PublishResult, VersionExistsError, parse_version, publish_run

__all__ = ["HubPublishError", "PublishResult", "RepoLayout", "VersionExistsError", "build_repo", "parse_version",
           "publish_run", "read_provenance", "stale_files"]
