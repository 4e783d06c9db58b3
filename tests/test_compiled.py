"""torch.compile of the denoiser's memory-bound steps (``SamplerPlan.compile``): the same output as
uncompiled in every memory plan, the cancel hooks still called, and a failed compile reported."""

import logging
from dataclasses import replace

import pytest
import torch

from mimo_pack.models.cancel import checks_between_layers
from mimo_pack.models.generate import compiled
from mimo_pack.models.generate import sampler as S
from mimo_pack.models.generate.tiny import tiny_sampler_inputs


@pytest.fixture(scope="module")
def video():
    return tiny_sampler_inputs(seed=3, frames=10)  # float64: a real difference shows, rounding does not


def run(video, plan):
    pose = S.PoseFeatures(video["guider"], video["motion"], cache_bytes=plan.pose_cache_bytes)
    return S.denoise(video["denoiser"], video["kv"], video["clip"], pose, video["scene"], video["noise"],
                     steps=2, cfg=3.5, context_frames=6, overlap=2, plan=plan)


@pytest.mark.parametrize("plan", [
    S.SamplerPlan(pose_cache_bytes=2**30),  # fast
    S.SamplerPlan(sequential_guidance=True, row_chunk=3, ff_tokens=1, state_on_device=False),  # low
], ids=["fast", "low"])
def test_compiled_denoiser_gives_the_uncompiled_output(video, plan):
    plain = run(video, plan)
    checks = []
    before = {core.fn.__name__: core.compiled_calls for core in compiled.CORES}
    with checks_between_layers(lambda: checks.append(1), interval=0):  # ComfyUI's cancel points
        fast = run(video, replace(plan, compile=True))
    assert compiled.failure() is None, compiled.failure()
    ran = {core.fn.__name__: core.compiled_calls - before[core.fn.__name__] for core in compiled.CORES}
    cores = {"group_norm_silu", "bias_residual", "geglu", "group_norm_tokens", "add_layer_norm", "group_norm_frames"}
    assert cores <= set(ran) and all(ran[name] for name in cores), ran  # every compiled core of the UNet ran
    assert checks  # and the cancel hooks between modules still did
    assert (plain - fast).abs().max() < 1e-10
    switches = [m for m in video["denoiser"].modules() if hasattr(m, "compiled")]
    assert len(switches) > 10 and not any(m.compiled for m in switches)


def test_a_failed_compile_runs_uncompiled_and_says_why(monkeypatch, caplog):
    from torch._dynamo.exc import TorchDynamoException

    attempts = []

    def broken_compile(fn, **kwargs):
        def call(*args):
            attempts.append(1)
            raise TorchDynamoException("InvalidCxxCompiler: No working C++ compiler found")
        return call

    monkeypatch.setattr(compiled, "_failure", [])
    monkeypatch.setattr(compiled.torch, "compile", broken_compile)
    core = compiled.CompiledCore(lambda x: x * 2)
    x = torch.arange(4.0)
    with caplog.at_level(logging.WARNING, logger=compiled.__name__):
        assert torch.equal(core(x), x * 2) and torch.equal(core(x), x * 2)
    assert len(attempts) == 1 and core.compiled_calls == 0  # tried once, then uncompiled
    assert "No working C++ compiler" in compiled.failure()
    assert len(caplog.records) == 1 and "runs uncompiled" in caplog.text and "g++" in caplog.text
