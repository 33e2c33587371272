"""The training engine end to end on tiny configs: files, metrics, exact resume, NaN stop, eval, freezing."""

from __future__ import annotations

import json
import math

import pytest
import torch

from strabench.errors import CheckpointError, ConfigError, NumericalError
from strabench.io import read_jsonl
from strabench.train.checkpoint import load_checkpoint
from strabench.train.config import config_from_toml, config_hash, resolve
from strabench.train.engine import Trainer, fit, lr_factor
from strabench.train.saved import evaluate_checkpoint

EXPECTED_METRICS = {
    "reid": {"mAP", "rank1", "rank5"},
    "face": {"lfw", "mean"},
    "fer": {"val_acc", "test_acc"},
}
RECORD_KEYS = {"epoch", "loss", "ce", "aux", "diversity", "lr", "time_s", "images_per_s", "steps", "frozen"}


class StopAt:
    """A progress hook that simulates Ctrl-C at a given epoch (and step)."""

    def __init__(self, epoch: int, step: int | None = None) -> None:
        self.epoch, self.step, self.current = epoch, step, 0

    def on_epoch_start(self, epoch: int, total: int) -> None:
        self.current = epoch
        if epoch == self.epoch and self.step is None:
            raise KeyboardInterrupt

    def on_step(self, step: int, total_steps: int, loss: float) -> None:
        if self.current == self.epoch and step == self.step:
            raise KeyboardInterrupt


def _weights(path):
    return load_checkpoint(path)["model"]


def _check_per_item(run_dir, result):
    """per_item.csv: named by result.json, keyed rows, every headline column averaging to its metric."""
    from strabench.metrics.per_item import read_per_item

    assert result["per_item"] == "per_item.csv"
    columns = read_per_item(run_dir / "per_item.csv")
    assert list(columns)[:2] == ["item", "cluster"] and len(set(columns["item"])) == len(columns["item"])
    shared = [m for m in result["metrics"] if m in columns]
    assert shared, "no headline metric has a per-item column"
    for metric in shared:
        kept = [v for v in columns[metric] if v is not None]
        assert math.fsum(kept) / len(kept) == pytest.approx(result["metrics"][metric], rel=1e-12, abs=1e-12)
        assert len(kept) == result["test_size"][metric]
    return columns


@pytest.mark.parametrize("task", ["reid", "face", "fer"])
def test_tiny_train_and_eval_per_task(task, tiny_config, tmp_path):
    cfg = tiny_config(task)
    result = fit(cfg, tmp_path)
    assert result["status"] == "finished"
    assert EXPECTED_METRICS[task] <= set(result["metrics"])
    assert set(result["metrics_untrained"]) == set(result["metrics"])
    for value in [*result["metrics"].values(), *result["metrics_untrained"].values()]:
        assert 0.0 <= value <= 100.0
    assert result["config_hash"] == config_hash(resolve(cfg))
    assert result["epochs"] == 2 and result["params"] > 0

    on_disk = json.loads((tmp_path / "result.json").read_text())
    assert on_disk == json.loads(json.dumps(result))
    records = read_jsonl(tmp_path / "metrics.jsonl").records
    assert [r["epoch"] for r in records] == [1, 2]
    for r in records:
        assert RECORD_KEYS <= set(r) and math.isfinite(r["loss"])
        assert r["loss"] == pytest.approx(r["ce"] + r["aux"])
    assert "eval" not in records[0] and records[1]["eval"] == result["metrics"]
    assert config_hash(config_from_toml((tmp_path / "config.toml").read_text())) == result["config_hash"]
    env = json.loads((tmp_path / "env.json").read_text())
    assert env["device"] == "cpu" and env["world_size"] == 1
    assert env["optimizer_impl"] == "fused"  # strabench.optim: CPU parameters get torch's fused kernel
    from strabench.env import git_state, process_settings

    settings = process_settings("cpu")  # what the run trained under, from its start
    assert (env["allocator"], env["omp_wait_policy"]) == (settings["allocator"], settings["omp_wait_policy"])
    assert (env["git_commit"], env["git_dirty"]) == git_state()
    state = load_checkpoint(tmp_path / "checkpoint.pt", expected_config_hash=result["config_hash"])
    assert state["epoch"] == 2 and not (tmp_path / "checkpoint.prev.pt").exists()  # a finished run keeps the last only
    _check_per_item(tmp_path, result)
    if task == "fer":
        cm = result["details"]["confusion_matrix"]["test"]
        assert len(cm) == 7 and sum(map(sum, cm)) == 7  # the PrivateTest rows, not the training set
        assert sum(map(sum, result["details"]["confusion_matrix"]["val"])) == 7


