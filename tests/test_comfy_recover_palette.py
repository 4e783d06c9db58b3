"""MIMO Recover Palette in a real ComfyUI: the demo template + the NLF stand-in -> a palette in models/mimo
that MIMO Rasterize Motion lists and renders with."""

from pathlib import Path

import numpy as np
import pytest

from mimo_pack.devtools.demo_assets import AMASS_NAME, TEMPLATE_NAME, write_demo_assets
from mimo_pack.devtools.nlf_standin import STANDIN_NAME

pytestmark = pytest.mark.comfy


@pytest.fixture(scope="module")
def server(comfy_server):
    write_demo_assets(comfy_server.input_dir)
    comfy_server.object_info(refresh=True)
    return comfy_server


def test_recovered_palette_is_listed_and_renders(server):
    prompt = {
        "body": {"class_type": "MIMOBodyModelLoader", "inputs": {"body_model": "demo body (built-in)"}},
        "rec": {"class_type": "MIMORecoverPalette", "inputs": {
            "template": TEMPLATE_NAME, "estimator": STANDIN_NAME, "body": ["body", 0], "max_frames": 6,
            "name": "sdc_test_recovered"}},
        "show": {"class_type": "PreviewAny", "inputs": {"source": ["rec", 0]}},
    }
    result = server.run(prompt, timeout=600, check=True)
    assert result.outputs["show"]["text"] == ["sdc_test_recovered.npy"]
    path = Path(server.models_dir) / "mimo" / "sdc_test_recovered.npy"
    palette = np.load(path)
    assert palette.dtype == np.float32 and palette.shape[1] == 3 and np.isfinite(palette).all()
    assert 0.0 <= palette.min() and palette.max() <= 1.0 and palette.std() > 0.01
    options = server.object_info(refresh=True)["MIMORasterizeMotion"]["input"]["required"]["palette"]
    names = options[0] if isinstance(options[0], list) else options[1]["options"]
    assert "sdc_test_recovered.npy" in names
    render = {
        "body": prompt["body"],
        "amass": {"class_type": "MIMOLoadAMASS", "inputs": {"file": AMASS_NAME, "fps": 30.0, "start_frame": 0,
                                                           "max_frames": 2, "body": ["body", 0]}},
        "render": {"class_type": "MIMORasterizeMotion", "inputs": {
            "motion": ["amass", 0], "body": ["body", 0], "width": 64, "height": 64, "camera": "follow", "yaw": 0.0,
            "elevation": 0.0, "distance": 0.0, "focal": 0.0, "palette": "sdc_test_recovered.npy",
            "drop_hands": False, "supersample": 1}},
        "save": {"class_type": "SaveImage", "inputs": {"images": ["render", 0], "filename_prefix": "recovered"}},
    }
    assert len(server.output_files(server.run(render, timeout=300, check=True))) == 2
