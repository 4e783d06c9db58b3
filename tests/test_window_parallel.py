"""The window-parallel sampler (models/distributed/window_parallel.py) on a local Ray with CPU workers:
the same bits as the single-device sampler for any window count, split, guidance and plan; only the
windows' latents travel per step; a dead worker is replaced; without ray a clear error."""

import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import torch

from mimo_pack.models.distributed import devices as D
from mimo_pack.models.distributed import remote
from mimo_pack.models.distributed import window_parallel as W
from mimo_pack.models.generate import sampler as S
from mimo_pack.models.generate.tiny import tiny_networks

ray = pytest.importorskip("ray")  # requirements-test.txt installs it: CI runs these

CONTEXT, OVERLAP, H, W_ = 8, 2, 8, 8  # windows every 6 frames: 8 frames -> 1 window, 18 -> 3, 30 -> 5


@pytest.fixture(scope="module")
def runtime():
    # On the CPU torch's results depend on its thread count (cfg 1.0 here differs in the 3rd decimal
    # between 1 and 2 threads): the workers run 1 thread each, so the single-device runs here do too.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    if not ray.is_initialized():
        ray.init(address="local", num_cpus=3, include_dashboard=False, configure_logging=False)
    yield ray
    W._POOLS.clear()
    ray.shutdown()
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def nets():
    return tiny_networks(seed=5)


def make_video(nets, frames, seed=0):
    denoiser, reference, guider = nets
    g = torch.Generator().manual_seed(seed)
    clip = torch.randn(1, 32, generator=g)
    record = {}
    with torch.no_grad():
        reference(torch.randn(1, 4, H, W_, generator=g), 0, clip.reshape(1, 1, -1), record=record)
    motion = torch.from_numpy(np.random.default_rng(seed).integers(0, 256, (frames, 8 * H, 8 * W_, 3), dtype=np.uint8))
    return dict(kv=S.project_reference_tokens(denoiser, record), clip=clip, motion=motion,
                scene=torch.randn(frames, 4, H, W_, generator=g), noise=torch.randn(frames, 4, H, W_, generator=g))


def run(nets, video, executor=None, cfg=3.5, plan=None, pose=None, steps=2):
    denoiser, _, guider = nets
    pose = pose if pose is not None else S.PoseFeatures(guider, video["motion"], cache_bytes=plan.pose_cache_bytes
                                                         if plan else 0)
    return S.denoise(denoiser, video["kv"], video["clip"], pose, video["scene"], video["noise"], steps=steps, cfg=cfg,
                     context_frames=CONTEXT, overlap=OVERLAP, plan=plan, executor=executor)


@pytest.fixture(scope="module")
def two(runtime):
    return W.WindowParallel(["cpu", "cpu"], threads=1)


@pytest.fixture(scope="module")
def three(runtime):
    return W.WindowParallel(["cpu", "cpu", "cpu"], threads=1)


def test_split_groups_is_contiguous_and_even():
    assert W.split_groups(5, 2) == [range(0, 3), range(3, 5)]
    assert W.split_groups(3, 3) == [range(0, 1), range(1, 2), range(2, 3)]
    assert W.split_groups(1, 2) == [range(0, 1), range(1, 1)]
    assert [len(r) for r in W.split_groups(7, 3)] == [3, 2, 2]


@pytest.mark.parametrize("frames,windows", [(8, 1), (18, 3), (30, 5)])
@pytest.mark.parametrize("cfg", [3.5, 1.0])
def test_two_and_three_workers_give_the_single_device_bits(nets, two, three, frames, windows, cfg):
    assert len(S.context_windows(frames, CONTEXT, OVERLAP)) == windows
    video = make_video(nets, frames)
    local = run(nets, video, cfg=cfg)
    assert (local - run(nets, video, cfg=2.0 if cfg == 1.0 else 1.0)).abs().max() > 1e-3  # cfg matters: can fail
    for executor in (two, three):  # 1 window: one worker idle; 5 over 2: 3 + 2; 3 over 3: one each
        out = run(nets, video, executor, cfg=cfg)
        assert torch.equal(out, local), (len(executor.actors), windows, (out - local).abs().max())
        assert len(executor.stats) == 2  # one per step