def test_lr_follows_the_schedule(tiny_config, tmp_path):
    cfg = tiny_config("reid", epochs=3, milestones=(1, 2), lr_gamma=0.5, lr=0.01)
    fit(cfg, tmp_path)
    lrs = [r["lr"] for r in read_jsonl(tmp_path / "metrics.jsonl").records]
    assert lrs == pytest.approx([0.01, 0.005, 0.0025])
    assert lr_factor(resolve(cfg), 2.0) == 0.25


def test_finished_run_is_not_retrained(tiny_config, tmp_path, monkeypatch):
    cfg = tiny_config("fer", epochs=1)
    monkeypatch.chdir(tmp_path.parent)
    first = fit(cfg, tmp_path)  # an absolute folder under the working directory ...
    assert first["out_dir"] == tmp_path.name  # ... is recorded relative to it: no machine path in result.json
    stamp = (tmp_path / "checkpoint.pt").stat().st_mtime_ns
    assert fit(cfg, tmp_path) == first
    assert (tmp_path / "checkpoint.pt").stat().st_mtime_ns == stamp


@pytest.mark.parametrize("stop", [StopAt(2), StopAt(2, step=2)], ids=["between-epochs", "mid-epoch"])
def test_resume_is_exact(stop, tiny_config, tmp_path):
    """2 epochs straight == 1 epoch, Ctrl-C, resume: same weights and same logged numbers, bit for bit."""
    cfg = tiny_config("reid", epochs=2, warmup_epochs=0.5, diversity_weight=1.0)
    straight = fit(cfg, tmp_path / "a")

    with pytest.raises(KeyboardInterrupt):
        fit(cfg, tmp_path / "b", progress=stop)
    assert load_checkpoint(tmp_path / "b" / "checkpoint.pt")["epoch"] == 1
    assert not (tmp_path / "b" / "result.json").exists()
    assert not (tmp_path / "b" / ".lock").exists()
    resumed = fit(cfg, tmp_path / "b")

    a, b = _weights(tmp_path / "a" / "checkpoint.pt"), _weights(tmp_path / "b" / "checkpoint.pt")
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key
    assert resumed["metrics"] == straight["metrics"]
    assert resumed["metrics_untrained"] == straight["metrics_untrained"]
    ra, rb = (read_jsonl(tmp_path / d / "metrics.jsonl").records for d in ("a", "b"))
    timing = {"time_s", "images_per_s"}
    assert [{k: v for k, v in r.items() if k not in timing} for r in ra] == [
        {k: v for k, v in r.items() if k not in timing} for r in rb
    ]
    env = json.loads((tmp_path / "b" / "env.json").read_text())
    assert env["resumed_from_epoch"] == 1


def test_metrics_log_is_rewound_to_the_checkpoint(tiny_config, tmp_path):
    """A line logged after the last checkpoint (killed before the next save) is dropped on resume."""
    cfg = tiny_config("fer", epochs=2)
    with pytest.raises(KeyboardInterrupt):
        fit(cfg, tmp_path, progress=StopAt(2))
    with open(tmp_path / "metrics.jsonl", "a") as fh:
        fh.write(json.dumps({"epoch": 2, "loss": 9.9}) + "\n")
    fit(cfg, tmp_path)
    records = read_jsonl(tmp_path / "metrics.jsonl").records
    assert [r["epoch"] for r in records] == [1, 2] and records[1]["loss"] != 9.9


