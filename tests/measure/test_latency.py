"""strabench.measure.latency: the interleaving/ratio logic against a fake clock, the timed step, memory, CSV."""

from __future__ import annotations

import copy
import statistics
import time

import pytest
import torch
import torch.nn.functional as F

from strabench.errors import ConfigError
from strabench.measure import latency
from strabench.measure.latency import (
    BenchSpec,
    append_csv,
    benchmark_models,
    bracket_ratios,
    fit_batch,
    interleave,
    make_step,
    peak_step_memory,
    schedule,
    timed_step_loss,
)
from strabench.measure.report import build_for_input

TINY = {"batch": 2, "input_size": (64, 32), "threads": 1, "min_run_time": 0.01}


# --- interleaving and ratios (fake clock: deterministic) -----------------------------------------


class DriftingMachine:
    """A fake clock: every measurement is one tick, and the machine gets 10% slower per tick.

    ``bursts`` maps a tick to an extra slowdown factor (another process stealing the cores).
    """

    def __init__(self, cost: dict[str, float], bursts: dict[int, float] | None = None) -> None:
        self.cost, self.bursts, self.tick, self.log = cost, bursts or {}, 0, []

    def measure(self, name: str) -> float:
        value = self.cost[name] * (1.0 + 0.1 * self.tick) * self.bursts.get(self.tick, 1.0)
        self.log.append(name)
        self.tick += 1
        return value


def test_schedule_brackets_every_candidate_and_alternates_direction():
    assert schedule(["a", "b"], "B", 3) == [["B", "a", "B", "b", "B"], ["b", "B", "a", "B"], ["a", "B", "b", "B"]]
    assert schedule(["a", "b", "c"], None, 2) == [["a", "b", "c"], ["c", "b", "a"]]
    assert schedule([], "B", 1) == [["B"]]


def test_interleaved_ratios_are_exact_under_linear_drift():
    cost = {"B": 10.0, "fast": 8.0, "slow": 13.0}
    machine = DriftingMachine(cost)
    _, ratios = interleave(["fast", "slow"], "B", 3, machine.measure)
    assert machine.log == [name for seq in schedule(["fast", "slow"], "B", 3) for name in seq]
    for name in ("fast", "slow"):
        assert len(ratios[name]) == 3
        assert ratios[name] == pytest.approx([cost[name] / cost["B"]] * 3, rel=1e-12)
    # The check has teeth: measuring the baseline once, then the candidates, is far off here.
    sequential = DriftingMachine(cost)
    base, _, slow = (sequential.measure(n) for n in ("B", "fast", "slow"))
    assert abs(slow / base - 1.3) > 0.1


def test_one_disturbed_round_does_not_move_the_median_ratio():
    cost = {"B": 10.0, "cand": 9.0}
    # Ticks: B c B | c B | c B. Round 2's candidate measurement (tick 3) is hit by a 2x burst.
    machine = DriftingMachine(cost, bursts={3: 2.0})
    _, ratios = interleave(["cand"], "B", 3, machine.measure)
    assert ratios["cand"][1] == pytest.approx(1.8)
    assert statistics.median(ratios["cand"]) == pytest.approx(0.9, rel=1e-12)


def test_bracket_ratios_uses_one_side_when_only_one_exists_and_needs_a_baseline():
    assert bracket_ratios([[("B", 2.0), ("a", 3.0)]], "B") == {"a": [1.5]}
    assert bracket_ratios([[("B", 2.0), ("a", 3.0), ("B", 4.0)], [("a", 2.0), ("B", 6.0)]], "B") == {"a": [1.0, 0.4]}
    assert bracket_ratios([[("a", 3.0), ("B", 6.0), ("b", 3.0), ("B", 2.0)]], "B") == {"a": [0.5], "b": [0.75]}
    with pytest.raises(ValueError, match="no baseline"):
        bracket_ratios([[("a", 1.0)]], "B")


# --- out-of-memory retry --------------------------------------------------------------------------


def test_fit_batch_halves_after_out_of_memory_down_to_one():
    tried, cleaned = [], []

    def attempt(batch: int) -> str:
        tried.append(batch)
        if batch > 5:
            raise torch.OutOfMemoryError("CUDA out of memory")
        return f"ok@{batch}"

    is_oom = lambda exc: isinstance(exc, torch.OutOfMemoryError)  # noqa: E731
    assert fit_batch(attempt, 32, is_oom=is_oom, cleanup=lambda: cleaned.append(1)) == ("ok@4", 4)
    assert tried == [32, 16, 8, 4] and len(cleaned) == 3
    with pytest.raises(torch.OutOfMemoryError):
        fit_batch(lambda b: attempt(100), 2, is_oom=is_oom)  # still OOM at batch 1: give up
    with pytest.raises(ValueError):
        fit_batch(lambda b: (_ for _ in ()).throw(ValueError("not an OOM")), 8, is_oom=is_oom)


