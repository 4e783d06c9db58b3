"""MIMOBodyModelLoader inside a real ComfyUI: schema, tooltips and the smpl model folder.
(No node consumes MIMO_BODY yet, and ComfyUI only runs nodes that lead to an output node, so
execution is covered later by an end-to-end workflow.)"""

from pathlib import Path

import pytest

from mimo_pack.devtools.synthetic_body import write_synthetic_model

pytestmark = pytest.mark.comfy
DEMO = "demo body (built-in)"


def test_body_loader_schema_and_tooltips(comfy_server):
    info = comfy_server.object_info(refresh=True)
    assert "MIMOBodyModelLoader" in info
    node = info["MIMOBodyModelLoader"]
    assert node["output"] == ["MIMO_BODY"] and node["category"] == "MIMO/model"
    inputs = {**node["input"]["required"], **node["input"].get("optional", {})}
    assert list(inputs) == ["body_model"]
    kind, spec = inputs["body_model"]
    options = spec["options"]
    assert kind == "COMBO" and options[0] == DEMO and spec.get("default") == DEMO
    tip = spec["tooltip"]
    assert "models/smpl" in tip and "non-commercial" in tip and "never shipped" in tip
    assert all(t for t in node.get("output_tooltips", [])) and node.get("output_tooltips")


def test_files_in_the_smpl_folder_are_listed(comfy_server):
    folder = Path(comfy_server.models_dir) / "smpl" / "test_bodies"
    write_synthetic_model(folder / "SMPL_TEST.pkl", "smpl", vertices=120)
    write_synthetic_model(folder / "model.npz", "smplh", vertices=200)
    (folder / "notes.txt").write_text("not a model")
    node = comfy_server.object_info(refresh=True)["MIMOBodyModelLoader"]
    options = node["input"]["required"]["body_model"][1]["options"]
    assert options[0] == DEMO
    assert "test_bodies/SMPL_TEST.pkl" in options and "test_bodies/model.npz" in options
    assert not any(o.endswith(".txt") for o in options)
