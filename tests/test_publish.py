"""promptmix publish: the local folder round-trips through `datasets`; the Hub path (HfApi patched) makes
exactly one commit, tags it only after it succeeds, refuses an existing version, never leaks the token."""

from __future__ import annotations

import json
import logging
import re
from pathlib import Path
from types import SimpleNamespace

import datasets
import pytest
from huggingface_hub import CommitOperationAdd, CommitOperationDelete, DatasetCard
from huggingface_hub.errors import RepositoryNotFoundError
from huggingface_hub.hf_api import GitRefInfo, GitRefs

from promptmix import schema as S
from promptmix.cli import main
from promptmix.errors import InputError
from promptmix.publishing import HubPublishError, VersionExistsError, parse_version, publish_run
from promptmix.testing.runs import make_run
from promptmix.utils.io import sha256_file

TOKEN = "hf_TestTokenThatMustNeverLeak0123456789"
MAIN_HEAD = "1" * 40


@pytest.fixture(scope="module")
def run(tmp_path_factory, tiny_models):
    return make_run(tmp_path_factory.mktemp("publish-run"), task="counting", n_real=3, k=2, models=tiny_models)


class FakeHub:
    """Stands in for ``HfApi``: records every call, holds tags/branches/files, can fail on one step."""

    def __init__(self, *, exists=True, tags=(), branches=("main",), files=(), provenance=None, fail=None,
                 tmp: Path | None = None):
        self.exists, self.fail, self.tmp = exists, fail, tmp
        self.tags = {t: "9" * 40 for t in tags}
        self.branches = {b: MAIN_HEAD for b in branches}
        self.files = list(files)
        self.provenance = provenance
        self.calls: list[tuple[str, dict]] = []
        self.tokens: list = []

    def __call__(self, token=None, **kwargs):  # HfApi(token=...)
        self.tokens.append(token)
        return self

    def _call(self, name, **kwargs):
        self.calls.append((name, kwargs))
        if self.fail == name:
            raise RuntimeError(f"server said no to {name}; request had Authorization: Bearer {TOKEN}")

    def names(self):
        return [n for n, _ in self.calls]

    def list_repo_refs(self, repo_id, *, repo_type=None, **kw):
        self._call("list_repo_refs", repo_id=repo_id, repo_type=repo_type)
        if not self.exists:
            raise RepositoryNotFoundError("404 Repository Not Found",
                                          response=SimpleNamespace(headers={}, request=None, status_code=404))
        return GitRefs(branches=[GitRefInfo(name=b, ref=f"refs/heads/{b}", target_commit=c)
                                 for b, c in self.branches.items()], converts=[],
                       tags=[GitRefInfo(name=t, ref=f"refs/tags/{t}", target_commit=c) for t, c in self.tags.items()])

    def list_repo_files(self, repo_id, *, repo_type=None, revision=None, **kw):
        self._call("list_repo_files", repo_id=repo_id, revision=revision)
        return list(self.files)

    def hf_hub_download(self, repo_id, filename, *, repo_type=None, revision=None, **kw):
        self._call("hf_hub_download", filename=filename, revision=revision)
        path = self.tmp / "downloaded-provenance.json"
        path.write_text(json.dumps(self.provenance))
        return str(path)

    def create_repo(self, repo_id, **kwargs):
        self._call("create_repo", repo_id=repo_id, **kwargs)

    def create_branch(self, repo_id, **kwargs):
        self._call("create_branch", repo_id=repo_id, **kwargs)

    def delete_branch(self, repo_id, **kwargs):
        self._call("delete_branch", repo_id=repo_id, **kwargs)

    def create_commit(self, repo_id, operations, **kwargs):
        ops = list(operations)
        for op in ops:  # the files must exist while the commit uploads them
            if isinstance(op, CommitOperationAdd):
                assert Path(op.path_or_fileobj).is_file()
        self._call("create_commit", repo_id=repo_id, operations=ops, **kwargs)
        return SimpleNamespace(oid="c" * 40, commit_url=f"https://huggingface.co/datasets/{repo_id}/commit/{'c' * 40}")

    def delete_tag(self, repo_id, **kwargs):
        self._call("delete_tag", repo_id=repo_id, **kwargs)

    def create_tag(self, repo_id, **kwargs):
        self._call("create_tag", repo_id=repo_id, **kwargs)


@pytest.fixture
def hub(monkeypatch, tmp_path):
    def install(**kwargs):
        fake = FakeHub(tmp=tmp_path, **kwargs)
        monkeypatch.setattr("huggingface_hub.HfApi", fake)
        return fake
    return install


