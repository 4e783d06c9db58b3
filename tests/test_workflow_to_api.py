"""UI workflow -> API prompt conversion (devtools/workflow_to_api.py), no server needed."""

import copy
import json
from pathlib import Path

import pytest

from mimo_pack.devtools.workflow_to_api import WorkflowError, missing_node_types, to_api, widget_slots

CORE_WORKFLOW = json.loads((Path(__file__).parent / "data" / "comfy_core_invert.json").read_text())

# Excerpts of ComfyUI 0.3.75's /object_info.
INFO = {
    "EmptyImage": {"input": {"required": {
        "width": ["INT", {"default": 512, "min": 1}], "height": ["INT", {"default": 512, "min": 1}],
        "batch_size": ["INT", {"default": 1, "min": 1}], "color": ["INT", {"default": 0, "display": "color"}]}},
        "input_order": {"required": ["width", "height", "batch_size", "color"]}, "output": ["IMAGE"]},
    "ImageInvert": {"input": {"required": {"image": ["IMAGE"]}}, "input_order": {"required": ["image"]},
                    "output": ["IMAGE"]},
    "SaveImage": {"input": {"required": {"images": ["IMAGE", {}], "filename_prefix": ["STRING", {"default": "ComfyUI"}]},
                            "hidden": {"prompt": "PROMPT"}},
                  "input_order": {"required": ["images", "filename_prefix"], "hidden": ["prompt"]}, "output": []},
    "KSamplerLike": {"input": {"required": {
        "model": ["MODEL", {}], "seed": ["INT", {"control_after_generate": True}], "steps": ["INT", {}],
        "sampler_name": [["euler", "ddim"], {}], "denoise": ["FLOAT", {"forceInput": True}]},
        "optional": {"noise_seed": ["INT", {"control_after_generate": False}], "mode": ["COMBO", {
            "options": ["a", "b"], "control_after_generate": True}], "tags": ["COMBO", {"options": ["x", "y"], "multiselect": True}]}},
        "input_order": {"required": ["model", "seed", "steps", "sampler_name", "denoise"],
                        "optional": ["noise_seed", "mode", "tags"]}, "output": ["LATENT"]},
    "LoadImageMask": {"input": {"required": {"image": [[], {"image_upload": True}], "channel": [["alpha", "red"]]}},
                      "input_order": {"required": ["image", "channel"]}, "output": ["MASK"]},
    "LegacyUpload": {"input": {"required": {"video": ["COMBO", {"options": [], "video_upload": True}]},
                               "optional": {"seed": ["INT", {}]}}, "output": ["VIDEO"]},
    "LoadImageOutput": {"input": {"required": {"image": ["COMBO", {"image_upload": True, "remote": {
        "route": "/internal/files/output", "refresh_button": True}}]}}, "input_order": {"required": ["image"]}},
    "MaskOrImage": {"input": {"required": {"image": ["IMAGE"], "mask": ["MASK"]}},
                    "input_order": {"required": ["image", "mask"]}, "output": ["MASK", "IMAGE"]},
    "MaskToImage": {"input": {"required": {"mask": ["MASK"]}}, "input_order": {"required": ["mask"]}, "output": ["IMAGE"]},
}


def node(nid, type_, inputs=(), outputs=(), values=None, mode=0):
    return {"id": nid, "type": type_, "mode": mode, "inputs": [dict(i) for i in inputs],
            "outputs": [dict(o) for o in outputs], "widgets_values": values if values is not None else []}


def test_core_workflow():
    prompt = to_api(CORE_WORKFLOW, INFO)
    assert {k: (v["class_type"], v["inputs"]) for k, v in prompt.items()} == {
        "1": ("EmptyImage", {"width": 24, "height": 16, "batch_size": 2, "color": 0}),  # PrimitiveNode wins
        "4": ("ImageInvert", {"image": ["1", 0]}),  # through the Reroute
        "6": ("SaveImage", {"filename_prefix": "mimo_core", "images": ["4", 0]}),  # around the bypassed node
    }
    assert prompt["6"]["_meta"]["title"] == "SaveImage"


