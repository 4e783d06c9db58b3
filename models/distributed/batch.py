"""Many videos over a Ray cluster: a manifest of jobs (character picture, motion, settings, output),
each run as a Ray task on whatever cluster ``ray.init(address=...)`` reaches (a private local one by
default).

    python -m models.distributed.batch MANIFEST [--checkpoints DIR] [--address ADDR] ...

(from the pack's folder; ``python -m models.distributed.batch --help`` lists the options). The library
call is ``run_manifest(...)``.

Manifest: JSON, either a list of jobs or ``{"checkpoints": DIR, "defaults": {...}, "jobs": [...]}``,
or CSV with a header row (one job per row). A job has ``character`` (a picture; its alpha channel,
if any, is the matte), ``motion`` (an AMASS ``.npz``, a ``.bvh`` / ``.fbx`` animation, or an official
template folder: ``sdc.mp4`` motion renders and ``bk.mp4`` scene), ``output`` (``.mp4``, or a folder
for PNG frames), optionally ``name``, and any of ``manifest.SETTINGS``. Relative paths are relative to the
manifest's folder. ``checkpoints`` is a folder in the official ``pretrained_weights/`` layout
(``denoising_unet.pth``, ``reference_unet.pth``, ``pose_guider.pth``, ``motion_module.pth``,
``sd-vae-ft-mse/``, ``image_encoder/``); it must exist at that path on every worker machine.

The driver reads each job's input files and sends their bytes with the task, and writes the result
the task sends back as soon as it finishes (atomically: a partial output never exists), so workers
need no shared file system besides the checkpoints. Models are loaded once per worker process and
kept for its next jobs. A job with a bad file or setting is reported with its message and the
others go on; a job whose worker dies is retried (``max_retries``) in another worker process; jobs
whose output already exists are skipped, so re-running a manifest finishes what is left. A summary
(JSON beside the manifest, and a table) comes at the end."""

import argparse
import json
import logging
import os
import shutil
import sys
import tempfile
import time
from dataclasses import asdict
from pathlib import Path

from ..errors import MIMOInputError
from . import remote
from .manifest import Job, ManifestError, check_job, output_done, pack_inputs, read_manifest

log = logging.getLogger("MIMO")

MAX_TEMPLATE_FRAMES = 150  # the official MAX_FRAME_NUM
FOLLOW_SMOOTH_SECONDS = 0.2


# ----------------------------------------------------------------------------- on the worker

_MODELS: dict = {}  # (checkpoints, precision, device) -> MIMOModels, kept for the worker's next jobs


def _device():
    import torch

    return torch.device("cuda") if torch.cuda.is_available() else torch.device("cpu")


def _models(checkpoints: str, precision: str, device):
    from ..generate.loading import MIMOFiles, load_mimo, pick_dtype

    key = (checkpoints, precision, str(device))
    if key not in _MODELS:
        root = Path(checkpoints)
        if not root.is_dir():
            raise ManifestError(f"The checkpoints folder {root} does not exist on this worker ({os.uname().nodename}); "
                                "every worker machine needs it at the same path.")
        _MODELS.clear()  # one model set per worker process
        dtype = pick_dtype(precision, device)
        _MODELS[key] = load_mimo(MIMOFiles.official_layout(root), device=device, dtype=dtype)
        return _MODELS[key], True
    return _MODELS[key], False


def _read_character(path: Path):
    import numpy as np
    from PIL import Image, UnidentifiedImageError

    from ..generate.reference_prep import prepare_reference

    try:
        with Image.open(path) as im:
            im.load()
            rgba = np.asarray(im.convert("RGBA"))
            has_alpha = "A" in im.getbands() or "transparency" in im.info
    except (UnidentifiedImageError, OSError) as e:
        raise ManifestError(f"The character picture {path.name} cannot be read ({e}); use a PNG or JPEG.") from None
    alpha = rgba[..., 3] if has_alpha and (rgba[..., 3] < 255).any() else None
    return prepare_reference(np.ascontiguousarray(rgba[..., :3]), alpha, min_side=32)