@pytest.mark.parametrize("plan", [
    S.SamplerPlan(windows_per_forward=2, pose_cache_bytes=2**30),
    S.SamplerPlan(sequential_guidance=True, row_chunk=3, ff_tokens=1, state_on_device=False),
], ids=["windows-batched-pose-cache", "low"])
def test_plans_give_the_single_device_bits(nets, two, plan):
    video = make_video(nets, 30, seed=1)
    assert torch.equal(run(nets, video, two, plan=plan), run(nets, video, plan=plan))


def test_ready_pose_features_are_sent_too(nets, three):
    video = make_video(nets, 18, seed=2)
    features = S.encode_pose(nets[2], video["motion"].permute(0, 3, 1, 2).float() / 255.0)
    assert torch.equal(run(nets, video, three, pose=features), run(nets, video, pose=features))


def test_only_window_latents_travel_per_step_and_the_model_once(nets, runtime):
    executor = W.WindowParallel(["cpu", "cpu"], threads=1)
    video = make_video(nets, 30, seed=3)
    run(nets, video, executor, steps=3)
    assert executor.model_bytes > 0  # first video: the networks went to both workers
    windows = len(S.context_windows(30, CONTEXT, OVERLAP))
    latents = windows * CONTEXT * 4 * H * W_ * 4  # float32 window latents out, as many predictions back
    assert [(s.sent_bytes, s.received_bytes) for s in executor.stats] == [(latents, latents)] * 3
    assert executor.video_bytes > video["motion"].numel()  # motion, K/V, scene: once per video
    assert all(len(s.worker_s) == 2 and s.wall_s >= max(s.worker_s) for s in executor.stats)
    run(nets, make_video(nets, 18, seed=4), executor)
    assert executor.model_bytes == 0  # kept across videos
    other = tiny_networks(seed=9)
    video = make_video(other, 18, seed=4)
    assert torch.equal(run(other, video, executor), run(other, video))  # another model: reloaded
    assert executor.model_bytes > 0
    executor.shutdown()


def test_a_dead_worker_is_replaced_by_the_pool(nets, runtime):
    first = W.pool(["cpu", "cpu"], threads=1)
    assert W.pool(["cpu", "cpu"], threads=1) is first  # reused across runs
    os.kill(first.pids[1], signal.SIGKILL)
    time.sleep(1.0)
    second = W.pool(["cpu", "cpu"], threads=1)
    assert second is not first and first.pids[1] not in second.pids
    video = make_video(nets, 18, seed=5)
    assert torch.equal(run(nets, video, second), run(nets, video))
    third = W.pool(["cpu", "cpu", "cpu"], threads=1)  # another list: the previous workers end
    assert second.actors == [] and list(W._POOLS.values()) == [third]
    assert _gone_soon(second.pids)  # their processes (and the models they held) are gone
    third.shutdown()


def _running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
        return True
    except OSError:
        return False


def _gone_soon(pids, seconds: float = 10.0) -> bool:
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        if not any(_running(p) for p in pids):
            return True
        time.sleep(0.2)
    return False


def test_device_lists_are_checked():
    assert D.parse_devices("auto") is None and D.parse_devices(" ") is None
    assert D.parse_devices("cpu, cpu", cuda_count=0) == ["cpu", "cpu"]
    assert D.parse_devices("cuda:0,CUDA:1", cuda_count=2) == ["cuda:0", "cuda:1"]
    with pytest.raises(D.DeviceListError, match=r"'gpu1'.*'cpu' or 'cuda:N'"):
        D.parse_devices("cuda:0,gpu1", cuda_count=2)
    with pytest.raises(D.DeviceListError, match=r"'cuda:2'.*has 2 CUDA devices \(cuda:0 to cuda:1\)"):
        D.parse_devices("cuda:0,cuda:2", cuda_count=2)
    with pytest.raises(D.DeviceListError, match="no CUDA device is available"):
        D.parse_devices("cuda:0,cuda:1", cuda_count=0)
    with pytest.raises(D.DeviceListError, match="mixes the CPU and CUDA"):
        D.parse_devices("cpu,cuda:0", cuda_count=1)
    with pytest.raises(D.DeviceListError, match="empty entry"):
        D.parse_devices("cpu,,cpu")
    assert issubclass(D.DeviceListError, ValueError)


