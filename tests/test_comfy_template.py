"""Official template -> ROI crops -> tiny MIMO sampler -> composite, inside a real ComfyUI."""

import json
from pathlib import Path

import numpy as np
import pytest

from mimo_pack.devtools.comfy_host import PromptError
from mimo_pack.devtools.demo_assets import TEMPLATE_NAME, template_frames, write_demo_assets
from mimo_pack.devtools.workflow_to_api import to_api
from mimo_pack.models.composite.template import load_template

pytestmark = pytest.mark.comfy
WORKFLOW = Path(__file__).resolve().parents[1] / "workflows" / "mimo_template_replace.json"
NODES = ("MIMOLoadTemplate", "MIMOSaveTemplate", "MIMOPlanROI", "MIMOComposite")


@pytest.fixture(scope="module")
def server(comfy_server):
    write_demo_assets(comfy_server.input_dir)  # includes input/mimo_templates/demo
    comfy_server.object_info(refresh=True)
    return comfy_server


def prompt(server) -> dict:
    return to_api(json.loads(WORKFLOW.read_text()), server.object_info())


def node_id(prompt: dict, class_type: str) -> str:
    return next(k for k, n in prompt.items() if n["class_type"] == class_type)


def video_frames(path: Path) -> np.ndarray:
    import av

    with av.open(str(path)) as c:
        return np.stack([f.to_ndarray(format="rgb24") for f in c.decode(video=0)])


def test_nodes_are_registered_with_tooltips(server):
    info = server.object_info()
    for node in NODES:
        assert node in info, node
        spec = info[node]["input"]
        for name, entry in {**spec["required"], **spec.get("optional", {})}.items():
            assert entry[1].get("tooltip"), f"{node}.{name} has no tooltip"
    assert TEMPLATE_NAME in info["MIMOLoadTemplate"]["input"]["required"]["template"][1]["options"]
    assert info["MIMOSaveTemplate"]["output_node"] is True
    assert "MIMO_ROI" in info["MIMOPlanROI"]["output"] and "MIMO_ROI" in info["MIMOComposite"]["input"]["required"]["roi"]


def test_template_workflow_replaces_the_person(server):
    result = server.run(prompt(server), timeout=600, check=True)
    videos = [f for f in server.output_files(result) if f.suffix == ".mp4"]
    assert len(videos) == 1
    frames = video_frames(videos[0])
    truth = template_frames()
    assert frames.shape == truth["video"].shape == (10, 96, 128, 3)  # the template's frames and size
    pole = truth["occlusion"][0] > 0
    # the occluder (a pole in front of the person) comes back from the original video, inside and outside the ROI
    assert np.abs(frames[:, pole].astype(int) - truth["video"][:, pole]).mean() < 8
    # far from the person the output is the scene (the top-right corner is outside every crop box)
    assert np.abs(frames[:, :12, -12:].astype(int) - truth["scene"][:, :12, -12:]).mean() < 8
    assert frames.std() > 5


def test_save_template_round_trip(server):
    p = {
        "load": {"class_type": "MIMOLoadTemplate", "inputs": {"template": TEMPLATE_NAME, "fps": 15.0,
                                                              "max_frames": 0, "time_crop": True}},
        "save": {"class_type": "MIMOSaveTemplate", "inputs": {
            "video": ["load", 0], "motion": ["load", 1], "scene": ["load", 2], "occlusion": ["load", 3],
            "fps": ["load", 4], "name": "roundtrip", "overwrite": True, "crf": 15}},
    }
    result = server.run(p, timeout=300, check=True)
    folder = server.output_dir / "mimo_templates" / "roundtrip"
    assert (folder / "vid.mp4").is_file() and (folder / "occ.mp4").is_file() and not (folder / "mask.mp4").exists()
    assert folder / "vid.mp4" in server.output_files(result)  # the preview
    t = load_template(folder)
    assert t.fps == 15.0 and t.frames == 5 and t.occlusion is not None  # 10 frames at 30 fps -> 15 fps
    info = server.object_info(refresh=True)
    assert "mimo_templates/roundtrip [output]" in info["MIMOLoadTemplate"]["input"]["required"]["template"][1]["options"]
    p["load"]["inputs"]["template"] = "mimo_templates/roundtrip [output]"
    p["save"]["inputs"].update(name="roundtrip", overwrite=False)
    server.run(p, timeout=300, check=True)
    assert (server.output_dir / "mimo_templates" / "roundtrip_00001" / "config.json").is_file()


def test_clear_errors(server):
    bad = prompt(server)
    bad[node_id(bad, "MIMOLoadTemplate")]["inputs"]["template"] = "mimo_templates/missing"
    with pytest.raises(PromptError) as err:
        server.queue(bad)
    assert "mimo_templates/missing" in json.dumps(err.value.data) and "was not found" in json.dumps(err.value.data)

    wrong = prompt(server)  # the full-frame video instead of the decoded crops
    comp = node_id(wrong, "MIMOComposite")
    wrong[comp]["inputs"]["generated"] = [node_id(wrong, "MIMOLoadTemplate"), 0]
    result = server.run(wrong, timeout=300)
    assert not result.ok and result.error["node_type"] == "MIMOComposite"
    assert "'generated' has 10 frames but the ROI plan has 14 crops" in result.error["exception_message"]
