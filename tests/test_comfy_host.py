"""The real-ComfyUI host (devtools/comfy_host.py): pack loading, UI workflows, errors, demo runner."""

import copy
import json
import subprocess
import sys
from pathlib import Path

import pytest

from mimo_pack.devtools.comfy_host import ComfyError, ComfyServer, PromptError, provision_comfyui
from mimo_pack.devtools.workflow_to_api import WorkflowError, missing_node_types, to_api

pytestmark = pytest.mark.comfy

REPO_ROOT = Path(__file__).resolve().parents[1]
CORE_WORKFLOW = json.loads((Path(__file__).parent / "data" / "comfy_core_invert.json").read_text())


def core_workflow(prefix: str) -> dict:
    wf = copy.deepcopy(CORE_WORKFLOW)
    next(n for n in wf["nodes"] if n["id"] == 6)["widgets_values"] = [prefix]
    return wf


def load_image_workflow(name: str) -> dict:
    return {"nodes": [
        {"id": 1, "type": "LoadImage", "mode": 0, "inputs": [],
         "outputs": [{"name": "IMAGE", "type": "IMAGE", "links": [1]}, {"name": "MASK", "type": "MASK", "links": []}],
         "widgets_values": [name, "image"]},
        {"id": 2, "type": "PreviewImage", "mode": 0, "inputs": [{"name": "images", "type": "IMAGE", "link": 1}],
         "outputs": [], "widgets_values": []}],
        "links": [[1, 1, 0, 2, 0, "IMAGE"]], "version": 0.4}


def test_pack_loaded(comfy_server):
    comfy_server.check_pack()  # import table lists the pack; no failure line mentions it
    assert comfy_server.pack_path.name == "ComfyUI-MIMO"
    assert "EmptyImage" in comfy_server.object_info()


def test_ui_workflow_runs(comfy_server, comfy_run_workflow):
    from PIL import Image

    result = comfy_run_workflow(core_workflow("host_core"))
    assert result.ok and list(result.outputs) == ["6"]  # the muted SaveImage did not run
    assert len(result.files) == 2
    for path in result.files:
        assert path.parent == comfy_server.output_dir
        with Image.open(path) as im:
            assert im.size == (24, 16)  # height from the PrimitiveNode
            assert im.convert("L").getextrema() == (255, 255)  # inverted once: bypass worked


def test_unknown_node_type_is_a_clear_error(comfy_server):
    wf = core_workflow("x")
    wf["nodes"].append({"id": 42, "type": "MIMONoSuchNode", "mode": 0, "inputs": [], "outputs": []})
    assert missing_node_types(wf, comfy_server.object_info()) == ["MIMONoSuchNode"]
    with pytest.raises(WorkflowError, match=r"42 \(MIMONoSuchNode\)"):
        to_api(wf, comfy_server.object_info())


def test_validation_error(comfy_server):
    prompt = to_api(core_workflow("invalid"), comfy_server.object_info())
    prompt["1"]["inputs"]["width"] = 0  # min is 1
    with pytest.raises(PromptError) as info:
        comfy_server.queue(prompt)
    assert info.value.node_errors["1"]["errors"][0]["type"] == "value_smaller_than_min"
    # a missing input file is a validation error too (LoadImage.VALIDATE_INPUTS)
    with pytest.raises(PromptError, match="no_such_file.png"):
        comfy_server.queue(to_api(load_image_workflow("no_such_file.png"), comfy_server.object_info()))


def test_execution_error_then_keeps_serving(comfy_server, comfy_run_workflow, tmp_path):
    bad = tmp_path / "corrupt.png"
    bad.write_bytes(b"not a png")
    name = comfy_server.upload_input(bad)
    result = comfy_run_workflow(load_image_workflow(name), check=False)
    assert not result.ok
    assert result.error["node_id"] == "1" and result.error["node_type"] == "LoadImage"
    assert result.error["exception_message"]
    with pytest.raises(ComfyError, match="LoadImage"):
        comfy_run_workflow(load_image_workflow(name))
    assert comfy_run_workflow(core_workflow("after_error")).ok


def test_broken_pack_fails_loudly(tmp_path):
    pack = tmp_path / "Broken-Pack"
    pack.mkdir()
    (pack / "__init__.py").write_text("async def comfy_entrypoint():\n    raise RuntimeError('boom in entrypoint')\n")
    server = ComfyServer(provision_comfyui(), pack, run_dir=tmp_path / "run")
    with pytest.raises(ComfyError, match="(?s)failed to load.*boom in entrypoint"):
        server.start()
    assert server.proc is None


def test_run_demo_with_core_workflow(tmp_path, comfy_models_populated):
    wf = tmp_path / "wf.json"
    wf.write_text(json.dumps(core_workflow("demo_core")))
    out = tmp_path / "out"
    proc = subprocess.run([sys.executable, "-m", "devtools.run_demo", "--comfyui", str(provision_comfyui()),
                           "--out", str(out), "--workflow", str(wf), "--models", str(comfy_models_populated)],
                          cwd=REPO_ROOT, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = proc.stdout.splitlines()
    assert len(lines) == 2 and all(Path(p).is_file() for p in lines)
    assert Path(lines[-1]).parent == out / "output"