def test_nan_loss_stops_with_the_epoch_and_keeps_the_last_good_checkpoint(tiny_config, tmp_path, monkeypatch):
    from strabench.train import evaluation

    real = evaluation.training_loss
    calls = {"n": 0}

    def poisoned(*args, **kwargs):
        parts = real(*args, **kwargs)
        calls["n"] += 1
        if calls["n"] == 5:  # epoch 2 (4 steps per epoch), step 1
            return parts._replace(total=parts.total * float("nan"))
        return parts

    monkeypatch.setattr(evaluation, "training_loss", poisoned)
    cfg = tiny_config("reid", epochs=3)
    with pytest.raises(NumericalError, match=r"epoch 2, step 1/4.*loss is nan.*checkpoint.pt \(epoch 1\)"):
        fit(cfg, tmp_path)
    state = load_checkpoint(tmp_path / "checkpoint.pt")
    assert state["epoch"] == 1
    assert all(torch.isfinite(t).all() for t in state["model"].values() if t.is_floating_point())
    assert not (tmp_path / "result.json").exists()
    assert [r["epoch"] for r in read_jsonl(tmp_path / "metrics.jsonl").records] == [1]


def test_divergence_with_finite_loss_but_nan_weights_is_caught(tiny_config, tmp_path, monkeypatch):
    """Weights that go NaN in the last step of an epoch never reach a checkpoint."""
    cfg = tiny_config("fer", epochs=1)
    original = Trainer._weights_finite
    monkeypatch.setattr(Trainer, "_weights_finite", lambda self: False)
    with pytest.raises(NumericalError, match="epoch 1.*weights contain NaN"):
        fit(cfg, tmp_path)
    assert not (tmp_path / "checkpoint.pt").exists()
    monkeypatch.setattr(Trainer, "_weights_finite", original)


def test_evaluate_checkpoint_reproduces_the_final_metrics(tiny_config, tmp_path):
    cfg = tiny_config("reid", epochs=1)
    result = fit(cfg, tmp_path)
    from strabench.train.config import TrainConfig

    evaluated = evaluate_checkpoint(TrainConfig(cfg.model, device="cpu"), tmp_path / "checkpoint.pt")
    assert evaluated["metrics"] == pytest.approx(result["metrics"])
    assert evaluated["epoch"] == 1 and evaluated["trained_config_hash"] == result["config_hash"]

    with pytest.raises(CheckpointError, match="checkpoint of model 'resnet50_stra', not 'resnet50'"):
        evaluate_checkpoint(TrainConfig("resnet50", device="cpu"), tmp_path / "checkpoint.pt")
    corrupt = tmp_path / "checkpoint.pt"
    data = bytearray(corrupt.read_bytes())
    data[len(data) // 2] ^= 0xFF
    corrupt.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="corrupt"):
        evaluate_checkpoint(TrainConfig(cfg.model, device="cpu"), corrupt)


def test_resume_refuses_another_config(tiny_config, tmp_path):
    cfg = tiny_config("fer", epochs=2)
    with pytest.raises(KeyboardInterrupt):
        fit(cfg, tmp_path, progress=StopAt(2))
    with pytest.raises(CheckpointError, match="config hash.*--no-resume"):
        fit(tiny_config("fer", epochs=2, lr=0.5), tmp_path)
    result = fit(tiny_config("fer", epochs=1, lr=0.5), tmp_path, resume=False)  # starts over
    assert result["status"] == "finished"
    assert [r["epoch"] for r in read_jsonl(tmp_path / "metrics.jsonl").records] == [1]


def test_batch_larger_than_dataset(tiny_config, tmp_path):
    with pytest.raises(ConfigError, match="larger than the training set"):
        fit(tiny_config("fer", batch_size=64), tmp_path)
    assert not (tmp_path / "checkpoint.pt").exists()


