"""Which code made a run: its code identity, recorded per segment, never part of the run's id.

A run that is interrupted and resumed is trained in *segments*, and the code may change in
between: a checkout updated, the fused C kernel available on one machine and not on the next
(it changes float rounding, so training takes another path). Two runs with the same id (the
hash of their configuration) can therefore come from different code, and so can the two halves
of one run. So:

* ``code_identity`` says what computes: a digest of strabench's own source files (``.py`` and
  ``.c``; exact whether or not there is a git checkout, and blind to commits that only touch
  docs), the strabench and torch versions and which kernels run
  (``strabench.layers._local_kernel.status``). The git commit and whether the checkout had
  uncommitted changes are recorded beside it for people ("not a git checkout" where there is
  none), but do not decide.
* Every segment of a run appends its environment, identity included, to ``env.json``
  (``record_segment``: ``segments`` holds all of them; the top level stays the latest, as
  before). Resuming under another identity is refused unless asked (``--allow-mixed``), and a
  run that mixed says so in ``env.json`` and ``result.json`` (``code_ids``), in the ``code``
  column of results.csv and in the report.
* The identity is recorded, not hashed into the run id: the id must stay stable for identical
  configurations (resuming, skipping finished runs and merging shards all depend on it), and
  hashing code into it would silently start every run over after any change of strabench,
  leaving the old results as orphans nobody compares against. Instead ``run`` says which
  finished runs other code made and keeps them (``--rerun-stale`` retrains them).

Limits, plainly: the digest covers strabench itself, not torch's internals beyond its version,
nor a user's own model or block modules; runs made before identities were recorded get one
derived from what their ``env.json`` kept (commit, versions, kernel), which never equals a
current one, so mixing them with new runs is flagged too.
"""

from __future__ import annotations

import hashlib
import json
from datetime import datetime, timezone
from functools import lru_cache
from pathlib import Path
from typing import Any

from strabench.errors import CheckpointError
from strabench.io import as_dict, as_text, atomic_write_json, read_json_object

__all__ = [
    "MixedCodeError", "check_resume", "code_id", "code_identity", "describe_code", "env_segments", "identity_of",
    "record_segment", "run_code_ids",
]

#: The fields of an identity that decide whether two pieces of code are the same.
IDENTITY_KEYS = ("source", "strabench", "torch", "kernels")
ENV_JSON = "env.json"
_PACKAGE = Path(__file__).resolve().parent


class MixedCodeError(CheckpointError):
    """Resuming a run under code other than the code that trained its checkpoint."""


@lru_cache(maxsize=1)
def source_digest() -> str:
    """sha256 (16 hex) over strabench's own ``.py`` and ``.c`` files, paths and contents."""
    digest = hashlib.sha256()
    for path in sorted(p for p in _PACKAGE.rglob("*") if p.suffix in (".py", ".c") and "__pycache__" not in p.parts):
        digest.update(path.relative_to(_PACKAGE).as_posix().encode("utf-8") + b"\0")
        digest.update(path.read_bytes() + b"\0")
    return digest.hexdigest()[:16]


def code_identity(device: str | None = "cpu") -> dict[str, Any]:
    """What computes a run on ``device`` here (see the module doc)."""
    import torch

    from strabench import __version__
    from strabench.env import git_state, local_attention_kernel

    commit, dirty = git_state()
    device_type = str(device or "cpu").split(":")[0]
    if device_type not in ("cpu", "cuda"):  # "auto": what it picks here
        device_type = "cuda" if torch.cuda.is_available() else "cpu"
    identity: dict[str, Any] = {
        "source": source_digest(), "strabench": str(__version__), "torch": str(torch.__version__),
        "kernels": local_attention_kernel(device_type), "git_commit": commit, "git_dirty": dirty,
    }
    identity["code_id"] = code_id(identity)
    return identity


def code_id(identity: dict[str, Any]) -> str:
    """12 hex characters over the deciding fields of ``identity`` (``IDENTITY_KEYS``)."""
    payload = json.dumps({k: identity.get(k) for k in IDENTITY_KEYS}, sort_keys=True, default=str)
    return hashlib.sha256(payload.encode("utf-8")).hexdigest()[:12]


