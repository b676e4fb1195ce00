"""The output guard every writer calls before it writes (or replaces) an output folder.

Rules (``docs/SAFETY.md``):

1. the target must not be, contain or lie inside any input of the command, nor be or contain the run folder
   it reads; inside the run folder it may be this command's own place (``RUN/fake`` for ``filter``...) or a new
   folder of its own (``RUN/fake-40``), never what another stage writes there (``RUN/images``...).
   ``--force`` does not lift this rule.
2. an existing non-empty folder is replaced only when this command wrote it: it holds the marker file
   :data:`MARKER` naming the command (written into every output by :func:`marker_files`), or it is the run
   folder's own place for this output. Otherwise it is refused unless ``force``.

Also here: :func:`write_errors`, which turns an ``OSError`` (ENOSPC first) while writing into a one-line
:class:`~promptmix.errors.WriteError` naming the path and the free space, and :func:`remove_stale`, the clean-up
of temporary names a killed run of the same command left behind.
"""

from __future__ import annotations

import contextlib
import errno
import json
import logging
import os
import shutil
from pathlib import Path
from typing import Callable, Iterable, Iterator

from ..errors import OutputError, WriteError

logger = logging.getLogger(__name__)

MARKER = ".promptmix-output.json"
_LOCK_FILES = {".lock", ".lock.json", ".manifest.lock"}  # a run lock's own files (RunFolder.lock) make no folder "used"


def marker_text(command: str) -> str:
    return json.dumps({"written_by": f"promptmix {command}", "command": command}, sort_keys=True) + "\n"


def marker_files(command: str) -> dict[str, str]:
    """``{MARKER: text}``: the marker an output folder of ``command`` carries (for ``extra_files=``)."""
    return {MARKER: marker_text(command)}


def write_marker(folder: str | os.PathLike, command: str) -> Path:
    path = Path(folder) / MARKER
    path.write_text(marker_text(command), encoding="utf-8")
    return path


def written_by(folder: str | os.PathLike, command: str) -> bool:
    """``folder`` holds the marker of ``command``, or (written before markers existed) the files only that
    command writes: ``real`` its README's "Built by `promptmix real`" beside ``data/``, ``filter`` its
    ``promptmix_filter.yaml``, ``prompts`` its ``info.json`` + ``prompts.parquet`` + ``config.yaml``."""
    folder = Path(folder)
    try:
        data = json.loads((folder / MARKER).read_text(encoding="utf-8"))
        if isinstance(data, dict) and data.get("command") == command:
            return True
    except (OSError, ValueError):
        pass
    try:
        if command == "real":
            return (folder / "data").is_dir() and \
                "Built by `promptmix real`" in (folder / "README.md").read_text(encoding="utf-8")
    except (OSError, ValueError):
        return False
    if command == "filter":
        return (folder / "promptmix_filter.yaml").is_file()
    if command == "prompts":
        return all((folder / f).is_file() for f in ("info.json", "prompts.parquet", "config.yaml"))
    return False


def _resolved(path: str | os.PathLike) -> Path:
    return Path(path).expanduser().resolve()


def _relation(out: Path, other: Path) -> str | None:
    if out == other:
        return "is"
    if other in out.parents:
        return "lies inside"
    if out in other.parents:
        return "contains"
    return None


