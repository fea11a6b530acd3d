"""--direction FILE[:STRENGTH]: an editing model's own direction given back as a file at strength S, with
the built-in edit at 0, renders exactly the frames of the built-in edit at S (also with keyframes);
files of the wrong shape or dtype are refused in one line; several directions add up; every route
(command line, TOML/service mapping, VapourSynth keyword arguments) takes the option."""
from __future__ import annotations

import logging

import numpy as np
import pytest
import torch

from pipeline.convert import stages
from pipeline.errors import UsageError
from pipeline.model import random_checkpoint as rc
from pipeline.model.arch import TINY_WIDTHS, widths_to_opts
from pipeline.model.checkpoint import build_model
from pipeline.options import ConvertOptions
from pipeline.runtime.device import Precision
from pipeline.stages import video_in
from pipeline.stages.directions import load_vector, parse_direction
from pipeline.tools.synthetic import FixedFaceDetector, synthetic_face

CPU = torch.device("cpu")


def tiny_edit_model():
    """A random editing model (editing attention and a direction, as the age/hair models) of tiny width."""
    real = rc.preset_opts

    def tiny(preset):
        opts = real(preset)
        if preset == "edit":
            opts["facestyle_arch"] = widths_to_opts(TINY_WIDTHS)
        return opts

    rc.preset_opts = tiny
    try:
        ckpt = rc.make_random_checkpoint("edit", 3)
    finally:
        rc.preset_opts = real
    model = build_model(ckpt)
    assert model.is_editing and model.arch.use_att
    return model


@pytest.fixture(scope="module")
def tiny_edit():
    return tiny_edit_model()


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    from tests.clips import make_clip

    return make_clip(tmp_path_factory.mktemp("dir") / "in.mp4", frames=5, size=(96, 80))


def frames_of(model, clip, **options):
    cfg = ConvertOptions(style_code="per-frame", batch_size=2, **options).to_config(CPU, Precision())
    with video_in.read(clip, cfg.video_in) as reader:
        out = stages(reader, reader.info, model, FixedFaceDetector(synthetic_face(48, 36, 40)), cfg)
        return [f.pixels.copy() for f in out]


@pytest.mark.parametrize("strength", ["0.8", "-1.5", "0:0,0.4:2"])
def test_the_built_in_direction_given_back_as_a_file_renders_the_same_frames(tiny_edit, clip, tmp_path, strength):
    path = tmp_path / "own.npy"
    np.save(path, tiny_edit.editing_w[0].numpy())
    built_in = frames_of(tiny_edit, clip, strength=strength)
    mine = frames_of(tiny_edit, clip, strength="0", direction=(f"{path}:{strength}",))
    assert not all(np.array_equal(a, b) for a, b in zip(frames_of(tiny_edit, clip, strength="0"), built_in,
                                                          strict=True))
    for a, b in zip(built_in, mine, strict=True):
        assert np.array_equal(a, b)


def test_a_direction_without_a_strength_follows_strength_and_its_keyframes(tiny_model, clip, tmp_path):
    np.save(tmp_path / "d.npy", np.random.default_rng(2).normal(size=(18, 32)).astype(np.float32))
    ramp = "0:0,0.4:2"
    follows = frames_of(tiny_model, clip, strength=ramp, direction=(str(tmp_path / "d.npy"),))
    own = frames_of(tiny_model, clip, strength="5", direction=(f"{tmp_path / 'd.npy'}:{ramp}",))
    assert all(np.array_equal(a, b) for a, b in zip(follows, own, strict=True))


def test_directions_add_up_and_a_pt_file_is_read(tiny_model, clip, tmp_path):
    d = np.random.default_rng(1).normal(size=(tiny_model.arch.widths.style_dim,)).astype(np.float32)
    np.save(tmp_path / "a.npy", d)
    torch.save(torch.from_numpy(np.tile(d, (18, 1)) * 2), tmp_path / "b.pt")
    twice = frames_of(tiny_model, clip, direction=(f"{tmp_path / 'a.npy'}:0.6", f"{tmp_path / 'a.npy'}:0.6"))
    once = frames_of(tiny_model, clip, direction=(f"{tmp_path / 'b.pt'}:0.6",))
    none = frames_of(tiny_model, clip)
    for a, b, c in zip(twice, once, none, strict=True):
        assert np.abs(a.astype(int) - b.astype(int)).max() <= 1            # 0.6d + 0.6d vs 1.2d: rounding only
        assert not np.array_equal(a, c)


