"""The batch runner (models/distributed/batch.py) on a local Ray: a manifest of tiny jobs (AMASS,
BVH, a template, a broken file, a missing file) runs to outputs and a summary; a re-run skips what
is done; a worker killed mid-job has its job retried; manifests are checked with clear messages."""

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import av
import pytest

from mimo_pack.devtools import demo_assets
from mimo_pack.models.distributed import batch as B
from mimo_pack.models.generate import tiny

ray = pytest.importorskip("ray")  # requirements-test.txt installs it: CI runs these

ROOT = Path(__file__).resolve().parents[1]
SMALL = {"width": 64, "height": 64, "steps": 1, "context_frames": 8, "overlap": 2, "max_frames": 6, "cfg": 2.5}


@pytest.fixture(scope="module")
def runtime():
    if not ray.is_initialized():
        ray.init(address="local", num_cpus=2, include_dashboard=False, configure_logging=False)
    yield ray
    ray.shutdown()


@pytest.fixture(scope="module")
def assets(tmp_path_factory):
    root = tmp_path_factory.mktemp("batch")
    tiny.write_tiny_official(root / "weights")
    demo_assets.reference_image(64).save(root / "char.png")
    demo_assets.write_amass_walk(root / "walk_poses.npz", frames=40, fps=60)
    (root / "dance.bvh").write_text(demo_assets.MIXAMO_BVH)
    demo_assets.write_demo_template(root / "template")
    (root / "broken_poses.npz").write_bytes(b"this is not a zip archive")
    return root


def frames_of(path: Path) -> int:
    with av.open(str(path)) as c:
        return sum(1 for _ in c.decode(video=0))


def write_manifest(root: Path, jobs: list, name="manifest.json", **top) -> Path:
    path = root / name
    path.write_text(json.dumps({"checkpoints": "weights", "defaults": SMALL, "jobs": jobs, **top}))
    return path


def test_a_manifest_runs_reports_failures_and_reruns_skip(assets, runtime):
    manifest = write_manifest(assets, [
        {"name": "walk", "character": "char.png", "motion": "walk_poses.npz", "output": "out/walk.mp4"},
        {"name": "dance", "character": "char.png", "motion": "dance.bvh", "output": "out/dance", "seed": 3},
        {"name": "template", "character": "char.png", "motion": "template", "output": "out/template.mp4"},
        {"name": "broken", "character": "char.png", "motion": "broken_poses.npz", "output": "out/broken.mp4"},
        {"name": "missing", "character": "nobody.png", "motion": "walk_poses.npz", "output": "out/missing.mp4"},
    ])
    lines, events = [], []
    summary = B.run_manifest(manifest, out=lines.append, on_event=events.append)
    jobs = {j["name"]: j for j in summary["jobs"]}
    assert {k: j["status"] for k, j in jobs.items()} == {
        "walk": "done", "dance": "done", "template": "done", "broken": "failed", "missing": "failed"}
    assert "broken_poses.npz" in jobs["broken"]["message"]  # the worker's message names the file
    assert "nobody.png" in jobs["missing"]["message"] and "not found" in jobs["missing"]["message"]
    assert frames_of(assets / "out/walk.mp4") == 6  # max_frames 6 at 30 fps
    assert frames_of(assets / "out/template.mp4") == 6
    assert len(list((assets / "out/dance").glob("*.png"))) == 4  # the BVH has 4 frames
    assert not (assets / "out/broken.mp4").exists()
    assert not list((assets / "out").glob(".*partial"))
    # models once per worker process: a process that ran several jobs loaded them for its first only
    done = [j for j in jobs.values() if j["status"] == "done"]
    for pid in {j["pid"] for j in done}:
        assert sum(j["models_loaded"] for j in done if j["pid"] == pid) == 1
    # progress per job while it ran, and the summary file and table at the end
    assert {e[1] for e in events if e[0] == "step"} >= {"walk", "dance", "template"}
    assert json.loads(Path(summary["summary_path"]).read_text())["failed"] == 2
    assert any(line.startswith("[walk] done") for line in lines) and "output / message" in lines[-2]

    again = B.run_manifest(manifest, out=lambda _: None)
    assert {j["name"]: j["status"] for j in again["jobs"]} == {
        "walk": "skipped", "dance": "skipped", "template": "skipped", "broken": "failed", "missing": "failed"}


