"""Kill-safe, safe-to-load training checkpoints.

Three promises, each because a real failure mode breaks resumable benchmarking:

* **Kill safety.** ``save_checkpoint`` writes a temp file, fsyncs it, and only then rotates
  files, so that at any instant after the first complete save at least one checkpoint with a
  matching ``.sha256`` sidecar exists: ``checkpoint.pt`` or ``checkpoint.prev.pt``.
  ``load_latest_good`` finds it.
* **Safe loading.** Checkpoints are loaded with ``torch.load(weights_only=True)`` only, so a
  crafted ``.pt`` file cannot run code. Hence checkpoints hold only tensors, numbers, strings,
  None and lists/tuples/dicts of them; ``save_checkpoint`` checks that up front, and RNG states
  are stored as tensors / plain lists (``capture_rng_state``).
* **No silent mix-ups.** A checkpoint records the config hash of the run that wrote it and
  refuses to resume a run with another config; ``load_model_weights`` refuses weights whose
  keys or shapes do not fit the model unless asked not to be strict, and then reports them.

File layout for a checkpoint path ``<dir>/checkpoint.pt``::

    checkpoint.pt            newest checkpoint        checkpoint.pt.sha256       {"sha256", "size"}
    checkpoint.prev.pt       the one before it        checkpoint.prev.pt.sha256

The save sequence (``T`` is the new data in a synced temp file) and why each kill point is safe:

1. write and fsync ``T``                  old ``checkpoint.pt`` + sidecar untouched
2. write ``prev`` sidecar := old digest   ``checkpoint.pt`` still matches its sidecar
3. rename ``checkpoint.pt`` -> ``prev``   ``prev`` now matches its sidecar
4. rename ``T`` -> ``checkpoint.pt``      (sidecar still old: ``prev`` is the good one)
5. write ``checkpoint.pt`` sidecar        both good

Steps 2-3 run only if the current checkpoint matches its sidecar: rotating an unverified file
over a good ``prev`` could leave no good checkpoint. (A checkpoint this process saved, untouched
since by its inode, size, mtime and ctime, matches the digest taken while writing it, and is not
read back again.) One process writes a given checkpoint path at a time (the run directory is
locked with ``strabench.locks.acquire_lock``).
"""

from __future__ import annotations

import collections
import logging
import os
import random
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from strabench.errors import CheckpointError, WriteError
from strabench.io import (
    atomic_write_json,
    describe_os_error,
    fsync_dir,
    replace_file,
    write_temp_sibling_hashed,
)
from strabench.models.weights import (  # reading weights files safely, shared with pretrained= and eval
    FORMAT_KEY,
    CorruptCheckpointError,
    error_line,
    load_state,
    read_sidecar,
    safe_load,
    sidecar_path,
    verify_sidecar,
)

if TYPE_CHECKING:
    import torch

__all__ = [
    "CHECKPOINT_NAME",
    "CorruptCheckpointError",
    "capture_rng_state",
    "load_checkpoint",
    "load_latest_good",
    "load_model_weights",
    "previous_path",
    "restore_rng_state",
    "save_checkpoint",
    "sidecar_path",
]

log = logging.getLogger(__name__)

CHECKPOINT_NAME = "checkpoint.pt"
FORMAT_VERSION = 1
_KEY_TYPES = frozenset({str, int, float, bool, type(None)})


def previous_path(path: str | os.PathLike[str]) -> Path:
    """Where the checkpoint before ``path`` is kept: ``checkpoint.pt`` -> ``checkpoint.prev.pt``."""
    p = Path(path)
    return p.with_name(f"{p.stem}.prev{p.suffix}")


# --- what may be stored -----------------------------------------------------------------------


def _allowed_types() -> tuple[frozenset[type], frozenset[type]]:
    """(containers, leaves) that ``torch.load(weights_only=True)`` reconstructs.

    Exact types, not isinstance: subclasses (numpy scalars are float subclasses, defaultdict is
    a dict subclass) pickle differently and the safe loader rejects them.
    """
    import torch

    containers = frozenset({dict, collections.OrderedDict, list, tuple, set, torch.Size})
    leaves = frozenset(
        {
            int, float, bool, complex, str, bytes, type(None),
            torch.Tensor, torch.nn.Parameter, torch.dtype, torch.device,
        }
    )
    return containers, leaves


