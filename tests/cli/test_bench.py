"""`strabench bench`: the JSON/CSV contract, baseline ratios, train mode, and one-line errors."""

from __future__ import annotations

import json

import pytest
import torch
from typer.testing import CliRunner

from strabench.cli import app

FAST = ["--batch", "2", "--input", "64x32", "--threads", "1", "--min-run-time", "0.01", "--rounds", "1"]
SCHEMA = {
    "model": str,
    "mode": str,
    "batch": int,
    "input": str,
    "device": str,
    "threads": int,
    "median_ms": float,
    "iqr_ms": float,
    "images_per_s": float,
    "ratio_to_baseline": (float, type(None)),
    "peak_mem_mb": float,
    "amp": str,
    "channels_last": bool,
    "runtime": str,
    "compile_s": (float, type(None)),
    "torch_version": str,
    "samples": int,
    "noisy": bool,
    "noise": (str, type(None)),
}


def bench(*args: str):
    return CliRunner().invoke(app, ["bench", *args])


def bench_json(*args: str) -> list[dict]:
    result = bench(*args, "--json")
    assert result.exit_code == 0, result.stderr or result.output
    return json.loads(result.stdout)


def test_json_schema_and_baseline_ratio():
    rows = bench_json("mobilenetv2_100_stra", "mobilenetv2_100", "--baseline", "mobilenetv2_100", *FAST)
    assert [r["model"] for r in rows] == ["mobilenetv2_100_stra", "mobilenetv2_100"]  # baseline not run twice
    for row in rows:
        for key, kind in SCHEMA.items():
            assert isinstance(row[key], kind), (key, row[key])
        assert (row["mode"], row["batch"], row["input"], row["device"], row["threads"]) == ("infer", 2, "64x32", "cpu", 1)
        assert (row["amp"], row["channels_last"], row["runtime"], row["compile_s"]) == ("none", False, "eager", None)
        assert row["median_ms"] > 0 and row["iqr_ms"] >= 0 and row["peak_mem_mb"] >= 0
        assert row["images_per_s"] == pytest.approx(2 / (row["median_ms"] / 1e3))
        assert row["torch_version"] == torch.__version__
    assert rows[1]["ratio_to_baseline"] == 1.0
    assert rows[0]["ratio_to_baseline"] > 0
    for row in rows:  # noisy exactly when a reason is given
        assert row["noisy"] == (row["noise"] is not None)


def _noisy_rows(model: str = "resnet50_stra"):
    from strabench.measure import latency

    def rows(*_args, **_kwargs):
        base = {"mode": "infer", "batch": 32, "input": "256x128", "device": "cpu", "threads": 2, "images_per_s": 20.0,
                "peak_mem_mb": 1.0, "amp": "none", "channels_last": False, "runtime": "eager", "compile_s": None, "rounds": 3,
                "min_run_time": 1.0, "optimizer": None, "mem_method": "rss", "note": None, "torch_version": "x",
                "cpu": "cpu", "baseline": "resnet50"}
        reasons = latency.noise_reasons(1774.0, 981.0, 9, busy_cores=0.0, cores=2)
        return [
            {**base, "model": "resnet50", "median_ms": 1774.0, "iqr_ms": 981.0, "samples": 9, "ratio_to_baseline": 1.0,
             "ratio_rounds": [1.0, 1.0, 1.0], "noisy": bool(reasons), "noise": "; ".join(reasons)},
            {**base, "model": model, "median_ms": 1500.0, "iqr_ms": 10.0, "samples": 1, "ratio_to_baseline": 0.67,
             "ratio_rounds": [0.67, 1.19, 0.8], "noisy": True, "noise": "only 1 sample(s)"},
        ]

    return rows


def test_a_noisy_row_is_flagged_in_the_table(monkeypatch):
    from strabench.measure import latency
    from strabench.report.terminal import NOISY_LEGEND

    monkeypatch.setattr(latency, "benchmark_models", _noisy_rows())
    result = bench("resnet50_stra", "--baseline", "resnet50")
    assert result.exit_code == 0, result.output
    text = " ".join(result.output.split())
    assert text.count("NOISY") == 3 and "warning: resnet50 timing is noisy: IQR 55% of the median" in text
    assert result.output.count(NOISY_LEGEND) == 1, "one legend line, whole"
    assert "0.670–1.190" in text, "the ratio's range over rounds is shown"


CELLS = ("resnet50[layer4.*.conv2=stra,layer3.*.conv2=stra]", "1774.0", "981.0", "1500.0", "10.0", "20.0", "1.000×",
         "0.670×", "0.670–1.190", "NOISY")