def guard_output(out: str | os.PathLike, command: str, *, inputs: Iterable[str | os.PathLike | None] = (),
                 run=None, own: Iterable[str | os.PathLike] = (), force: bool = False, flag: str = "--out",
                 ours: Callable[[Path], bool] | None = None, force_flag: str | None = "--force") -> Path:
    """Check ``out`` may be written by ``command`` (the module docstring's rules); :class:`OutputError` if not.

    ``inputs``: the paths the command reads (None entries ignored). ``run``: the run folder it reads (a
    :class:`~promptmix.run_folder.RunFolder` or path), ``own``: the places inside it reserved for this output.
    ``ours(folder)``: a further test that ``folder`` was written by this command (e.g. publish's provenance file).
    Returns ``out`` as a :class:`~pathlib.Path`.
    """
    out = Path(out).expanduser()
    o = _resolved(out)
    owned = {_resolved(p) for p in own}
    where = f"{flag} {out}"
    nothing = "nothing was written"
    if run is not None:
        folder = run if hasattr(run, "root") else None
        root = _resolved(getattr(run, "root", run))
        rel = _relation(o, root)
        if rel == "is" or rel == "contains":
            raise OutputError(f"{where}: {rel} the run folder {root} that `promptmix {command}` reads; choose a "
                              f"folder outside it, or a new one inside it such as {root / (out.name + '-new')} "
                              f"({nothing})")
        if rel == "lies inside" and o not in owned and folder is not None:
            for reserved in _reserved(folder):
                r = _resolved(reserved)
                if r in owned:
                    continue
                rel = _relation(o, r)
                if rel is not None:
                    raise OutputError(f"{where}: {rel} {r}, which another stage of the run folder {root} writes; "
                                      f"choose a new folder ({nothing})")
    for p in inputs:
        if p is None or str(p) == "":
            continue
        q = _resolved(p)
        rel = _relation(o, q)
        if rel is not None:
            raise OutputError(f"{where}: {rel} the input {q} of `promptmix {command}`; choose a folder that neither "
                              f"holds nor lies inside an input ({nothing})")
    if out.exists() or out.is_symlink():
        if not out.is_dir():
            raise OutputError(f"{where}: exists and is not a folder; expected a new, empty or earlier output folder "
                              f"of `promptmix {command}` ({nothing})")
        if o in owned or written_by(out, command) or (ours is not None and ours(out)) or force:
            return out
        entries = sorted(p.name for p in out.iterdir() if p.name not in _LOCK_FILES)
        if entries:
            shown = ", ".join(entries[:5]) + (f", ... ({len(entries)} entries)" if len(entries) > 5 else "")
            how = f", or pass {force_flag} to replace it" if force_flag else " (or empty it yourself)"
            raise OutputError(f"{where}: is a non-empty folder that `promptmix {command}` did not write (it holds "
                              f"{shown}; no {MARKER}); choose a new or empty folder{how} ({nothing})")
    return out


def _reserved(run) -> list[Path]:
    """The places of the run folder that its stages write (see :mod:`promptmix.run_folder`)."""
    return [run.captions, run.prompts, run.finetune, run.images, run.annotations, run.fake, run.publish, run.real,
            run.train, run.report, run.pipeline, run.manifest_path, run.lock_path]


# -- errors while writing -------------------------------------------------------------------------------------
def free_space(path: str | os.PathLike) -> str:
    """The free space of the file system holding ``path`` (its nearest existing parent), e.g. ``'1.2 GB free'``."""
    p = Path(path).expanduser().absolute()
    while not p.exists() and p != p.parent:
        p = p.parent
    try:
        free = shutil.disk_usage(p).free
    except OSError:
        return "free space unknown"
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if free < 1000 or unit == "TB":
            return f"{free:.3g} {unit} free" if unit != "B" else f"{free} B free"
        free /= 1000
    return ""


def write_error(exc: OSError, target: str | os.PathLike, what: str = "") -> WriteError:
    """The one-line :class:`WriteError` for ``exc`` raised while writing ``target`` (``what``: an optional prefix;
    the command line already starts its errors with the command's name)."""
    target = Path(target)
    space = free_space(target)
    if exc.errno in (errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC)):
        why = f"the disk is full ({space} on the file system of {target.parent})"
        fix = "free some space (or choose a folder on another disk) and rerun: finished work is kept"
    elif exc.errno == errno.EROFS:
        why = f"the file system is read-only ({space})"
        fix = "choose a folder on a writable disk and rerun"
    else:
        why = f"{exc.strerror or type(exc).__name__} ({space})"
        fix = "fix the folder's permissions or choose another folder, then rerun"
    prefix = f"{what}: " if what else ""
    err = WriteError(f"{prefix}could not write {target}: {why}; {fix}. Nothing half-written was left")
    err.errno = exc.errno
    return err