def test_freezing_keeps_stages_1_to_4_and_their_bn_statistics(tiny_config, tmp_path):
    """App. B.1: with pretrained weights, only layer4 + head + classifier train in the first epochs."""
    from strabench.registry import create_model

    weights = tmp_path / "pretrained.pth"
    donor = create_model("resnet50_stra", num_classes=4, layers=(1, 1, 1, 1), feature_dim=32)
    torch.save({k: v for k, v in donor.state_dict().items() if not k.startswith("classifier")}, weights)
    cfg = resolve(tiny_config("reid", pretrained=str(weights), epochs=2))
    assert cfg.freeze_epochs == 1  # the quick profile's scaled-down "first 8 of 100 epochs"
    trainer = Trainer(resolve(tiny_config("reid", pretrained=str(weights), freeze_epochs=1)))
    before = {k: v.clone() for k, v in trainer.model.state_dict().items()}
    record = trainer.run_epoch(1)
    assert record["frozen"] is True
    after = trainer.model.state_dict()
    for key in before:
        if key.startswith(("conv1.", "bn1.", "layer1.", "layer2.", "layer3.")):
            assert torch.equal(before[key], after[key]), key  # weights and BN running stats
    changed = [k for k in before if k.startswith("layer4.") and not torch.equal(before[k], after[k])]
    assert changed
    trainer.run_epoch(2)
    assert not torch.equal(before["layer1.0.conv1.weight"], trainer.model.state_dict()["layer1.0.conv1.weight"])


def test_bf16_autocast_and_channels_last_run_on_cpu(tiny_config, tmp_path):
    """The AMP and memory-format code paths (used on CUDA) also run on CPU with bf16."""
    result = fit(tiny_config("reid", epochs=1, amp="bf16", channels_last=True), tmp_path)
    assert result["amp"] == "bfloat16"
    assert all(math.isfinite(v) for v in result["metrics"].values())


def test_fp16_needs_cuda(tiny_config, tmp_path):
    if torch.cuda.is_available():
        pytest.skip("CUDA is available here")
    with pytest.raises(ConfigError, match="fp16 needs a CUDA device"):
        fit(tiny_config("fer", amp="fp16"), tmp_path)


@pytest.mark.parametrize("keep, kept", [("last", {"checkpoint.pt"}), ("best", {"checkpoint.best.pt"}), ("none", set())])
def test_finished_run_keeps_the_checkpoints_asked_for(tiny_config, tmp_path, keep, kept):
    """While a run is in progress it keeps checkpoint.pt and checkpoint.prev.pt (resume after a
    kill); once finished, --keep-checkpoints decides. "best" is the evaluated epoch with the
    highest headline metric; the reported result stays the final epoch's."""
    from strabench.io import read_jsonl
    from strabench.train.checkpoint import load_checkpoint

    seen: list[set[str]] = []

    class Watch:
        def on_epoch_end(self, epoch, record):
            seen.append({p.name for p in tmp_path.glob("checkpoint*.pt")})

    result = fit(tiny_config("fer", epochs=3, eval_every=1), tmp_path, progress=Watch(), keep_checkpoints=keep)
    assert seen[-1] >= {"checkpoint.pt", "checkpoint.prev.pt"}  # mid-run: resumable
    assert {p.name for p in tmp_path.glob("checkpoint*.pt")} == kept
    assert not [p.name for p in tmp_path.glob("*.sha256") if p.name.removesuffix(".sha256") not in kept]
    records = read_jsonl(tmp_path / "metrics.jsonl").records
    assert result["metrics"] == records[-1]["eval"]
    if keep == "best":
        scores = [r["eval_subset"]["val_acc"] for r in records]  # FER picks on its validation split (a fixed subset)
        best_epoch = scores.index(max(scores)) + 1
        assert load_checkpoint(tmp_path / "checkpoint.best.pt", expected_config_hash=result["config_hash"])["epoch"] == best_epoch


def test_keep_checkpoints_is_checked(tiny_config, tmp_path):
    with pytest.raises(ConfigError, match="--keep-checkpoints"):
        fit(tiny_config("fer"), tmp_path, keep_checkpoints="all")


