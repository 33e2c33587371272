"""The registered variants: every row of the paper's Tables 1-4 plus the face and FER models.

Variants are data: a ``BlockPlan`` saying what replaces layer4's 3x3 conv (or which add-on is
used), handed to the one ``ResNet`` class. Builders take ``**overrides`` that go to the blocks
(``groups``, ``kernel_size``, ``border``) or to the network (``input_size``, ``num_classes``,
``feature_dim``). This module imports no torch: the factories in ``plans`` load when a model is
built, so listing models stays instant.
"""

from __future__ import annotations

from typing import Any

from strabench.paper import PAPER
from strabench.models.info import register_model

REID = {"tasks": ("reid",), "default_input": (3, 256, 128), "family": "resnet50-reid"}
MNV2 = {"tasks": ("reid",), "default_input": (3, 256, 128), "family": "mobilenetv2-reid"}
FACE = {"tasks": ("face",), "default_input": (3, 112, 112), "family": "resnet50-face"}
FER = {"tasks": ("fer",), "default_input": (1, 44, 44), "family": "resnet-fer"}


# --- ReID ResNet-50 (Tables 1, 3, 4) ------------------------------------------------------------


@register_model(block="conv 3x3", paper=PAPER["resnet50"], **REID)
def resnet50(**overrides: Any):
    """ResNet-50 for ReID: last stride 1, GAP -> 1x1 conv 2048->512 -> BN head (the baseline)."""
    from strabench.models import plans as p

    return p.ResNet(**overrides)


@register_model(block="SE (r=16) in every bottleneck", paper=PAPER["resnet50_se"], **REID)
def resnet50_se(reduction: int = 16, **overrides: Any):
    """SE-ResNet-50: squeeze-excitation after bn3 of all 16 bottlenecks."""
    from strabench.models import plans as p

    return p.ResNet(plan=p.BlockPlan.uniform(addon=p.se(reduction)), **overrides)


@register_model(block="ECA (k from C) in every bottleneck", **REID)
def resnet50_eca(**overrides: Any):
    """ECA-ResNet-50: efficient channel attention after bn3 of all 16 bottlenecks (ECA-Net, CVPR 2020)."""
    from strabench.layers.eca import ECA
    from strabench.models import plans as p

    return p.ResNet(plan=p.BlockPlan.uniform(addon=ECA), **overrides)


@register_model(block="Non-local x5 (layer2: 2, layer3: 3)", paper=PAPER["resnet50_nl"], **REID)
def resnet50_nl(**overrides: Any):
    """ResNet-50 + 5 embedded-Gaussian non-local blocks after every other block of layer2 and layer3.

    Placement follows the Non-local paper's 5-block ResNet-50 (Sec. 4.1: 2 in res3, 3 in res4,
    "to every other residual block").
    """
    from strabench.models import plans as p

    plan = p.BlockPlan(
        (
            p.StagePlan(),
            p.StagePlan(post_blocks=(1, 3), post=p.NonLocal),
            p.StagePlan(post_blocks=(1, 3, 5), post=p.NonLocal),
            p.StagePlan(),
        )
    )
    return p.ResNet(plan=plan, **overrides)


@register_model(block="SASA (k=7, 8 heads) in layer4", paper=PAPER["resnet50_sasa"], **REID)
def resnet50_sasa(heads: int = 8, kernel_size: int = 7, **overrides: Any):
    """Stand-alone self-attention replaces layer4's 3x3 convs (Table 4 "SASA")."""
    from strabench.models import plans as p

    return p.ResNet(plan=p.layer4(p.sasa(heads, kernel_size)), **overrides)


@register_model(block="SASA + mode attention in layer4", paper=PAPER["resnet50_sasa_mode"], **REID)
def resnet50_sasa_mode(heads: int = 8, kernel_size: int = 7, **overrides: Any):
    """SASA followed by mode attention in layer4 (Table 4 "SASA + Mode")."""
    from strabench.models import plans as p

    return p.ResNet(plan=p.layer4(p.with_mode(p.sasa(heads, kernel_size), groups=heads)), **overrides)


@register_model(block="conv 3x3 + mode attention in layer4", paper=PAPER["resnet50_conv_mode"], **REID)
def resnet50_conv_mode(groups: int = 8, **overrides: Any):
    """The 3x3 conv followed by mode attention in layer4 (Table 4 "Conv + Mode")."""
    from strabench.models import plans as p

    return p.ResNet(plan=p.layer4(p.with_mode(p.conv3x3, groups=groups)), **overrides)


@register_model(block="group conv 3x3 (g=8) + mode attention in layer4", paper=PAPER["resnet50_gconv_mode"], **REID)
def resnet50_gconv_mode(groups: int = 8, **overrides: Any):
    """A 3x3 group conv (8 groups) followed by mode attention in layer4 (Table 4 "Group Conv + Mode")."""
    from strabench.models import plans as p

    return p.ResNet(plan=p.layer4(p.with_mode(p.gconv(groups), groups=groups)), **overrides)


@register_model(block="local attention in layer4", paper=PAPER["resnet50_local"], **REID)
def resnet50_local(groups: int = 8, kernel_size: int = 3, border: str = "zero", **overrides: Any):
    """Local attention alone replaces layer4's 3x3 convs (Table 3, "Local Attn." only)."""
    from strabench.models import plans as p

    return p.ResNet(plan=p.layer4(p.local(groups, kernel_size, border)), **overrides)


