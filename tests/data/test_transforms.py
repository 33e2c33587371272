"""Transforms: exact normalisation against numpy references, augmentation active and seed-reproducible."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from strabench.data.transforms import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    check_input_size,
    face_transform,
    fer_transform,
    reid_transform,
)
from strabench.errors import ConfigError


def _rgb(h: int, w: int, seed: int = 0) -> tuple[Image.Image, np.ndarray]:
    arr = np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)
    return Image.fromarray(arr), arr


def test_reid_test_transform_is_plain_imagenet_normalisation() -> None:
    img, arr = _rgb(128, 64)
    out = reid_transform((128, 64), train=False)(img)
    ref = (arr.astype(np.float32) / 255.0 - np.array(IMAGENET_MEAN)) / np.array(IMAGENET_STD)
    assert type(out) is torch.Tensor and out.dtype == torch.float32 and out.shape == (3, 128, 64)
    np.testing.assert_allclose(out.numpy(), ref.transpose(2, 0, 1), atol=1e-5)


def test_face_test_transform_is_minus_127_5_over_128() -> None:
    img, arr = _rgb(112, 112)
    out = face_transform((112, 112), train=False)(img)
    np.testing.assert_allclose(out.numpy(), ((arr.astype(np.float32) - 127.5) / 128.0).transpose(2, 0, 1), atol=1e-6)


def test_fer_test_transform_takes_arrays_and_scales_to_minus1_1() -> None:
    arr = np.random.default_rng(0).integers(0, 256, (48, 48), dtype=np.uint8)
    out = fer_transform((48, 48), train=False)(torch.from_numpy(arr)[None])
    assert out.shape == (1, 48, 48) and out.dtype == torch.float32
    np.testing.assert_allclose(out[0].numpy(), arr / 127.5 - 1.0, atol=1e-6)
    assert fer_transform((44, 44), train=False)(torch.from_numpy(arr)[None]).shape == (1, 44, 44)
    assert fer_transform((44, 44), train=False)(Image.fromarray(arr)).shape == (1, 44, 44)  # PIL grey too


@pytest.mark.parametrize("make, size", [(reid_transform, (128, 64)), (face_transform, (112, 112))])
def test_resizes_to_input_size(make, size: tuple[int, int]) -> None:
    img, _ = _rgb(100, 50)
    for train in (False, True):
        assert make(size, train=train)(img).shape == (3, *size)
    assert reid_transform((64, 32), train=True)(img).shape == (3, 64, 32)


@pytest.mark.parametrize("make, size, channels", [(reid_transform, (128, 64), 3), (face_transform, (112, 112), 3),
                                                  (fer_transform, (44, 44), 1)])
def test_train_augmentation_is_random_but_seed_reproducible(make, size, channels: int) -> None:
    img, _ = _rgb(*size)
    if channels == 1:
        img = img.convert("L")
    tf = make(size, train=True)
    outs = []
    for seed in (0, 0, 1, 2, 3):
        torch.manual_seed(seed)
        outs.append(tf(img))
    assert torch.equal(outs[0], outs[1])
    assert any(not torch.equal(outs[0], o) for o in outs[2:])
    test_tf = make(size, train=False)
    assert torch.equal(test_tf(img), test_tf(img))


def test_reid_random_erasing_and_pad_crop_happen() -> None:
    img, _ = _rgb(128, 64)
    tf = reid_transform((128, 64), train=True)
    torch.manual_seed(0)
    outs = [tf(img) for _ in range(40)]
    erased = sum(float((o == 0).all(0).float().mean()) > 0.02 for o in outs)  # erasing writes 0 (= mean colour)
    assert 8 < erased < 32  # p = 0.5
    pad = (-torch.tensor(IMAGENET_MEAN) / torch.tensor(IMAGENET_STD))[:, None].expand(3, 64)
    assert any(torch.allclose(o[:, 0, :], pad, atol=1e-5) for o in outs)  # black padding shifted in


def test_input_size_validation() -> None:
    assert check_input_size((128, 64)) == (128, 64)
    for bad in [(128,), "128x64", (4, 4), (128.5, 64), None]:
        with pytest.raises(ConfigError):
            check_input_size(bad)  # type: ignore[arg-type]