def _check_storable(obj: Any, where: str, containers: frozenset[type], leaves: frozenset[type]) -> None:
    kind = type(obj)
    if kind in leaves:
        return
    if kind not in containers:
        raise CheckpointError(
            f"{where} is a {kind.__module__}.{kind.__qualname__}; checkpoints hold only tensors, "
            "numbers, strings, None and lists/tuples/dicts of them so that they load with "
            "weights_only=True: convert it first (e.g. .tolist(), float(), torch.as_tensor)"
        )
    if isinstance(obj, dict):
        for key, value in obj.items():
            if type(key) not in _KEY_TYPES:
                raise CheckpointError(
                    f"{where} has a key of type {type(key).__qualname__}: use str or int keys"
                )
            _check_storable(value, f"{where}[{key!r}]", containers, leaves)
    else:
        for index, value in enumerate(obj):
            _check_storable(value, f"{where}[{index}]", containers, leaves)


# --- saving -----------------------------------------------------------------------------------


class CheckpointWriteError(CheckpointError, WriteError):
    """A checkpoint save that the disk refused (full, read-only): a write error (the suite stops
    rather than failing every later run on the same disk) that says which checkpoint is good."""


def _remove_stale_temps(path: Path) -> None:
    """Delete temp files a killed save of this checkpoint left behind (they can be large)."""
    for pattern in (f".{path.name}.*.tmp", f".{previous_path(path).name}.sha256.*.tmp"):
        for leftover in path.parent.glob(pattern):
            leftover.unlink(missing_ok=True)


def save_checkpoint(
    path: str | os.PathLike[str], state: dict[str, Any], *, config_hash: str | None = None
) -> str:
    """Save ``state`` kill-safely (see the module doc), keeping the previous checkpoint.

    ``state`` is what ``load_checkpoint`` returns later, e.g. ``{"model": ..., "optimizer":
    ..., "scheduler": ..., "epoch": ..., "rng": capture_rng_state()}``. ``config_hash``
    identifies the run's resolved config; resuming with another config is refused. Returns the
    new file's SHA-256. Raises ``CheckpointError`` for unstorable values (naming the key) and
    when writing fails (disk full, ...), in which case the previous checkpoint is untouched.
    """
    import torch

    target = Path(path)
    if not isinstance(state, dict):
        raise CheckpointError(f"checkpoint state must be a dict, got {type(state).__qualname__}")
    _check_storable(state, "state", *_allowed_types())
    if config_hash is not None and not isinstance(config_hash, str):
        raise CheckpointError(f"config_hash must be a string, got {config_hash!r}")
    if not target.parent.is_dir():
        raise CheckpointError(f"cannot save checkpoint {target}: directory {target.parent} does not exist")
    payload = {FORMAT_KEY: FORMAT_VERSION, "config_hash": config_hash, "state": state}
    previous = previous_path(target)

    _remove_stale_temps(target)
    try:
        tmp, sha256 = write_temp_sibling_hashed(target, lambda handle: torch.save(payload, handle))
    except OSError as err:
        raise CheckpointWriteError(
            f"writing checkpoint {target} failed: {describe_os_error(err)}; "
            "the previous checkpoint is untouched"
        ) from err
    try:
        new_record = {"sha256": sha256, "size": tmp.stat().st_size}
        if target.exists() and _current_is_verified(target):
            atomic_write_json(sidecar_path(previous), read_sidecar(target))
            os.replace(target, previous)
            fsync_dir(target.parent)
        replace_file(tmp, target)
        atomic_write_json(sidecar_path(target), new_record)
        _WRITTEN[str(target.resolve())] = (_file_identity(target), str(new_record["sha256"]))
    except BaseException as err:
        tmp.unlink(missing_ok=True)
        if isinstance(err, OSError):
            raise CheckpointWriteError(
                f"saving checkpoint {target} failed while swapping files: "
                f"{describe_os_error(err)}; load_latest_good('{target.parent}') still finds "
                "the last complete checkpoint"
            ) from err
        raise
    return str(new_record["sha256"])