@pytest.mark.parametrize("width", [80, 100, 120])
def test_the_table_never_cuts_a_cell_on_a_terminal(monkeypatch, width):
    """At any terminal width every cell is whole: columns that do not fit go to a second table."""
    import io

    from rich.console import Console

    from strabench.cli import _common
    from strabench.measure import latency

    buffer = io.StringIO()
    monkeypatch.setattr(latency, "benchmark_models", _noisy_rows(CELLS[0]))
    monkeypatch.setattr(_common, "console", lambda stderr=False: Console(file=buffer, force_terminal=True, width=width, color_system=None))
    result = bench("resnet50", "--baseline", "resnet50")
    assert result.exit_code == 0, result.output
    text = buffer.getvalue()
    assert "…" not in text
    table_lines = [line for line in text.splitlines() if line[:1] in "┏┃┡│└"]
    assert table_lines and max(len(line) for line in table_lines) <= width
    for cell in CELLS:
        assert any(cell in line for line in table_lines), cell
    assert not any("samples" in line for line in table_lines), "detail stays in --json / --csv"


def test_piped_output_is_one_table_at_its_natural_width(monkeypatch):
    from strabench.measure import latency

    monkeypatch.setattr(latency, "benchmark_models", _noisy_rows(CELLS[0]))
    result = bench("resnet50", "--baseline", "resnet50")  # CliRunner: stdout is not a terminal
    assert result.exit_code == 0, result.output
    header = [line for line in result.stdout.splitlines() if line.startswith("┃")]
    assert len(header) == 1, "not split into several tables"
    rows = [line for line in result.stdout.splitlines() if line.startswith("│")]
    assert len(rows) == 2 and all(cell in rows[0] + rows[1] for cell in CELLS[:-1])
    assert "mode infer, batch 32, input 256x128, device cpu, threads 2" in result.stdout


def test_without_baseline_the_ratio_is_null_and_the_baseline_is_prepended_when_not_listed():
    (row,) = bench_json("mobilenetv2_100", *FAST)
    assert row["ratio_to_baseline"] is None
    rows = bench_json("mobilenetv2_100_stra", "--baseline", "mobilenetv2_100", *FAST)
    assert [r["model"] for r in rows] == ["mobilenetv2_100", "mobilenetv2_100_stra"]


def test_csv_appends_rows_with_one_header(tmp_path):
    pd = pytest.importorskip("pandas")
    path = tmp_path / "bench.csv"
    for _ in range(2):
        result = bench("mobilenetv2_100", "mobilenetv2_100_stra", *FAST, "--csv", str(path))
        assert result.exit_code == 0, result.stderr
        assert "mobilenetv2_100_stra" in result.stdout  # the table still prints
    assert path.read_text().count("median_ms") == 1
    frame = pd.read_csv(path)
    assert list(frame["model"]) == ["mobilenetv2_100", "mobilenetv2_100_stra"] * 2
    assert (frame["median_ms"] > 0).all()


def test_train_mode_includes_the_diversity_loss_of_a_stra_model():
    rows = bench_json("mobilenetv2_100_stra", "mobilenetv2_100", "--mode", "train", *FAST)
    by_name = {r["model"]: r for r in rows}
    assert by_name["mobilenetv2_100_stra"]["aux_losses"] == ["diversity"]
    assert by_name["mobilenetv2_100"]["aux_losses"] == []
    assert all(r["mode"] == "train" and "SGD" in r["optimizer"] for r in rows)


