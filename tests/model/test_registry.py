"""The model catalogue: names and aliases, the cache folder from the environment, names against
paths, the listing and its table (no network: nothing here downloads)."""
from __future__ import annotations

from pathlib import Path

import pytest

from pipeline import CheckpointError, ModelNotAvailableError
from pipeline.model.registry import (
    MODELS,
    OFFICIAL_BASE_URL,
    RegistryConfig,
    find_model,
    format_model_table,
    format_size,
    list_models,
    resolve_model,
)

PIXAR = "styleganex_toonify_pixar.pt"


@pytest.fixture
def config(tmp_path) -> RegistryConfig:
    """A cache folder and a mirror that nothing listens on (a test that downloads fails loudly)."""
    return RegistryConfig(model_dir=tmp_path / "models", base_url="http://127.0.0.1:9/none", timeout=1)


@pytest.fixture(scope="module")
def ckpt_bytes(tiny_ckpt_path) -> bytes:
    return tiny_ckpt_path.read_bytes()


def _resolve(name: str, config: RegistryConfig, **kw) -> Path:
    return resolve_model(name, config, progress=False, **kw)


def test_table_names_files_and_urls():
    assert list(MODELS) == ["cartoon", "pixar", "arcane", "age", "hair", "inversion", "sr", "sr32",
                            "sketch2face", "mask2face"]
    for info in MODELS.values():
        assert info.filename.startswith("styleganex_") and info.filename.endswith(".pt")
        assert info.url == f"{OFFICIAL_BASE_URL}/{info.filename}"
    assert OFFICIAL_BASE_URL == "https://huggingface.co/PKUWilliamYang/StyleGANEX/resolve/main/pretrained_models"
    assert MODELS["age"].filename == "styleganex_edit_age.pt" and MODELS["age"].family == "editing"
    for alias in ("pixar", "Pixar", "toonify-pixar", "toonify_pixar", "styleganex_toonify_pixar"):
        assert find_model(alias) is MODELS["pixar"]
    assert find_model("picasso") is None


def test_config_from_env(tmp_path):
    cfg = RegistryConfig.from_env({"FACESTYLE_MODEL_DIR": str(tmp_path), "FACESTYLE_MODEL_URL": "http://m/x/"})
    assert cfg.model_dir == tmp_path
    assert cfg.url_for(MODELS["pixar"]) == f"http://m/x/{PIXAR}"
    default = RegistryConfig.from_env({})
    assert default.model_dir == Path("~/.cache/facestyle/models").expanduser()
    assert default.url_for(MODELS["pixar"]) == MODELS["pixar"].url


def test_unknown_name(config):
    with pytest.raises(ModelNotAvailableError) as err:
        _resolve("picasso", config)
    message = str(err.value)
    assert "'picasso'" in message and "\n" not in message
    assert all(name in message for name in MODELS)


def test_paths(tmp_path, config, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(CheckpointError, match="checkpoint not found: nope/x.pt"):
        _resolve("nope/x.pt", config)
    with pytest.raises(CheckpointError, match="checkpoint not found: x.pth"):
        _resolve("x.pth", config)
    with pytest.raises(CheckpointError, match="model name 'pixar'"):
        _resolve(PIXAR, config)
    with pytest.raises(CheckpointError, match="folder"):
        _resolve(str(tmp_path) + "/", config)
    mine = tmp_path / "mine.pt"
    mine.write_bytes(b"anything")                       # returned as is: loading checks it later
    assert _resolve(str(mine), config) == mine
    assert _resolve("mine.pt", config) == Path("mine.pt")
    assert resolve_model(mine, config) == mine
    (tmp_path / "pixar").write_bytes(b"a file named like a model")
    with pytest.raises(ModelNotAvailableError):        # a bare model name means the model
        _resolve("pixar", config, download=False)
    (tmp_path / "mymodel").write_bytes(b"x")
    assert _resolve("mymodel", config) == Path("mymodel")


def test_format_size():
    assert [format_size(n) for n in (0, 999, 1000, 1234567, 5 * 10**9, 7 * 10**12)] == \
        ["0 B", "999 B", "1.0 kB", "1.2 MB", "5.0 GB", "7000.0 GB"]


def test_list_models_and_table(config, ckpt_bytes):
    statuses = list_models(config)
    assert [s.name for s in statuses] == list(MODELS) and not any(s.cached for s in statuses)
    config.model_dir.mkdir()
    (config.model_dir / PIXAR).write_bytes(ckpt_bytes)               # cached: listing only looks
    by_name = {s.name: s for s in list_models(config)}
    assert by_name["pixar"].cached and by_name["pixar"].size == len(ckpt_bytes)
    assert by_name["pixar"].path == config.model_dir / PIXAR
    assert not by_name["age"].cached and by_name["age"].size is None
    table = format_model_table(list(by_name.values())).splitlines()
    assert len(table) == len(MODELS) + 1 and table[0].split() == ["NAME", "FAMILY", "CACHED", "DESCRIPTION"]
    col = table[0].index("FAMILY")
    assert all(line[col - 2: col] == "  " and line[col] != " " for line in table)
    pixar_line = next(line for line in table if line.startswith("pixar "))
    assert "MB" in pixar_line and "toonify" in pixar_line
    assert next(line for line in table if line.startswith("age ")).split()[2] == "no"
