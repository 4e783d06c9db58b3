"""The shipped workflow "replace the person in a raw video" (workflows/mimo_video_replace.json) in a
real ComfyUI on CPU: Load Video -> MIMO Decompose Video (tiny random SAM 2 + Depth Anything) and
MIMO Motion From Video (the scripted NLF STAND-IN from devtools/nlf_standin.py, not NLF) -> MIMO
Rasterize Motion (video camera) -> MIMO Plan ROI -> tiny MIMO -> MIMO Composite -> Save Video.
The output video must have the input video's frame count and size."""

import json
from pathlib import Path

import numpy as np
import pytest
from mimo_pack.devtools.demo_assets import VIDEO_NAME, write_demo_assets
from mimo_pack.devtools.nlf_standin import STANDIN_NAME

pytestmark = pytest.mark.comfy

WORKFLOW = Path(__file__).resolve().parents[1] / "workflows" / "mimo_video_replace.json"


def _frames(path) -> np.ndarray:
    import av

    with av.open(str(path)) as container:
        return np.stack([f.to_ndarray(format="rgb24") for f in container.decode(video=0)])


@pytest.fixture(scope="module")
def server(comfy_server):
    write_demo_assets(comfy_server.input_dir)
    comfy_server.object_info(refresh=True)  # combos list the demo video
    return comfy_server


def test_workflow_lists_the_standin_and_tiny_decompose_files(server):
    info = server.object_info()
    assert STANDIN_NAME in json.dumps(info["MIMOMotionFromVideo"]["input"]["required"]["estimator"])
    assert "sam2.1_hiera_tiny.pt" in json.dumps(info["MIMODecomposeVideo"]["input"]["required"]["sam2_model"])
    assert VIDEO_NAME in json.dumps(info["LoadVideo"]["input"]["required"]["file"])


def test_replaces_the_person_in_the_demo_video(server, comfy_run_workflow):
    source = _frames(server.input_dir / VIDEO_NAME)
    result = comfy_run_workflow(WORKFLOW, timeout=600)
    videos = [f for f in server.output_files(result) if f.suffix == ".mp4"]
    assert len(videos) == 1, result.outputs
    out = _frames(videos[0])
    assert out.shape == source.shape, (out.shape, source.shape)  # same frame count and size
    assert out.std() > 1.0  # not a blank video