# The checkpoints this process saved: path -> (the file's identity once in place, its SHA-256 as
# hashed while writing). A file that still has that identity (same inode, size, mtime and ctime:
# nobody has written to it, renamed it or touched it since) is not read back to be verified again
# before it becomes the fallback: that read would come from the page cache this process just
# filled, and compare it with the digest of the very bytes it wrote.
_WRITTEN: dict[str, tuple[tuple[int, ...], str]] = {}


def _file_identity(path: Path) -> tuple[int, ...]:
    st = path.stat()
    return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)


def _written_here(target: Path) -> bool:
    """Whether ``target`` is, untouched, the file this process saved there, as its sidecar says."""
    known = _WRITTEN.get(str(target.resolve()))
    if known is None:
        return False
    try:
        record = read_sidecar(target)
        return record is not None and record["sha256"] == known[1] and _file_identity(target) == known[0]
    except (OSError, CheckpointError):
        return False


def _current_is_verified(target: Path) -> bool:
    """Whether the current checkpoint may become the fallback (see the module doc)."""
    if _written_here(target):
        return True
    try:
        verified = verify_sidecar(target)
    except CorruptCheckpointError as err:
        log.warning("%s; not rotating it over %s", err, previous_path(target).name)
        return False
    if not verified:
        log.warning(
            "%s has no checksum file (interrupted first save?); overwriting it without keeping it "
            "as %s",
            target,
            previous_path(target).name,
        )
    return verified


# --- loading ----------------------------------------------------------------------------------


def load_checkpoint(
    path: str | os.PathLike[str],
    *,
    expected_config_hash: str | None = None,
    map_location: Any = "cpu",
) -> dict[str, Any]:
    """Load the ``state`` dict saved by ``save_checkpoint``, verified and safely.

    Checks the sidecar checksum when there is one, loads with ``weights_only=True`` only, and
    when ``expected_config_hash`` is given refuses a checkpoint written under another config.
    Raises ``CorruptCheckpointError`` for damaged/foreign/unsafe files, ``CheckpointError`` for
    a missing file or a config mismatch.
    """
    target = Path(path)
    if not target.is_file():
        raise CheckpointError(f"checkpoint {target} does not exist")
    verify_sidecar(target)
    payload = safe_load(target, map_location)
    if not isinstance(payload, dict) or FORMAT_KEY not in payload:
        raise CorruptCheckpointError(
            f"{target} is not a valid strabench checkpoint (no '{FORMAT_KEY}' marker; plain "
            "model weights load with load_model_weights)"
        )
    if payload[FORMAT_KEY] != FORMAT_VERSION:
        raise CheckpointError(
            f"{target} has checkpoint format version {payload[FORMAT_KEY]!r}; this strabench "
            f"reads version {FORMAT_VERSION}"
        )
    stored = payload.get("config_hash")
    if expected_config_hash is not None and stored != expected_config_hash:
        raise CheckpointError(
            f"checkpoint {target} was written by a run with config hash {stored}, this run has "
            f"{expected_config_hash}; refusing to load"
        )
    state = payload.get("state")
    if not isinstance(state, dict):
        raise CorruptCheckpointError(f"{target} is not a valid strabench checkpoint (no state dict)")
    return state


def load_latest_good(
    directory: str | os.PathLike[str],
    *,
    expected_config_hash: str | None = None,
    map_location: Any = "cpu",
    name: str = CHECKPOINT_NAME,
) -> tuple[dict[str, Any], Path, list[str]]:
    """Resume from ``<directory>/checkpoint.pt``, or from ``checkpoint.prev.pt`` if that is damaged.

    Returns ``(state, path_used, warnings)``; the warnings (also logged) say why the newest
    file was skipped. Only corruption falls back: a config-hash mismatch is raised at once. No
    usable checkpoint -> ``CheckpointError`` listing what was wrong with each.
    """
    current = Path(directory) / name
    candidates = (current, previous_path(current))
    warnings: list[str] = []
    for candidate in candidates:
        if not candidate.is_file():
            if candidate == current and candidates[1].is_file():
                warnings.append(f"{candidate} is missing (save interrupted?)")
            continue
        try:
            state = load_checkpoint(
                candidate, expected_config_hash=expected_config_hash, map_location=map_location
            )
        except CorruptCheckpointError as err:
            warnings.append(str(err))
            continue
        if candidate != current:
            warnings.append(f"resuming from the previous checkpoint {candidate}")
        for message in warnings:
            log.warning(message)
        return state, candidate, warnings
    if not warnings:
        raise CheckpointError(f"no checkpoint in {directory} (looked for {name} and {candidates[1].name})")
    raise CheckpointError(f"no usable checkpoint in {directory}: " + "; ".join(warnings))


