"""SAM 2 human tracking (models/decompose/track.py and the sam2_build, sam2_video, prompts and
person_finder modules it uses) on tiny random weights: the plumbing, exactly.

Random weights cannot segment anything, so these tests check what does not depend on them: the
checkpoint layouts and size/version detection, that each prompt reaches SAM 2 as given (a mask prompt
comes back unchanged on its frame, since SAM 2 outputs a conditioning mask as is), shapes and dtypes,
both directions, the CPU memory-dtype fix, the in-memory frames, and the automatic person prompt
(which is exact on a synthetic static-camera clip).
"""

import numpy as np
import pytest
import torch

pytest.importorskip("sam2")

from mimo_pack.models.decompose import (person_finder, prompts, sam2_build, sam2_video, tiny_models,  # noqa: E402
                                        track)
from mimo_pack.devtools.synthetic_clip import person_clip  # noqa: E402
from mimo_pack.models.weights import CheckpointError  # noqa: E402

H, W, N = 64, 96, 6


def iou(a: torch.Tensor, b: torch.Tensor) -> float:
    a, b = a > 0.5, b > 0.5
    return float((a & b).sum()) / max(1, int((a | b).sum()))


@pytest.fixture(scope="module")
def sam2_files(tmp_path_factory):
    return tiny_models.write_tiny_sam2(tmp_path_factory.mktemp("sam2"))


@pytest.fixture(scope="module")
def video():
    return person_clip(N, H, W)


# ----------------------------------------------------------------------------- checkpoints

@pytest.mark.parametrize("version", ["2.0", "2.1"])
def test_every_size_builds_and_is_detected_from_its_weights(version):
    for size in ("t", "s", "b+", "l"):
        model = sam2_build.build_sam2(sam2_build.sam2_config_name(size, version), image_size=256, random_init=False)
        sd = model.state_dict()
        name = f"{tiny_models.sam2_file_stem(size, version)}.pt"
        assert sam2_build.detect_sam2(sd, name) == (size, version)
        assert sam2_build.detect_sam2(sd, "renamed.safetensors") == (size, version)  # from the shapes alone
        assert model.image_size == 256


def test_official_and_comfy_layouts_load_the_same_weights(sam2_files):
    sd = tiny_models.tiny_sam2_state_dict()
    pt, stored = sam2_build.read_sam2_checkpoint(sam2_files["pt"])
    st, stored_st = sam2_build.read_sam2_checkpoint(sam2_files["safetensors"])
    assert stored == stored_st == tiny_models.TINY_SAM2_SIZE
    assert pt.keys() == st.keys() == sd.keys()
    assert all(torch.equal(pt[k], sd[k]) for k in sd)
    assert all(st[k].dtype == torch.float16 for k in sd if sd[k].is_floating_point())  # ComfyUI's fp16 files
    model = sam2_build.load_sam2(sam2_files["safetensors"], device="cpu")
    assert model.image_size == 256 and next(model.parameters()).dtype == torch.float32
    assert torch.equal(model.state_dict()["no_obj_embed_spatial"], sd["no_obj_embed_spatial"].half().float())
    assert sam2_build.load_sam2(sam2_files["pt"], device="cpu", image_size=128).image_size == 128


def test_other_files_are_rejected_with_a_reason(tmp_path, sam2_files):
    sam1 = {"image_encoder.patch_embed.proj.weight": torch.zeros(8, 3, 16, 16)}
    torch.save({"model": sam1}, tmp_path / "sam_vit_h.pth")
    with pytest.raises(CheckpointError, match="SAM \\(v1\\)"):
        sam2_build.load_sam2(tmp_path / "sam_vit_h.pth", device="cpu")
    torch.save({"vision_encoder.backbone.patch_embed.projection.weight": torch.zeros(2)}, tmp_path / "sam2_hf.pt")
    with pytest.raises(CheckpointError, match="transformers layout"):
        sam2_build.load_sam2(tmp_path / "sam2_hf.pt", device="cpu")
    torch.save({"weight": torch.zeros(2)}, tmp_path / "other.pt")
    with pytest.raises(CheckpointError, match="not a SAM 2 checkpoint"):
        sam2_build.load_sam2(tmp_path / "other.pt", device="cpu")
    sd, _ = sam2_build.read_sam2_checkpoint(sam2_files["pt"])
    with pytest.raises(CheckpointError, match="does not fit"):  # a forced config that does not match
        sam2_build.load_sam2(sam2_files["pt"], device="cpu", config="configs/sam2.1/sam2.1_hiera_s.yaml")
    with pytest.raises(FileNotFoundError, match="Known configs"):
        sam2_build.load_sam2(sam2_files["pt"], device="cpu", config="no_such_config")
    assert len(sd) > 400


# ----------------------------------------------------------------------------- frames and prompts