def test_widget_slots():
    # seed: control value; denoise: socket only; noise_seed: control explicitly off;
    # V3 COMBO with control: control + filter list values.
    assert widget_slots(INFO["KSamplerLike"]) == ["seed", None, "steps", "sampler_name", "noise_seed", "mode", None, None, "tags"]
    assert widget_slots(INFO["LoadImageMask"]) == ["image", "channel", None]  # upload button last
    assert widget_slots(INFO["LegacyUpload"]) == ["video", None, "seed", None]  # no input_order: ends required
    assert widget_slots(INFO["SaveImage"]) == ["filename_prefix"]
    assert widget_slots(INFO["LoadImageOutput"]) == ["image", None, None, None]  # auto-refresh, refresh, upload


def test_widgets_values_forms():
    wf = {"nodes": [node(1, "KSamplerLike", [{"name": "model", "type": "MODEL", "link": None}],
                         values=[7, "fixed", 20, "ddim", 3, "b", "increment", "", ["x", "y"]])], "links": []}
    assert to_api(wf, INFO)["1"]["inputs"] == {
        "seed": 7, "steps": 20, "sampler_name": "ddim", "noise_seed": 3, "mode": "b", "tags": {"__value__": ["x", "y"]}}
    wf["nodes"][0]["widgets_values"] = {"seed": 5, "steps": 2, "bogus": 1}
    assert to_api(wf, INFO)["1"]["inputs"] == {"seed": 5, "steps": 2}


def test_widget_count_mismatch():
    wf = {"nodes": [node(3, "EmptyImage", values=[1, 2, 3])], "links": []}
    with pytest.raises(WorkflowError, match=r"node 3 \(EmptyImage\).*3 values, expected 4"):
        to_api(wf, INFO)
    assert to_api(wf, INFO, strict=False)["3"]["inputs"] == {"width": 1, "height": 2, "batch_size": 3}


def test_unknown_node_type():
    wf = copy.deepcopy(CORE_WORKFLOW)
    wf["nodes"].append(node(9, "NoSuchNodeXYZ", mode=2))
    assert missing_node_types(wf, INFO) == ["NoSuchNodeXYZ"]
    with pytest.raises(WorkflowError, match=r"9 \(NoSuchNodeXYZ\)"):
        to_api(wf, INFO)


def test_bypass_picks_matching_type_and_mute_drops_inputs():
    wf = {"nodes": [
        node(1, "EmptyImage", outputs=[{"name": "IMAGE", "type": "IMAGE", "links": [1, 3]}], values=[8, 8, 1, 0]),
        node(2, "LoadImageMask", outputs=[{"name": "MASK", "type": "MASK", "links": [2]}], values=["m.png", "alpha", "image"]),
        node(3, "MaskOrImage", [{"name": "image", "type": "IMAGE", "link": 1}, {"name": "mask", "type": "MASK", "link": 2}],
             [{"name": "MASK", "type": "MASK", "links": [5]}, {"name": "IMAGE", "type": "IMAGE", "links": []}], mode=4),
        node(4, "SaveImage", [{"name": "images", "type": "IMAGE", "link": 3}], values=["a"]),
        node(5, "MaskToImage", [{"name": "mask", "type": "MASK", "link": 5}]),
    ], "links": [[1, 1, 0, 3, 0, "IMAGE"], [2, 2, 0, 3, 1, "MASK"], [3, 1, 0, 4, 0, "IMAGE"], [5, 3, 0, 5, 0, "MASK"]]}
    prompt = to_api(wf, INFO)
    assert set(prompt) == {"1", "2", "4", "5"}
    assert prompt["2"]["inputs"] == {"image": "m.png", "channel": "alpha"}
    assert prompt["5"]["inputs"] == {"mask": ["2", 0]}  # bypassed MASK output <- its MASK input
    wf["nodes"][1]["mode"] = 2  # muted source: the input disappears
    prompt = to_api(wf, INFO)
    assert set(prompt) == {"1", "4", "5"} and prompt["5"]["inputs"] == {}


def test_subgraphs_rejected():
    with pytest.raises(WorkflowError, match="subgraph"):
        to_api({"nodes": [], "links": [], "definitions": {"subgraphs": [{"id": "x"}]}}, INFO)