# --- model weights ----------------------------------------------------------------------------


def load_model_weights(
    model: torch.nn.Module, path: str | os.PathLike[str], *, strict: bool = True
) -> tuple[list[str], list[str]]:
    """Load weights into ``model`` from a plain state_dict file or a strabench checkpoint.

    ``strabench.models.weights.load_state`` (the one loader: ``weights_only``, the sidecar,
    names and shapes checked), with the ``(missing, unexpected)`` lists this module has always
    returned. With ``strict=True`` any missing/unexpected key or shape mismatch raises
    ``CheckpointError`` listing a few of each. With ``strict=False`` the fitting tensors are
    loaded and ``(missing, unexpected)`` is returned and logged: a shape-mismatched key is
    skipped and appears in both lists (e.g. a classifier with another number of classes).
    """
    report = load_state(path, model, strict=strict)
    return list(report.missing + report.mismatched), list(report.unexpected + report.mismatched)


# --- RNG state --------------------------------------------------------------------------------


def capture_rng_state() -> dict[str, Any]:
    """Python, numpy (legacy global), torch CPU and CUDA RNG states, in storable form.

    Resuming must continue the same random stream (augmentations, sampler order, dropout), or a
    resumed run is not the run that was benchmarked. Stored as tensors and plain lists/ints so
    that ``weights_only=True`` loads them. numpy ``Generator`` objects are the caller's to save.
    """
    import numpy as np
    import torch

    version, internal, gauss_next = random.getstate()
    bit_generator, keys, pos, has_gauss, cached = np.random.get_state(legacy=True)
    return {
        "python": {"version": int(version), "state": list(internal), "gauss_next": gauss_next},
        "numpy": {
            "bit_generator": str(bit_generator),
            "keys": keys.tolist(),
            "pos": int(pos),
            "has_gauss": int(has_gauss),
            "cached_gaussian": float(cached),
        },
        "torch": torch.get_rng_state(),
        "torch_cuda": list(torch.cuda.get_rng_state_all()) if torch.cuda.is_available() else [],
    }


def restore_rng_state(state: Mapping[str, Any]) -> list[str]:
    """Restore what ``capture_rng_state`` captured; returns notes on what could not be restored.

    CUDA states are restored when CUDA is available with enough devices; otherwise (resuming a
    GPU run on CPU) a note says GPU randomness will differ instead of failing the resume.
    """
    import numpy as np
    import torch

    notes: list[str] = []
    try:
        py = state["python"]
        random.setstate((int(py["version"]), tuple(int(x) for x in py["state"]), py["gauss_next"]))
        npy = state["numpy"]
        np.random.set_state(
            (
                str(npy["bit_generator"]),
                np.asarray(npy["keys"], dtype=np.uint32),
                int(npy["pos"]),
                int(npy["has_gauss"]),
                float(npy["cached_gaussian"]),
            )
        )
        torch.set_rng_state(torch.as_tensor(state["torch"], dtype=torch.uint8).cpu())
        cuda_states = list(state.get("torch_cuda", []))
    except (KeyError, TypeError, ValueError, RuntimeError) as err:
        raise CheckpointError(f"checkpoint RNG state is malformed ({error_line(err)})") from err
    if cuda_states:
        available = torch.cuda.device_count() if torch.cuda.is_available() else 0
        usable = min(available, len(cuda_states))
        for index in range(usable):
            torch.cuda.set_rng_state(cuda_states[index].cpu(), device=index)
        if usable < len(cuda_states):
            notes.append(
                f"checkpoint has CUDA RNG states for {len(cuda_states)} device(s) but "
                f"{available} are available: GPU randomness will differ from the original run"
            )
    for note in notes:
        log.warning(note)
    return notes
