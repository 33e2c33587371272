"""Where executors keep job files, and when they are swept: never in the results folder.

A results folder is data: other people copy it, share it, write into it (a group-writable
``/nfs/results``). Job files are code -- a pickled job runs whatever it says when it is loaded --
so nothing in a results folder is ever unpickled:

* a ``--jobs N`` worker gets its job through a pipe from its parent (``python -m
  strabench.suite.executors -``): nothing on disk, and only the parent holds the pipe's writing end;
* submitit (``--executor slurm`` / ``submitit-local``) pickles each job and its result into a
  folder the compute nodes read. That folder lives in a user-private directory (mode 0700,
  owned by you; refused otherwise): ``$STRABENCH_JOBS_DIR``, by default
  ``${XDG_STATE_HOME:-~/.local/state}/strabench/jobs``, one sub-folder per suite results
  directory, holding the jobs' logs too. On a cluster it must be on a filesystem every node sees
  (home directories are, on most clusters); point ``STRABENCH_JOBS_DIR`` elsewhere if not.

Earlier versions left ``<suite>/.jobs/*.pkl`` and ``<suite>/.submitit/`` in the results folder.
``sweep_job_files`` removes those (and the suite's private job folder) once they can no longer be
needed, the way the dataset cache sweeps its temp folders: legacy ``.jobs`` pickles once a
minute old (no version reads them any more); ``.submitit`` and the private folder once every
run of the suite directory is finished and nothing in them changed for a minute.
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import stat
import time
from pathlib import Path
from typing import TYPE_CHECKING

from strabench.errors import ConfigError
from strabench.locks import STALE_TEMP_AGE_S
from strabench.suite.store import RUN_JSON, run_status

if TYPE_CHECKING:
    from strabench.suite.plan import RunPlan

log = logging.getLogger(__name__)

JOBS_ENV = "STRABENCH_JOBS_DIR"
#: What earlier versions kept in a suite's results folder.
LEGACY_JOBS_DIR, LEGACY_SUBMITIT_DIR = ".jobs", ".submitit"
_STATE_JSON = "state.json"  # strabench.suite.status.STATE_JSON (status imports the runner, which imports this)


def jobs_root() -> Path:
    """``$STRABENCH_JOBS_DIR``, else ``${XDG_STATE_HOME:-~/.local/state}/strabench/jobs``."""
    given = os.environ.get(JOBS_ENV)
    if given:
        return Path(given).expanduser()
    state = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(state).expanduser() / "strabench" / "jobs"


def _check_private(path: Path) -> None:
    """Refuse ``path`` unless it is a real directory owned by this user that nobody else can write."""
    info = os.lstat(path)
    if not stat.S_ISDIR(info.st_mode):
        raise ConfigError(f"job folder {path} is not a directory (a symbolic link or a file): remove it, or set {JOBS_ENV}")
    if hasattr(os, "getuid") and info.st_uid != os.getuid():
        raise ConfigError(f"job folder {path} belongs to another user (uid {info.st_uid}): set {JOBS_ENV} to a folder of your own")
    if info.st_mode & 0o077:
        raise ConfigError(f"job folder {path} is open to other users (mode {stat.S_IMODE(info.st_mode):o}): "
                          f"run `chmod 700 {path}`, or set {JOBS_ENV}; pickled jobs there run as code")


def _check_parent(path: Path) -> None:
    """A parent others may write (not sticky, like /tmp is) lets them swap the private folder."""
    info = os.stat(path)
    owners = {0, os.getuid()} if hasattr(os, "getuid") else {info.st_uid}
    if (info.st_mode & 0o022 and not info.st_mode & stat.S_ISVTX) or info.st_uid not in owners:
        raise ConfigError(f"job folder parent {path} can be changed by other users: set {JOBS_ENV} to a folder only you can write")


def private_directory(path: Path) -> Path:
    """``path`` created (mode 0700) or checked: a user-private directory (see the module doc)."""
    path = Path(path)
    missing = [p for p in (path, *path.parents) if not p.exists()]
    for directory in reversed(missing):  # created private (whatever the umask lets group members do)
        try:
            directory.mkdir(mode=0o700)
        except FileExistsError:
            pass
        except OSError as err:
            from strabench.io import write_error

            raise write_error("create directory", directory, err) from err
    _check_private(path)
    _check_parent(path.parent)
    return path


def suite_jobs_dir(out_dir: Path, suite_name: str) -> Path:
    """The private job folder of the suite results directory ``out_dir`` (not created)."""
    key = hashlib.sha256(str(Path(out_dir).resolve()).encode("utf-8")).hexdigest()[:12]
    return jobs_root() / f"{suite_name}-{key}"


def submitit_folder(out_dir: Path, suite_name: str) -> Path:
    """The suite's private job folder, created and checked (``private_directory``) for submitit."""
    private_directory(jobs_root())
    return private_directory(suite_jobs_dir(out_dir, suite_name))


