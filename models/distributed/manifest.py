"""Batch manifests: jobs (character picture, motion, settings, output) read from JSON or CSV, checked
on the driver before anything is sent, and packed (the input files' bytes) for a worker.

JSON: a list of jobs or ``{"checkpoints": DIR, "defaults": {...}, "jobs": [...]}``; CSV: a header row,
one job per row. Relative paths are relative to the manifest's folder."""

import csv
import json
import os
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import MIMOInputError
from ..motion.placement import FACING, FLOORS

SETTINGS = {  # name: (default, type, what)
    "width": (784, int, "working width, multiple of 8 (MIMO: 784)"),
    "height": (784, int, "working height, multiple of 8 (MIMO: 784)"),
    "steps": (25, int, "denoising steps"),
    "cfg": (3.5, float, "guidance scale"),
    "seed": (42, int, "seed of the initial noise"),
    "context_frames": (24, int, "frames per context window"),
    "overlap": (4, int, "frames shared by neighbouring windows"),
    "fps": (30.0, float, "motion frame rate (mocap is resampled to it; templates: 0 = their config's)"),
    "start_frame": (0, int, "first motion frame kept"),
    "max_frames": (0, int, "motion frames kept (0: all; templates: at most 150 as official)"),
    "camera": ("auto", str, "mocap: auto / follow / official"),
    "yaw": (0.0, float, "mocap: camera degrees around the body"),
    "facing": ("keep", str, "mocap: keep / face camera (first frame) / face camera (average)"),
    "floor": ("feet on the floor", str, "AMASS: feet on the floor / as captured (BVH/FBX: always on the floor)"),
    "precision": ("auto", str, "auto / fp32 / fp16 / bf16"),
}
JOB_FIELDS = ("name", "character", "motion", "output")
IMAGE_EXTS = (".png", ".jpg", ".jpeg", ".webp", ".bmp")
MOTION_EXTS = (".npz", ".bvh", ".fbx")
CHOICES = {
    "camera": ("auto", "follow", "official"),
    "facing": FACING,
    "floor": FLOORS,
    "precision": ("auto", "fp32", "fp16", "bf16"),
}


class ManifestError(MIMOInputError):
    """A manifest (or a job in it) that cannot be run: the message names the job and the fix."""


@dataclass
class Job:
    name: str
    character: str
    motion: str
    output: str
    settings: dict = field(default_factory=dict)


# ----------------------------------------------------------------------------- the manifest

def _setting(job: str, key: str, value):
    default, kind, _ = SETTINGS[key]
    if isinstance(value, str) and kind is not str:
        value = value.strip()
        if value == "":
            return default
    try:
        return kind(float(value)) if kind is int and not isinstance(value, bool) and float(value).is_integer() \
            else kind(value)
    except (TypeError, ValueError):
        raise ManifestError(f"Job {job!r}: setting {key}={value!r} is not a {kind.__name__} ({SETTINGS[key][2]}).") \
            from None


def make_job(raw: dict, index: int, base: Path, defaults: dict | None = None) -> Job:
    """One manifest entry -> a Job with absolute paths and every setting (defaults filled in)."""
    if not isinstance(raw, dict):
        raise ManifestError(f"Job {index + 1} of the manifest is {type(raw).__name__}, not an object with "
                            "character, motion and output.")
    name = str(raw.get("name") or f"job{index + 1}")
    unknown = sorted(set(raw) - set(JOB_FIELDS) - set(SETTINGS))
    if unknown:
        raise ManifestError(f"Job {name!r}: unknown field{'s' if len(unknown) > 1 else ''} {', '.join(unknown)}. "
                            f"Jobs take {', '.join(JOB_FIELDS)} and the settings {', '.join(SETTINGS)}.")
    missing = [k for k in ("character", "motion", "output") if not str(raw.get(k) or "").strip()]
    if missing:
        raise ManifestError(f"Job {name!r} has no {' and no '.join(missing)}: every job needs a character "
                            "picture, a motion (AMASS .npz, .bvh, .fbx or a template folder) and an output path.")
    merged = {k: v[0] for k, v in SETTINGS.items()}
    for source in (defaults or {}, raw):
        for k, v in source.items():
            if k in SETTINGS:
                merged[k] = _setting(name, k, v)
    paths = {k: str((base / os.path.expanduser(str(raw[k]).strip())).resolve()) for k in ("character", "motion", "output")}
    return Job(name, paths["character"], paths["motion"], paths["output"], merged)


