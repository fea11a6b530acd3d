"""facestyle preview: the sheet's layout and labels, and every cell equal to the frame convert makes at
that time with that model and strength (default smoothed codes with key codes, so the temporal half
must match a full run); the command on a shared clip with two models and three strengths."""
from __future__ import annotations

import io

import numpy as np
import pytest
import torch
from PIL import Image

from pipeline import make_random_checkpoint, save_checkpoint
from pipeline.convert import stages
from pipeline.model.checkpoint import build_model
from pipeline.options import ConvertOptions
from pipeline.runtime.device import Precision
from pipeline.stages import video_in
from pipeline.tools.preview import BACKGROUND, GAP, LABEL_H, make_sheet
from pipeline.tools.synthetic import FixedFaceDetector, synthetic_face
from tests.clips import make_clip

CPU = torch.device("cpu")
STRENGTHS = [0.0, 0.7, 1.5]


def convert_frames(src, model, detector, cfg) -> dict[int, np.ndarray]:
    with video_in.read(src, cfg.video_in) as reader:
        return {f.index: f.pixels.copy() for f in stages(reader, reader.info, model, detector, cfg)}


@pytest.fixture(scope="module")
def edit_model():
    from tests.stages.test_directions import tiny_edit_model

    return tiny_edit_model()


@pytest.mark.parametrize("options", [{}, {"style_code": "per-frame", "code_every": 1, "batch_size": 1}],
                         ids=["defaults", "per-frame"])
def test_each_cell_is_the_frame_convert_makes(tmp_path, tiny_model, edit_model, options):
    src = make_clip(tmp_path / "in.mp4", frames=24, size=(96, 80))
    detector = FixedFaceDetector(synthetic_face(48, 36, 40))
    cfg = ConvertOptions(smooth_window=3, **options).to_config(CPU, Precision())
    models = [("toon", tiny_model), ("edit", edit_model)]
    sheet = make_sheet(src, models, detector, cfg, STRENGTHS)
    assert sheet.columns == ["source"] + [f"{m} @ {s:g}" for m, _ in models for s in STRENGTHS]
    assert sheet.indices == [4, 12, 20] and sheet.times == pytest.approx([0.4, 1.2, 2.0])     # 1/6, 1/2, 5/6
    assert sheet.image.shape == (LABEL_H + 3 * (80 + GAP), 72 + 7 * (96 + GAP), 3)
    with video_in.read(src, cfg.video_in) as reader:
        source = {f.index: f.pixels for f in reader}
    for c, (_, model, s) in enumerate([(m, net, s) for m, net in models for s in STRENGTHS], start=1):
        want = convert_frames(src, model, detector, cfg.__class__(**{**cfg.__dict__, "generate": type(cfg.generate)(
            **{**cfg.generate.__dict__, "strength": s})}))
        for r, i in enumerate(sheet.indices):
            assert np.array_equal(sheet.cell(r, 0), source[i])
            assert np.array_equal(sheet.cell(r, c), want[i]), (r, c)
    toon = [sheet.cell(0, c) for c in (1, 2, 3)]
    assert all(np.array_equal(toon[0], t) for t in toon)                 # strength does nothing to a toon model
    edit = [sheet.cell(0, c) for c in (4, 5, 6)]
    assert not np.array_equal(edit[0], edit[2])                           # but moves the editing model


def test_labels_are_drawn_and_stored(tmp_path, tiny_model):
    src = make_clip(tmp_path / "in.mp4", frames=10, size=(96, 80))
    cfg = ConvertOptions().to_config(CPU, Precision())
    sheet = make_sheet(src, [("toon", tiny_model)], FixedFaceDetector(synthetic_face(48, 36, 40)), cfg,
                       [1.0], times=[0.0, 0.55])
    assert sheet.indices == [0, 6] and sheet.columns == ["source", "toon @ 1"]
    for c in range(2):                                                     # text above every column
        top, left, _, w = sheet.cells[(0, c)]
        band = sheet.image[:LABEL_H, left:left + w]
        assert (band != np.array(BACKGROUND, np.uint8)).any()
    for r in range(2):                                                     # and left of every row
        top, _, h, _ = sheet.cells[(r, 0)]
        assert (sheet.image[top:top + h, :60] != np.array(BACKGROUND, np.uint8)).any()
    png = Image.open(io.BytesIO(sheet.png()))
    assert png.size == (sheet.image.shape[1], sheet.image.shape[0])
    assert png.text["Columns"] == "source | toon @ 1" and png.text["Times"] == "0.000, 0.600"
    assert np.array_equal(np.asarray(png.convert("RGB")), sheet.image)


def test_the_command_on_a_shared_clip_with_two_models_and_three_strengths(tmp_path, media_dir):
    from cli import main

    a = save_checkpoint(make_random_checkpoint("tiny", 7), tmp_path / "a.pt")
    b = save_checkpoint(make_random_checkpoint("tiny", 8), tmp_path / "b.pt")
    clip = media_dir / "529_2.mp4"
    out = tmp_path / "sheet.png"
    rc = main(["preview", str(clip), "--model", f"{a},{b}", "--strength", "0.5,1,1.5", "--at", "0.2,1.0",
               "-o", str(out), "--threads", "2"])
    assert rc == 0
    png = Image.open(out)
    assert png.text["Columns"] == "source | a @ 0.5 | a @ 1 | a @ 1.5 | b @ 0.5 | b @ 1 | b @ 1.5"
    assert len(png.text["Times"].split(", ")) == 2
    with video_in.read(clip, video_in.VideoInConfig()) as reader:
        h, w = reader.info.height, reader.info.width
    assert png.size == (72 + 7 * (w + GAP), LABEL_H + 2 * (h + GAP))
    # the cell of model b at 1.0 at 1.0 s is the frame convert writes there
    from pipeline.frontend import FrontEnd

    front = FrontEnd.open(ConvertOptions(model=str(b), threads=2))
    want = convert_frames(clip, build_model(torch.load(b, weights_only=False)), front.make_detector(), front.config)
    index = round(float(png.text["Times"].split(", ")[1]) * 15)
    top, left = LABEL_H + 1 * (h + GAP), 72 + 5 * (w + GAP)
    assert np.array_equal(np.asarray(png.convert("RGB"))[top:top + h, left:left + w], want[index])
