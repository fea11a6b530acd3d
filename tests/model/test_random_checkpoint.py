"""`checkpoint random`: the official layout exactly, deterministic, and loadable."""
from __future__ import annotations

import pytest
import torch

from pipeline import OutputError, load_model, make_random_checkpoint, save_checkpoint
from pipeline.model.random_checkpoint import official_key_shapes

OFFICIAL = ["inversion", "toonify", "edit", "sr32", "sr", "sketch2face", "mask2face"]


@pytest.fixture(scope="module")
def key_table(golden_dir):
    lines = (golden_dir.parent / "docs" / "styleganex-state-dict-keys.tsv").read_text().splitlines()
    header = lines[0].split("\t")
    return header, [line.split("\t") for line in lines[1:] if line.strip()]


@pytest.mark.parametrize("preset", OFFICIAL)
def test_official_key_set_and_shapes(preset, key_table):
    header, rows = key_table
    col = header.index(preset)
    want = {r[0]: r[col] for r in rows if r[col] != "-"}
    got = {k: ("scalar" if not shape else "x".join(map(str, shape)))
           for k, (shape, _) in official_key_shapes(preset).items()}
    assert got == want


def test_deterministic_and_seeded():
    a, b, c = (make_random_checkpoint("tiny", s) for s in (3, 3, 4))
    key = "decoder.convs.5.conv.weight"
    assert torch.equal(a["state_dict"][key], b["state_dict"][key])
    assert not torch.equal(a["state_dict"][key], c["state_dict"][key])
    assert a["opts"]["facestyle_random"] == {"preset": "tiny", "seed": 3}


def test_tiny_end_to_end(tmp_path):
    path = save_checkpoint(make_random_checkpoint("tiny", 5), tmp_path / "tiny.pt")
    model = load_model(path)
    x = torch.rand(2, 3, 64, 64) * 2 - 1
    with torch.no_grad():
        y = model.stylize(x, x[:1])
    assert y.shape == (2, 3, 256, 256)
    assert torch.isfinite(y).all()
    assert y.std() > 0.05                      # an image, not a constant
    assert (y[0] - y[1]).abs().mean() > 1e-3   # different frames give different images


def test_editing_preset_has_direction(tmp_path):
    ckpt = make_random_checkpoint("edit", 1)
    assert ckpt["editing_w"].shape == (1, 18, 512)
    assert ckpt["opts"]["use_att"] == 1


def test_save_is_atomic_and_refuses_overwrite(tmp_path):
    path = tmp_path / "t.pt"
    save_checkpoint(make_random_checkpoint("tiny", 1), path)
    with pytest.raises(OutputError):
        save_checkpoint(make_random_checkpoint("tiny", 2), path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["t.pt"]
    with pytest.raises(OutputError):
        save_checkpoint(make_random_checkpoint("tiny", 1), tmp_path / "no" / "such" / "dir.pt")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["t.pt"]