def test_benchmark_reports_the_halved_batch_and_says_so(monkeypatch):
    from strabench.measure import steps

    real_make_step = steps.make_step

    def make_step_that_ooms(model, inputs, *args, **kwargs):
        step = real_make_step(model, inputs, *args, **kwargs)
        if inputs.shape[0] > 2:

            def oom() -> None:
                raise torch.OutOfMemoryError("CUDA out of memory (simulated)")

            return oom
        return step

    monkeypatch.setattr(steps, "make_step", make_step_that_ooms)
    (row,) = benchmark_models(["mobilenetv2_100"], **{**TINY, "batch": 8}, rounds=1)
    assert row["batch"] == 2
    assert "halved from 8 to 2" in row["note"]
    assert row["images_per_s"] == pytest.approx(2 / (row["median_ms"] / 1e3))


# --- the timed step -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def stra_model():
    torch.manual_seed(0)
    return build_for_input("mobilenetv2_100_stra", (64, 32))


def test_timed_step_loss_is_cross_entropy_plus_diversity_and_diversity_has_gradients(stra_model):
    model = copy.deepcopy(stra_model).double().train()  # fp64: gradients add up exactly enough to compare
    x, y = torch.randn(2, 3, 64, 32, dtype=torch.float64), torch.tensor([1, 5])
    out = model(x)
    assert set(out.aux_losses) == {"diversity"}
    loss = timed_step_loss(out, y)
    ce = F.cross_entropy(out.logits, y)
    assert loss.item() == pytest.approx(ce.item() + out.aux_losses["diversity"].item(), rel=1e-12)
    params = [p for p in model.parameters() if p.requires_grad]
    g_total = torch.autograd.grad(loss, params, retain_graph=True, allow_unused=True)
    g_ce = torch.autograd.grad(ce, params, retain_graph=True, allow_unused=True)
    g_div = torch.autograd.grad(out.aux_losses["diversity"], params, allow_unused=True)
    contributed = 0
    for total, only_ce, div in zip(g_total, g_ce, g_div):
        if div is None:
            continue
        contributed += int(div.abs().sum() > 0)
        base = only_ce if only_ce is not None else torch.zeros_like(div)
        torch.testing.assert_close(total, base + div, rtol=1e-9, atol=1e-12)
    assert contributed > 0, "the diversity loss reached no parameter"


def test_train_step_updates_parameters_and_clears_gradients(stra_model):
    model = stra_model.train()
    x, y = torch.randn(2, 3, 64, 32), torch.tensor([0, 3])
    optimizer = torch.optim.SGD(model.parameters(), lr=1e-2, momentum=0.9)
    before = [p.detach().clone() for p in model.parameters()]
    record: dict = {}
    step = make_step(model, x, y, mode="train", optimizer=optimizer, record=record)
    step()
    changed = sum(int(not torch.equal(a, p)) for a, p in zip(before, model.parameters()))
    assert changed > len(before) // 2
    assert all(p.grad is None for p in model.parameters())  # zero_grad(set_to_none=True)
    assert record["aux_losses"] == ["diversity"]


def test_infer_step_leaves_parameters_alone(stra_model):
    model = stra_model.eval()
    before = [p.detach().clone() for p in model.parameters()]
    make_step(model, torch.randn(2, 3, 64, 32), mode="infer")()
    assert all(torch.equal(a, p) for a, p in zip(before, model.parameters()))
    with pytest.raises(ValueError):
        make_step(model, torch.randn(2, 3, 64, 32), mode="train")


def test_bf16_autocast_step_runs_on_cpu(stra_model):
    """The timed step really runs under bf16 autocast (the convolutions compute in bf16), and
    the same step without --amp in float32."""
    model = stra_model.eval()
    seen: list[torch.dtype] = []
    first_conv = next(m for m in model.modules() if isinstance(m, torch.nn.Conv2d))
    handle = first_conv.register_forward_hook(lambda _m, _i, out: seen.append(out.dtype))
    try:
        make_step(model, torch.randn(2, 3, 64, 32), mode="infer", amp="bf16")()
        make_step(model, torch.randn(2, 3, 64, 32), mode="infer")()
    finally:
        handle.remove()
    assert seen == [torch.bfloat16, torch.float32]