@pytest.mark.parametrize(
    "args, needle",
    [
        (["resnet5"], "unknown model"),
        (["mobilenetv2_100", "--baseline", "nope"], "unknown model"),
        (["mobilenetv2_100", "--batch", "0"], "--batch"),
        (["mobilenetv2_100", "--batch", "-3"], "--batch"),
        (["mobilenetv2_100", "--threads", "0"], "--threads"),
        (["mobilenetv2_100", "--mode", "eval"], "--mode"),
        (["mobilenetv2_100", "--amp", "fp8"], "--amp"),
        (["mobilenetv2_100", "--amp", "fp16"], "unsupported on cpu"),
        (["mobilenetv2_100", "--device", "tpu"], "--device"),
        (["mobilenetv2_100", "--input", "65x32"], "multiples of 16"),
        (["mobilenetv2_100", "--input", "big"], "--input"),
        (["mobilenetv2_100", "--min-run-time", "0"], "--min-run-time"),
        (["mobilenetv2_100", "--compile"], "--compile is now --runtime compile"),
        (["mobilenetv2_100", "--runtime", "tensorrt"], "--runtime must be one of eager, compile, onnxruntime"),
        (["mobilenetv2_100", "--runtime", "onnxruntime", "--mode", "train"], "inference only"),
        (["mobilenetv2_100", "--runtime", "onnxruntime", "--amp", "bf16"], "--amp bf16 means nothing with --runtime onnxruntime"),
        (["mobilenetv2_100", "--runtime", "onnxruntime", "--channels-last"], "--channels-last means nothing"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(args, needle):
    result = bench(*args)
    assert result.exit_code == 2, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert needle in lines[0] and "Traceback" not in result.stderr
    assert result.stdout == ""


def test_a_csv_with_other_columns_is_refused_before_running(tmp_path):
    path = tmp_path / "other.csv"
    path.write_text("a,b\n1,2\n")
    result = bench("mobilenetv2_100", *FAST, "--csv", str(path))
    assert result.exit_code == 2 and "header differs" in result.stderr
    assert "warm-up" not in result.stderr  # refused before any model ran
    assert path.read_text() == "a,b\n1,2\n"


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without a GPU")
def test_cuda_without_a_gpu_is_a_device_error():
    result = bench("mobilenetv2_100", "--device", "cuda", *FAST)
    assert result.exit_code == 2
    assert result.stderr.strip().splitlines() == [
        "error: --device cuda requested but no CUDA GPU is available (torch.cuda.is_available() is False)"
    ]


def test_command_module_does_not_import_torch():
    import subprocess
    import sys

    code = "import sys, strabench.cli.bench, strabench.measure.latency; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"


def test_bench_replace_puts_blocks_into_the_listed_models_not_the_baseline():
    from strabench.registry import create_model

    rows = bench_json("resnet50", "--baseline", "resnet50", "--replace", "layer4.*.conv2=stra", *FAST)
    assert [r["model"] for r in rows] == ["resnet50", "resnet50[layer4.*.conv2=stra]"]
    base, replaced = rows
    assert base["ratio_to_baseline"] == 1.0 and replaced["ratio_to_baseline"] > 0
    # the timed model is ResNet-50 with StRA in layer4: its weights are resnet50_stra's, not resnet50's
    weights_mb = {}
    for name in ("resnet50", "resnet50_stra"):
        model = create_model(name)
        weights_mb[name] = sum(t.numel() * t.element_size() for t in (*model.parameters(), *model.buffers())) / 2**20
    assert replaced["weights_mb"] == pytest.approx(weights_mb["resnet50_stra"], rel=1e-3)
    assert base["weights_mb"] == pytest.approx(weights_mb["resnet50"], rel=1e-3)


@pytest.mark.parametrize("replace,message", [("layer4.*.conv2", "PATTERN=BLOCK"), ("layer9.*=stra", "matches no module")])
def test_bench_refuses_a_bad_replace_in_one_line(replace, message):
    result = bench("resnet50", "--replace", replace, *FAST)
    assert result.exit_code == 2 and message in result.output and "Traceback" not in result.output


def test_onnxruntime_runtime_times_baseline_and_candidate_under_onnxruntime():
    pytest.importorskip("onnxruntime")
    rows = bench_json("fer_resnet_stra", "--baseline", "fer_resnet", "--runtime", "onnxruntime", *FAST)
    assert [r["model"] for r in rows] == ["fer_resnet", "fer_resnet_stra"]
    for row in rows:
        assert row["runtime"] == "onnxruntime" and row["median_ms"] > 0
        assert row["compile_s"] > 0  # export + session creation, measured on its own
        assert "onnxruntime vs eager max|diff|" in row["note"]
    assert rows[0]["ratio_to_baseline"] == 1.0 and rows[1]["ratio_to_baseline"] > 0


@pytest.mark.slow
def test_compile_runtime_reports_compile_time_outside_the_timings(monkeypatch):
    # What is under test is the bench's accounting (the first, compiling call timed on its own), not
    # inductor: the compile runs on aot_eager, which traces the model as inductor does (dynamo,
    # AOTAutograd) without generating C++ (a minute of this test's time on 2 cores). Inductor itself
    # is checked on StRA's block in tests/measure/test_runtimes.py.
    import torch

    compile_ = torch.compile
    monkeypatch.setattr(torch, "compile", lambda model, **kwargs: compile_(model, **{**kwargs, "backend": "aot_eager"}))
    rows = bench_json("fer_resnet", "--runtime", "compile", *FAST)
    (row,) = rows
    assert row["runtime"] == "compile"
    # compiling takes seconds, a compiled step of this tiny model milliseconds: had compilation
    # leaked into the warm-up or the median, they would be seconds too
    assert row["compile_s"] > 0.5
    assert row["median_ms"] / 1e3 < row["compile_s"] / 10
    assert row["warmup_s"] < row["compile_s"] / 10


def test_table_shows_the_runtime_and_compile_seconds(monkeypatch):
    from strabench.measure import latency

    def rows(*_args, **kwargs):
        assert kwargs["runtime"] == "onnxruntime"
        return [{"model": "fer_resnet", "mode": "infer", "batch": 2, "input": "44x44", "device": "cpu", "threads": 1,
                 "median_ms": 1.0, "iqr_ms": 0.0, "samples": 9, "images_per_s": 2000.0, "ratio_to_baseline": None,
                 "ratio_rounds": None, "peak_mem_mb": 0.5, "amp": "none", "channels_last": False, "runtime": "onnxruntime",
                 "compile_s": 1.25, "rounds": 1, "min_run_time": 0.01, "optimizer": None, "mem_method": "rss", "note": None,
                 "torch_version": "x", "cpu": "cpu", "baseline": None, "noisy": False, "noise": None}]

    monkeypatch.setattr(latency, "benchmark_models", rows)
    result = bench("fer_resnet", "--runtime", "onnxruntime")
    assert result.exit_code == 0, result.output
    text = " ".join(result.output.split())
    assert "compile s" in text and "1.2" in text and "runtime=onnxruntime" in text
