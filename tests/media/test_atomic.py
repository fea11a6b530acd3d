"""atomic: outputs appear whole under their final name or not at all; failures are one line."""
from __future__ import annotations

import errno
import os
from pathlib import Path

import pytest

from pipeline.errors import OutputError
from pipeline.media.atomic import atomic_output, check_destination, commit, output_error, reason, reserve_temp


def _names(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


# -- check_destination -----------------------------------------------------------------------

def test_existing_destination_is_refused_unless_overwrite(tmp_path):
    dst = tmp_path / "out.mp4"
    dst.write_bytes(b"precious")
    with pytest.raises(OutputError, match="already exists") as caught:
        check_destination(dst, overwrite=False)
    assert str(dst) in str(caught.value) and "use overwrite" in str(caught.value)
    assert "\n" not in str(caught.value)
    assert check_destination(dst, overwrite=True) == dst
    assert dst.read_bytes() == b"precious"


def test_the_overwrite_option_is_named_as_the_caller_spells_it(tmp_path):
    dst = tmp_path / "t.pt"
    dst.touch()
    with pytest.raises(OutputError, match="use --overwrite to replace it"):
        check_destination(dst, overwrite=False, option="--overwrite")


def test_missing_folder_and_folder_destination_are_refused(tmp_path):
    with pytest.raises(OutputError, match="does not exist"):
        check_destination(tmp_path / "no" / "such" / "out.png", overwrite=True)
    with pytest.raises(OutputError, match="is a folder"):
        check_destination(tmp_path, overwrite=True)
    assert _names(tmp_path) == []


def test_check_destination_accepts_str_and_returns_a_path(tmp_path):
    assert check_destination(str(tmp_path / "new.mkv"), overwrite=False) == tmp_path / "new.mkv"


# -- reserve_temp / commit -------------------------------------------------------------------

def test_temp_file_is_hidden_beside_the_destination_with_the_same_suffix(tmp_path):
    dst = tmp_path / "out.mp4"
    tmp = reserve_temp(dst)
    assert tmp.parent == tmp_path and tmp.exists() and tmp.stat().st_size == 0
    assert tmp.name.startswith(".out.") and tmp.name.endswith(".partial.mp4") and tmp.suffix == ".mp4"
    other = reserve_temp(dst)
    assert other != tmp  # concurrent writers of one destination get their own temp files
    assert not dst.exists()


def test_reserve_temp_in_an_unwritable_folder_is_one_line(tmp_path):
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        if os.access(locked, os.W_OK):
            pytest.skip("running as a user who can write anywhere")
        with pytest.raises(OutputError, match="permission denied") as caught:
            reserve_temp(locked / "out.png")
        assert str(locked / "out.png") in str(caught.value) and "\n" not in str(caught.value)
    finally:
        locked.chmod(0o700)


def test_commit_renames_the_temp_file_into_place(tmp_path):
    dst = tmp_path / "out.txt"
    tmp = reserve_temp(dst)
    tmp.write_text("done")
    commit(tmp, dst, overwrite=False)
    assert dst.read_text() == "done" and _names(tmp_path) == ["out.txt"]


def test_commit_never_replaces_a_file_that_appeared_meanwhile(tmp_path):
    dst = tmp_path / "out.txt"
    tmp = reserve_temp(dst)
    tmp.write_text("new")
    dst.write_text("appeared")
    with pytest.raises(OutputError, match="already exists"):
        commit(tmp, dst, overwrite=False)
    assert dst.read_text() == "appeared" and tmp.exists()  # the caller deletes the temp file
    commit(tmp, dst, overwrite=True)
    assert dst.read_text() == "new" and _names(tmp_path) == ["out.txt"]


# -- atomic_output ---------------------------------------------------------------------------

def test_atomic_output_commits_on_success(tmp_path):
    dst = tmp_path / "a.bin"
    with atomic_output(dst) as tmp:
        assert tmp != dst and not dst.exists()
        tmp.write_bytes(b"payload")
    assert dst.read_bytes() == b"payload" and _names(tmp_path) == ["a.bin"]


@pytest.mark.parametrize("error", [RuntimeError("boom"), KeyboardInterrupt()])
def test_a_failure_inside_leaves_no_temp_file_and_the_old_file_untouched(tmp_path, error):
    dst = tmp_path / "a.bin"
    dst.write_bytes(b"old")
    with pytest.raises(type(error)):
        with atomic_output(dst, overwrite=True) as tmp:
            tmp.write_bytes(b"half")
            raise error
    assert dst.read_bytes() == b"old" and _names(tmp_path) == ["a.bin"]


def test_atomic_output_refuses_before_creating_anything(tmp_path):
    dst = tmp_path / "a.bin"
    dst.write_bytes(b"old")
    with pytest.raises(OutputError, match="already exists"):
        with atomic_output(dst):
            pytest.fail("the block must not run")
    assert _names(tmp_path) == ["a.bin"]


# -- errors ----------------------------------------------------------------------------------

@pytest.mark.parametrize(("code", "words"), [
    (errno.ENOSPC, "disk full"), (errno.EDQUOT, "disk quota exceeded"),
    (errno.EFBIG, "file too large"), (errno.EACCES, "permission denied"),
    (errno.EROFS, "read-only file system"),
])
def test_disk_errors_become_one_line_output_errors(tmp_path, code, words):
    dst = tmp_path / "out.mp4"
    err = output_error(OSError(code, os.strerror(code)), dst)
    assert isinstance(err, OutputError)
    assert str(err).startswith(f"{dst}: cannot write ({words}") and "\n" not in str(err)


def test_other_errors_are_not_mapped(tmp_path):
    dst = tmp_path / "out.mp4"
    assert output_error(OSError(errno.ENOENT, "No such file"), dst) is None
    assert output_error(ValueError("bug"), dst) is None
    mine = OutputError("already one line")
    assert output_error(mine, dst) is mine


def test_reason_is_one_short_line():
    assert reason(OSError(errno.ENOSPC, "No space left on device")) == "disk full"
    assert reason(OSError(errno.ENOENT, "No such file or directory")) == "No such file or directory"
    assert reason(RuntimeError("file write failed\n  at some C++ frame")) == "file write failed"
    assert reason(RuntimeError()) == "RuntimeError"
