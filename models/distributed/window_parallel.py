"""One video's context windows over several devices: N Ray actors (one per device, or CPU workers),
each holding the denoiser and pose guider once.

Within a denoising step the windows are independent; only the per-frame average joins them. The
step loop (``sampler.denoise``) keeps the averaging and the scheduler step; this executor only
computes the windows' predictions. Every step the driver sends each worker the scheduler-scaled
latents of its windows (not the whole video) and the timestep, and gets one float32 prediction per
window back; the loop then adds them up in exactly the single-device order and dtype, so the result
is the same bits as the single-device sampler's when the workers compute as the single device
would: same kind of device, same dtype, and on the CPU the same torch thread count (CPU kernels
split their sums by thread; ``threads``).

Sent once: the networks (once per model and worker, kept across videos), and per video the
reference keys/values, the CLIP embedding, the motion (uint8 at the working size, from which each
worker computes its windows' pose features, or ready pose features) and the scene latents.

Groups of windows (``SamplerPlan.windows_per_forward``) are split into contiguous runs, one per
worker, as evenly as the count allows (5 groups over 2 workers: 3 and 2)."""

import os
import time
import uuid
from contextlib import contextmanager
from dataclasses import dataclass, field

import torch

from ..generate.attention import ReferenceKV
from ..generate.pose_guider import PoseGuider
from ..generate.sampler import PoseFeatures, SamplerPlan, WindowExecutor, WindowPredictor
from ..generate.unet import MIMOUNet
from . import remote


def split_groups(count: int, workers: int) -> list[range]:
    """Contiguous runs of ``count`` groups for ``workers`` workers, the first ``count % workers`` one longer."""
    base, extra = divmod(count, workers)
    out, start = [], 0
    for j in range(workers):
        n = base + (1 if j < extra else 0)
        out.append(range(start, start + n))
        start += n
    return out


def model_key(module: torch.nn.Module) -> str:
    """An identity for a loaded network, so workers keep it across videos and reload only another one."""
    key = getattr(module, "_mimo_remote_key", None)
    if key is None:
        key = uuid.uuid4().hex
        object.__setattr__(module, "_mimo_remote_key", key)
    return key


def tensor_bytes(value) -> int:
    """Bytes of the tensors in a (nested) payload."""
    if isinstance(value, torch.Tensor):
        return value.numel() * value.element_size()
    if isinstance(value, dict):
        return sum(tensor_bytes(v) for v in value.values())
    if isinstance(value, (list, tuple)):
        return sum(tensor_bytes(v) for v in value)
    if isinstance(value, ReferenceKV):
        return tensor_bytes(value.key) + tensor_bytes(value.value)
    return 0


def _host(t: torch.Tensor) -> torch.Tensor:
    """A host tensor holding just these values (a view would send its whole storage)."""
    if t.device.type != "cpu":
        return t.cpu()
    return t.clone() if t.untyped_storage().nbytes() > t.numel() * t.element_size() else t


@dataclass
class StepStats:
    """One step as the driver saw it: bytes out (window latents) and back (predictions), the wall time
    from the first send to the last result, and each busy worker's own compute time."""

    sent_bytes: int
    received_bytes: int
    wall_s: float
    worker_s: list[float] = field(default_factory=list)

    @property
    def overhead_s(self) -> float:
        """What the step cost beyond its slowest worker's compute: transfer, (de)serialisation, scheduling."""
        return max(0.0, self.wall_s - max(self.worker_s, default=0.0))


