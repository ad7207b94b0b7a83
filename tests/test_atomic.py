import json

import pytest

from ecgproto.atomic import write_atomic, write_json_atomic, write_text_atomic


def test_writes_replace_the_target_and_leave_no_temp_file(tmp_path):
    target = tmp_path / "sub" / "a.json"
    write_json_atomic(target, {"x": 1})
    write_text_atomic(tmp_path / "b.txt", "hello")
    assert json.loads(target.read_text()) == {"x": 1} and (tmp_path / "b.txt").read_text() == "hello"
    assert sorted(p.name for p in tmp_path.rglob("*")) == ["a.json", "b.txt", "sub"]


def test_a_failed_write_keeps_the_old_file_and_removes_the_temp_file(tmp_path):
    target = tmp_path / "a.txt"
    target.write_text("old")

    def broken(tmp):
        tmp.write_text("half")
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError):
        write_atomic(target, broken)
    assert target.read_text() == "old" and [p.name for p in tmp_path.iterdir()] == ["a.txt"]
