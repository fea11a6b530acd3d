"""The facestyle command as a user runs it: exit codes, one-line errors, files left or not left."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def run(*args, cwd=None):
    return subprocess.run([sys.executable, str(REPO / "cli.py"), *map(str, args)], capture_output=True,
                          text=True, cwd=cwd, timeout=300)


def _one_line_error(proc, code):
    assert proc.returncode == code, proc.stderr
    assert "Traceback" not in proc.stderr
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("facestyle: error:"), proc.stderr
    return lines[0]


@pytest.fixture(scope="module")
def tiny_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("cli") / "tiny.pt"
    proc = run("checkpoint", "random", "--preset", "tiny", "--seed", "2", "-o", path)
    assert proc.returncode == 0, proc.stderr
    assert "stylizes nothing" in proc.stdout
    return path


def test_random_then_info(tiny_file):
    proc = run("checkpoint", "info", tiny_file, "--verify", "--json")
    assert proc.returncode == 0, proc.stderr
    info = json.loads(proc.stdout)
    assert info["random_weights"] and info["random_preset"] == "tiny" and info["loads_strictly"]
    assert info["fusion_blocks"] == 7


def test_existing_output_is_kept(tiny_file):
    before = tiny_file.read_bytes()
    line = _one_line_error(run("checkpoint", "random", "--preset", "tiny", "-o", tiny_file), 6)
    assert "--overwrite" in line
    assert tiny_file.read_bytes() == before


def test_unwritable_output_leaves_nothing(tmp_path):
    target = tmp_path / "missing-folder" / "x.pt"
    _one_line_error(run("checkpoint", "random", "--preset", "tiny", "-o", target), 6)
    assert not target.parent.exists()


def test_bad_checkpoints_exit_3(tmp_path, tiny_file):
    text = tmp_path / "readme.pt"
    text.write_text("hello")
    assert "not a PyTorch checkpoint" in _one_line_error(run("checkpoint", "info", text), 3)
    trunc = tmp_path / "trunc.pt"
    trunc.write_bytes(tiny_file.read_bytes()[:100_000])
    assert "truncated" in _one_line_error(run("checkpoint", "info", trunc), 3)
    assert "not found" in _one_line_error(run("checkpoint", "info", tmp_path / "nope.pt"), 3)


def test_help_and_usage():
    proc = run("checkpoint", "random", "--help")
    assert proc.returncode == 0 and "stylizes nothing" in proc.stdout.replace("\n", " ")
    assert run().returncode == 2
    assert run("checkpoint", "random").returncode == 2          # argparse: missing required options


def test_watch_and_serve_defaults_are_their_configurations():
    import cli
    from pipeline.daemon.watch import WatchConfig
    from pipeline.option_fields import from_namespace
    from pipeline.service.config import ServeConfig

    args = cli.build_parser().parse_args(["watch", "in", "-o", "out", "--model", "m"])
    assert from_namespace(WatchConfig, args, inbox=Path("in"), outbox=Path("out"), tag="m") == \
        WatchConfig(Path("in"), Path("out"), "m")
    args = cli.build_parser().parse_args(["watch", "in", "-o", "out", "--settle", "1", "--on-stop", "requeue",
                                          "--keep-inputs", "--state", "/s"])
    cfg = from_namespace(WatchConfig, args, inbox=Path("in"), outbox=Path("out"), tag="m")
    assert (cfg.settle, cfg.on_stop, cfg.keep_inputs, cfg.state) == (1.0, "requeue", True, Path("/s"))
    assert from_namespace(ServeConfig, cli.build_parser().parse_args(["serve"])) == ServeConfig()


def test_the_config_file_gives_defaults_to_submit_and_watch(tmp_path):
    import cli

    cfg = tmp_path / "c.toml"
    cfg.write_text('[convert]\nmodel = "pixar"\ncrf = 20\nstyle-code = "per-frame"\nquiet = true\n')
    parser = cli.build_parser()
    for argv in (["submit", "x.mp4", "--config", str(cfg), "--crf", "30"],
                 ["watch", "in", "-o", "out", "--config", str(cfg), "--crf", "30"]):
        args = cli._with_config_defaults(parser, parser.parse_args(argv), argv)
        assert (args.model, args.crf, args.style_code) == ("pixar", 30, "per-frame"), argv   # command line wins
    cfg.write_text('[convert]\ncrf = "high"\n')
    line = _one_line_error(run("convert", "x.mp4", "--config", cfg), 2)
    assert "config file" in line and "invalid int value: 'high'" in line