class WindowWorker:
    """The object inside each Ray actor: one device, the networks once, the videos it is sampling."""

    def __init__(self, device: str, threads: int | None, cuda_visible: str | None):
        # Ray narrows CUDA_VISIBLE_DEVICES to the GPUs it assigned (none here): the driver's view is
        # restored before CUDA starts, so 'cuda:1' names the same GPU as in the driver.
        if cuda_visible is None:
            os.environ.pop("CUDA_VISIBLE_DEVICES", None)
        else:
            os.environ["CUDA_VISIBLE_DEVICES"] = cuda_visible
        if threads:
            torch.set_num_threads(int(threads))
        self.device = torch.device(device)
        if self.device.type == "cuda":
            torch.cuda.set_device(self.device)
        self.key, self.unet, self.guider, self.videos = None, None, None, {}

    def pid(self) -> int:
        return os.getpid()

    def model_key(self) -> str | None:
        return self.key

    @torch.no_grad()
    def load(self, key: str, payload: dict) -> None:
        self.unet = self.guider = None
        self.videos.clear()
        if self.device.type == "cuda":
            torch.cuda.empty_cache()
        dtype = payload["dtype"]
        unet = MIMOUNet(payload["config"]).to(dtype)
        unet.load_state_dict(payload["denoiser"])
        self.unet = unet.to(self.device).eval()
        if payload.get("guider") is not None:
            guider = PoseGuider.from_state_dict_shapes(payload["guider"]).to(payload["guider_dtype"])
            guider.load_state_dict(payload["guider"])
            self.guider = guider.to(self.device).eval()
        self.key = key

    def open(self, video: str, payload: dict) -> None:
        kind, *pose = payload["pose"]
        if kind == "motion":
            if self.guider is None:
                raise RuntimeError("the worker was loaded without a pose guider")
            motion, cache_bytes, chunk = pose
            pose = PoseFeatures(self.guider, motion, cache_bytes=cache_bytes, chunk=chunk)
        else:
            pose = pose[0]
        kv = {p: ReferenceKV(v.key.to(self.device), v.value.to(self.device)) for p, v in payload["kv"].items()}
        predictor = WindowPredictor(self.unet, kv, payload["clip"], pose, payload["scene"], payload["cfg"],
                                    sequential_guidance=payload["sequential"])
        indices = [torch.tensor(w) for w in payload["windows"]]  # the same tensors every step (pose cache keys)
        self.unet.set_row_chunk(payload["row_chunk"], payload["ff_tokens"])
        self.unet.set_compiled(payload["compile"])
        self.videos[video] = (predictor, indices)

    def predict(self, video: str, groups: list[list[int]], xs: list[list[torch.Tensor]], t: torch.Tensor):
        """The predictions of the given groups (lists of window numbers) at timestep t; also the seconds taken."""
        predictor, indices = self.videos[video]
        start = time.perf_counter()
        t_model = t.to(self.device)
        out = []
        for group, x in zip(groups, xs):
            vs = predictor.predict(x, [indices[w] for w in group], t_model)
            out.append([_host(v) for v in vs])
        return out, time.perf_counter() - start

    def close(self, video: str) -> None:
        self.videos.pop(video, None)
        if self.unet is not None and not self.videos:
            self.unet.set_row_chunk(0)
            self.unet.set_compiled(False)


def default_threads(devices: list[str]) -> int | None:
    """CPU threads per worker: as many as this process uses, so CPU workers give the same bits as the
    single-device sampler here (at the price of sharing the cores); GPUs: torch's default."""
    return torch.get_num_threads() if "cpu" in devices else None


