"""Heatmaps of each attention block over an image (the paper's Fig. 3).

For every StRA block: the G mode masks M_g and, for comparison, the per-group magnitude of the
local attention output, alpha-blended over the input, one PNG per block, one colour scale (with
its colour bar) per row. The checkpoint is read with weights_only (a strabench checkpoint or a
plain state_dict of the same model); a strabench checkpoint also gives the input size, task and
model settings it was trained with. Without --image, the first test image of the run's own data
is used (the query set for ReID, the first verification image for faces, PrivateTest for FER),
found through the run's config.toml beside the checkpoint; its path (or, for FER's in-memory
images, a copy written into --out) is printed.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from strabench.cli._complete import model_names


def viz_command(
    model: Annotated[str, typer.Argument(autocompletion=model_names, help="Registered model name (e.g. resnet50_stra).")],
    checkpoint: Annotated[Path, typer.Option("--checkpoint", help="checkpoint.pt of a run, or a state_dict file.")],
    image: Annotated[Path | None, typer.Option("--image", help="Image to visualise (resized to the model's input); default: the first test image of the run's data.")] = None,
    out: Annotated[Path, typer.Option("--out", help="Folder for the PNGs (one per block).")] = Path("viz"),
    input: Annotated[str | None, typer.Option("--input", help="HEIGHTxWIDTH, default: the checkpoint's training input (else the model's, e.g. 256x128).")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the written PNG paths as a JSON list.")] = False,
) -> None:
    from strabench.cli._common import console, parse_size, print_json
    from strabench.report.attention_maps import visualise

    size = parse_size(input) if input else None
    if image is None:
        image, where = run_image(checkpoint, out)
        if not as_json:
            console(stderr=True).print(f"image: {image} ({where})", highlight=False, markup=False, soft_wrap=True)
    written = visualise(model, checkpoint, image, out, size=size)
    if as_json:
        print_json([str(path) for path in written])
        return
    for path in written:
        console().print(f"wrote {path}", highlight=False, markup=False, soft_wrap=True)


def run_image(checkpoint: Path, out: Path) -> tuple[Path, str]:
    """The first test image of the data the checkpoint's run trained on, and where it came from."""
    from strabench.errors import ConfigError
    from strabench.suite.store import CONFIG_TOML
    from strabench.train.config import config_from_toml

    config_path = checkpoint.parent / CONFIG_TOML
    try:
        text = config_path.read_text(encoding="utf-8")
    except OSError:
        raise ConfigError(f"no --image given and no {CONFIG_TOML} beside {checkpoint} to find the run's data: pass --image PATH") from None
    cfg = config_from_toml(text, source=str(config_path))
    if not cfg.data or not cfg.task or not cfg.input_size:
        raise ConfigError(f"{config_path} is not a resolved run config (no data, task or input_size): pass --image PATH")
    from strabench.data.tasks import build_task_data

    data = build_task_data(cfg.data, cfg.task, input_size=tuple(cfg.input_size), augment=False, seed=cfg.data_seed or 0,
                           sizes=dict(cfg.data_sizes or {}) or None)
    if data.query is not None and len(data.query):
        return Path(data.query.records[0].path), f"first query image of {cfg.data}"
    for name, pairs in data.verification.items():
        if len(pairs):
            source = pairs.pairs.images[0]
            if isinstance(source, Path):
                return source, f"first image of verification set {name} of {cfg.data}"
            return _written(out, "input.png", _decoded(source)), f"first image of verification set {name} of {cfg.data}"
    if data.test is not None and len(data.test):
        from PIL import Image

        picture = Image.fromarray(data.test.images[0])
        return _written(out, "input.png", picture), f"first PrivateTest image of {cfg.data}"
    raise ConfigError(f"the run's data {cfg.data} has no test image: pass --image PATH")


def _decoded(source: bytes):
    import io

    from PIL import Image

    return Image.open(io.BytesIO(source))


def _written(out: Path, name: str, picture) -> Path:
    import io

    from strabench.io import atomic_write_bytes, ensure_directory

    buffer = io.BytesIO()
    picture.save(buffer, format="PNG")
    ensure_directory(out)
    atomic_write_bytes(out / name, buffer.getvalue())
    return out / name


def register(app: typer.Typer) -> None:
    app.command("viz", help=__doc__)(viz_command)