# --- memory ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("method", ["vmhwm", "psutil"])
def test_peak_step_memory_sees_a_64_mb_temporary(method):
    def step() -> None:
        big = torch.ones(16 * 2**20)  # 64 MB, touched
        time.sleep(0.03)  # long enough for the 1 ms sampler
        del big

    try:
        mb, how = peak_step_memory(step, "cpu", cpu_method=method)
    except OSError:
        pytest.skip("this kernel does not let us reset VmHWM")
    assert 60 <= mb <= 200, (mb, how)
    assert ("VmHWM" in how) == (method == "vmhwm")


# --- spec validation and the end-to-end call ------------------------------------------------------


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"mode": "eval"}, "--mode"),
        ({"amp": "fp8"}, "--amp"),
        ({"amp": "fp16"}, "unsupported on cpu"),
        ({"device": "tpu"}, "--device"),
        ({"batch": 0}, "--batch"),
        ({"threads": 0}, "--threads"),
        ({"min_run_time": 0}, "--min-run-time"),
        ({"rounds": 0}, "--rounds"),
    ],
)
def test_bench_spec_rejects_bad_values(kwargs, match):
    with pytest.raises(ConfigError, match=match):
        BenchSpec(**kwargs)


def test_benchmark_models_interleaves_baseline_once_and_restores_threads():
    torch.set_num_threads(2)
    messages: list[str] = []
    rows = benchmark_models(
        ["mobilenetv2_100_stra", "mobilenetv2_100", "mobilenetv2_100_stra"],
        baseline="mobilenetv2_100",
        rounds=2,
        progress=messages.append,
        **TINY,
    )
    timed = [m.split(": ")[0].split()[-1] for m in messages if " round " in m]
    assert [r["model"] for r in rows] == ["mobilenetv2_100_stra", "mobilenetv2_100"]
    base, cand = rows[1], rows[0]
    assert base["ratio_to_baseline"] == 1.0 and base["ratio_rounds"] == [1.0, 1.0]
    assert len(cand["ratio_rounds"]) == 2
    assert cand["ratio_to_baseline"] == pytest.approx(statistics.median(cand["ratio_rounds"]))
    assert timed == ["mobilenetv2_100", "mobilenetv2_100_stra", "mobilenetv2_100",
                     "mobilenetv2_100_stra", "mobilenetv2_100"], "B c B | c B: the baseline shared between rounds"
    assert all(r["threads"] == 1 for r in rows)
    from strabench.env import process_settings

    settings = process_settings("cpu")  # what the CPU allocator and OpenMP threads did is part of the record
    assert all((r["allocator"], r["omp_wait_policy"]) == (settings["allocator"], settings["omp_wait_policy"]) for r in rows)
    assert torch.get_num_threads() == 2


class TinyNet(torch.nn.Module):
    """A user's own model: conv + pooled linear head, in_chans as timm names it."""

    def __init__(self, in_chans: int = 3, width: int = 4) -> None:
        super().__init__()
        self.in_chans = in_chans
        self.conv = torch.nn.Conv2d(in_chans, width, 3, padding=1)
        self.classifier = torch.nn.Linear(width, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.conv(x).mean(dim=(2, 3)))


def test_benchmark_models_takes_modules_next_to_names_and_leaves_them_alone():
    base, other, grey = TinyNet(), TinyNet(width=8), TinyNet(in_chans=1)
    before = copy.deepcopy(base.state_dict())
    base.eval()
    rows = benchmark_models(
        [other, "mobilenetv2_100", grey, other], baseline=base, mode="train", rounds=1,
        **{**TINY, "input_size": (32, 32)},
    )
    assert [r["model"] for r in rows] == ["TinyNet", "TinyNet#2", "mobilenetv2_100", "TinyNet#3"]
    assert rows[0]["ratio_to_baseline"] == 1.0 and rows[1]["ratio_to_baseline"] > 0
    assert [r["input"] for r in rows] == ["32x32"] * 4
    assert [r["channels"] for r in rows] == [3, 3, 3, 1]
    # a copy was trained: the caller's weights and mode did not move
    assert all(torch.equal(before[k], v) for k, v in base.state_dict().items()) and not base.training


def test_benchmark_models_refuses_a_module_without_input_or_that_cannot_take_it():
    from strabench.errors import ShapeError

    with pytest.raises(ConfigError, match="TinyNet is an nn.Module, which has no default input size"):
        benchmark_models([TinyNet()], **{**TINY, "input_size": None})
    flat = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(5, 2))  # wants 5 values, gets 3x64x32
    with pytest.raises(ShapeError, match=r"Sequential cannot take input \(3, 64, 32\)"):
        benchmark_models([flat], rounds=1, **TINY)