def _mocap_motion(path: Path, s: dict):
    """A mocap file -> (motion renders uint8 [F,H,W,3] at the working size, fps), on the demo body."""
    import torch

    from ..body.demo import demo_body
    from ..body.skeleton import SMPLH_JOINTS, SMPLH_PARENTS
    from ..motion import load_amass, load_bvh, load_fbx, placement, retarget, smplh_neutral_rest_joints
    from ..render import default_palette, render_motion

    body = demo_body()
    if path.suffix.lower() == ".npz":
        motion = load_amass(path)
        rest, ground, centre = motion.meta["rest_pelvis"], body if s["floor"] == placement.FLOORS[0] else None, False
    else:
        anim = load_bvh(path) if path.suffix.lower() == ".bvh" else load_fbx(path)
        rest_joints = smplh_neutral_rest_joints()
        motion = retarget(anim, rest_joints, SMPLH_PARENTS, target_names=SMPLH_JOINTS, center=False, floor=False)
        rest, ground, centre = rest_joints[0], body, True
    motion = placement.cut_clip(motion, s["fps"], s["start_frame"], s["max_frames"], s["facing"], rest, ground,
                                centre, source=path.name)
    vertices, joints = body.pose(motion.params("cpu"))
    colours = torch.as_tensor(default_palette(body.rest_vertices()), dtype=torch.float32)
    images, _ = render_motion(vertices, body.faces, colours, s["width"], s["height"], camera_mode=s["camera"],
                              yaw_deg=s["yaw"], pelvis=joints[:, 0],
                              follow_smooth_frames=FOLLOW_SMOOTH_SECONDS * motion.fps)
    return (images.clamp(0, 1) * 255).round().to(torch.uint8).cpu().numpy(), motion.fps


def _emit(events, *event) -> None:
    if events is not None:
        events.call.remote("add", list(event))


def run_job(job: dict, inputs: dict, checkpoints: str, events=None, threads: int | None = None) -> dict:
    """One job on this worker (a Ray task): returns {'status': 'done', 'data': ...} with the output's
    bytes, or {'status': 'failed', 'message': ...} for bad input. A crash of the process is Ray's to retry."""
    import numpy as np
    import torch

    from ..composite.template import load_template, write_video
    from ..generate import pipeline

    start = time.perf_counter()
    name, s = job["name"], job["settings"]
    info = {"pid": os.getpid(), "node": os.uname().nodename}
    _emit(events, "started", name, info["pid"], info["node"])
    if threads:
        torch.set_num_threads(int(threads))
    try:
        with tempfile.TemporaryDirectory(prefix="mimo-job-") as tmp:
            tmp = Path(tmp)
            char_name, char_bytes = inputs["character"]
            (tmp / char_name).write_bytes(char_bytes)
            motion_name, motion_data = inputs["motion"]
            if isinstance(motion_data, dict):
                folder = tmp / "template"
                folder.mkdir()
                for file, data in motion_data.items():
                    (folder / file).write_bytes(data)
                template = load_template(folder, target_fps=s["fps"] or None,
                                         max_frames=s["max_frames"] or MAX_TEMPLATE_FRAMES)
                motion, scene_frames, fps = template.motion, template.scene, template.fps
            else:
                (tmp / motion_name).write_bytes(motion_data)
                motion, fps = _mocap_motion(tmp / motion_name, s)
                scene_frames = None
            reference = _read_character(tmp / char_name)
            device = _device()
            models, loaded = _models(checkpoints, s["precision"], device)
            w, h = s["width"], s["height"]
            identity = pipeline.encode_identity(models, reference, w, h)
            scene = pipeline.encode_scene(models, scene_frames, w, h)
            steps = s["steps"]

            def progress(p):
                if p.window == p.windows - 1:
                    _emit(events, "step", name, p.step + 1, steps)

            latents = pipeline.sample(models, identity, motion, scene, w, h, steps=steps, cfg=s["cfg"],
                                      context_frames=s["context_frames"], overlap=s["overlap"], seed=s["seed"],
                                      callback=progress)
            frames = pipeline.decode_latents(models, latents)
            frames = (frames.clamp(0, 1) * 255).round().to(torch.uint8).permute(0, 2, 3, 1).numpy()
            out = Path(job["output"])
            if out.suffix.lower() == ".mp4":
                data = write_video(tmp / "out.mp4", np.ascontiguousarray(frames), fps).read_bytes()
            elif out.suffix:
                raise ManifestError(f"output {out.name}: write a .mp4 file, or a folder (no suffix) for PNG frames.")
            else:
                from PIL import Image
                import io

                data = {}
                for i, f in enumerate(frames):
                    buf = io.BytesIO()
                    Image.fromarray(f).save(buf, format="PNG")
                    data[f"{i:05d}.png"] = buf.getvalue()
        return {"status": "done", "data": data, "frames": int(frames.shape[0]), "fps": float(fps),
                "seconds": time.perf_counter() - start, "models_loaded": loaded, **info}
    except (MIMOInputError, ValueError, FileNotFoundError, OSError, KeyError, ImportError, MemoryError) as e:
        return {"status": "failed", "message": f"{type(e).__name__}: {e}", "seconds": time.perf_counter() - start,
                **info}


