"""batches: grouping by face count and by a pixel budget, handing results back, the image conversions."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from pipeline.records import FaceCrop
from pipeline.runtime.batch import batches, crop_pixels, group_by_shape, split_back, to_images, to_pixels


def _rec(*sides: int) -> list:
    """A record carrying one face per side, each with a ``side x side`` crop."""
    return [FaceCrop(0, None, None, np.zeros((s, s, 3), np.uint8)) for s in sides]


def _sizes(groups: list[list[list]]) -> list[int]:
    return [len(g) for g in groups]


def test_batches_fill_up_to_the_face_count():
    recs = [_rec(8)] * 7
    assert _sizes(list(batches(recs, 3, len))) == [3, 3, 1]


def test_records_without_faces_ride_along():
    recs = [_rec(8), _rec(), _rec(8), _rec(8)]
    assert _sizes(list(batches(recs, 2, len))) == [3, 1]


def test_a_pixel_budget_ends_a_batch_before_it_would_overflow():
    recs = [_rec(128)] * 10 + [_rec(256)] * 3 + [_rec(400)] + [_rec(128)] * 2
    out = list(batches(recs, 8, len, budget=128 * 128 * 8, weight=crop_pixels))
    # 8 crops of 128 fill the budget; 2 of 128 + 1 of 256 fit (98304), the 2nd 256 would not;
    # 2 of 256 fit exactly; a 400 crop alone is over the budget and goes on its own
    assert _sizes(out) == [8, 3, 2, 1, 2]
    assert [sum(crop_pixels(r) for r in b) for b in out] == [131072, 98304, 131072, 160000, 32768]


def test_a_budget_needs_a_weight():
    with pytest.raises(ValueError):
        list(batches([_rec(8)], 2, len, budget=10))


def test_split_back_gives_each_record_its_own_results():
    recs = [_rec(8, 8), _rec(), _rec(8), _rec(8, 8, 8)]
    out = list(split_back(recs, ["a", "b", "c", "d", "e", "f"], len))
    assert [(r is rec, got) for (r, got), rec in zip(out, recs, strict=True)] == \
        [(True, ["a", "b"]), (True, []), (True, ["c"]), (True, ["d", "e", "f"])]


def test_group_by_shape_keeps_indices_in_order():
    arrays = [np.zeros((4, 4, 3)), np.zeros((8, 4, 3)), torch.zeros(4, 4, 3), np.zeros((8, 4, 3))]
    assert group_by_shape(arrays) == {(4, 4, 3): [0, 2], (8, 4, 3): [1, 3]}


def test_to_images_and_back():
    pixels = np.array([[[0, 127, 255], [64, 128, 192]]], np.uint8)         # [1, 2, 3]
    img = to_images([pixels, pixels[:, ::-1]], torch.device("cpu"), torch.float32)
    assert img.shape == (2, 3, 1, 2) and img.dtype == torch.float32
    assert img[0, :, 0, 0].tolist() == pytest.approx([-1.0, 127 / 127.5 - 1, 1.0])   # x / 127.5 - 1
    assert np.array_equal(to_pixels(img)[0], pixels)                           # floor((y + 1) * 127.5)
    assert np.array_equal(to_pixels(img)[1], pixels[:, ::-1])
    assert to_pixels(torch.tensor([-3.0, 0.0, 0.999, 3.0]).view(1, 1, 1, 4).expand(1, 3, 1, 4)).reshape(4, 3)[:, 0] \
        .tolist() == [0, 127, 254, 255]                                        # clamped, truncated
