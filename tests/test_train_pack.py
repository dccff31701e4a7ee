"""The training pack (core.data.train_pack, tools.make_train_pack): re-encoded clips that read without PyAV."""
import json
import os

import cv2
import numpy as np
import pytest

from core.data.train_pack import make_pack, pack_name, read_pack_manifest
from core.video import open_reader
from tools import make_train_pack


def write_frames(folder, count, offset=0):
    """A folder of PNG frames: a gradient with a square moving 2 px a frame."""
    os.makedirs(folder)
    yy, xx = np.mgrid[0:48, 0:64]
    for i in range(count):
        frame = np.stack([xx * 3, yy * 4, np.full_like(xx, 90 + offset)], -1).astype(np.uint8)
        frame[10:30, 5 + 2 * i:25 + 2 * i] = 230
        cv2.imwrite(os.path.join(folder, f"frame{i}.png"), frame[:, :, ::-1])


def test_pack_re_encodes_every_clip_and_skips_unchanged_sources(tmp_path, capsys):
    write_frames(tmp_path / "videos" / "a", 6)
    write_frames(tmp_path / "videos" / "b clip", 9, offset=40)
    out = tmp_path / "pack"
    assert make_train_pack.main(["--videos", str(tmp_path / "videos"), "--out", str(out)]) == 0
    assert "2 clips, 15 frames" in capsys.readouterr().out
    manifest = read_pack_manifest(out)
    assert sorted(manifest) == ["a.mp4", "b_clip.mp4"] == sorted(n for n in os.listdir(out) if n.endswith(".mp4"))
    assert [manifest[n]["frames"] for n in ("a.mp4", "b_clip.mp4")] == [6, 9]
    for name, count in (("a", 6), ("b clip", 9)):
        with open_reader(str(out / pack_name(name))) as reader:
            frames = list(reader)
        with open_reader(str(tmp_path / "videos" / name)) as reader:
            originals = list(reader)
        assert len(frames) == count and frames[0].shape == (48, 64, 3)
        assert np.mean([np.abs(f.astype(int) - o).mean() for f, o in zip(frames, originals)]) < 4
    # unchanged sources are not encoded again; a changed one is
    stamp = os.path.getmtime(out / "a.mp4")
    write_frames(tmp_path / "videos2" / "a", 7)
    entries = make_pack([str(tmp_path / "videos" / "a")], str(out), progress=False)
    assert entries[0]["frames"] == 6 and os.path.getmtime(out / "a.mp4") == stamp
    entries = make_pack([str(tmp_path / "videos2" / "a")], str(out), progress=False)
    assert entries[0]["frames"] == 7
    assert json.load(open(out / "pack.json"))["clips"]["a.mp4"]["frames"] == 7


def test_pack_refuses_clashing_names_and_a_budget_overrun(tmp_path, capsys):
    write_frames(tmp_path / "x" / "clip", 3)
    write_frames(tmp_path / "y" / "clip", 3)
    with pytest.raises(ValueError, match="clip.mp4"):
        make_pack([str(tmp_path / "x" / "clip"), str(tmp_path / "y" / "clip")], str(tmp_path / "pack"))
    code = make_train_pack.main(["--videos", str(tmp_path / "x"), "--out", str(tmp_path / "p2"), "--max_mb", "0.001"])
    assert code == 2 and "over --max_mb" in capsys.readouterr().err
