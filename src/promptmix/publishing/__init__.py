"""Publishing: a run's fake dataset as a versioned Hub dataset repo (``promptmix publish``).

``publish_run(RUN, repo_id=..., version=...)`` builds the repo (:mod:`.layout`: Parquet shards,
card, figures, ``provenance.json``), writes it to a local folder when asked and pushes it as one
commit tagged ``vX.Y.Z`` (:mod:`.publish`).
"""

from ..utils.lazy import lazy_exports


_EXPORTS = {
    "RepoLayout": ".layout", "build_repo": ".layout", "read_provenance": ".layout", "stale_files": ".layout",
    "HubPublishError": ".publish", "PublishResult": ".publish", "VersionExistsError": ".publish", "parse_version":
    ".publish", "publish_run": ".publish",
}

__all__ = sorted(_EXPORTS)

__getattr__ = lazy_exports(__name__, _EXPORTS)