_DISK_ERRNOS = {errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC), errno.EROFS}


def disk_error(exc: BaseException, target: str | os.PathLike, what: str = "") -> WriteError | None:
    """:func:`write_error` when ``exc`` (or what it wraps: pyarrow and datasets re-raise) is a full disk, a quota or
    a read-only file system; None for anything else."""
    from ..errors import PromptmixError

    if isinstance(exc, PromptmixError):
        return None
    seen, e = set(), exc
    while e is not None and id(e) not in seen:
        seen.add(id(e))
        if isinstance(e, OSError) and e.errno in _DISK_ERRNOS:
            return write_error(e, target, what)
        if "No space left on device" in str(e):
            return write_error(OSError(errno.ENOSPC, "No space left on device"), target, what)
        e = e.__cause__ or e.__context__
    return None


@contextlib.contextmanager
def write_errors(target: str | os.PathLike, what: str = "") -> Iterator[None]:
    """Turn a full disk, a quota, a read-only file system or a denied permission raised in the block into the
    one-line :func:`write_error` for ``target``; other errors pass unchanged."""
    try:
        yield
    except PermissionError as exc:
        raise write_error(exc, target, what) from None
    except Exception as exc:
        err = disk_error(exc, target, what)
        if err is not None:
            raise err from None
        raise


# -- clean-up of a killed run -----------------------------------------------------------------------------------
def _size(path: Path) -> int:
    if path.is_file() or path.is_symlink():
        return path.lstat().st_size
    total = 0
    for p in path.rglob("*"):
        try:
            if p.is_file() and not p.is_symlink():
                total += p.stat().st_size
        except OSError:
            pass
    return total


def _human(n: int) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1000 or unit == "GB":
            return f"{n:.3g} {unit}" if unit != "B" else f"{n} B"
        n /= 1000
    return f"{n} B"


def remove_stale(folder: str | os.PathLike, patterns: Iterable[str], what: str) -> list[Path]:
    """Remove the entries of ``folder`` matching ``patterns`` (temporary names of ``what`` itself, left by a killed
    run) and log each with its size. Only temporary names promptmix makes: never call it with anything else.
    Entries whose owning process is still alive (``*-<pid>-*`` names of this machine) are kept."""
    folder = Path(folder)
    removed: list[Path] = []
    if not folder.is_dir():
        return removed
    for pattern in patterns:
        for p in sorted(folder.glob(pattern)):
            pid = _pid_of(p.name)
            if pid is not None and pid != os.getpid() and _alive(pid):
                continue
            size = _size(p)
            try:
                shutil.rmtree(p) if p.is_dir() and not p.is_symlink() else p.unlink()
            except FileNotFoundError:
                continue
            logger.warning("%s: removed %s (%s) left by an interrupted earlier run", what, p, _human(size))
            removed.append(p)
    return removed


def _pid_of(name: str) -> int | None:
    import re

    m = re.search(r"\.(?:tmp|build)-(\d+)-", name)
    return int(m.group(1)) if m else None


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def remove_stale_beside(target: str | os.PathLike, what: str) -> list[Path]:
    """:func:`remove_stale` for the temporary siblings :func:`~promptmix.utils.io.atomic_path` (``.NAME.tmp-*``)
    and the builders (``.NAME.build-*``) make for ``target``; a set-aside old copy (``.NAME.old-*``) only when
    ``target`` itself is there (else it is the last complete copy and is kept)."""
    target = Path(target)
    patterns = [f".{target.name}.tmp-*", f".{target.name}.build-*"]
    if target.exists():
        patterns.append(f".{target.name}.old-*")
    return remove_stale(target.parent, patterns, what)
