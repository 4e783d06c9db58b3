"""MIMOTrackHuman (SAM 2) and MIMOEstimateDepth (Depth Anything V2) inside a real ComfyUI, on tiny
random weights in both checkpoint layouts each, fed by core nodes (an animated PNG as the video)."""

from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("sam2")

from mimo_pack.models.decompose import tiny_models  # noqa: E402
from mimo_pack.devtools.synthetic_clip import person_clip  # noqa: E402

pytestmark = pytest.mark.comfy
FRAMES, H, W = 6, 64, 96
SAM2_PT, SAM2_ST = "sam2.1_hiera_tiny.pt", "sam2.1_hiera_tiny.safetensors"
DEPTH_PTH, DEPTH_ST = "depth_anything_v2_tiny.pth", "depth_anything_v2_tiny.safetensors"


@pytest.fixture(scope="module")
def clip():
    return person_clip(FRAMES, H, W)


@pytest.fixture(scope="module")
def server(comfy_server, comfy_models_dir, clip):
    from PIL import Image

    tiny_models.write_tiny_decompose_weights(comfy_models_dir)
    frames, masks = clip
    images = [Image.fromarray((f.numpy() * 255).round().astype(np.uint8)) for f in frames]
    images[0].save(comfy_server.input_dir / "mimo_person.png", save_all=True, append_images=images[1:], duration=40)
    Image.fromarray((masks[0].numpy() * 255).astype(np.uint8)).save(comfy_server.input_dir / "mimo_person_mask.png")
    comfy_server.object_info(refresh=True)
    return comfy_server


def saved(server, result, prefix: str) -> list[np.ndarray]:
    from PIL import Image

    files = sorted(f for f in server.output_files(result) if Path(f).name.startswith(prefix))
    return [np.asarray(Image.open(f).convert("RGB")) for f in files]


def iou(a: np.ndarray, b: np.ndarray) -> float:
    return float((a & b).sum()) / max(1, int((a | b).sum()))


def base_prompt(track_inputs: dict, depth_model: str) -> dict:
    return {
        "video": {"class_type": "LoadImage", "inputs": {"image": "mimo_person.png"}},
        "track": {"class_type": "MIMOTrackHuman", "inputs": {"video": ["video", 0], **track_inputs}},
        "as_image": {"class_type": "MaskToImage", "inputs": {"mask": ["track", 0]}},
        "save_track": {"class_type": "SaveImage",
                       "inputs": {"images": ["as_image", 0], "filename_prefix": "mimo_t/track"}},
        "depth": {"class_type": "MIMOEstimateDepth", "inputs": {"video": ["video", 0], "depth_model": depth_model,
                                                              "input_size": 56}},
        "save_depth": {"class_type": "SaveImage",
                       "inputs": {"images": ["depth", 0], "filename_prefix": "mimo_t/depth"}},
    }


def test_nodes_list_both_layouts_and_have_tooltips(server):
    info = server.object_info()
    for node in ("MIMOTrackHuman", "MIMOEstimateDepth"):
        inputs = {**info[node]["input"]["required"], **info[node]["input"].get("optional", {})}
        for name, spec in inputs.items():
            assert spec[1].get("tooltip"), f"{node}.{name} has no tooltip"
    assert {SAM2_PT, SAM2_ST} <= set(info["MIMOTrackHuman"]["input"]["required"]["sam2_model"][1]["options"])
    assert {DEPTH_PTH, DEPTH_ST} <= set(info["MIMOEstimateDepth"]["input"]["required"]["depth_model"][1]["options"])


def test_mask_prompt_and_depth_run(server, clip):
    frames, masks = clip
    prompt = base_prompt({"sam2_model": SAM2_PT, "mask": ["mask", 0]}, DEPTH_PTH)
    prompt["mask"] = {"class_type": "LoadImageMask", "inputs": {"image": "mimo_person_mask.png", "channel": "red"}}
    result = server.run(prompt, timeout=300, check=True)
    tracked = saved(server, result, "track")
    assert len(tracked) == FRAMES and tracked[0].shape == (H, W, 3)
    assert set(np.unique(tracked[0])) <= {0, 255}
    assert iou(tracked[0][..., 0] > 127, masks[0].numpy() > 0.5) > 0.95  # the prompt comes back on frame 0
    depth = saved(server, result, "depth")
    assert len(depth) == FRAMES and depth[0].shape == (H, W, 3)
    for d in depth:
        assert (d[..., 0] == d[..., 1]).all() and (d[..., 0] == d[..., 2]).all()  # grey
        assert d.min() == 0 and d.max() == 255  # normalised per frame


def test_automatic_prompt_backward_on_safetensors(server, clip):
    frames, masks = clip
    prompt = base_prompt({"sam2_model": SAM2_ST, "direction": "backward (prompt on the last frame)"}, DEPTH_ST)
    result = server.run(prompt, timeout=300, check=True)
    tracked = saved(server, result, "track")
    assert len(tracked) == FRAMES
    assert iou(tracked[-1][..., 0] > 127, masks[-1].numpy() > 0.5) > 0.95  # the moving person, found on the last frame
    assert len(saved(server, result, "depth")) == FRAMES


def test_points_box_and_bad_input_errors(server):
    prompt = base_prompt({"sam2_model": SAM2_PT, "points": "20,30", "negative_points": "90,5", "box": "5,4,40,60",
                          "mask_prompt": "10 points (official)"}, DEPTH_PTH)
    del prompt["depth"], prompt["save_depth"]
    assert len(saved(server, server.run(prompt, timeout=300, check=True), "track")) == FRAMES

    prompt["track"]["inputs"]["points"] = "20;30"
    result = server.run(prompt, timeout=300)
    assert not result.ok and result.error["node_type"] == "MIMOTrackHuman"
    assert "Bad point '20'" in result.error["exception_message"]