def test_a_worker_killed_mid_job_has_the_job_retried(assets, runtime):
    manifest = write_manifest(assets, [{"name": "long", "character": "char.png", "motion": "walk_poses.npz",
                                        "output": "out/long.mp4", "steps": 12,
                                        "width": 128, "height": 128}], name="kill.json")
    killed = []  # 12 steps: the job is still running when the driver hears of its first one

    def kill_first_worker(event):
        if event[0] == "step" and not killed:  # the job is under way in this worker process
            pid = next(e for e in seen if e[0] == "started")[2]
            os.kill(pid, signal.SIGKILL)
            killed.append(pid)
        seen.append(event)

    seen = []
    summary = B.run_manifest(manifest, out=lambda _: None, on_event=kill_first_worker, max_retries=2)
    job = summary["jobs"][0]
    assert killed and job["status"] == "done", job
    assert job["attempts"] == 2 and job["pid"] != killed[0]  # finished by another worker process
    assert frames_of(assets / "out/long.mp4") == 6


def test_manifests_are_checked_with_clear_messages(tmp_path):
    csv = tmp_path / "jobs.csv"
    csv.write_text("name,character,motion,output,steps,cfg\na,c.png,m.npz,a.mp4,4,\nb,c.png,m.bvh,b,2,1.5\n")
    jobs, checkpoints = B.read_manifest(csv)
    assert checkpoints is None and [j.name for j in jobs] == ["a", "b"]
    assert jobs[0].settings["steps"] == 4 and jobs[0].settings["cfg"] == 3.5  # empty cell: the default
    assert jobs[1].settings["cfg"] == 1.5 and jobs[1].output == str(tmp_path / "b")
    cases = [
        ([{"character": "c.png", "motion": "m.npz", "output": "o.mp4", "stepz": 3}], "unknown field stepz"),
        ([{"character": "c.png", "motion": "m.npz", "output": "o.mp4", "steps": "many"}], "steps='many' is not a int"),
        ([{"character": "c.png", "motion": "m.npz"}], "has no output"),
        ([{"character": "c.png", "motion": "m.npz", "output": "o.mp4"}] * 2, "several jobs write"),
        ([], "holds no jobs"),
    ]
    for jobs, message in cases:
        path = tmp_path / "m.json"
        path.write_text(json.dumps(jobs))
        with pytest.raises(B.ManifestError, match=message):
            B.read_manifest(path)
    (tmp_path / "bad.json").write_text("{nope")
    with pytest.raises(B.ManifestError, match="not valid JSON"):
        B.read_manifest(tmp_path / "bad.json")
    with pytest.raises(B.ManifestError, match="No checkpoints folder"):
        B.run_manifest(csv, out=lambda _: None)


def test_the_command_line_runs_from_the_pack_root(tmp_path):
    (tmp_path / "done.mp4").write_bytes(b"x")
    manifest = write_manifest(tmp_path, [
        {"name": "old", "character": "c.png", "motion": "m.npz", "output": "done.mp4"},
        {"name": "gone", "character": "c.png", "motion": "m.npz", "output": "new.mp4"},
    ])
    run = subprocess.run([sys.executable, "-m", "models.distributed.batch", str(manifest)], cwd=ROOT,
                         capture_output=True, text=True, timeout=120)
    assert run.returncode == 1, run.stderr[-2000:]  # one job failed
    assert "[old] skipped" in run.stdout and "[gone] failed" in run.stdout and "c.png was not found" in run.stdout
    assert json.loads(manifest.with_suffix(".summary.json").read_text())["skipped"] == 1
    usage = subprocess.run([sys.executable, "-m", "models.distributed.batch", "--help"], cwd=ROOT,
                           capture_output=True, text=True, timeout=60)
    assert usage.returncode == 0 and "--checkpoints" in usage.stdout and "--address" in usage.stdout


def test_choice_settings_are_checked_before_sending(tmp_path):
    from mimo_pack.models.distributed.manifest import check_job, make_job

    (tmp_path / "c.png").write_bytes(b"x")
    (tmp_path / "m.npz").write_bytes(b"x")
    for key, bad in (("camera", "orbit"), ("facing", "back"), ("floor", "ceiling"), ("precision", "fp8")):
        job = make_job({"character": "c.png", "motion": "m.npz", "output": "o.mp4", key: bad}, 0, tmp_path)
        with pytest.raises(B.ManifestError, match=f"{key}='{bad}' is not one of"):
            check_job(job)
    check_job(make_job({"character": "c.png", "motion": "m.npz", "output": "o.mp4", "floor": "as captured"}, 0,
                       tmp_path))


def test_an_unreachable_cluster_is_a_clear_error(monkeypatch):
    from mimo_pack.models.distributed import remote

    def refuse(**kwargs):
        raise ConnectionError("Failed to connect to Ray cluster at 10.0.0.9:6379")

    monkeypatch.setattr(ray, "is_initialized", lambda: False)
    monkeypatch.setattr(ray, "init", refuse)
    with pytest.raises(remote.ClusterUnreachableError, match=r"Could not join the Ray cluster at '10.0.0.9:6379' "
                                                            r"\(Failed to connect.*RAY_AUTH_MODE.*local runtime"):
        remote.ensure_local_runtime(address="10.0.0.9:6379")
