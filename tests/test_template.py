"""Official template folders: PyAV round trip, fixed-fps resampling and time_crop (mimo_official.md §1.4, trap 14)."""

import json

import numpy as np
import pytest

from mimo_pack.devtools.demo_assets import template_frames, write_demo_template
from mimo_pack.models.composite import template as tp

H, W = 48, 64


def numbered(n: int) -> np.ndarray:
    """Flat frames whose grey level tells the frame index (H.264 keeps flat areas within +-2)."""
    return np.stack([np.full((H, W, 3), 10 + 8 * i, np.uint8) for i in range(n)])


def index_of(frames: np.ndarray) -> list[int]:
    return [int(round((f.mean() - 10) / 8)) for f in frames]


def write_numbered(folder, n=30, fps=30, config=None, occ=True):
    frames = numbered(n)
    tp.write_template(folder, frames, frames, frames, fps, occlusion=frames[..., 0] if occ else None)
    if config is not None:
        (folder / "config.json").write_text(json.dumps(config))
    return folder


def test_round_trip(tmp_path):
    layers = template_frames(frames=8, width=96, height=64)
    folder = tp.write_template(tmp_path / "t", layers["video"], layers["motion"], layers["scene"], 30,
                               occlusion=layers["occlusion"], mask=layers["mask"])
    assert sorted(p.name for p in folder.iterdir()) == ["bk.mp4", "config.json", "mask.mp4", "occ.mp4", "sdc.mp4",
                                                        "vid.mp4"]
    config = json.loads((folder / "config.json").read_text())
    assert config == {"fps": 30, "time_crop": {"start_idx": 0, "end_idx": 8}, "frame_crop": None,
                      "layer_recover": None}
    t = tp.load_template(folder)
    assert t.frames == 8 and t.fps == 30.0
    assert t.video.shape == (8, 64, 96, 3) and t.occlusion.shape == (8, 64, 96) and t.mask.shape == (8, 64, 96)
    for key in ("video", "motion", "scene"):  # lossy H.264 4:2:0: small mean error
        assert np.abs(getattr(t, key).astype(int) - layers[key]).mean() < 4, key
    assert np.abs(t.occlusion.astype(int) - layers["occlusion"]).max() <= 3
    assert np.abs(t.mask.astype(int) - layers["mask"]).mean() < 1
    assert tp.video_info(folder / "sdc.mp4")[:3] == (30.0, 8, 96)


def test_demo_template_is_found(tmp_path):
    write_demo_template(tmp_path / "mimo_templates" / "demo")
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "config.json").write_text("{}")  # no videos: not a template
    assert tp.find_templates(tmp_path) == ["mimo_templates/demo"]
    assert tp.load_template(tmp_path / "mimo_templates" / "demo").frames == 10


