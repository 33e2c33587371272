"""Results from mixed code: every run says which code made it, segment by segment.

"Other code" is simulated the way it happens: strabench's sources change between two segments
of a run (a checkout updated) -- ``strabench.provenance.source_digest`` is patched -- or the
fused kernel is switched off (``STRABENCH_FUSED_KERNEL=0``, the other float path). A run
interrupted under one code and resumed under another must be refused in one line unless
``--allow-mixed``, and then say so in env.json (every segment kept), result.json, results.csv
and the report. ``run`` says which finished runs other code made and keeps them;
``--rerun-stale`` retrains them. The run id never changes with the code.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from .helpers import TINY_SIZES, assert_error_reported, invoke, no_exception, tiny_train_args

MODEL = "mobilenetv2_100"


class _StopAfterEpoch:
    """A progress hook that interrupts training once ``epoch`` is checkpointed (a Ctrl-C there)."""

    def __init__(self, epoch: int) -> None:
        self.epoch = epoch

    def on_epoch_end(self, epoch: int, record: dict) -> None:
        if epoch == self.epoch:
            raise KeyboardInterrupt


def _config(epochs: int):
    from strabench.cli.train import build_config
    from strabench.train.config import resolve

    return resolve(build_config(MODEL, task=None, data=None, profile="quick", epochs=epochs, batch=8, lr=None, device="cpu",
                                seed=0, pretrained=None, amp="auto", input_size="32x16", workers=0, channels_last=False,
                                eval_every=None, assignments=[f"data_sizes={TINY_SIZES}"]))


def _interrupted_run(run_dir: Path, epochs: int = 2) -> None:
    from strabench.train.engine import fit

    with pytest.raises(KeyboardInterrupt):
        fit(_config(epochs), run_dir, progress=_StopAfterEpoch(1))
    assert (run_dir / "checkpoint.pt").is_file() and not (run_dir / "result.json").exists()


def _env(run_dir: Path) -> dict:
    return json.loads((run_dir / "env.json").read_text())


def _other_code(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("strabench.provenance.source_digest", lambda: "0123456789abcdef")


def test_a_run_resumed_under_the_same_code_keeps_every_segment_and_is_not_mixed(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    _interrupted_run(run_dir)
    first = _env(run_dir)
    assert len(first["segments"]) == 1 and first["segments"][0]["resumed_from_epoch"] == 0
    result = invoke(["train", MODEL, *tiny_train_args(2), "--out", run_dir, "--json"])
    no_exception(result)
    assert result.exit_code == 0, result.stderr
    env = _env(run_dir)
    assert [s["resumed_from_epoch"] for s in env["segments"]] == [0, 1]  # not overwritten: both segments
    assert env["segments"][0] == first["segments"][0]
    assert len({s["code_id"] for s in env["segments"]}) == 1 and env["mixed_code"] is False
    done = json.loads((run_dir / "result.json").read_text())
    assert done["mixed_code"] is False and done["code_ids"] == [env["code_id"]]
    code = env["segments"][0]["code"]
    assert set(code) >= {"source", "strabench", "torch", "kernels", "git_commit", "git_dirty"}
    from strabench.layers._local_kernel import status

    assert code["kernels"] == status()


def test_resuming_under_other_code_is_refused_unless_allowed_and_then_recorded(tmp_path: Path, monkeypatch) -> None:
    run_dir = tmp_path / "run"
    _interrupted_run(run_dir)
    before = _env(run_dir)
    _other_code(monkeypatch)
    refused = invoke(["train", MODEL, *tiny_train_args(2), "--out", run_dir])
    no_exception(refused)
    assert refused.exit_code == 2, refused.stderr
    line = assert_error_reported(refused.stderr, "trained to epoch 1 by other code", "--allow-mixed")
    assert before["code_id"] in line
    assert _env(run_dir) == before and not (run_dir / "result.json").exists()  # nothing written

    allowed = invoke(["train", MODEL, *tiny_train_args(2), "--out", run_dir, "--allow-mixed", "--json"])
    no_exception(allowed)
    assert allowed.exit_code == 0, allowed.stderr
    env = _env(run_dir)
    ids = [s["code_id"] for s in env["segments"]]
    assert len(ids) == 2 and ids[0] == before["code_id"] != ids[1]
    assert env["mixed_code"] is True and env["segments"][1]["mixed_code_allowed"] is True
    result = json.loads((run_dir / "result.json").read_text())
    assert result["mixed_code"] is True and result["code_ids"] == ids

    from strabench.suite.store import run_code

    assert run_code(run_dir) == "+".join(ids)


def test_the_fused_kernel_switched_off_is_other_code(monkeypatch) -> None:
    """The case behind all this: the same sources, the kernel unavailable, another float path."""
    from strabench import provenance
    from strabench.env import local_attention_kernel

    here = provenance.code_identity("cpu")
    import strabench.env as env_module

    monkeypatch.setattr(env_module, "local_attention_kernel", lambda kind: "op-per-pass: fused kernel switched off")
    elsewhere = provenance.code_identity("cpu")
    assert here["source"] == elsewhere["source"] and here["code_id"] != elsewhere["code_id"]
    assert local_attention_kernel("cuda").startswith("op-per-pass")


# --- suites: stale runs, --rerun-stale, and the report's flag --------------------------------------


def test_run_names_finished_runs_other_code_made_keeps_them_and_rerun_stale_retrains_them(tmp_path: Path, monkeypatch, capsys) -> None:
    from suite.fakes import FakeEngine, fake_measure, write_suite  # tests/suite

    from strabench.suite import runner

    engine = FakeEngine()
    monkeypatch.setattr(runner, "_fit", engine)
    monkeypatch.setattr(runner, "measure_model", fake_measure)
    suite = write_suite(tmp_path)
    out = tmp_path / "results"
    first = invoke(["run", suite, "--out", out])
    assert first.exit_code == 0, first.output
    ids_before = sorted(p.name for p in (out / "t").glob("*/run.json"))
    calls = len(engine.calls)

    _other_code(monkeypatch)
    kept = invoke(["run", suite, "--out", out])
    assert kept.exit_code == 0, kept.output
    assert "2 finished run(s) were made by other code" in kept.stdout and "--rerun-stale retrains them" in kept.stdout
    assert len(engine.calls) == calls  # kept, not retrained
    assert sorted(p.name for p in (out / "t").glob("*/run.json")) == ids_before  # the run id ignores the code

    more = invoke(["run", suite, "--out", out, "--seeds", "0,1"])  # seed 1 under the new code
    assert more.exit_code == 0, more.output
    report = invoke(["report", out / "t", "--no-plots", "--out", tmp_path / "r.md"])
    no_exception(report)
    assert report.exit_code == 0, report.stderr
    assert report.stderr.count("runs made by different code") == 2, report.stderr  # both variants' groups
    assert "Results from mixed code" in (tmp_path / "r.md").read_text()

    rerun = invoke(["run", suite, "--out", out, "--seeds", "0,1", "--rerun-stale"])
    assert rerun.exit_code == 0, rerun.output
    assert "retraining them (--rerun-stale)" in rerun.stdout
    assert [c["resume"] for c in engine.calls[-2:]] == [False, False]  # started over, not resumed
    again = invoke(["report", out / "t", "--no-plots", "--out", tmp_path / "r.md"])
    assert "different code" not in again.stderr and "mixed code" not in (tmp_path / "r.md").read_text()
    assert "other code" not in invoke(["run", suite, "--out", out, "--seeds", "0,1"]).stdout