def test_local_folder_round_trips_through_load_dataset(run, tmp_path):
    out = tmp_path / "repo"
    result = publish_run(run.run_dir, repo_id="me/fake-shtb", version="1.0.0", local_dir=out, dry_run=True,
                         date="2025-03-01")
    assert result.dry_run and not result.pushed and result.local_dir == out
    assert sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file()) == result.files
    expected = S.fake_features("counting")
    for config, rows in (("kept", run.kept), ("all", run.rows), (None, run.kept)):
        ds = datasets.load_dataset(str(out), config, split="train", cache_dir=str(tmp_path / f"cache-{config}"))
        assert len(ds) == rows
        assert ds.features == expected
    kept = datasets.load_dataset(str(out), "kept", split="train", cache_dir=str(tmp_path / "cache-k2"))
    assert all(kept[S.KEPT]) and kept[0][S.IMAGE].size == (kept[0][S.WIDTH], kept[0][S.HEIGHT])
    card = DatasetCard.load(out / "README.md")
    assert [c["config_name"] for c in card.data.configs] == ["kept", "all"]
    assert 'load_dataset("me/fake-shtb", revision="v1.0.0"' in card.text
    provenance = json.loads((out / "provenance.json").read_text())
    assert set(provenance["run"]["manifest"]["stages"]) == {"caption", "prompts", "generate", "annotate", "filter"}
    assert provenance["dataset"]["tag"] == "v1.0.0"
    assert provenance["history"] == [{"version": "1.0.0", "date": "2025-03-01", "rows_kept": run.kept,
                                      "rows_all": run.rows, "notes": None}]
    assert set(provenance["files"]) == set(result.files) - {"provenance.json"}
    for rel, info in provenance["files"].items():
        assert sha256_file(out / rel) == info["sha256"], rel


def test_hub_push_is_one_commit_then_the_tag(run, hub, tmp_path):
    fake = hub(exists=False)
    result = publish_run(run.run_dir, repo_id="me/fake-shtb", version="1.0.0", private=True, notes="first")
    assert fake.names() == ["list_repo_refs", "create_repo", "create_commit", "create_tag"]
    calls = dict(fake.calls)
    assert calls["create_repo"] == {"repo_id": "me/fake-shtb", "repo_type": "dataset", "private": True,
                                    "exist_ok": True}
    commit = calls["create_commit"]
    assert commit["repo_type"] == "dataset" and commit["revision"] is None and commit["commit_message"] == "Publish v1.0.0"
    assert "first" in commit["commit_description"]
    added = sorted(op.path_in_repo for op in commit["operations"] if isinstance(op, CommitOperationAdd))
    assert added == result.files
    assert {"README.md", "provenance.json", "assets/samples.png", "assets/quality.png",
            "assets/distribution.png"} <= set(added)
    shards = [f for f in added if f.startswith("data/")]
    # each row once: config "all" is the kept shards plus the dropped ones
    assert len(shards) == 2 and {f.split("/")[1] for f in shards} == {"kept", "dropped"}
    assert all(re.fullmatch(r"data/(kept|dropped)/train-(\w+-)?00000-of-00001\.parquet", f) for f in shards), shards
    assert calls["create_tag"] == {"repo_id": "me/fake-shtb", "tag": "v1.0.0", "revision": "c" * 40,
                                   "repo_type": "dataset", "tag_message": calls["create_tag"]["tag_message"]}
    assert result.pushed and result.commit_oid == "c" * 40 and result.tag == "v1.0.0"
    assert fake.tokens == [None]  # huggingface_hub resolves HF_TOKEN / login itself
    # the publication is recorded in the run manifest
    manifest = json.loads((run.run_dir / "manifest.json").read_text())
    assert manifest["stages"]["publish"]["commit"] == "c" * 40


def test_failed_commit_creates_no_tag_hides_the_token_and_a_retry_works(run, hub, monkeypatch, caplog):
    monkeypatch.setenv("HF_TOKEN", TOKEN)
    fake = hub(fail="create_commit", branches=("main",))
    with caplog.at_level(logging.DEBUG), pytest.raises(HubPublishError) as err:
        publish_run(run.run_dir, repo_id="me/fake-shtb", version="1.1.0", branch="dev", token=TOKEN)
    message = str(err.value)
    assert TOKEN not in message and "***" in message and "nothing was changed" in message
    assert err.value.__cause__ is None and err.value.__suppress_context__  # the original (with token) is not shown
    assert "create_tag" not in fake.names()
    # the branch created for the commit is removed again: the repo is as it was
    assert fake.names() == ["list_repo_refs", "create_repo", "create_branch", "create_commit", "delete_branch"]
    assert TOKEN not in caplog.text
    retry = hub(branches=("main",))
    result = publish_run(run.run_dir, repo_id="me/fake-shtb", version="1.1.0", branch="dev", token=TOKEN)
    assert result.pushed and retry.names()[-1] == "create_tag"
    assert dict(retry.calls)["create_commit"]["revision"] == "dev"
    assert retry.tokens == [TOKEN]


