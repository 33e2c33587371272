"""The paper's own numbers, cited by table, shown beside ours and never as our output.

Source: Zhang, Li, Shen, Liu, "Structure-Regularized Attention for Deformable Object
Representation". The "FLOPs" columns of the
paper are multiply-adds of conv and linear layers for one 256x128 image (see README, "What
'FLOPs' means here"); we store them as GMACs.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class PaperRef:
    """A model's row(s) in the paper. Metrics are percentages as printed."""

    tables: tuple[str, ...]
    metrics: dict[str, float] = field(default_factory=dict)
    params_m: float | None = None
    gmacs: float | None = None
    note: str = ""

    def as_dict(self) -> dict:
        return {
            "tables": list(self.tables),
            "metrics": dict(self.metrics),
            "params_m": self.params_m,
            "gmacs": self.gmacs,
            "note": self.note,
        }


T1 = "Table 1 (Market-1501)"
T3 = "Table 3 (ablation: components)"
T4 = "Table 4 (ablation: mode attention)"
T2 = "Table 2 (face verification, medium training set)"
FER = "Sec. 3.2 (FER2013)"

PAPER: dict[str, PaperRef] = {
    "resnet50": PaperRef((T1, T3, T4), {"mAP": 77.1, "rank1": 90.6}, 24.6, 4.05),
    "resnet50_sasa": PaperRef((T1, T4), {"mAP": 79.5, "rank1": 92.3}, 17.8, 3.19),
    "resnet50_se": PaperRef((T1,), {"mAP": 80.7, "rank1": 93.3}, None, 4.49),
    "resnet50_nl": PaperRef((T1,), {"mAP": 80.2, "rank1": 91.9}, None, 7.28),
    "resnet50_stra": PaperRef((T1, T3, T4), {"mAP": 84.1, "rank1": 93.8}, 17.6, 3.17),
    "resnet50_local": PaperRef((T3,), {"mAP": 79.9, "rank1": 92.3}),
    "resnet50_local_mode": PaperRef((T3,), {"mAP": 83.3, "rank1": 93.4}),
    "resnet50_conv_mode": PaperRef((T4,), {"mAP": 82.1, "rank1": 93.2}, 24.6, 4.06),
    "resnet50_gconv_mode": PaperRef((T4,), {"mAP": 82.8, "rank1": 93.3}, 18.4, 3.26),
    "resnet50_sasa_mode": PaperRef((T4,), {"mAP": 83.0, "rank1": 93.6}, 17.8, 3.19),
    "mobilenetv2_100": PaperRef((T1,), {"mAP": 71.7, "rank1": 88.7}, None, 0.37),
    "mobilenetv2_100_stra": PaperRef((T1,), {"mAP": 74.2, "rank1": 89.3}, None, 0.37),
    "mobilenetv2_140": PaperRef((T1,), {"mAP": 72.5, "rank1": 89.0}, None, 0.68),
    "mobilenetv2_140_stra": PaperRef((T1,), {"mAP": 74.6, "rank1": 89.9}, None, 0.72),
    "face_resnet50": PaperRef(
        (T2,), {"LFW": 99.1, "CFP-FP": 94.4, "CPLFW": 82.0, "CALFW": 89.1, "AgeDB-30": 93.1}
    ),
    "face_resnet50_stra": PaperRef(
        (T2,), {"LFW": 99.1, "CFP-FP": 95.0, "CPLFW": 82.4, "CALFW": 89.5, "AgeDB-30": 93.3}
    ),
    "fer_resnet": PaperRef((FER,), {"test_acc": 71.5, "val_acc": 69.9}),
    "fer_resnet_stra": PaperRef((FER,), {"test_acc": 73.2, "val_acc": 71.5}),
}


@dataclass(frozen=True)
class PaperSetting:
    """The setting a task's published numbers were measured in: only ours in it sit beside them."""

    dataset: str  # the data spec's source name (before the colon)
    dataset_label: str
    input: tuple[int, int]  # training and evaluation input (height, width)
    profile: str = "paper"


PAPER_SETTINGS: dict[str, PaperSetting] = {
    "reid": PaperSetting("market1501", "Market-1501", (256, 128)),
    "face": PaperSetting("faces", "the real face training and verification sets", (112, 112)),
    "fer": PaperSetting("fer2013", "FER2013", (44, 44)),
}
# Params and "FLOPs" (GMACs) in Tables 1 and 4 are for one 256x128 image of the ReID models.
PAPER_COMPLEXITY_INPUT = (256, 128)
