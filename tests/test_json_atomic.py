"""write_json_atomic, the one JSON writer: standard JSON (NaN and infinities as null, everywhere alike) and
never a partial file."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from scattermotion.io.atomic import write_json_atomic


def test_nan_and_infinities_become_null_and_numpy_values_plain_numbers(tmp_path):
    path = tmp_path / "report.json"
    write_json_atomic(path, {"epe": math.nan, "rows": [np.float32(0.5), np.inf, (1, np.int64(2))]})
    text = path.read_text()
    assert "NaN" not in text and "Infinity" not in text and text.endswith("\n")
    assert json.loads(text) == {"epe": None, "rows": [0.5, None, [1, 2]]}


def test_a_value_json_cannot_hold_leaves_the_old_file_and_no_temporary(tmp_path):
    path = tmp_path / "marker.json"
    write_json_atomic(path, {"maps": 3})
    with pytest.raises(TypeError):
        write_json_atomic(path, {"maps": object()})
    assert json.loads(path.read_text()) == {"maps": 3}
    assert [p.name for p in tmp_path.iterdir()] == ["marker.json"]


def test_a_failed_replace_leaves_nothing_behind(tmp_path, monkeypatch):
    import scattermotion.io.atomic as atomic

    def broken(temp, target):
        raise OSError("disk full")

    monkeypatch.setattr(atomic.os, "replace", broken)
    with pytest.raises(Exception, match="disk full"):
        write_json_atomic(tmp_path / "new.json", {"a": 1})
    assert list(tmp_path.iterdir()) == []


def test_folders_are_made_when_asked_and_default_handles_other_objects(tmp_path):
    path = tmp_path / "deep" / "card.json"
    write_json_atomic(path, {"weights": tmp_path}, indent=2, sort_keys=True, make_parents=True, default=str)
    assert json.loads(path.read_text()) == {"weights": str(tmp_path)}