def test_append_csv_writes_the_header_once(tmp_path):
    pd = pytest.importorskip("pandas")
    rows = [{"model": "a", "median_ms": 1.5, "ratio_rounds": [1.0, 1.1], "note": None}, {"model": "b", "batch": 2}]
    path = tmp_path / "sub" / "bench.csv"
    append_csv(rows, path)
    append_csv(rows, path)
    text = path.read_text()
    assert text.count("timestamp,model,") == 1
    frame = pd.read_csv(path)
    assert list(frame["model"]) == ["a", "b", "a", "b"]
    assert list(frame.columns) == list(latency.CSV_FIELDS)
    other = tmp_path / "other.csv"
    other.write_text("x,y\n1,2\n")
    with pytest.raises(ConfigError, match="header"):
        append_csv(rows, other)


# --- stock and fused kernels ------------------------------------------------------------------------


def test_every_row_names_what_its_blocks_ran_and_stock_runs_plain_torch():
    fused = benchmark_models(["mobilenetv2_100_stra"], baseline="mobilenetv2_100", rounds=1, **TINY)
    stock = benchmark_models(["mobilenetv2_100_stra"], baseline="mobilenetv2_100", rounds=1, kernels="stock", **TINY)
    by_model = {r["model"]: r for r in fused}
    assert by_model["mobilenetv2_100_stra"]["kernels"] == "fused"
    assert by_model["mobilenetv2_100_stra"]["implementation"] == "StRA: local_attention_infer + mode_attention_infer"
    assert by_model["mobilenetv2_100"]["implementation"] == ""  # no attention blocks to name
    (row,) = [r for r in stock if r["model"] == "mobilenetv2_100_stra"]
    assert row["kernels"] == "stock" and row["implementation"] == "StRA: torch ops"


def test_kernels_both_times_each_model_with_blocks_twice_and_folds_the_stock_ratio_in():
    messages: list[str] = []
    rows = benchmark_models(["mobilenetv2_100_stra"], baseline="mobilenetv2_100", rounds=2, kernels="both",
                            progress=messages.append, mode="train", **TINY)
    assert [r["model"] for r in rows] == ["mobilenetv2_100", "mobilenetv2_100_stra", "mobilenetv2_100_stra (stock)"]
    base, fused, twin = rows
    assert twin["kernels"] == "stock" and twin["implementation"] == "StRA: torch ops"
    assert fused["implementation"] == "StRA: grouped_pointwise + local_attention"  # train: no whole-block fusion
    assert fused["stock_ratio_to_baseline"] == twin["ratio_to_baseline"] and fused["stock_ratio_rounds"] == twin["ratio_rounds"]
    assert base["stock_ratio_to_baseline"] == 1.0  # no StRA blocks: no twin, the same model either way
    timed = [m.split(": ")[0].split(" round ")[1].split(" ", 1)[1] for m in messages if " round " in m]
    assert timed.count("mobilenetv2_100_stra (stock)") == 2 and "mobilenetv2_100 (stock)" not in timed


def test_stock_ratios_are_to_the_stock_baseline_where_the_baseline_has_blocks(monkeypatch):
    from strabench.measure import latency

    rows = [
        {"model": "b", "baseline": "b", "ratio_to_baseline": 1.0, "ratio_rounds": [1.0, 1.0], "median_ms": 1.0,
         "implementation": "StRA: x", "noisy": False, "note": None},
        {"model": "b (stock)", "baseline": "b", "ratio_to_baseline": 2.0, "ratio_rounds": [2.0, 4.0], "median_ms": 3.0,
         "implementation": "StRA: torch ops", "noisy": False, "note": None},
        {"model": "c", "baseline": "b", "ratio_to_baseline": 0.5, "ratio_rounds": [0.5, 0.5], "median_ms": 0.5,
         "implementation": "", "noisy": False, "note": None},
        {"model": "d", "baseline": "b", "ratio_to_baseline": 0.9, "ratio_rounds": [0.9, 0.9], "median_ms": 0.9,
         "implementation": "StRA: x", "noisy": False, "note": None},
        {"model": "d (stock)", "baseline": "b", "ratio_to_baseline": 3.0, "ratio_rounds": [3.0, 6.0], "median_ms": 4.0,
         "implementation": "StRA: torch ops", "noisy": False, "note": None},
    ]
    latency._fold_stock_twins(rows)
    by = {r["model"]: r for r in rows}
    assert by["b"]["stock_ratio_to_baseline"] == 1.0
    assert by["c"]["stock_ratio_rounds"] == [0.25, 0.125] and by["c"]["ratio_to_baseline"] == 0.5  # own ratio kept
    assert by["d"]["stock_ratio_rounds"] == [1.5, 1.5] and by["d (stock)"]["ratio_to_baseline"] == 1.5


def test_bench_spec_refuses_unknown_kernels():
    with pytest.raises(ConfigError, match="--kernels must be one of fused, stock, both"):
        BenchSpec(kernels="fast")