def test_in_memory_frames_match_sam2s_own_loader(tmp_path):
    from PIL import Image
    from sam2.utils.misc import _load_img_as_tensor

    frames = (torch.rand(5, 37, 53, 3) * 255).round() / 255
    source = sam2_video.SamFrames(frames, 64, chunk=2)
    mean, std = torch.tensor(sam2_video.IMAGE_MEAN).view(3, 1, 1), torch.tensor(sam2_video.IMAGE_STD).view(3, 1, 1)
    for i in (4, 0, 3, 1, 2):  # any order, across chunks
        Image.fromarray((frames[i].numpy() * 255).round().astype(np.uint8)).save(tmp_path / f"{i}.png")
        ref, h, w = _load_img_as_tensor(tmp_path / f"{i}.png", 64)
        assert (h, w) == (37, 53)
        assert torch.allclose(source[i], (ref.float() - mean) / std, atol=1e-5)
    assert len(source) == 5


def test_mask_prompt_comes_back_on_its_frame(sam2_files, video):
    frames, truth = video
    out = track.track_human(frames, sam2_files["pt"], mask=truth[0], device="cpu")
    assert out.shape == (N, H, W) and out.dtype == torch.float32 and out.device.type == "cpu"
    assert set(out.unique().tolist()) <= {0.0, 1.0}
    assert iou(out[0], truth[0]) > 0.95  # SAM 2 returns a conditioning mask as given


def test_backward_tracking_prompts_the_last_frame(sam2_files, video):
    frames, truth = video
    out = track.track_human(frames, sam2_files["safetensors"], mask=truth, reverse=True, device="cpu", chunk=4)
    assert out.shape == (N, H, W)
    assert iou(out[-1], truth[-1]) > 0.95  # a mask batch: its prompt frame (the last) is used


def test_points_and_box_reach_sam2_in_pixels(sam2_files, video, monkeypatch):
    from sam2.sam2_video_predictor import SAM2VideoPredictor

    calls = []
    original = SAM2VideoPredictor.add_new_points_or_box

    def spy(self, state, frame_idx, obj_id, points=None, labels=None, box=None, **kw):
        size = (state["video_height"], state["video_width"])
        calls.append(dict(frame=frame_idx, points=points, labels=labels, box=box, size=size))
        return original(self, state, frame_idx, obj_id, points=points, labels=labels, box=box, **kw)

    monkeypatch.setattr(SAM2VideoPredictor, "add_new_points_or_box", spy)
    frames, truth = video
    out = track.track_human(frames, sam2_files["pt"], points=[(20.0, 30.0), (80, 10)], labels=[1, 0],
                            box=(5, 4, 40, 60), device="cpu")
    assert out.shape == (N, H, W)
    call = calls[-1]
    assert call["frame"] == 0 and call["size"] == (H, W)
    np.testing.assert_array_equal(call["points"], [[20, 30], [80, 10]])
    np.testing.assert_array_equal(call["labels"], [1, 0])
    np.testing.assert_array_equal(call["box"], [5, 4, 40, 60])

    # official MIMO: the first mask becomes 10 positive points (row-major, evenly spaced)
    track.track_human(frames, sam2_files["pt"], mask=truth[0], mask_prompt="points", device="cpu")
    yx = np.argwhere(truth[0].numpy() > 0.5)
    want = [(x, y) for y, x in yx[np.linspace(0, len(yx) - 1, 10).astype(int)]]
    np.testing.assert_array_equal(calls[-1]["points"], np.asarray(want, np.float32))
    np.testing.assert_array_equal(calls[-1]["labels"], [1] * 10)
    assert calls[-1]["box"] is None


def test_bad_prompts_say_what_to_fix(sam2_files, video):
    frames, truth = video
    cases = [
        (dict(points=[(200, 10)]), "outside the 96x64 video"),
        (dict(points=[(10, 10)], labels=[1, 0]), "1 points but 2 labels"),
        (dict(labels=[1]), "labels were given without points"),
        (dict(points=[(10, 10)], labels=[2]), "1 \\(on the person\\) or 0"),
        (dict(box=(40, 10, 20, 30)), "x1 > x0"),
        (dict(mask=torch.zeros(H, W)), "mask is empty"),
        (dict(mask=truth[0], points=[(10, 10)]), "either a mask or points"),
        (dict(mask=truth[0], mask_prompt="outline"), "mask_prompt"),
    ]
    for kwargs, message in cases:
        with pytest.raises(ValueError, match=message):
            track.track_human(frames, sam2_files["pt"], device="cpu", **kwargs)
    with pytest.raises(ValueError, match="\\[frames, height, width, 3\\]"):
        track.track_human(frames[0], sam2_files["pt"], device="cpu")


def test_prompt_text_parsing():
    assert prompts.parse_points("10,20; 30.5, 40\n(1 2)") == [(10, 20), (30.5, 40), (1, 2)]
    assert prompts.parse_points("  ") == [] and prompts.parse_points(None) == []
    assert prompts.parse_box("1,2,30,40") == (1, 2, 30, 40) and prompts.parse_box("") is None
    with pytest.raises(ValueError, match="x,y; x,y"):
        prompts.parse_points("10,20,30")
    with pytest.raises(ValueError, match="x0,y0,x1,y1"):
        prompts.parse_box("1,2,3")


# ----------------------------------------------------------------------------- automatic prompt