class WindowParallel(WindowExecutor):
    """The window-parallel executor: ``denoise(..., executor=WindowParallel(['cuda:0', 'cuda:1']))``.

    Starts a private local Ray runtime if this process has none (``remote.ensure_local_runtime``);
    ``threads``: torch CPU threads per worker (default: this process's count, see ``default_threads``).
    ``stats`` holds a ``StepStats`` per step of the last video; ``video_bytes`` / ``model_bytes`` what was
    sent once for it."""

    def __init__(self, devices: list[str], threads: int | None = None):
        if len(devices) < 1:
            raise ValueError("WindowParallel needs at least one device.")
        ray = remote.ensure_local_runtime(num_cpus=max(os.cpu_count() or 1, len(devices)))
        self.devices = list(devices)
        threads = default_threads(self.devices) if threads is None else threads
        visible = os.environ.get("CUDA_VISIBLE_DEVICES")
        self.actors = [remote.actor("distributed.window_parallel", "WindowWorker", d, threads, visible,
                                    num_cpus=0, num_gpus=0) for d in self.devices]
        self.pids = ray.get([a.call.remote("pid") for a in self.actors])
        self.stats: list[StepStats] = []
        self.video_bytes = self.model_bytes = 0

    def alive(self) -> bool:
        ray = remote.require_ray()
        try:
            ray.get([a.call.remote("pid") for a in self.actors], timeout=30)
            return True
        except Exception:  # a dead actor (RayActorError), a lost node, a timeout
            return False

    def shutdown(self) -> None:
        ray = remote.require_ray()
        for a in self.actors:
            ray.kill(a)
        self.actors = []

    def _ensure_model(self, predict: WindowPredictor) -> None:
        ray = remote.require_ray()
        guider = predict.pose.guider if isinstance(predict.pose, PoseFeatures) else None
        key = f"{model_key(predict.unet)}:{model_key(guider) if guider is not None else '-'}:{predict.dtype}"
        have = ray.get([a.call.remote("model_key") for a in self.actors])
        missing = [a for a, k in zip(self.actors, have) if k != key]
        if not missing:
            self.model_bytes = 0
            return
        payload = {"config": predict.unet.config, "dtype": predict.unet.dtype,
                   "denoiser": {k: v.detach().cpu() for k, v in predict.unet.state_dict().items()}}
        if guider is not None:
            payload["guider"] = {k: v.detach().cpu() for k, v in guider.state_dict().items()}
            payload["guider_dtype"] = guider.dtype
        self.model_bytes = tensor_bytes(payload) * len(missing)
        ref = ray.put(payload)
        ray.get([a.call.remote("load", key, ref) for a in missing])

    @staticmethod
    def _video_payload(predict: WindowPredictor, plan: SamplerPlan, windows: list[list[int]]) -> dict:
        if isinstance(predict.pose, PoseFeatures):
            pose = ("motion", predict.pose.motion.cpu(), predict.pose.cache_bytes, predict.pose.chunk)
        else:
            pose = ("features", predict.pose.cpu())
        return {"pose": pose, "windows": windows, "cfg": predict.cfg, "sequential": predict.sequential,
                "row_chunk": plan.row_chunk, "ff_tokens": plan.ff_tokens, "compile": plan.compile,
                "clip": predict.cond.cpu(), "scene": predict.scene.cpu(),
                "kv": {p: ReferenceKV(v.key.cpu(), v.value.cpu()) for p, v in predict.reference_kv.items()}}

    @contextmanager
    def video(self, predict: WindowPredictor, plan: SamplerPlan, windows: list[list[int]],
              groups: list[list[int]]):
        ray = remote.require_ray()
        self._ensure_model(predict)
        payload = self._video_payload(predict, plan, windows)
        self.video_bytes, self.stats = tensor_bytes(payload), []
        video = uuid.uuid4().hex
        ref = ray.put(payload)
        ray.get([a.call.remote("open", video, ref) for a in self.actors])
        del ref, payload
        chunks = split_groups(len(groups), len(self.actors))

        def run(inputs, t):
            start, sent, refs = time.perf_counter(), 0, []
            t_host = t.cpu()
            for actor, chunk in zip(self.actors, chunks):
                if not chunk:
                    continue
                xs = [[_host(x) for x in inputs[i][1]] for i in chunk]
                sent += tensor_bytes(xs)
                refs.append(actor.call.remote("predict", video, [inputs[i][0] for i in chunk], xs, t_host))
            received, busy = 0, []
            for ref in refs:  # in worker order = window order; the loop adds each up as it arrives
                out, seconds = ray.get(ref)
                busy.append(seconds)
                for vs in out:
                    received += tensor_bytes(vs)
                    yield vs
            self.stats.append(StepStats(sent, received, time.perf_counter() - start, busy))

        try:
            yield run
        finally:
            try:
                ray.get([a.call.remote("close", video) for a in self.actors], timeout=60)
            except Exception:  # a worker that died is replaced by the next pool() call
                pass


_POOLS: dict[tuple, WindowParallel] = {}


def pool(devices: list[str], threads: int | None = None) -> WindowParallel:
    """A window-parallel executor for these devices, kept across runs (its workers keep the model
    until another one is sampled); rebuilt when a worker has died. One pool at a time: asking for
    another device list ends the previous workers, so their models leave those devices."""
    key = (tuple(devices), threads)
    held = _POOLS.get(key)
    if held is not None and held.alive():
        return held
    for old in list(_POOLS):
        try:
            _POOLS.pop(old).shutdown()
        except Exception:  # already dead
            pass
    _POOLS[key] = WindowParallel(devices, threads)
    return _POOLS[key]


def executor_for(spec: str | None, here: torch.device | str, threads: int | None = None) -> WindowParallel | None:
    """What a sampler's ``devices`` setting asks for: None for 'auto' (the single-device sampler on
    ``here``, the host's device) or a one-entry list naming ``here``; a (reused) window-parallel
    executor for two or more entries. Ray is only needed, and its local runtime only started, then."""
    from .devices import DeviceListError, parse_devices

    chosen = parse_devices(spec)
    if chosen is None:
        return None
    here = torch.device(here)
    if len(chosen) == 1:
        one = torch.device(chosen[0])
        same = one.type == here.type and (one.type == "cpu" or (one.index or 0) == (here.index or 0))
        if not same:
            raise DeviceListError(f"devices {spec!r} names one device, {chosen[0]}, but this process computes on "
                                  f"{here}: one device runs without Ray on the host's own device (for ComfyUI, "
                                  "choose it with --cuda-device). List two or more devices to spread the windows, "
                                  "or use 'auto'.")
        return None
    remote.require_ray(f"devices {spec!r} (the windows spread over {len(chosen)} workers)")
    return pool(chosen, threads)