def test_fixed_fps_resampling(tmp_path):
    folder = write_numbered(tmp_path / "t", n=12)
    # 30 -> 15 fps: arange(0, 12, 2) = 0, 2, ..., 10
    assert index_of(tp.load_template(folder, target_fps=15, use_time_crop=False).motion) == [0, 2, 4, 6, 8, 10]
    # 30 -> 60 fps: arange(0, 12, 0.5).astype(int) repeats every frame
    t = tp.load_template(folder, target_fps=60, use_time_crop=False)
    assert index_of(t.motion) == [i // 2 for i in range(24)]
    # 30 -> 20 fps: arange(0, 12, 1.5) = 0, 1.5, 3, 4.5, ... -> floor 0, 1, 3, 4, 6, 7, 9, 10
    assert index_of(tp.load_template(folder, target_fps=20, use_time_crop=False).video) == [0, 1, 3, 4, 6, 7, 9, 10]
    assert tp.source_indices(12, 29.97, 20).tolist() == [0, 1, 3, 4, 6, 7, 9, 10]  # round(29.97) = 30
    # streaming: only the frames asked for are kept; decoding stops after the last one needed
    frames, length = tp.load_video_fixed_fps(folder / "sdc.mp4", 15, start=1, stop=3)
    assert index_of(frames) == [2, 4] and length is None
    frames, length = tp.load_video_fixed_fps(folder / "sdc.mp4", 15, start=4)
    assert index_of(frames) == [8, 10] and length == 6


def test_time_crop_is_in_30_fps_units(tmp_path):
    # fps 15, time_crop 4..16 at 30 fps -> int(15*4/30) = 2 .. int(15*16/30) = 8 of arange(0, 20, 2)
    folder = write_numbered(tmp_path / "t", n=20, config={"fps": 15, "time_crop": {"start_idx": 4, "end_idx": 16}})
    t = tp.load_template(folder)
    assert t.fps == 15.0 and index_of(t.motion) == [4, 6, 8, 10, 12, 14]
    assert index_of(t.scene) == index_of(t.video) == [4, 6, 8, 10, 12, 14]
    assert [int(round((o.mean() - 10) / 8)) for o in t.occlusion] == [4, 6, 8, 10, 12, 14]  # occ sliced too
    assert index_of(tp.load_template(folder, max_frames=4).motion) == [4, 6, 8, 10]
    # end past the clip is clamped to its length
    folder = write_numbered(tmp_path / "u", n=6, config={"fps": 30, "time_crop": {"start_idx": 2, "end_idx": 999}})
    assert index_of(tp.load_template(folder).motion) == [2, 3, 4, 5]
    folder = write_numbered(tmp_path / "v", n=6, config={"fps": 30, "time_crop": {"start_idx": 7, "end_idx": 9}})
    with pytest.raises(ValueError, match="leaves no frames"):
        tp.load_template(folder)


def test_max_frames_default_is_150(tmp_path):
    frames = np.zeros((155, 16, 16, 3), np.uint8)
    folder = tp.write_template(tmp_path / "t", frames, frames, frames[:1], 30)  # a still scene is repeated
    assert tp.load_template(folder).frames == 150
    assert tp.load_template(folder, max_frames=0).frames == 155


def test_missing_files_are_named(tmp_path):
    folder = write_numbered(tmp_path / "t", n=3, occ=False)
    assert tp.load_template(folder).occlusion is None  # occ.mp4 is optional
    (folder / "bk.mp4").unlink()
    with pytest.raises(FileNotFoundError, match=r"'.*t' has no 'bk.mp4' \(it holds: config.json, sdc.mp4, vid.mp4\)"):
        tp.load_template(folder)
    (folder / "config.json").unlink()
    with pytest.raises(FileNotFoundError, match="no 'config.json'"):
        tp.load_template(folder)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        tp.load_template(tmp_path / "nowhere")
    folder = write_numbered(tmp_path / "u", n=3, config={"time_crop": {"start_idx": 0, "end_idx": 3}})
    with pytest.raises(ValueError, match="has no 'fps'"):
        tp.load_template(folder)


def test_write_checks(tmp_path):
    frames = np.zeros((3, 15, 16, 3), np.uint8)
    with pytest.raises(ValueError, match="even width and height; the frames are 16x15"):
        tp.write_template(tmp_path / "odd", frames, frames, frames, 30)
    frames = np.zeros((3, 16, 16, 3), np.uint8)
    with pytest.raises(ValueError, match="vid.mp4: 2 frames, but the motion has 3"):
        tp.write_template(tmp_path / "short", frames[:2], frames, frames, 30)
    assert tp.crop_end_index(10, 24) == 13  # int(24 * 13 / 30) = 10
    assert tp.crop_end_index(7, 30) == 7


def write_empty_mp4(path):
    import av

    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=30)
        stream.width, stream.height, stream.pix_fmt = 16, 16, "yuv420p"
        container.start_encoding()  # a header, no frames


def test_empty_and_non_video_files_are_named(tmp_path, monkeypatch):
    folder = tmp_path / "t"
    write_numbered(folder, n=6)
    write_empty_mp4(folder / "sdc.mp4")
    with pytest.raises(tp.TemplateError, match=r"sdc\.mp4' has no frames.*Re-export the template"):
        tp.load_template(folder)
    write_numbered(folder, n=6)
    with monkeypatch.context() as m:  # a video stream that decodes to nothing
        m.setattr(tp, "_decode", lambda *a, **k: ({}, 0, True))
        with pytest.raises(tp.TemplateError, match=r"sdc\.mp4' has no frames: a template's motion renders"):
            tp.load_template(folder)
    write_numbered(folder, n=6)
    (folder / "bk.mp4").write_bytes(b"this is not a video, just text\n" * 10)
    with pytest.raises(tp.TemplateError, match=r"bk\.mp4' is not a readable video \(Invalid data found") as e:
        tp.load_template(folder)
    assert "Errno" not in str(e.value) and "re-encode" in str(e.value)
    write_numbered(folder, n=6)
    write_empty_mp4(folder / "bk.mp4")
    with pytest.raises(tp.TemplateError, match=r"bk\.mp4' has no frames"):
        tp.load_template(folder)


def test_reading_reports_progress_and_can_be_cancelled(tmp_path):
    folder = tmp_path / "t"
    write_numbered(folder, n=30)
    calls = []
    tp.load_template(folder, progress=lambda done, total: calls.append((done, total)))
    assert len(calls) >= 3 * (30 // tp.PROGRESS_EVERY) - 3  # every few frames of each video

    class Cancelled(Exception):
        pass

    def cancel(done, total):
        raise Cancelled

    with pytest.raises(Cancelled):
        tp.load_template(folder, progress=cancel)