def test_without_ray_the_error_says_how_to_install_it(monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray -> ImportError
    with pytest.raises(remote.RayMissingError, match=r"pip install ray.*\[ray\] extra"):
        W.WindowParallel(["cpu", "cpu"])
    with pytest.raises(remote.RayMissingError, match="pip install ray"):
        remote.require_ray()
    # the sampler node's path: 'auto' and one device never need ray; two devices say how to get it
    assert W.executor_for("auto", "cpu") is None and W.executor_for("cpu", "cpu") is None
    with pytest.raises(remote.RayMissingError, match=r"devices 'cpu,cpu'.*pip install ray"):
        W.executor_for("cpu,cpu", "cpu")


def test_one_device_must_be_the_hosts_own(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    assert W.executor_for("cuda:1", "cuda:1") is None  # runs as 'auto'
    with pytest.raises(D.DeviceListError, match=r"names one device, cuda:1, but this process computes on cuda:0"):
        W.executor_for("cuda:1", "cuda:0")
    with pytest.raises(D.DeviceListError, match="computes on cpu"):
        W.executor_for("cuda:0", "cpu")


def test_the_pack_imports_and_samples_without_ray(tmp_path):
    code = (
        "import sys; sys.modules['ray'] = None\n"
        "sys.path.insert(0, 'tests'); import conftest\n"
        "import torch\n"
        "from mimo_pack.models.distributed import window_parallel, batch, devices\n"
        "from mimo_pack.models.generate import sampler as S\n"
        "from mimo_pack.models.generate.tiny import tiny_networks\n"
        "d, r, g = tiny_networks(0)\n"
        "out = S.denoise(d, {}, torch.zeros(1, 32), torch.zeros(4, 32, 8, 8), torch.zeros(1, 4, 8, 8),\n"
        "                torch.randn(4, 4, 8, 8), steps=1, cfg=1.0)\n"
        "assert out.shape == (4, 4, 8, 8) and devices.parse_devices('auto') is None\n"
        "print('ok')\n"
    )
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    done = subprocess.run([sys.executable, "-c", code], cwd=root, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and done.stdout.strip() == "ok", done.stderr[-2000:]


def test_workers_find_the_pack_under_any_name(tmp_path):
    # ComfyUI imports the pack under its folder's name (it may hold dots); python -m from the pack's
    # folder makes 'models' the top package. The workers register the same name from the same folder.
    code = (
        "import importlib.util, sys\n"
        "spec = importlib.util.spec_from_file_location('hosts.My-Pack', 'ROOT/__init__.py',\n"
        "                                              submodule_search_locations=['ROOT'])\n"
        "m = importlib.util.module_from_spec(spec); sys.modules['hosts.My-Pack'] = m; spec.loader.exec_module(m)\n"
        "remote = importlib.import_module('hosts.My-Pack.models.distributed.remote')\n"
        "print(remote.pack_location())\n"
    )
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    done = subprocess.run([sys.executable, "-c", code.replace("ROOT", root)], capture_output=True, text=True,
                          timeout=60, cwd="/")
    assert done.stdout.strip() == str(("hosts.My-Pack", root, "hosts.My-Pack.models")), done.stderr[-2000:]
    done = subprocess.run([sys.executable, "-c", "from models.distributed import remote; print(remote.pack_location())"],
                          capture_output=True, text=True, timeout=60, cwd=root)
    assert done.stdout.strip() == str(("models", os.path.join(root, "models"), "models")), done.stderr[-2000:]