@register_model(block="local + mode attention (no interaction) in layer4", paper=PAPER["resnet50_local_mode"], **REID)
def resnet50_local_mode(groups: int = 8, kernel_size: int = 3, border: str = "zero", **overrides: Any):
    """StRA without mode interaction (Table 3, "Mode Attn. w/o Interact.")."""
    from strabench.models import plans as p

    return p.ResNet(plan=p.layer4(p.stra(groups, kernel_size, border, interaction=False)), **overrides)


@register_model(block="StRA (local + mode + interaction) in layer4", paper=PAPER["resnet50_stra"], **REID)
def resnet50_stra(groups: int = 8, kernel_size: int = 3, border: str = "zero", **overrides: Any):
    """ResNet50_StRA: StRA replaces the 3x3 conv of all three layer4 bottlenecks (Tables 1, 3, 4)."""
    from strabench.models import plans as p

    return p.ResNet(plan=p.layer4(p.stra(groups, kernel_size, border)), **overrides)


# --- MobileNetV2 (Table 1) ----------------------------------------------------------------------


@register_model(block="inverted residual (dw 3x3)", paper=PAPER["mobilenetv2_100"], **MNV2)
def mobilenetv2_100(**overrides: Any):
    """MobileNetV2 x1.0 for ReID: last stride 1, 512-d ReID head."""
    from strabench.models import plans as p

    return p.MobileNetV2(width_mult=1.0, **overrides)


@register_model(block="inverted residual (dw 3x3)", paper=PAPER["mobilenetv2_140"], **MNV2)
def mobilenetv2_140(**overrides: Any):
    """MobileNetV2 x1.4 for ReID: last stride 1, 512-d ReID head."""
    from strabench.models import plans as p

    return p.MobileNetV2(width_mult=1.4, **overrides)


@register_model(block="StRA in the last inverted residual", paper=PAPER["mobilenetv2_100_stra"], **MNV2)
def mobilenetv2_100_stra(groups: int = 8, kernel_size: int = 3, border: str = "zero", **overrides: Any):
    """MobileNetV2 x1.0 with StRA replacing the depthwise 3x3 of its last (320-ch) block."""
    from strabench.models import plans as p

    return p.MobileNetV2(width_mult=1.0, last_block_spatial=p.mnv2_stra(groups, kernel_size, border), **overrides)


@register_model(block="StRA in the last inverted residual", paper=PAPER["mobilenetv2_140_stra"], **MNV2)
def mobilenetv2_140_stra(groups: int = 8, kernel_size: int = 3, border: str = "zero", **overrides: Any):
    """MobileNetV2 x1.4 with StRA replacing the depthwise 3x3 of its last (320-ch) block."""
    from strabench.models import plans as p

    return p.MobileNetV2(width_mult=1.4, last_block_spatial=p.mnv2_stra(groups, kernel_size, border), **overrides)


# --- Face recognition (App. B.2) ----------------------------------------------------------------

_FACE_NET = {"stem": "small", "strides": (2, 2, 2, 2), "head": "face", "input_size": (112, 112), "num_classes": 1000}


@register_model(block="conv 3x3", paper=PAPER["face_resnet50"], **FACE)
def face_resnet50(**overrides: Any):
    """ResNet-50 for 112x112 faces with the BN-Dropout-FC-BN 512-d head (App. B.2).

    Decisions (the paper names the head, not the stem): a 3x3/1 stem without max-pool and stride 2
    in all four stages (as ArcFace's "IR" networks), so a 112x112 face ends as a 7x7 map; the FC
    is sized for ``input_size``.
    """
    from strabench.models import plans as p

    return p.ResNet(**{**_FACE_NET, **overrides})


@register_model(block="StRA in layer4", paper=PAPER["face_resnet50_stra"], **FACE)
def face_resnet50_stra(groups: int = 8, kernel_size: int = 3, border: str = "zero", **overrides: Any):
    """face_resnet50 with StRA replacing layer4's 3x3 convs ("the last stage"; the first has stride 2)."""
    from strabench.models import plans as p

    return p.ResNet(plan=p.layer4(p.stra(groups, kernel_size, border)), **{**_FACE_NET, **overrides})


# --- Facial expression recognition (App. B.3) ---------------------------------------------------

_FER_NET = {
    "layers": (3, 3, 3, 3),
    "strides": (1, 2, 2, 2),
    "stem": "small",
    "head": "pool",
    "in_chans": 1,
    "input_size": (44, 44),
    "num_classes": 7,
    "eval_output": "logits",
    # gamma = 1 at init, unlike the ReID/face ResNets: measured on synthetic_expressions (quick
    # profile, fer_resnet_stra), zero-init residuals left the loss at chance for 8 epochs
    # (test 19% vs 14% chance) where gamma = 1 reached 38%.
    "zero_init_last": False,
}


@register_model(block="conv 3x3", paper=PAPER["fer_resnet"], **FER)
def fer_resnet(**overrides: Any):
    """The FER bottleneck ResNet: 3x3/1 stem, no max-pool, 4 stages of 3 blocks, 44x44 grey, 7 classes."""
    from strabench.models import plans as p

    return p.ResNet(**{**_FER_NET, **overrides})


@register_model(block="StRA in layer4 (no conv3)", paper=PAPER["fer_resnet_stra"], **FER)
def fer_resnet_stra(groups: int = 8, kernel_size: int = 3, border: str = "zero", **overrides: Any):
    """fer_resnet with StRA in the last stage, whose closing 1x1 conv3 is omitted (App. B.3).

    Decision: without conv3 the last stage's blocks output the 512-channel bottleneck width (bn3
    and the projection shortcut are sized to it), so the classifier sees 512-d features.
    """
    from strabench.models import plans as p

    return p.ResNet(plan=p.layer4(p.stra(groups, kernel_size, border), keep_conv3=False), **{**_FER_NET, **overrides})
