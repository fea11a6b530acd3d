"""The inbox: which names are candidates, free output names, the settle rule, the event and polling
sources, stale partial files."""
from __future__ import annotations

import os

import pytest

from pipeline.daemon.inbox import InboxWatcher, Settler, free_name, is_candidate, remove_stale_partials
from tests.daemon.helpers import Clock, wait_for


@pytest.mark.parametrize("name,ok", [
    ("clip.mp4", True), ("photo.JPG", True), ("notes.txt", True), ("noext", True),
    (".hidden.mp4", False), ("clip.mp4.part", False), ("clip.mp4.crdownload", False), ("clip.tmp", False),
    ("~lock.mp4", False), ("clip.mp4~", False), (".clip.123-abcdef12.partial.mp4", False), ("Thumbs.db", False),
    ("x.partial.mp4", False), ("x.mp4.error.json", False),
])
def test_candidate_names(name, ok):
    assert is_candidate(name) is ok


def test_free_name(tmp_path):
    assert free_name(tmp_path / "a.mp4") == tmp_path / "a.mp4"
    (tmp_path / "a.mp4").touch()
    assert free_name(tmp_path / "a.mp4") == tmp_path / "a-2.mp4"
    assert free_name(tmp_path / "a.mp4", {tmp_path / "a-2.mp4"}) == tmp_path / "a-3.mp4"


def test_settle_rule(tmp_path):
    clock = Clock()
    s = Settler(settle=2.0, closed_settle=0.5, clock=clock)
    f = tmp_path / "a.mp4"
    f.write_bytes(b"x")
    s.seen(f)
    clock.t = 1.9
    assert s.complete() == []
    with open(f, "ab") as fh:                      # still growing: the timer starts again
        fh.write(b"more")
    clock.t = 3.0
    assert s.complete() == []
    clock.t = 4.9
    assert s.complete() == []
    clock.t = 5.0
    assert [p for p, _ in s.complete()] == [f]
    s.seen(f)                                      # the same version is not handed out twice
    clock.t = 10.0
    assert s.complete() == []
    g = tmp_path / "b.mp4"                        # closed after writing: shorter settle
    g.write_bytes(b"y")
    s.seen(g, closed=True)
    clock.t = 10.5
    assert [p for p, _ in s.complete()] == [g]
    h = tmp_path / "c.mp4"
    h.write_bytes(b"z")
    s.seen(h)
    h.unlink()                                     # gone before it settled
    clock.t = 20.0
    assert s.complete() == [] and len(s) == 0


@pytest.mark.parametrize("poll", [None, 0.05], ids=["events", "polling"])
def test_watcher_sees_existing_new_and_renamed_files(tmp_path, poll):
    (tmp_path / "there.mp4").write_bytes(b"1")
    (tmp_path / ".hidden.mp4").write_bytes(b"1")
    (tmp_path / "sub").mkdir()
    w = InboxWatcher(tmp_path, poll=poll)
    w.start()
    seen: set[str] = set()
    try:
        first = w.changes()
        assert first.listing == {tmp_path / "there.mp4"}
        seen |= {p.name for p, _ in first.named}
        (tmp_path / "new.mp4").write_bytes(b"2")
        (tmp_path / "x.mp4.part").write_bytes(b"3")
        os.rename(tmp_path / "x.mp4.part", tmp_path / "renamed.mp4")
        (tmp_path / "sub" / "deep.mp4").write_bytes(b"4")

        def saw_all():
            seen.update(p.name for p, _ in w.changes().named)
            return {"new.mp4", "renamed.mp4"} <= seen
        wait_for(saw_all, 10, "events")
    finally:
        w.close()
    assert seen == {"there.mp4", "new.mp4", "renamed.mp4"}
    assert w.mode == ("file-system events" if poll is None else "polling every 0.05 s")


def test_stale_partials_of_live_writers_are_kept(tmp_path):
    mine = tmp_path / f".a.{os.getpid()}-0123abcd.partial.mp4"
    live = tmp_path / ".b.1-0123abcd.partial.mp4"                    # pid 1 is alive
    other = tmp_path / ".notes.txt"
    for p in (mine, live, other):
        p.touch()
    assert remove_stale_partials(tmp_path) == [mine]
    assert live.exists() and other.exists()
