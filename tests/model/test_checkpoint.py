"""Strict loading: every way a checkpoint can be wrong ends in one-line CheckpointError."""
from __future__ import annotations

import argparse

import pytest
import torch

from pipeline import CheckpointError, load_model, make_random_checkpoint, save_checkpoint
from pipeline.model.checkpoint import is_ignorable_key


def _save(tmp_path, ckpt, name="c.pt"):
    path = tmp_path / name
    torch.save(ckpt, path)
    return path


def _fails(path, *fragments):
    with pytest.raises(CheckpointError) as info:
        load_model(path)
    msg = str(info.value)
    assert "\n" not in msg, msg
    for fragment in fragments:
        assert fragment in msg, msg
    return msg


@pytest.fixture
def tiny():
    return make_random_checkpoint("tiny", seed=1)


def test_one_key_removed(tmp_path, tiny):
    del tiny["state_dict"]["encoder.body.5.res_layer.3.weight"]
    _fails(_save(tmp_path, tiny), "missing 1 key", "encoder.body.5.res_layer.3.weight")


def test_one_tensor_reshaped(tmp_path, tiny):
    w = tiny["state_dict"]["decoder.convs.6.conv.weight"]
    tiny["state_dict"]["decoder.convs.6.conv.weight"] = w.reshape(1, w.shape[1] * 2, w.shape[2] // 2, 3, 3)
    _fails(_save(tmp_path, tiny), "wrong shape", "decoder.convs.6.conv.weight")


def test_unexpected_key(tmp_path, tiny):
    tiny["state_dict"]["encoder.fusion.9.transform.0.weight"] = torch.zeros(1)
    _fails(_save(tmp_path, tiny), "unexpected 1 key", "encoder.fusion.9.transform.0.weight")


def test_structure_from_opts_disagrees_with_keys(tmp_path, tiny):
    tiny["opts"]["skip_max_layer"] = 2           # the file has 7 fusion blocks
    _fails(_save(tmp_path, tiny), "unexpected", "encoder.fusion.2.")


def test_truncated_file(tmp_path, tiny):
    path = _save(tmp_path, tiny)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    _fails(path, "truncated or corrupt")


def test_text_file(tmp_path):
    path = tmp_path / "notes.pt"
    path.write_text("these are not weights\n" * 20)
    _fails(path, "not a PyTorch checkpoint")


def test_empty_missing_and_folder(tmp_path):
    (tmp_path / "empty.pt").write_bytes(b"")
    _fails(tmp_path / "empty.pt", "empty")
    _fails(tmp_path / "absent.pt", "not found")
    _fails(tmp_path, "folder")


def test_foreign_checkpoints(tmp_path):
    _fails(_save(tmp_path, {"g_ema": {"style.1.weight": torch.zeros(2, 2)}}), "not a StyleGANEX checkpoint")
    _fails(_save(tmp_path, [torch.zeros(3)], "list.pt"), "not a StyleGANEX checkpoint")


def test_code_in_pickle_is_refused(tmp_path, tiny):
    tiny["opts"]["callback"] = argparse.ArgumentParser   # a class: not plain data
    _fails(_save(tmp_path, tiny), "not plain data")


def test_latent_avg_problems(tmp_path, tiny):
    bad = dict(tiny, latent_avg=torch.zeros(5, 7))
    _fails(_save(tmp_path, bad, "bad.pt"), "latent_avg")
    del tiny["latent_avg"]
    _fails(_save(tmp_path, tiny, "none.pt"), "latent_avg")


def test_tolerated_differences(tmp_path, tiny):
    """Constants, noise maps and BN counters may be absent; a discriminator and a Namespace opts are fine;
    a (style_dim,) latent_avg is broadcast to all rows."""
    ref = load_model(_save(tmp_path, tiny, "ref.pt"))
    sd = tiny["state_dict"]
    for key in [k for k in sd if is_ignorable_key(k)]:
        del sd[key]
    tiny["discriminator"] = {"convs.0.0.weight": torch.zeros(3)}
    tiny["opts"] = argparse.Namespace(**tiny["opts"])
    model = load_model(_save(tmp_path, tiny, "slim.pt"))
    x = torch.rand(1, 3, 64, 64) * 2 - 1
    with torch.no_grad():
        torch.testing.assert_close(model.stylize(x), ref.stylize(x), atol=0, rtol=0)
    tiny["latent_avg"] = tiny["latent_avg"][0]
    model = load_model(_save(tmp_path, tiny, "vec.pt"))
    assert torch.equal(model.latent_avg, tiny["latent_avg"].expand(18, -1))


def test_bare_state_dict_infers_structure(tmp_path, tiny):
    """Without opts the structure comes from the keys (here: still needs latent_avg)."""
    opts_less = {"state_dict": tiny["state_dict"], "latent_avg": tiny["latent_avg"],
                 "opts": {"facestyle_arch": tiny["opts"]["facestyle_arch"]}}
    model = load_model(_save(tmp_path, opts_less))
    assert model.arch.n_fusion == 7 and model.arch.use_att == 0


def test_load_model_dtype_and_eval(tmp_path, tiny):
    path = save_checkpoint(tiny, tmp_path / "t.pt")
    model = load_model(path, dtype=torch.bfloat16)
    assert not model.training
    assert all(p.dtype == torch.bfloat16 and not p.requires_grad for p in model.parameters())