def test_the_moving_person_is_found_exactly_on_a_static_camera(video):
    frames, truth = video
    for t in (0, N - 1):
        found = person_finder.find_moving_person(frames, t)
        assert found is not None and iou(found, truth[t]) > 0.97
    assert person_finder.find_moving_person(frames[:1].expand(N, -1, -1, -1)) is None  # nothing moves
    panning = torch.stack([torch.roll(frames[0], 7 * t, dims=1) for t in range(N)])
    assert person_finder.find_moving_person(panning) is None  # the whole frame changes: no motion cue


def test_track_human_without_a_prompt_uses_the_moving_person(sam2_files, video):
    frames, truth = video
    out = track.track_human(frames, sam2_files["pt"], device="cpu")
    assert iou(out[0], truth[0]) > 0.95


def test_person_score_prefers_an_upright_central_shape():
    h, w = 120, 160
    person = np.zeros((h, w), bool)
    person[20:110, 70:100] = True
    person[20:60, 60:110] ^= True  # arms/shoulders: not a solid box
    wall = np.zeros((h, w), bool)
    wall[:, :] = True
    wall[:10] = False
    wide = np.zeros((h, w), bool)
    wide[80:110, 10:150] = True  # a sofa
    speck = np.zeros((h, w), bool)
    speck[5:8, 5:8] = True
    side = np.roll(person, -60, axis=1)
    masks = dict(person=person, wall=wall, wide=wide, speck=speck, side=side)
    scores = {k: person_finder.person_score(m) for k, m in masks.items()}
    assert scores["wall"] == 0 and scores["speck"] == 0
    assert scores["person"] > scores["side"] > scores["wide"]


def test_sam_fallback_picks_the_person_like_mask_or_says_how_to_prompt(sam2_files, monkeypatch):
    from sam2.automatic_mask_generator import SAM2AutomaticMaskGenerator

    frame = torch.rand(H, W, 3)
    model = sam2_build.load_sam2(sam2_files["pt"], device="cpu")
    # the real generator runs on the tiny model (random weights: no mask passes SAM's quality filters)
    assert person_finder.find_person_with_sam(model, frame, points_per_side=2) is None
    tall, flat = np.zeros((H, W), bool), np.zeros((H, W), bool)
    tall[10:60, 40:58] = True
    flat[50:62, 5:90] = True
    fake = [dict(segmentation=flat, predicted_iou=0.99, stability_score=0.99),
            dict(segmentation=tall, predicted_iou=0.9, stability_score=0.9)]
    monkeypatch.setattr(SAM2AutomaticMaskGenerator, "generate", lambda self, image: fake)
    assert torch.equal(person_finder.find_person_with_sam(model, frame), torch.from_numpy(tall))

    still = frame[None].expand(4, -1, -1, -1)
    monkeypatch.setattr(SAM2AutomaticMaskGenerator, "generate", lambda self, image: [])
    with pytest.raises(ValueError, match="Connect a first-frame MASK"):
        track.track_human(still, sam2_files["pt"], device="cpu")


# ----------------------------------------------------------------------------- several objects, both ways

def test_track_objects_from_keyframes_both_ways(sam2_files, video):
    frames, truth = video
    progress = []
    out = track.track_objects(frames, sam2_files["pt"], {3: torch.stack([truth[3], torch.zeros(H, W)]), 0: truth[0]},
                              True, device="cpu", progress=lambda done, total: progress.append((done, total)))
    assert out.shape == (N, H, W) and set(out.unique().tolist()) <= {0.0, 1.0}
    for k in (0, 3):  # each keyframe's object is in the OR-ed result on its keyframe
        assert float((out[k] * truth[k]).sum() / truth[k].sum()) > 0.95
    total = N + (N - 3) + 4  # frame 0 forward; frame 3 forward and backward
    assert progress[-1] == (total, total) and len(progress) == total
    assert not track.track_objects(frames, sam2_files["pt"], {2: torch.zeros(H, W)}).any()
    with pytest.raises(ValueError, match="outside the 6-frame video"):
        track.track_objects(frames, sam2_files["pt"], {9: truth[0]})


def test_backward_tracking_works_in_fp32_on_cpu(sam2_files, video):
    """SAM 2 stores memories in bfloat16; without the pack's fix the fp32 CPU model fails when a
    memory has no object pointers (decomposition_deps.md §1.4)."""
    frames, truth = video

    def run(fixed: bool):
        model = sam2_build.build_sam2(sam2_build.sam2_config_name("t"), image_size=256)
        if not fixed:
            model._mimo_dtype_hook = True  # pretend it is installed
        sam2_build.prepare_for_inference(model, "cpu")
        with torch.inference_mode():
            state = sam2_video.init_state(model, frames)
            model.add_new_mask(state, frame_idx=0, obj_id=1, mask=truth[0] > 0)
            return [i for i, _, _ in model.propagate_in_video(state, start_frame_idx=3, reverse=True)]

    with pytest.raises(RuntimeError, match="same dtype"):
        run(False)
    assert run(True) == [3, 2, 1, 0]