def read_manifest(path) -> tuple[list[Job], str | None]:
    """(jobs, checkpoints folder or None) from a JSON or CSV manifest."""
    path = Path(path)
    if not path.is_file():
        raise ManifestError(f"Manifest {path} was not found.")
    base = path.parent.resolve()
    checkpoints, defaults = None, {}
    if path.suffix.lower() == ".csv":
        with open(path, newline="", encoding="utf-8") as f:
            rows = [{k.strip(): v for k, v in row.items() if k is not None and k.strip() and v is not None}
                    for row in csv.DictReader(f)]
        rows = [{k: v for k, v in row.items() if str(v).strip() != ""} for row in rows]
        raw_jobs = [r for r in rows if r]
    else:
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise ManifestError(f"Manifest {path} is not valid JSON ({e}); write a list of jobs or "
                                '{"checkpoints": ..., "defaults": {...}, "jobs": [...]}, or use a .csv.') from None
        if isinstance(data, dict):
            extra = sorted(set(data) - {"checkpoints", "defaults", "jobs"})
            if extra:
                raise ManifestError(f"Manifest {path}: unknown key(s) {', '.join(extra)} (expected checkpoints, "
                                    "defaults, jobs).")
            checkpoints, defaults, raw_jobs = data.get("checkpoints"), data.get("defaults") or {}, data.get("jobs")
        else:
            raw_jobs = data
        if not isinstance(raw_jobs, list):
            raise ManifestError(f"Manifest {path}: 'jobs' must be a list of jobs.")
        bad = sorted(set(defaults) - set(SETTINGS))
        if bad:
            raise ManifestError(f"Manifest {path}: unknown default setting(s) {', '.join(bad)}; the settings are "
                                f"{', '.join(SETTINGS)}.")
    if not raw_jobs:
        raise ManifestError(f"Manifest {path} holds no jobs.")
    jobs = [make_job(raw, i, base, defaults) for i, raw in enumerate(raw_jobs)]
    names = [j.name for j in jobs]
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        raise ManifestError(f"Manifest {path}: job name(s) {', '.join(twice)} are used twice; names must be unique.")
    outputs = [j.output for j in jobs]
    same = sorted({o for o in outputs if outputs.count(o) > 1})
    if same:
        raise ManifestError(f"Manifest {path}: several jobs write {same[0]}; give each job its own output.")
    if checkpoints:
        checkpoints = str((base / os.path.expanduser(str(checkpoints))).resolve())
    return jobs, checkpoints


def check_job(job: Job) -> None:
    """What the driver can check before sending the job: its files exist and its settings are sane."""
    s = job.settings
    if not Path(job.character).is_file():
        raise ManifestError(f"Job {job.name!r}: the character picture {job.character} was not found.")
    if not job.character.lower().endswith(IMAGE_EXTS):
        raise ManifestError(f"Job {job.name!r}: the character {job.character} is not a picture "
                            f"({', '.join(IMAGE_EXTS)}).")
    motion = Path(job.motion)
    if motion.is_dir():
        if not (motion / "sdc.mp4").is_file():
            raise ManifestError(f"Job {job.name!r}: the motion folder {motion} is not an official template "
                                "(no sdc.mp4 motion renders in it).")
    elif not motion.is_file():
        raise ManifestError(f"Job {job.name!r}: the motion {motion} was not found.")
    elif not job.motion.lower().endswith(MOTION_EXTS):
        raise ManifestError(f"Job {job.name!r}: the motion {motion} is not an AMASS .npz, a .bvh or .fbx animation, "
                            "or a template folder.")
    if s["width"] % 8 or s["height"] % 8 or s["width"] < 64 or s["height"] < 64:
        raise ManifestError(f"Job {job.name!r}: width and height ({s['width']}x{s['height']}) must be multiples of 8 "
                            "and at least 64 (MIMO uses 784x784).")
    for key, options in CHOICES.items():
        if s[key] not in options:
            raise ManifestError(f"Job {job.name!r}: {key}={s[key]!r} is not one of {', '.join(options)}.")
    if s["steps"] < 1:
        raise ManifestError(f"Job {job.name!r}: steps must be at least 1.")
    if not 0 <= s["overlap"] < s["context_frames"]:
        raise ManifestError(f"Job {job.name!r}: overlap ({s['overlap']}) must be at least 0 and below context_frames "
                            f"({s['context_frames']}).")


def output_done(job: Job) -> bool:
    out = Path(job.output)
    return out.is_file() if out.suffix else (out.is_dir() and any(out.glob("*.png")))


def pack_inputs(job: Job) -> dict:
    """The bytes of the job's input files: {'character': (name, bytes), 'motion': (name, bytes) or
    (folder name, {file: bytes})}."""
    motion = Path(job.motion)
    if motion.is_dir():
        files = {p.name: p.read_bytes() for p in sorted(motion.iterdir()) if p.is_file()}
        packed_motion = (motion.name or "template", files)
    else:
        packed_motion = (motion.name, motion.read_bytes())
    return {"character": (Path(job.character).name, Path(job.character).read_bytes()), "motion": packed_motion}
