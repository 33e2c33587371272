"""Per-block attention heatmaps over an input image, as in the paper's Fig. 3.

For every block that has them: the mode masks M_g of its ``ModeAttention`` (what each of the G
modes attends to, ``ModeAttention.masks`` of the block's input) and, for comparison, the
per-group L2 magnitude of its ``LocalAttention`` output (the "local attention only" view).
Both are captured with forward hooks, so models need no visualisation code of their own.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from strabench.errors import ConfigError

if TYPE_CHECKING:
    import numpy as np
    from PIL import Image
    from torch import Tensor, nn


@dataclass
class BlockMaps:
    """Maps of one block for one image: (G, h, w) arrays, either may be missing."""

    name: str
    masks: "np.ndarray | None" = None
    local: "np.ndarray | None" = None


def _block_name(model: "nn.Module", name: str) -> str:
    """The children of a StRA / SpatialThenMode block (``<block>.local``, ``.spatial``, ``.mode``) report as ``<block>``."""
    from strabench.layers.stra import SpatialThenMode, StRA

    parent, _, child = name.rpartition(".")
    if parent and child in ("local", "spatial", "mode") and isinstance(model.get_submodule(parent), (StRA, SpatialThenMode)):
        return parent
    return name


def capture_maps(model: "nn.Module", image: "Tensor") -> list[BlockMaps]:
    """Run ``image`` (1, C, H, W) through ``model`` (eval) and collect each block's maps in order."""
    import torch

    from strabench.layers.local_attention import LocalAttention
    from strabench.layers.mode_attention import ModeAttention

    blocks: dict[str, BlockMaps] = {}
    handles = []

    def on_mode(name: str):
        def hook(module: ModeAttention, inputs: tuple, _output: Any) -> None:
            masks = module.masks(inputs[0])[0]  # (G, h, w)
            blocks.setdefault(name, BlockMaps(name)).masks = masks.float().cpu().numpy()

        return hook

    def on_local(name: str):
        def hook(module: LocalAttention, _inputs: tuple, output: "Tensor") -> None:
            b, c, h, w = output.shape
            magnitude = output.reshape(b, module.groups, c // module.groups, h, w).norm(dim=2)[0]
            blocks.setdefault(name, BlockMaps(name)).local = magnitude.float().cpu().numpy()

        return hook

    for name, module in model.named_modules():
        if isinstance(module, ModeAttention):
            handles.append(module.register_forward_hook(on_mode(_block_name(model, name))))
        elif isinstance(module, LocalAttention):
            handles.append(module.register_forward_hook(on_local(_block_name(model, name))))
    if not handles:
        raise ConfigError(f"{type(model).__name__} has no ModeAttention or LocalAttention block to visualise (try a *_stra or *_local model)")
    model.eval()
    try:
        with torch.no_grad():
            model(image)
    finally:
        for handle in handles:
            handle.remove()
    return list(blocks.values())


def load_image(path: Path, task: str, size: tuple[int, int], channels: int) -> tuple["Tensor", "Image.Image"]:
    """The model's input tensor (the task's test transform) and the resized picture to draw on."""
    from PIL import Image, UnidentifiedImageError

    from strabench.data.transforms import face_transform, fer_transform, reid_transform

    transforms = {"reid": reid_transform, "face": face_transform, "fer": fer_transform}
    try:
        with Image.open(path) as opened:
            picture = opened.convert("RGB" if channels == 3 else "L")
    except FileNotFoundError:
        raise ConfigError(f"image not found: {path}") from None
    except (UnidentifiedImageError, OSError) as exc:
        raise ConfigError(f"cannot read image {path}: {exc}") from None
    tensor = transforms[task](size, train=False)(picture).unsqueeze(0)
    return tensor, picture.resize((size[1], size[0])).convert("RGB")


def _upsampled(heat: "np.ndarray", size: tuple[int, int]) -> "np.ndarray":
    import torch

    return torch.nn.functional.interpolate(torch.from_numpy(heat)[None, None].float(), size=size, mode="bilinear", align_corners=False)[0, 0].numpy()


def draw_block(block: BlockMaps, picture: "Image.Image", title: str) -> bytes:
    """One PNG: the image, then a row per map kind (local magnitude, mode masks), one panel per group.

    All panels of a row share one colour scale (0 to the row's largest value), shown by the
    row's colour bar, so groups can be compared: a mode that attends nowhere in particular
    looks flat instead of being stretched to full contrast."""
    import numpy as np
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    rows = [(label, maps) for label, maps in (("local attention |output|", block.local), ("mode mask M_g (weight per pixel)", block.masks)) if maps is not None]
    groups = max(maps.shape[0] for _, maps in rows)
    aspect = picture.height / picture.width
    size = (picture.height, picture.width)
    figure = Figure(figsize=(1.4 * (groups + 1) + 0.9, 1.4 * aspect * len(rows) + 0.5))
    figure.subplots_adjust(left=0.03, right=0.9, bottom=0.02, top=0.9, wspace=0.05, hspace=0.08)
    FigureCanvasAgg(figure)
    axes = figure.subplots(len(rows), groups + 1, squeeze=False)
    background = np.asarray(picture)
    for r, (label, maps) in enumerate(rows):
        axes[r][0].imshow(background)
        axes[r][0].set_ylabel(label, fontsize=7)
        top = float(maps.max()) if float(maps.max()) > 0 else 1.0
        shown = None
        for g in range(groups + 1):
            ax = axes[r][g]
            ax.set_xticks([])
            ax.set_yticks([])
            if g == 0:
                continue
            if g - 1 >= maps.shape[0]:
                ax.axis("off")
                continue
            ax.imshow(background)
            shown = ax.imshow(_upsampled(maps[g - 1], size), cmap="jet", alpha=0.5, vmin=0.0, vmax=top)
            if r == 0:
                ax.set_title(f"group {g - 1}", fontsize=8)
        if shown is not None:
            bar = figure.colorbar(shown, ax=list(axes[r]), fraction=0.02, pad=0.01)
            bar.ax.tick_params(labelsize=6)
    figure.suptitle(title, fontsize=9)
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=90)
    return buffer.getvalue()


def visualise(model_name: str, checkpoint: Path, image: Path, out: Path, *, size: tuple[int, int] | None = None) -> list[Path]:
    """Build ``model_name`` as the checkpoint was trained, write one PNG per attention block into ``out``."""
    from strabench.io import atomic_write_bytes
    from strabench.registry import model_info

    if not Path(image).is_file():  # before reading a large checkpoint
        raise ConfigError(f"image not found: {image}")
    from strabench.train.saved import model_from_checkpoint

    model, task, size = model_from_checkpoint(model_name, checkpoint, size)
    tensor, picture = load_image(image, task, size, model_info(model_name).default_input[0])
    blocks = capture_maps(model, tensor)
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for block in blocks:
        path = out / f"{model_name}.{block.name}.png"
        atomic_write_bytes(path, draw_block(block, picture, f"{model_name} {block.name} ({image.name}, {size[0]}x{size[1]})"))
        written.append(path)
    return written