def test_per_item_rows_are_the_same_items_for_every_seed_and_variant(tiny_config, tmp_path):
    """Paired analyses need the same items in the same order: another seed and another model
    (same data seed and sizes) give the same item and cluster columns, and different scores."""
    a = fit(tiny_config("reid", epochs=1), tmp_path / "a")
    b = fit(tiny_config("reid", epochs=1, seed=3, model="resnet50", model_overrides={"layers": (1, 1, 1, 1), "feature_dim": 32}),
            tmp_path / "b")
    ca, cb = _check_per_item(tmp_path / "a", a), _check_per_item(tmp_path / "b", b)
    assert ca["item"] == cb["item"] and ca["cluster"] == cb["cluster"]
    assert ca["item"] == sorted(ca["item"]) and all(name.endswith(".jpg") for name in ca["item"])
    assert ca["mAP"] != cb["mAP"]


def test_periodic_evaluation_uses_a_labelled_subset(tiny_config, tmp_path, monkeypatch):
    """eval_every evaluates a fixed subset (here 2 of the 3 test identities), stored as
    eval_subset with its size; the last epoch also gets the full test set, as eval."""
    from strabench.train import evaluation

    monkeypatch.setitem(evaluation.SUBSET_SIZES, "reid", 2)
    result = fit(tiny_config("reid", epochs=2, eval_every=1), tmp_path)
    records = read_jsonl(tmp_path / "metrics.jsonl").records
    assert [("eval" in r, "eval_subset" in r) for r in records] == [(False, True), (True, True)]
    assert records[-1]["eval"] == result["metrics"]
    assert records[0]["eval_subset_items"]["mAP"] == 2 < result["test_size"]["mAP"] == 3  # one query per identity
    _check_per_item(tmp_path, result)  # per-item scores are the full test set's


def test_subsets_keep_the_structure_of_the_test_split(tiny_config):
    """The ReID subset holds whole identities (queries and gallery), the verification subset
    whole folds of matched and mismatched pairs, the FER subset the first images of each split."""
    from strabench.train.evaluation import STRATEGIES

    reid = Trainer(resolve(tiny_config("reid"))).data
    sub = STRATEGIES["reid"].subset(reid, 2)
    chosen = set(sorted(set(reid.query.pids))[:2])
    assert set(sub.query.pids) == chosen and set(sub.gallery.pids) - {0, -1} == chosen
    assert sum(p == q for p in sub.gallery.pids for q in chosen) == sum(p == q for p in reid.gallery.pids for q in chosen)

    face = Trainer(resolve(tiny_config("face", data_sizes={"num_train_ids": 4, "images_per_train_id": 4, "num_test_ids": 12,
                                                         "images_per_test_id": 2, "num_folds": 2, "pairs_per_fold": 3,
                                                         "size": 32}))).data
    sub = STRATEGIES["face"].subset(face, 2)
    lfw, full = sub.verification["lfw"], face.verification["lfw"]
    assert list(lfw.issame) == [True, True, False, False] * 2 and lfw.num_folds == 2
    assert lfw.pairs.images[:4] == full.pairs.images[:4]  # fold 1's first matched pairs, as they were
    assert lfw.pairs.images[4:6] == full.pairs.images[6:8]  # then its first mismatched pair

    fer = Trainer(resolve(tiny_config("fer"))).data
    sub = STRATEGIES["fer"].subset(fer, 3)
    assert len(sub.val) == len(sub.test) == 3 and list(sub.test.labels) == list(fer.test.labels[:3])


def test_per_item_scores_survive_a_kill_before_result_json(tiny_config, tmp_path):
    """The final evaluation's items are kept in the checkpoint: a run killed after its last
    checkpoint but before result.json writes the same per_item.csv when resumed."""
    result = fit(tiny_config("fer", epochs=1), tmp_path)
    before = (tmp_path / "per_item.csv").read_text()
    (tmp_path / "result.json").unlink()
    (tmp_path / "per_item.csv").unlink()
    again = fit(tiny_config("fer", epochs=1), tmp_path)
    assert (tmp_path / "per_item.csv").read_text() == before and again["metrics"] == result["metrics"]