def _newest_mtime(root: Path) -> float:
    newest = os.lstat(root).st_mtime
    for current, dirs, files in os.walk(root):
        for name in (*dirs, *files):
            try:
                newest = max(newest, os.lstat(Path(current) / name).st_mtime)
            except FileNotFoundError:
                continue
    return newest


def _suite_finished(plan: "RunPlan") -> bool:
    """Every run of the plan and every run directory in the suite folder is finished."""
    if any(run_status(plan.run_dir(spec), spec.measure) != "finished" for spec in plan.runs):
        return False
    for child in plan.out_dir.iterdir() if plan.out_dir.is_dir() else ():
        if child.name.startswith(".") or not child.is_dir():
            continue
        if ((child / RUN_JSON).exists() or (child / _STATE_JSON).exists()) and run_status(child) != "finished":
            return False
    return True


def _remove_tree(path: Path) -> bool:
    try:
        if path.is_symlink():
            path.unlink()
        else:
            shutil.rmtree(path)
    except FileNotFoundError:
        return False
    except OSError as err:
        log.warning("cannot remove %s: %s", path, err)
        return False
    return True


def sweep_job_files(plan: "RunPlan", *, min_age_s: float = STALE_TEMP_AGE_S) -> list[Path]:
    """Remove job files of the suite that nothing can need any more (see the module doc).

    Call it holding the suite's lock. Returns what was removed.
    """
    removed: list[Path] = []
    cutoff = time.time() - min_age_s
    legacy_jobs = plan.out_dir / LEGACY_JOBS_DIR
    if legacy_jobs.is_dir() and not legacy_jobs.is_symlink():
        for pickled in legacy_jobs.glob("*.pkl"):
            try:
                if os.lstat(pickled).st_mtime <= cutoff:
                    pickled.unlink()
                    removed.append(pickled)
            except FileNotFoundError:
                continue
        try:
            legacy_jobs.rmdir()
            removed.append(legacy_jobs)
        except OSError:  # not empty (a file that is not ours, a fresh pickle): left alone
            pass
    elif legacy_jobs.is_symlink():
        legacy_jobs.unlink()
        removed.append(legacy_jobs)
    candidates = [plan.out_dir / LEGACY_SUBMITIT_DIR, suite_jobs_dir(plan.out_dir, plan.suite.name)]
    present = [c for c in candidates if c.is_symlink() or c.exists()]
    if present and _suite_finished(plan):
        for folder in present:
            if folder.is_symlink() or _newest_mtime(folder) <= cutoff:
                if _remove_tree(folder):
                    removed.append(folder)
    if removed:
        log.info("removed job files of finished work: %s", ", ".join(str(p) for p in removed))
    return removed


__all__ = ["JOBS_ENV", "jobs_root", "private_directory", "submitit_folder", "suite_jobs_dir", "sweep_job_files"]