def test_existing_version_is_refused_unless_forced(run, hub):
    fake = hub(tags=("v1.0.0",), files=["README.md"])
    with pytest.raises(VersionExistsError, match="already has version 1.0.0"):
        publish_run(run.run_dir, repo_id="me/fake-shtb", version="1.0.0")
    assert "create_commit" not in fake.names() and "create_repo" not in fake.names()
    forced = hub(tags=("v1.0.0",), files=["README.md"])
    publish_run(run.run_dir, repo_id="me/fake-shtb", version="v1.0.0", force=True)
    names = forced.names()
    assert names.index("create_commit") < names.index("delete_tag") < names.index("create_tag")


def test_new_version_deletes_stale_files_and_keeps_the_history(run, hub, tmp_path):
    old_files = ["README.md", "provenance.json", ".gitattributes", "data/all/train-00000-of-00002.parquet",
                 "data/all/train-00001-of-00002.parquet", "data/kept/train-00000-of-00001.parquet",
                 "assets/old-figure.png", "assets/samples.png", "notes/maintainer.md"]
    history = [{"version": "0.9.0", "date": "2025-01-01", "rows_kept": 3, "rows_all": 5, "notes": "preview"}]
    fake = hub(tags=("v0.9.0",), files=old_files, provenance={"format": "promptmix-provenance/1", "history": history})
    out = tmp_path / "repo"
    result = publish_run(run.run_dir, repo_id="me/fake-shtb", version="1.0.0", local_dir=out, date="2025-03-01")
    commit = dict(fake.calls)["create_commit"]
    deleted = sorted(op.path_in_repo for op in commit["operations"] if isinstance(op, CommitOperationDelete))
    # files of the old version under data/ and assets/ that the new one lacks; the maintainer's files stay
    assert deleted == ["assets/old-figure.png", "data/all/train-00000-of-00002.parquet",
                       "data/all/train-00001-of-00002.parquet", "data/kept/train-00000-of-00001.parquet"] \
        == result.deleted
    assert "assets/samples.png" in result.files
    assert commit["parent_commit"] == MAIN_HEAD  # no concurrent push can be overwritten
    card = (out / "README.md").read_text()
    assert "| `0.9.0` | 2025-01-01 | 3 | 5 | preview |" in card
    assert card.index("| `1.0.0` |") < card.index("| `0.9.0` |")
    assert [h["version"] for h in json.loads((out / "provenance.json").read_text())["history"]] == ["1.0.0", "0.9.0"]


def test_token_never_written_to_the_repo_or_logs(run, hub, tmp_path, monkeypatch, caplog):
    monkeypatch.setenv("HF_TOKEN", TOKEN)
    hub()
    out = tmp_path / "repo"
    with caplog.at_level(logging.DEBUG):
        publish_run(run.run_dir, repo_id="me/fake-shtb", version="2.0.0", local_dir=out, token=TOKEN)
    for path in out.rglob("*"):
        if path.is_file():
            assert TOKEN.encode() not in path.read_bytes(), path
    assert TOKEN not in caplog.text


def test_bad_arguments_and_foreign_local_dir(run, tmp_path, hub):
    for bad in ("1.0", "1.0.0-rc1", "latest"):
        with pytest.raises(InputError, match="X.Y.Z"):
            parse_version(bad)
    assert parse_version("v2.10.0") == "2.10.0"
    with pytest.raises(InputError, match="ORG/NAME"):
        publish_run(run.run_dir, repo_id="no-namespace", version="1.0.0", dry_run=True)
    foreign = tmp_path / "mine"
    foreign.mkdir()
    (foreign / "thesis.tex").write_text("do not delete")
    with pytest.raises(InputError, match="`promptmix publish` did not write"):
        publish_run(run.run_dir, repo_id="me/x", version="1.0.0", local_dir=foreign, dry_run=True)
    assert (foreign / "thesis.tex").read_text() == "do not delete"
    fake = hub()
    with pytest.raises(InputError, match="promptmix filter"):
        publish_run(tmp_path, repo_id="me/x", version="1.0.0")
    assert fake.calls == []  # nothing reaches the Hub before the run is read


def test_cli_dry_run_prints_where_everything_went(run, tmp_path, capsys):
    out = tmp_path / "cli-repo"
    code = main(["publish", str(run.run_dir), "--repo-id", "me/fake-shtb", "--version", "1.0.0",
                 "--local-dir", str(out), "--dry-run", "--notes", "hello"])
    printed = capsys.readouterr().out
    assert code == 0
    assert f"local folder: {out}" in printed
    assert re.search(r"^  data/kept/train-\S+\.parquet$", printed, re.M)
    assert 'load_dataset("me/fake-shtb", revision="v1.0.0")' in printed
    assert (out / "README.md").is_file()
    code = main(["publish", str(run.run_dir), "--repo-id", "me/fake-shtb", "--version", "one"])
    assert code == 1 and "X.Y.Z" in capsys.readouterr().err
