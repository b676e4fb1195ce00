"""``promptmix publish``: lay a run's fake dataset out as a Hub dataset repo, write it locally, push it, tag it.

The push is one atomic commit (``HfApi.create_commit``) holding every file: Parquet shards, the
card, its PNG figures and ``provenance.json``, plus deletions of files an earlier version left on the
branch. Only after the commit succeeds is the tag ``vX.Y.Z`` created on it, so a failed commit
leaves the repository as it was (a branch this call created for it is deleted again) and the same
command can simply be rerun. A version whose tag exists is refused unless ``force``.

The token is never taken on the command line: ``HfApi(token=None)`` finds it where huggingface_hub
always looks (``HF_TOKEN``, ``hf auth login``). It never reaches a log line, a card or an error message:
errors from the Hub are re-raised as :class:`HubPublishError` with the token scrubbed from their text.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import os
import re
import tempfile
from pathlib import Path
from typing import Any, Iterator

from ..dataset_cards.card import PROVENANCE_FILE, history_entry, load_card_inputs, resolve_date
from ..errors import InputError, PromptmixError
from ..utils.io import atomic_path
from .layout import RepoLayout, build_repo, read_provenance, stale_files

logger = logging.getLogger(__name__)

STAGE = "publish"

REPO_TYPE = "dataset"
_VERSION = re.compile(r"^v?(\d+)\.(\d+)\.(\d+)$")


class VersionExistsError(PromptmixError):
    """The version (tag ``vX.Y.Z``) is already published; pass ``force`` to replace it."""


class HubPublishError(PromptmixError):
    """A Hub call failed; the message names the step and never contains the token."""


@dataclasses.dataclass
class PublishResult:
    repo_id: str
    version: str
    tag: str
    branch: str
    files: list[str]  # repo-relative paths of the publication
    rows: dict[str, int]  # config -> rows
    license: dict[str, str]
    local_dir: Path | None = None
    dry_run: bool = False
    pushed: bool = False
    commit_oid: str | None = None
    commit_url: str | None = None
    deleted: list[str] = dataclasses.field(default_factory=list)  # stale files removed by the commit
    local_card: bool = False  # a local publication: its card loads it from local_dir

    @property
    def url(self) -> str:
        return f"https://huggingface.co/datasets/{self.repo_id}"

    @property
    def load_snippet(self) -> str:
        if self.local_card and self.local_dir is not None:
            return f'load_dataset("{Path(self.local_dir).resolve().as_posix()}")'
        return f'load_dataset("{self.repo_id}", revision="{self.tag}")'


def parse_version(version: str) -> str:
    """``"1.2.3"`` or ``"v1.2.3"`` -> ``"1.2.3"``; anything else raises :class:`InputError`."""
    m = _VERSION.match(str(version).strip())
    if not m:
        raise InputError(f"--version: expected X.Y.Z with integers, e.g. 1.0.0; got {version!r}")
    return ".".join(str(int(p)) for p in m.groups())


def check_repo_id(repo_id: str) -> str:
    """``repo_id`` when it is ``ORG/NAME`` by the Hub's own rules (``huggingface_hub``'s ``validate_repo_id``)."""
    from huggingface_hub.utils import HFValidationError, validate_repo_id

    try:
        validate_repo_id(repo_id)
        ok = isinstance(repo_id, str) and repo_id.count("/") == 1
    except HFValidationError:
        ok = False
    if not ok:
        raise InputError(f"--repo-id: expected ORG/NAME (letters, digits, '-', '_', '.'), e.g. me/promptmix-shtb; "
                         f"got {repo_id!r}")
    return repo_id


def _secrets(token: str | None) -> list[str]:
    found = [token] if token else []
    try:
        from huggingface_hub import get_token

        stored = get_token()
        if stored:
            found.append(stored)
    except Exception:  # no token anywhere is fine
        pass
    env = os.environ.get("HF_TOKEN")
    if env:
        found.append(env)
    return sorted({s for s in found if len(s) >= 4}, key=len, reverse=True)


def scrub(text: str, secrets: list[str]) -> str:
    """``text`` with every secret (and anything shaped like a Hub token) replaced by ``***``."""
    for secret in secrets:
        text = text.replace(secret, "***")
    return re.sub(r"hf_[A-Za-z0-9]{20,}", "***", text)


class ScrubFilter(logging.Filter):
    """A logging filter that replaces every secret (and anything shaped like a Hub token) by ``***`` in a record's
    message, arguments, exception text and stack text (records are formatted here, so no handler sees the raw
    arguments)."""

    def __init__(self, secrets: list[str]):
        super().__init__()
        self.secrets = list(secrets)

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a record whose arguments do not format: keep its template only
            message = str(record.msg)
        record.msg, record.args = scrub(message, self.secrets), None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = scrub(record.exc_text, self.secrets)
        if record.stack_info:
            record.stack_info = scrub(record.stack_info, self.secrets)
        return True


#: loggers of the HTTP stack that print requests and responses at DEBUG (made now so they get the filter too)
_HTTP_LOGGERS = ("huggingface_hub", "httpx", "httpx2", "httpcore", "httpcore2", "urllib3", "requests", "filelock",
                 "fsspec", "aiohttp")


@contextlib.contextmanager
def scrubbed_logs(secrets: list[str]) -> Iterator[None]:
    """While the block runs, :class:`ScrubFilter` sits on every logger and every handler that exists (the root's,
    each library's, ``logging.lastResort``), so no record of any logger at any level carries a secret."""
    flt = ScrubFilter(secrets)
    for name in _HTTP_LOGGERS:
        logging.getLogger(name)
    loggers = [logging.getLogger()] + [lg for lg in list(logging.Logger.manager.loggerDict.values())
                                       if isinstance(lg, logging.Logger)]
    handlers = {id(h): h for lg in loggers for h in lg.handlers}
    if logging.lastResort is not None:
        handlers[id(logging.lastResort)] = logging.lastResort
    for item in [*loggers, *handlers.values()]:
        item.addFilter(flt)
    try:
        yield
    finally:
        for item in [*loggers, *handlers.values()]:
            item.removeFilter(flt)


def _hub_error(step: str, exc: BaseException, secrets: list[str]) -> HubPublishError:
    message = scrub(f"{type(exc).__name__}: {exc}", secrets)
    hint = ""
    status = getattr(getattr(exc, "response", None), "status_code", None)
    if status in (401, 403):
        hint = " (check that you are logged in with `hf auth login` or HF_TOKEN, with write access to the repo)"
    elif type(exc).__name__ == "OfflineModeIsEnabled":
        hint = " (HF_HUB_OFFLINE is set: unset it to push, or use --dry-run --local-dir DIR)"
    return HubPublishError(f"{step} failed: {message}{hint}")


@dataclasses.dataclass
class _HubState:
    exists: bool
    tags: dict[str, str]
    branches: dict[str, str]
    files: list[str]
    history: list[dict[str, Any]]


def _read_hub_state(api, repo_id: str, branch: str) -> _HubState:
    from huggingface_hub.errors import RepositoryNotFoundError

    try:
        refs = api.list_repo_refs(repo_id, repo_type=REPO_TYPE)
    except RepositoryNotFoundError:
        return _HubState(False, {}, {}, [], [])
    tags = {t.name: t.target_commit for t in refs.tags}
    branches = {b.name: b.target_commit for b in refs.branches}
    files: list[str] = []
    history: list[dict[str, Any]] = []
    head = branches.get(branch)
    if head:
        files = list(api.list_repo_files(repo_id, repo_type=REPO_TYPE, revision=head))
        if PROVENANCE_FILE in files:
            path = api.hf_hub_download(repo_id, PROVENANCE_FILE, repo_type=REPO_TYPE, revision=head)
            try:
                history = list(json.loads(Path(path).read_text(encoding="utf-8")).get("history") or [])
            except (OSError, ValueError, AttributeError):
                logger.warning("%s on %s is not readable: the version history starts afresh", PROVENANCE_FILE, branch)
    return _HubState(True, tags, branches, files, history)


def _check_local_dir(local_dir: Path, force: bool, run_dir, real) -> dict[str, Any] | None:
    """The output guard (:func:`promptmix.utils.outputs.guard_output`): never the run folder, a folder around it,
    or what another stage writes in it, nor the real dataset, even with ``force``; a non-empty folder that
    ``promptmix publish`` did not write only with ``force``. Returns the provenance of an earlier publication there."""
    from ..run_folder import RunFolder
    from ..utils.model_source import is_local_ref
    from ..utils.outputs import guard_output, remove_stale_beside

    run = RunFolder(run_dir)
    local_real = real if real is not None and is_local_ref(str(real)) else None
    guard_output(local_dir, STAGE, run=run, own=[run.publish], inputs=[local_real], force=force, flag="--local-dir",
                 ours=lambda folder: read_provenance(folder) is not None)
    remove_stale_beside(local_dir, f"promptmix {STAGE}")
    return read_provenance(local_dir) if local_dir.is_dir() else None


def publish_run(run_dir: str | os.PathLike, *, repo_id: str, version: str, local_dir: str | os.PathLike | None = None,
                private: bool = False, branch: str | None = None, dry_run: bool = False, force: bool = False,
                token: str | None = None, notes: str | None = None, license: str | None = None,
                pretty_name: str | None = None, notice: str | None = None, real: str | os.PathLike | None = None,
                date: str | None = None, local_card: bool = False) -> PublishResult:
    """Publish ``RUN/fake`` as version ``version`` of the Hub dataset ``repo_id``.

    Builds the repo (see :mod:`promptmix.publishing.layout`), writes it to ``local_dir`` atomically when
    given, and, unless ``dry_run``, pushes it in one commit to ``branch`` (default ``main``) and tags
    that commit ``v{version}``. ``notes`` go into the version history and the commit description;
    ``license`` overrides the derived license id; ``real`` overrides the real dataset recorded in the
    run; ``date`` (ISO) defaults to ``SOURCE_DATE_EPOCH`` or today.

    ``local_card`` (with ``dry_run`` and ``local_dir``): the folder is a publication of its own, never pushed
    (``promptmix run`` with ``publish.push: false``), so its card loads it by path instead of by a Hub id and a
    tag; ``promptmix publish --dry-run`` keeps the Hub card, as a preview of the push.

    Raises :class:`VersionExistsError` when the tag exists (unless ``force``), :class:`InputError` for
    bad arguments or run folders, :class:`HubPublishError` when a Hub call fails.
    """
    version = parse_version(version)
    tag = f"v{version}"
    repo_id = check_repo_id(repo_id)
    branch_name = branch or "main"
    local = Path(local_dir) if local_dir is not None else None
    previous_local = _check_local_dir(local, force, run_dir, real) if local is not None else None
    inputs = load_card_inputs(run_dir, real=real)
    if set(inputs.configs) == {"all"}:  # `promptmix filter --allow-empty` kept nothing: never publish `all` as kept
        raise InputError(f"{run_dir}: the fake dataset has no kept rows (every row was filtered out; it holds config "
                         "'all' only); nothing to publish. Refilter with a higher --keep or other annotators")

    secrets = _secrets(token)
    with scrubbed_logs(secrets):  # every logger, every verbosity: -vv shows echoed headers
        api, state = None, None
        history: list[dict[str, Any]] = []
        if not dry_run:
            from huggingface_hub import HfApi

            api = HfApi(token=token)
            try:
                state = _read_hub_state(api, repo_id, branch_name)
            except Exception as exc:
                raise _hub_error(f"reading {repo_id} on the Hub", exc, secrets) from None
            if tag in state.tags and not force:
                raise VersionExistsError(f"{repo_id} already has version {version} (tag {tag} on commit "
                                         f"{state.tags[tag][:12]}); publish a new version, or pass --force to move the tag")
            history = state.history
        elif previous_local is not None and previous_local.get("dataset", {}).get("repo_id") == repo_id:
            history = list(previous_local.get("history") or [])
        history = [h for h in history if str(h.get("version")) != version]
        rows_kept = sum(len(d) for d in inputs.configs[inputs.kept_config].values())
        rows_all = sum(len(d) for d in inputs.configs[inputs.all_config].values())
        date = resolve_date(date)
        history.append(history_entry(version, date, rows_kept, rows_all, notes))
        local_card = bool(local_card and dry_run and local is not None)
        build = dict(inputs=inputs, repo_id=repo_id, version=version, branch=branch_name, history=history,
                     license=license, pretty_name=pretty_name, notice=notice, date=date,
                     local_path=local.resolve().as_posix() if local_card else None)

        if local is not None:
            from ..utils.outputs import write_errors

            # the folder is the repo, file for file: its provenance.json is the marker that publish wrote it
            with atomic_path(local) as tmp, write_errors(local):
                layout = build_repo(root=tmp, **build)
            layout.root = local
            logger.info("wrote %d files to %s", len(layout.files), local)
            return _push_or_report(layout, api, state, repo_id=repo_id, version=version, tag=tag, branch=branch,
                                   private=private, dry_run=dry_run, force=force, notes=notes, secrets=secrets,
                                   local=local, run_dir=Path(run_dir), local_card=local_card)
        from ..utils.outputs import write_errors

        with tempfile.TemporaryDirectory(prefix="promptmix-publish-") as tmp:
            with write_errors(Path(tmp) / "repo"):  # the repo is built in the temp folder before it is pushed
                layout = build_repo(root=Path(tmp) / "repo", **build)
            return _push_or_report(layout, api, state, repo_id=repo_id, version=version, tag=tag, branch=branch,
                                   private=private, dry_run=dry_run, force=force, notes=notes, secrets=secrets,
                                   local=None, run_dir=Path(run_dir))


def _push_or_report(layout: RepoLayout, api, state: _HubState | None, *, repo_id: str, version: str, tag: str,
                    branch: str | None, private: bool, dry_run: bool, force: bool, notes: str | None,
                    secrets: list[str], local: Path | None, run_dir: Path, local_card: bool = False) -> PublishResult:
    result = PublishResult(repo_id=repo_id, version=version, tag=tag, branch=branch or "main", files=layout.files,
                           rows=layout.rows, license=layout.license, local_dir=local, dry_run=dry_run,
                           local_card=local_card)
    if dry_run:
        return result
    commit = _push(api, state, layout, repo_id=repo_id, version=version, tag=tag, branch=branch, private=private,
                   force=force, notes=notes, secrets=secrets, result=result)
    result.pushed = True
    result.commit_oid = commit.oid
    result.commit_url = getattr(commit, "commit_url", None)
    from ..run_folder import RunFolder

    try:
        RunFolder(run_dir).record_stage("publish", {"repo_id": repo_id, "version": version, "tag": tag,
                                          "branch": result.branch, "commit": commit.oid, "files": len(layout.files)})
    except OSError as exc:  # a read-only run folder does not undo a publication
        logger.warning("could not record the publication in %s: %s", run_dir, exc)
    return result


def _push(api, state: _HubState, layout: RepoLayout, *, repo_id: str, version: str, tag: str, branch: str | None,
          private: bool, force: bool, notes: str | None, secrets: list[str], result: PublishResult):
    from huggingface_hub import CommitOperationAdd, CommitOperationDelete

    branch_name = branch or "main"
    try:
        # private=None keeps the organisation's default visibility for a new repo
        api.create_repo(repo_id, repo_type=REPO_TYPE, private=True if private else None, exist_ok=True)
    except Exception as exc:
        raise _hub_error(f"creating the dataset repo {repo_id}", exc, secrets) from None
    created_branch = False
    if branch_name != "main" and branch_name not in state.branches:
        try:
            api.create_branch(repo_id, branch=branch_name, repo_type=REPO_TYPE, exist_ok=True)
        except Exception as exc:
            raise _hub_error(f"creating branch {branch_name!r}", exc, secrets) from None
        created_branch = True
    deleted = stale_files(state.files, layout.files)
    operations = [CommitOperationAdd(path_in_repo=rel, path_or_fileobj=str(layout.path(rel))) for rel in layout.files]
    operations += [CommitOperationDelete(path_in_repo=rel) for rel in deleted]
    description = (f"promptmix publish of {layout.pretty_name} version {version}: "
                   + ", ".join(f"{c} {n} rows" for c, n in layout.rows.items()) + ".")
    if notes:
        description += f"\n\n{notes}"
    try:
        commit = api.create_commit(repo_id, operations, commit_message=f"Publish {tag}",
                                   commit_description=description, repo_type=REPO_TYPE, revision=branch,
                                   parent_commit=state.branches.get(branch_name))
    except Exception as exc:
        if created_branch:
            try:
                api.delete_branch(repo_id, branch=branch_name, repo_type=REPO_TYPE)
            except Exception as cleanup:  # the branch stays empty; a retry reuses it
                logger.warning("could not delete branch %s after the failed commit: %s", branch_name,
                               scrub(str(cleanup), secrets))
        raise _hub_error(f"the commit of {tag} to {repo_id} (nothing was changed; rerun to retry)", exc,
                         secrets) from None
    result.deleted = deleted
    try:
        if tag in state.tags:  # force: move the tag to the new commit
            api.delete_tag(repo_id, tag=tag, repo_type=REPO_TYPE)
        api.create_tag(repo_id, tag=tag, tag_message=f"{layout.pretty_name} {version}", revision=commit.oid,
                       repo_type=REPO_TYPE)
    except Exception as exc:
        raise _hub_error(f"commit {commit.oid[:12]} was pushed but tagging it {tag}", exc, secrets) from None
    logger.info("pushed %s (commit %s) and tagged it %s", repo_id, commit.oid, tag)
    return commit