class EventLog:
    """A small Ray actor collecting the workers' progress events for the driver."""

    def __init__(self):
        self.events = []

    def add(self, event) -> None:
        self.events.append(event)

    def take(self) -> list:
        out, self.events = self.events, []
        return out


# ----------------------------------------------------------------------------- the driver

def _write_output(job: Job, data) -> None:
    out = Path(job.output)
    out.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(data, (bytes, bytearray)):
        tmp = out.with_name(f".{out.name}.partial")
        tmp.write_bytes(data)
        os.replace(tmp, out)
        return
    tmp = out.with_name(f".{out.name}.partial")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    for file, blob in data.items():
        (tmp / file).write_bytes(blob)
    if out.exists():
        shutil.rmtree(out)
    os.replace(tmp, out)


def _print_event(event, out) -> None:
    kind, name, *rest = event
    if kind == "started":
        out(f"[{name}] started on {rest[1]} (pid {rest[0]})")
    elif kind == "step":
        out(f"[{name}] step {rest[0]}/{rest[1]}")


def run_manifest(manifest=None, *, jobs: list[Job] | None = None, checkpoints: str | None = None,
                 address: str | None = None, num_cpus: int | None = None, cpus_per_job: float = 1,
                 gpus_per_job: float = 0, max_retries: int = 2, summary_path=None, on_event=None,
                 out=print) -> dict:
    """Runs the jobs of ``manifest`` (a path; or ``jobs`` with ``checkpoints``) on Ray and returns the summary.

    ``address``: None starts a private local Ray runtime (``num_cpus`` CPUs, default all) unless this
    process already has one; else the cluster to join (e.g. 'auto', 'ray://head:10001').
    ``cpus_per_job`` / ``gpus_per_job``: Ray resources of each job (torch uses that many threads);
    ``max_retries``: how often a job whose worker process died is tried again elsewhere.
    ``on_event(event)`` gets every progress event: ['started', job, pid, node], ['step', job, i, steps],
    ['finished', job, result summary]. The summary goes to ``summary_path`` (default: beside the
    manifest, ``<manifest>.summary.json``) as well."""
    if manifest is not None:
        jobs, from_manifest = read_manifest(manifest)
        checkpoints = checkpoints or from_manifest
    if not jobs:
        raise ManifestError("No jobs to run.")
    if not checkpoints:
        raise ManifestError("No checkpoints folder: give --checkpoints DIR (or \"checkpoints\" in the manifest), a "
                            "folder in the official pretrained_weights layout (denoising_unet.pth, reference_unet.pth, "
                            "pose_guider.pth, motion_module.pth, sd-vae-ft-mse/, image_encoder/).")
    checkpoints = str(Path(checkpoints).expanduser().resolve())
    ray = remote.require_ray("The batch runner")
    started = time.time()
    results: dict[str, dict] = {}

    def record(job: Job, result: dict) -> None:
        result = {k: v for k, v in result.items() if k != "data"}
        results[job.name] = {"name": job.name, "output": job.output, **result}
        line = f"[{job.name}] {result['status']}"
        if result["status"] == "done":
            line += f": {result.get('frames')} frames in {result.get('seconds', 0):.1f} s -> {job.output}"
        elif result.get("message"):
            line += f": {result['message']}"
        out(line)
        if on_event is not None:
            on_event(["finished", job.name, results[job.name]])

    todo = []
    for job in jobs:
        if output_done(job):
            record(job, {"status": "skipped", "message": "the output exists"})
            continue
        try:
            check_job(job)
            todo.append((job, pack_inputs(job)))
        except (MIMOInputError, OSError) as e:
            record(job, {"status": "failed", "message": f"{type(e).__name__}: {e}"})

    attempts: dict[str, int] = {}
    if todo:
        if not ray.is_initialized():
            remote.ensure_local_runtime(num_cpus=num_cpus, address=address)
        # portable: jobs and results are plain values, so workers on machines without the pack (it
        # arrives through the runtime_env when joining a cluster) import the code as 'models'
        events = remote.actor("distributed.batch", "EventLog", portable=True, num_cpus=0)
        task = remote.task("distributed.batch", "run_job", portable=True, num_cpus=cpus_per_job,
                           num_gpus=gpus_per_job, max_retries=max_retries, retry_exceptions=False)
        threads = max(1, int(cpus_per_job)) if cpus_per_job else None
        pending = {}
        for job, inputs in todo:
            ref = task.remote(asdict(job), ray.put(inputs), checkpoints, events, threads)
            pending[ref] = job
        out(f"{len(pending)} job(s) sent to Ray ({ray.cluster_resources().get('CPU', 0):g} CPUs, "
            f"{ray.cluster_resources().get('GPU', 0):g} GPUs in the cluster).")

        def drain():
            for event in ray.get(events.call.remote("take")):
                if event[0] == "started":
                    attempts[event[1]] = attempts.get(event[1], 0) + 1
                _print_event(event, out)
                if on_event is not None:
                    on_event(event)

        while pending:
            done, _ = ray.wait(list(pending), num_returns=1, timeout=0.5)
            drain()
            for ref in done:
                job = pending.pop(ref)
                try:
                    result = ray.get(ref)
                except ray.exceptions.RayTaskError as e:  # the job raised something run_job does not expect
                    cause = e.cause if getattr(e, "cause", None) is not None else e
                    result = {"status": "failed", "message": f"{type(cause).__name__}: {cause}"}
                except ray.exceptions.RayError as e:  # the worker died more often than max_retries allows
                    result = {"status": "failed", "message": f"the job's worker died ({type(e).__name__}) and "
                                                             f"{max_retries} retries did not finish it: {e}"}
                if result["status"] == "done":
                    try:
                        _write_output(job, result["data"])
                    except OSError as e:
                        result = {**result, "status": "failed", "message": f"the output could not be written: {e}"}
                result["attempts"] = attempts.get(job.name, 0)
                record(job, result)
        drain()
        ray.kill(events)

    ordered = [results[j.name] for j in jobs]
    counts = {k: sum(r["status"] == k for r in ordered) for k in ("done", "failed", "skipped")}
    summary = {"jobs": ordered, **counts, "seconds": time.time() - started, "checkpoints": checkpoints}
    if summary_path is None and manifest is not None:
        summary_path = Path(manifest).with_suffix(".summary.json")
    if summary_path is not None:
        Path(summary_path).write_text(json.dumps(summary, indent=1) + "\n")
        summary["summary_path"] = str(summary_path)
    out(format_table(ordered))
    out(f"{counts['done']} done, {counts['failed']} failed, {counts['skipped']} skipped in {summary['seconds']:.1f} s"
        + (f"; summary in {summary_path}" if summary_path else ""))
    return summary