def test_a_toon_model_runs_with_a_warning(tiny_model, clip, tmp_path, caplog):
    np.save(tmp_path / "d.npy", np.zeros(tiny_model.arch.widths.style_dim, np.float32))
    with caplog.at_level(logging.WARNING):
        out = frames_of(tiny_model, clip, direction=(str(tmp_path / "d.npy"),))
    assert "at your risk" in caplog.text
    assert all(np.array_equal(a, b) for a, b in zip(out, frames_of(tiny_model, clip), strict=True))  # zero: no change


@pytest.mark.parametrize("value, match", [
    (np.zeros((17, 512), np.float32), r"shape \[17, 512\]; expected \[512\] or \[18, 512\]"),
    (np.zeros((2, 18, 512), np.float32), "shape"),
    (np.zeros(512, np.int64), "not floating point"),
    (np.full(512, np.nan, np.float32), "NaN"),
])
def test_bad_files_are_refused_in_one_line(tmp_path, value, match):
    np.save(tmp_path / "bad.npy", value)
    with pytest.raises(UsageError, match=match) as e:
        load_vector(tmp_path / "bad.npy", 512)
    assert "\n" not in str(e.value)


def test_bad_paths_and_widths_are_refused(tmp_path, tiny_model, clip):
    with pytest.raises(UsageError, match="no such file"):
        parse_direction(str(tmp_path / "missing.npy:1"))
    with pytest.raises(UsageError, match=".npy or .pt"):
        parse_direction(str(tmp_path / "d.txt"))
    (tmp_path / "junk.pt").write_bytes(b"not a pickle")
    with pytest.raises(UsageError, match="cannot read"):
        parse_direction(str(tmp_path / "junk.pt"))
    torch.save(torch.zeros(512, dtype=torch.int32), tmp_path / "int.pt")
    with pytest.raises(UsageError, match="not floating point"):
        parse_direction(str(tmp_path / "int.pt"))
    np.save(tmp_path / "wide.npy", np.zeros(512, np.float32))          # the tiny model's codes are 32 wide
    with pytest.raises(UsageError, match="512 wide"):
        frames_of(tiny_model, clip, direction=(str(tmp_path / "wide.npy"),))


def test_file_and_strength_spelling(tmp_path):
    np.save(tmp_path / "d:1.npy", np.ones(512, np.float32))            # a colon in the name, no strength
    d = parse_direction(str(tmp_path / "d:1.npy"))
    assert d.strength is None and d.vector.shape == (18, 512) and (d.vector == 1).all()
    assert parse_direction(f"{tmp_path / 'd:1.npy'}:-0.5").strength == -0.5
    ramp = parse_direction(f"{tmp_path / 'd:1.npy'}:0:0,2:1")
    assert ramp.strength is None and ramp.keyframes == ((0.0, 0.0), (2.0, 1.0))
    with pytest.raises(UsageError, match="after FILE:"):
        parse_direction(f"{tmp_path / 'd:1.npy'}:strong")


def test_every_route_takes_the_option(tmp_path):
    import argparse

    from pipeline.options import add_convert_options

    np.save(tmp_path / "d.npy", np.ones(512, np.float32))
    a, b = f"{tmp_path / 'd.npy'}:1", str(tmp_path / "d.npy")
    p = argparse.ArgumentParser()
    add_convert_options(p)
    opts = ConvertOptions.from_args(p.parse_args(["--direction", a, "--direction", b]))
    assert opts.direction == (a, b)
    assert ConvertOptions.from_args(p.parse_args([])).direction == ()
    assert ConvertOptions.from_mapping({"direction": a}).direction == (a,)                 # service, VapourSynth
    assert ConvertOptions.from_mapping({"direction": [a, b]}).direction == (a, b)          # TOML list, kwargs
    assert opts.as_dict(changed_only=True) == {"direction": [a, b]}
    dirs = opts.to_config(CPU, Precision()).generate.directions
    assert [d.strength for d in dirs] == [1.0, None]
    with pytest.raises(UsageError, match="string or a list of strings"):
        ConvertOptions.from_mapping({"direction": 3})
    with pytest.raises(UsageError, match="no such file"):
        ConvertOptions.from_mapping({"direction": "nope.npy"}).check()
