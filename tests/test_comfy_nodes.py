"""The MIMO nodes inside a real ComfyUI 0.3.75: the shipped demo workflow, errors, cancel."""

import json
import time
from pathlib import Path

import av
import pytest

from mimo_pack.devtools.demo_assets import write_demo_assets
from mimo_pack.devtools.workflow_to_api import to_api

pytestmark = pytest.mark.comfy
WORKFLOWS = Path(__file__).resolve().parents[1] / "workflows"
DEMO = WORKFLOWS / "mimo_demo_tiny.json"


@pytest.fixture(scope="module")
def server(comfy_server):
    write_demo_assets(comfy_server.input_dir)
    return comfy_server


def demo_prompt(server, **sampler):
    prompt = to_api(json.loads(DEMO.read_text()), server.object_info())
    node = next(n for n in prompt.values() if n["class_type"] == "MIMOSampler")
    node["inputs"].update(sampler)
    return prompt


def video_frames(path: Path) -> list:
    with av.open(str(path)) as c:
        return [f.to_ndarray(format="rgb24") for f in c.decode(video=0)]


def test_pack_nodes_are_registered(server):
    info = server.object_info()
    for node in ("MIMOModelLoader", "MIMOIdentityEncode", "MIMOSceneEncode", "MIMOSampler"):
        assert node in info, node
        for name, spec in {**info[node]["input"]["required"], **info[node]["input"].get("optional", {})}.items():
            assert spec[1].get("tooltip"), f"{node}.{name} has no tooltip"
    assert "tiny/denoising_unet.pth" in info["MIMOModelLoader"]["input"]["required"]["denoising_unet"][1]["options"]


def test_demo_workflow_runs_to_a_video(server):
    result = server.run(demo_prompt(server), timeout=600, check=True)
    videos = [f for f in server.output_files(result) if f.suffix == ".mp4"]
    assert len(videos) == 1
    frames = video_frames(videos[0])
    assert len(frames) == 8 and frames[0].shape == (64, 64, 3)
    assert max(f.std() for f in frames) > 1.0  # not a blank video


@pytest.mark.parametrize("workflow", sorted(WORKFLOWS.glob("*.json")), ids=lambda p: p.stem)
def test_every_shipped_workflow_runs(server, workflow):
    server.object_info(refresh=True)  # combos list the demo media written by the fixture
    result = server.run(to_api(json.loads(workflow.read_text()), server.object_info()), timeout=600, check=True)
    assert any(f.suffix == ".mp4" for f in server.output_files(result)), result.outputs


def test_missing_checkpoint_is_named_and_server_survives(server):
    prompt = demo_prompt(server)
    loader = next(n for n in prompt.values() if n["class_type"] == "MIMOModelLoader")
    loader["inputs"]["reference_unet"] = "nowhere/reference_unet.pth"
    result = server.run(prompt, timeout=300)
    assert not result.ok
    message = result.error["exception_message"]
    assert "nowhere/reference_unet.pth" in message and str(Path(server.models_dir) / "mimo") in message
    assert result.error["node_type"] == "MIMOModelLoader"
    again = server.run(demo_prompt(server, seed=7), timeout=600)
    assert again.ok, again.error


def test_core_noise_input_replaces_the_seed(server):
    from safetensors.torch import load_file

    def run(noise_seed, seed):
        prompt = demo_prompt(server, seed=seed, steps=1)  # one step: random tiny nets amplify 1-ulp noise
        prompt["noise"] = {"class_type": "RandomNoise", "inputs": {"noise_seed": noise_seed}}
        sampler_id = next(k for k, n in prompt.items() if n["class_type"] == "MIMOSampler")
        prompt[sampler_id]["inputs"]["noise"] = ["noise", 0]
        prompt["keep"] = {"class_type": "SaveLatent", "inputs": {"samples": [sampler_id, 0],
                                                                 "filename_prefix": f"mimo/noise_{noise_seed}_{seed}"}}
        result = server.run(prompt, timeout=600, check=True)
        latent = next(f for f in server.output_files(result) if f.suffix == ".latent")
        return load_file(str(latent))["latent_tensor"]

    a, b, c = run(3, 100), run(3, 200), run(4, 100)
    assert a.shape == (8, 4, 8, 8)
    assert (a - b).abs().max() < 1e-3  # the seed widget is ignored
    assert (a - c).abs().max() > 0.1


def test_cancel_stops_the_sampler(server):
    prompt_id = server.queue(demo_prompt(server, steps=200, seed=11))
    time.sleep(4)
    server.interrupt()
    start = time.monotonic()
    entry = server.wait(prompt_id, timeout=120)
    assert time.monotonic() - start < 60
    kinds = [m[0] for m in entry["status"]["messages"]]
    assert "execution_interrupted" in kinds, kinds


def _sampler_run(server, tag: str, **sampler):
    """(the sampler's latent, the prompt's outputs)."""
    from safetensors.torch import load_file

    prompt = demo_prompt(server, **sampler)
    sampler_id = next(k for k, n in prompt.items() if n["class_type"] == "MIMOSampler")
    prompt["keep"] = {"class_type": "SaveLatent", "inputs": {"samples": [sampler_id, 0],
                                                             "filename_prefix": f"mimo/latent_{tag}"}}
    result = server.run(prompt, timeout=600, check=True)
    latent = next(f for f in server.output_files(result) if f.suffix == ".latent")
    return load_file(str(latent))["latent_tensor"], result.outputs


def _sampler_latent(server, tag: str, **sampler):
    return _sampler_run(server, tag, **sampler)[0]


def test_devices_spread_the_windows_and_give_the_same_latent(server):
    import torch

    pytest.importorskip("ray")
    # 8 frames in windows of 4 overlapping by 1: 3 windows, over 2 CPU workers (2 + 1)
    call = dict(steps=2, context_frames=4, overlap=1, seed=5)
    one = _sampler_latent(server, "auto", devices="auto", **call)
    two = _sampler_latent(server, "cpu2", devices="cpu, cpu", **call)
    assert one.shape == (8, 4, 8, 8) and torch.equal(one, two)
    again = _sampler_latent(server, "cpu2b", devices="cpu,cpu", **call)  # the workers are reused
    assert torch.equal(one, again)


def test_compile_gives_the_same_latent(server):
    # One unguided step: the tiny random networks magnify float32 rounding over guided steps (there a
    # different batch split alone moves the latent by 0.2); tests/test_compiled.py compares in float64.
    call = dict(steps=1, cfg=1.0, context_frames=4, overlap=1, seed=5)
    plain = _sampler_latent(server, "plain", compile=False, **call)
    fast, outputs = _sampler_run(server, "compiled", compile=True, **call)
    assert plain.shape == fast.shape and (plain - fast).abs().max() < 1e-3 * plain.abs().max()
    assert "compile=True" in server.log_text()  # the plan had it
    assert "torch.compile failed" not in json.dumps(outputs)  # and it ran compiled (the node says so otherwise)


@pytest.mark.parametrize("devices,message", [
    ("gpu7", "Unknown device 'gpu7'"),
    ("cuda:0,cuda:1", "does not exist: no CUDA device is available"),
    ("cpu,cuda:0", "does not exist"),
])
def test_bad_device_lists_are_refused_with_the_fix(server, devices, message):
    result = server.run(demo_prompt(server, devices=devices), timeout=300)
    assert not result.ok and result.error["node_type"] == "MIMOSampler"
    assert message in result.error["exception_message"]