def _legacy_identity(env: dict[str, Any]) -> dict[str, Any] | None:
    """An identity from an env.json written before identities were recorded (None if it has nothing)."""
    if not any(k in env for k in ("git_commit", "strabench", "torch")):
        return None
    commit = as_text(env.get("git_commit")) or "not a git checkout"
    source = f"legacy:{commit}{'+dirty' if env.get('git_dirty') else ''}"
    identity = {"source": source, "strabench": as_text(env.get("strabench")), "torch": as_text(env.get("torch")),
                "kernels": as_text(env.get("local_attention_kernel")), "git_commit": as_text(env.get("git_commit")),
                "git_dirty": env.get("git_dirty") if isinstance(env.get("git_dirty"), bool) else None}
    identity["code_id"] = code_id(identity)
    return identity


def identity_of(record: Any) -> dict[str, Any] | None:
    """The code identity a segment (or a checkpoint's ``code`` entry) records, checked; None if none."""
    record = as_dict(record)
    code = as_dict(record.get("code")) or (record if "source" in record else {})
    if code:
        identity = {k: code.get(k) for k in (*IDENTITY_KEYS, "git_commit", "git_dirty")}
        identity["code_id"] = code_id(identity)
        return identity
    return _legacy_identity(record)


def describe_code(identity: dict[str, Any] | None) -> str:
    """One line for people: 'strabench 0.4.0 (source 1a2b..., commit 8bc0e0f), torch 2.x, KERNELS; code id ID'
    (no square brackets: rich would take them for markup)."""
    if not identity:
        return "unknown code"
    commit = identity.get("git_commit")
    where = f"commit {str(commit)[:10]}" if commit else "not a git checkout"
    if identity.get("git_dirty"):
        where += " with uncommitted changes"
    source = str(identity.get("source") or "?")
    source_text = "" if source.startswith("legacy:") else f"source {source[:12]}, "
    return (f"strabench {identity.get('strabench') or '?'} ({source_text}{where}), torch {identity.get('torch') or '?'}, "
            f"{identity.get('kernels') or 'kernels unknown'}; code id {identity.get('code_id') or code_id(identity)}")


def env_segments(run_dir: Path) -> list[dict[str, Any]]:
    """The segments ``env.json`` records, oldest first (an older env.json: its one record)."""
    env = read_json_object(Path(run_dir) / ENV_JSON)
    if env is None:
        return []
    segments = env.get("segments")
    if isinstance(segments, list):
        return [s for s in segments if isinstance(s, dict)]
    return [env]


def record_segment(run_dir: Path, env: dict[str, Any], identity: dict[str, Any], *, mixed: bool = False) -> dict[str, Any]:
    """Append this segment (``env`` plus ``identity``) to ``<run_dir>/env.json``; the top level
    keeps the latest segment's fields, as env.json always had. Returns what was written."""
    segment = {**env, "code": {k: v for k, v in identity.items() if k != "code_id"}, "code_id": identity["code_id"]}
    segment.setdefault("started_utc", datetime.now(timezone.utc).isoformat(timespec="seconds"))
    if mixed:
        segment["mixed_code_allowed"] = True
    segments = [*env_segments(run_dir), segment]
    ids = run_code_ids(segments)
    record = {**segment, "segments": segments, "code_ids": ids, "mixed_code": len(ids) > 1}
    atomic_write_json(Path(run_dir) / ENV_JSON, record)
    return record


def run_code_ids(segments: list[dict[str, Any]]) -> list[str]:
    """The distinct code ids of a run's segments, in order (several: the run mixed code)."""
    ids: list[str] = []
    for segment in segments:
        identity = identity_of(segment)
        if identity is not None and identity["code_id"] not in ids:
            ids.append(identity["code_id"])
    return ids


def check_resume(previous: dict[str, Any] | None, current: dict[str, Any], *, where: str, epoch: int,
                 allow_mixed: bool) -> bool:
    """Whether resuming at ``epoch`` mixes code (``previous`` trained the checkpoint, ``current``
    would go on); refused with a ``MixedCodeError`` unless ``allow_mixed``. An unknown
    ``previous`` (no record) is not a mix that can be shown."""
    if previous is None or previous.get("code_id") == current["code_id"]:
        return False
    if allow_mixed:
        return True
    raise MixedCodeError(
        f"{where} was trained to epoch {epoch} by other code ({describe_code(previous)}); this is "
        f"{describe_code(current)}: resuming would mix the two in one run. Continue anyway with --allow-mixed "
        "(recorded in env.json and flagged by the report), or start the run over (train --no-resume, run --rerun-stale)"
    )