def format_table(rows: list[dict]) -> str:
    head = ("job", "status", "frames", "seconds", "tries", "output / message")
    lines = [head]
    for r in rows:
        note = r["output"] if r["status"] == "done" else r.get("message", "")
        lines.append((r["name"], r["status"], str(r.get("frames", "")), f"{r['seconds']:.1f}" if "seconds" in r else "",
                      str(r.get("attempts", "")), note))
    widths = [max(len(row[i]) for row in lines) for i in range(len(head) - 1)]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(row[:-1], widths)) + "  " + row[-1] for row in lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m models.distributed.batch",
                                 description="Run a manifest of MIMO jobs on a Ray cluster (local by default).")
    ap.add_argument("manifest", help="JSON or CSV manifest (see the module docstring or the README)")
    ap.add_argument("--checkpoints", help="folder in the official pretrained_weights layout (or 'checkpoints' in "
                                          "the manifest)")
    ap.add_argument("--address", help="Ray cluster to join ('auto', 'ray://head:10001'); default: a local runtime")
    ap.add_argument("--num-cpus", type=int, help="CPUs of the local runtime (default: all)")
    ap.add_argument("--cpus-per-job", type=float, default=1, help="Ray CPUs (and torch threads) per job (default 1)")
    ap.add_argument("--gpus-per-job", type=float, default=0, help="Ray GPUs per job (default 0; 1 on GPU clusters)")
    ap.add_argument("--max-retries", type=int, default=2, help="tries again for a job whose worker died (default 2)")
    ap.add_argument("--summary", help="summary JSON path (default: <manifest>.summary.json)")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    try:
        summary = run_manifest(args.manifest, checkpoints=args.checkpoints, address=args.address,
                               num_cpus=args.num_cpus, cpus_per_job=args.cpus_per_job,
                               gpus_per_job=args.gpus_per_job, max_retries=args.max_retries,
                               summary_path=args.summary)
    except MIMOInputError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 1 if summary["failed"] else 0


if __name__ == "__main__":
    sys.exit(main())
