"""The bad-input matrix, sent to a real ComfyUI: every case is refused with a message that names the
problem and the fix, the server stays up, and a good prompt right after each class succeeds.

Classes: paths (absolute, '..', links out of the folder, for every node that takes a file or folder
name), motion files, checkpoints, images and templates, sizes / counts / parameters, bounded work.
One shared server, many prompts; the counts per class are printed (pytest -s)."""

import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from mimo_pack.devtools.comfy_host import PromptError, Result
from mimo_pack.devtools.demo_assets import (AMASS_NAME, MIXAMO_BVH, MOTION_NAME, REFERENCE_NAME, TEMPLATE_NAME,
                                            write_amass_walk, write_demo_assets, write_demo_template)

pytestmark = pytest.mark.comfy
DEMO = "demo body (built-in)"
COUNTS: dict[str, int] = {}


# ----------------------------------------------------------------------------- set-up

def _link(link: Path, target: Path) -> str:
    link.parent.mkdir(parents=True, exist_ok=True)
    if link.is_symlink() or link.exists():
        link.unlink()
    link.symlink_to(target)
    return link.name


@pytest.fixture(scope="module")
def env(comfy_server, tmp_path_factory):
    """The server with the demo media, bad files in input/ and the model folders, and links that point
    out of them to good files in a folder ComfyUI does not give (removed again after the module)."""
    server = comfy_server
    write_demo_assets(server.input_dir)
    inp, models = server.input_dir, Path(server.models_dir)
    out = tmp_path_factory.mktemp("outside")
    made: list[Path] = []

    def keep(p: Path) -> Path:
        made.append(p)
        return p

    # good files outside every folder, reachable only by an absolute path, '..' or a link
    write_amass_walk(out / "walk_poses.npz", frames=12)
    (out / "wave.bvh").write_text(MIXAMO_BVH)
    write_demo_template(out / "tpl")
    shutil.copy(models / "mimo" / "tiny" / "pose_guider.pth", out / "pose_guider.pth")
    np.save(out / "palette.npy", np.zeros((6890, 3), np.float32))
    sam2 = sorted((models / "sam2").glob("*.pt"))[0]
    depth = sorted((models / "depthanything").glob("*.pth"))[0]
    for src in (sam2, depth, models / "nlf" / "nlf_standin.torchscript"):
        shutil.copy(src, out / src.name)
    from mimo_pack.devtools.synthetic_body import write_synthetic_model

    write_synthetic_model(out / "body.npz", "smplh", fmt="npz")
    links = {
        "amass": _link(keep(inp / "zz_out_poses.npz"), out / "walk_poses.npz"),
        "bvh": _link(keep(inp / "zz_out.bvh"), out / "wave.bvh"),
        "template_dir": _link(keep(inp / "mimo_templates" / "zz_out_tpl"), out / "tpl"),
        "mimo": _link(keep(models / "mimo" / "zz_out_pose_guider.pth"), out / "pose_guider.pth"),
        "palette": _link(keep(models / "mimo" / "zz_out_palette.npy"), out / "palette.npy"),
        "smpl": _link(keep(models / "smpl" / "zz_out_body.npz"), out / "body.npz"),
        "sam2": _link(keep(models / "sam2" / "zz_out_sam2.pt"), out / sam2.name),
        "depth": _link(keep(models / "depthanything" / "zz_out_depth.pth"), out / depth.name),
        "nlf": _link(keep(models / "nlf" / "zz_out_nlf.torchscript"), out / "nlf_standin.torchscript"),
    }
    # a template folder inside input/ whose video is a link out
    tpl = keep(inp / "mimo_templates" / "zz_link_video")
    write_demo_template(tpl)
    (tpl / "vid.mp4").unlink()
    _link(tpl / "vid.mp4", out / "tpl" / "vid.mp4")
    links["template_file"] = "mimo_templates/zz_link_video"
    # an output subfolder that is a link out (MIMO Save Template must not write through it)
    (server.output_dir / "mimo_templates").mkdir(parents=True, exist_ok=True)
    links["output_dir"] = _link(keep(server.output_dir / "mimo_templates" / "zz_out_link"), out)

    bad = keep(inp / "zz_bad")
    bad.mkdir(exist_ok=True)
    poses = np.load(inp / AMASS_NAME)
    data = {k: poses[k] for k in poses.files}
    nan = dict(data, poses=data["poses"].copy())
    nan["poses"][5:15, 7] = np.nan
    np.savez(bad / "nan_poses.npz", **nan)
    np.savez(bad / "betas_poses.npz", **dict(data, betas=np.zeros((10, 3))))
    np.savez(bad / "rate_poses.npz", **dict(data, mocap_framerate=np.array(5000.0)))
    np.savez(bad / "only_stagei.npz", betas=np.zeros(16), gender=np.array("male"))
    whole = (inp / AMASS_NAME).read_bytes()
    (bad / "truncated_poses.npz").write_bytes(whole[: len(whole) // 2])
    (bad / "random_poses.npz").write_bytes(np.random.default_rng(0).bytes(4000))
    lines = MIXAMO_BVH.splitlines()
    lines = [("Frame Time: 1e-9" if line.startswith("Frame Time:") else line) for line in lines]
    (bad / "fast.bvh").write_text("\n".join(lines) + "\n")
    (bad / "garbage.bvh").write_text("HIERARCHY\nROOT Hips\n{ OFFSET 0 0\n")
    (bad / "random.fbx").write_bytes(np.random.default_rng(1).bytes(5000))
    write_amass_walk(bad / "long_poses.npz", frames=3000)
    # templates: an sdc.mp4 without frames, a vid.mp4 that is not a video
    import av

    empty = keep(inp / "mimo_templates" / "zz_empty_sdc")
    write_demo_template(empty)
    with av.open(str(empty / "sdc.mp4"), "w") as container:
        stream = container.add_stream("libx264", rate=30)
        stream.width, stream.height, stream.pix_fmt = 16, 16, "yuv420p"
        container.start_encoding()
    text = keep(inp / "mimo_templates" / "zz_text_vid")
    write_demo_template(text)
    (text / "vid.mp4").write_text("not a video\n" * 50)

    # checkpoints
    ck = keep(models / "mimo" / "zz_bad")
    ck.mkdir(exist_ok=True)
    (ck / "zero.pth").write_bytes(b"")
    ref = (models / "mimo" / "tiny" / "reference_unet.pth").read_bytes()
    (ck / "truncated.pth").write_bytes(ref[: len(ref) // 2])
    (ck / "random.pth").write_bytes(np.random.default_rng(2).bytes(20000))
    marker = out / "PWNED_MARKER"

    class Evil:
        def __reduce__(self):
            return (open, (str(marker), "w"))

    torch.save({"conv_in.weight": torch.zeros(1), "x": Evil()}, ck / "evil.pth")
    keep(models / "sam2" / "zz_zero.pt").write_bytes(b"")
    keep(models / "depthanything" / "zz_random.pth").write_bytes(np.random.default_rng(3).bytes(3000))
    import pickle

    with open(keep(models / "smpl" / "zz_evil.pkl"), "wb") as f:
        pickle.dump(Evil(), f, protocol=2)

    server.object_info(refresh=True)
    yield {"server": server, "links": links, "marker": marker, "out": out}
    for p in reversed(made):
        if p.is_symlink() or p.is_file():
            p.unlink()
        elif p.is_dir():
            shutil.rmtree(p, ignore_errors=True)
    server.object_info(refresh=True)


# ----------------------------------------------------------------------------- prompts

def preview(node: dict, output: int = 0, extra: dict | None = None) -> dict:
    prompt = {"1": node, "2": {"class_type": "PreviewAny", "inputs": {"source": ["1", output]}}}
    prompt.update(extra or {})
    return prompt


def amass(file: str, **kw) -> dict:
    return preview({"class_type": "MIMOLoadAMASS",
                    "inputs": {"file": file, "fps": 30.0, "start_frame": 0, "max_frames": 0, **kw}}, 2)


def mixamo(file: str, **kw) -> dict:
    return preview({"class_type": "MIMOLoadMixamo",
                    "inputs": {"file": file, "fps": 30.0, "start_frame": 0, "max_frames": 0, **kw}}, 2)


def template(name: str) -> dict:
    return preview({"class_type": "MIMOLoadTemplate",
                    "inputs": {"template": name, "fps": 0.0, "max_frames": 150, "time_crop": True}}, 5)


def body(name: str) -> dict:
    return preview({"class_type": "MIMOBodyModelLoader", "inputs": {"body_model": name}})


def model_loader(**slots) -> dict:
    inputs = {"denoising_unet": "tiny/denoising_unet.pth", "reference_unet": "tiny/reference_unet.pth",
              "pose_guider": "tiny/pose_guider.pth", "motion_module": "tiny/motion_module.pth",
              "vae_name": "mimo-tiny-vae.safetensors", "image_encoder_name": "mimo-tiny-image-encoder.safetensors",
              "precision": "auto", **slots}
    return preview({"class_type": "MIMOModelLoader", "inputs": inputs})


def empty_image(w=64, h=64, n=4, color=0x808080) -> dict:
    return {"class_type": "EmptyImage", "inputs": {"width": w, "height": h, "batch_size": n, "color": color}}


def render(file: str = AMASS_NAME, size: int = 64, **kw) -> dict:
    return {
        "b": {"class_type": "MIMOBodyModelLoader", "inputs": {"body_model": DEMO}},
        "m": {"class_type": "MIMOLoadAMASS", "inputs": {"file": file, "fps": 30.0, "start_frame": 0,
                                                       "max_frames": 0, "body": ["b", 0]}},
        "1": {"class_type": "MIMORasterizeMotion", "inputs": {
            "motion": ["m", 0], "body": ["b", 0], "width": size, "height": size, "camera": "auto", "yaw": 0.0,
            "elevation": 0.0, "distance": 0.0, "focal": 0.0, "palette": "default (rest-pose colours)",
            "drop_hands": False, "supersample": 1, **kw}},
        "2": {"class_type": "PreviewImage", "inputs": {"images": ["1", 0]}},
    }


def on_video(class_type: str, **inputs) -> dict:
    return preview({"class_type": class_type, "inputs": {"video": ["v", 0], **inputs}}, 0,
                   {"v": empty_image(n=3)})


def track(sam2: str) -> dict:
    return on_video("MIMOTrackHuman", sam2_model=sam2)


def depth(name: str) -> dict:
    return on_video("MIMOEstimateDepth", depth_model=name, input_size=56)


def from_video(name: str) -> dict:
    return on_video("MIMOMotionFromVideo", estimator=name, fps=30.0, fov_degrees=0.0, batch_size=4,
                    static_camera=True)


def save_template(name: str, size: int = 64) -> dict:
    img = ["v", 0]
    return {"v": empty_image(size, size, 2), "1": {"class_type": "MIMOSaveTemplate", "inputs": {
        "video": img, "motion": img, "scene": img, "fps": 30.0, "name": name, "overwrite": True, "crf": 30}}}


def generator(motion: dict | None = None, reference: dict | None = None, mask: dict | None = None,
              **sampler) -> dict:
    """The tiny generator: model, identity, scene, sampler (64x64, 1 step) -> PreviewAny of the latent."""
    prompt = model_loader()
    prompt["ld"] = prompt.pop("1")
    prompt["ref"] = reference or {"class_type": "LoadImage", "inputs": {"image": REFERENCE_NAME}}
    prompt["id"] = {"class_type": "MIMOIdentityEncode", "inputs": {"mimo_model": ["ld", 0], "reference": ["ref", 0],
                                                                   "width": 64, "height": 64}}
    if mask is not None:
        prompt["mask"] = mask
        prompt["id"]["inputs"]["mask"] = ["mask", 0]
    prompt["sc"] = {"class_type": "MIMOSceneEncode", "inputs": {"mimo_model": ["ld", 0], "width": 64, "height": 64}}
    prompt["mo"] = motion or {"class_type": "LoadImage", "inputs": {"image": MOTION_NAME}}
    prompt["1"] = {"class_type": "MIMOSampler", "inputs": {
        "mimo_model": ["ld", 0], "identity": ["id", 0], "motion": ["mo", 0], "scene": ["sc", 0], "width": 64,
        "height": 64, "seed": 1, "steps": 1, "cfg": 1.0, "context_frames": 8, "overlap": 2, "memory": "auto",
        **sampler}}
    prompt["2"] = {"class_type": "PreviewAny", "inputs": {"source": ["1", 0]}}
    return prompt


# ----------------------------------------------------------------------------- running

def refusal(server, prompt: dict) -> tuple[str, str]:
    """(where it was refused: 'validation' or the node type, the message)."""
    try:
        prompt_id = server.queue(prompt)
    except PromptError as e:
        return "validation", str(e)
    result = Result(prompt_id, server.wait(prompt_id, 300))
    assert not result.ok, f"accepted: {result.outputs}"
    error = result.error or {}
    return error.get("node_type", "?"), error.get("exception_message", "")


def run_class(env, name: str, cases: list, good: dict) -> None:
    """Every case refused with all its phrases in the message; the server up; ``good`` succeeds after."""
    server, failures = env["server"], []
    for label, prompt, phrases in cases:
        try:
            where, message = refusal(server, prompt)
        except AssertionError as e:
            failures.append(f"{label}: {e}")
            continue
        if os.environ.get("MIMO_SHOW_MESSAGES"):
            print(f"\n[{name}] {label} ({where}): {message[:700]}")
        missing = [p for p in phrases if p.lower() not in message.lower()]
        if missing:
            failures.append(f"{label} ({where}): {missing} not in: {message[:600]}")
        assert server.proc.poll() is None, f"the server died on {label}"
    result = server.run(good, timeout=300)
    assert result.ok, f"the good prompt after the {name} cases failed: {result.error}"
    COUNTS[name] = len(cases)
    print(f"\nbad-input matrix: {name}: {len(cases) - len(failures)}/{len(cases)} refused as expected")
    assert not failures, "\n".join(failures)


# ----------------------------------------------------------------------------- the classes

def test_paths_out_of_the_folders_are_refused(env):
    links, out = env["links"], env["out"]
    absolute, up = str(out / "walk_poses.npz"), "../" * 12 + str(out / "walk_poses.npz").lstrip("/")
    inside = ["refused", "ComfyUI's input folder"]
    model = lambda key: ["refused", f"the '{key}' model folders", "extra_model_paths.yaml"]  # noqa: E731
    link = ["is a link to", "outside"]
    cases = [
        ("AMASS absolute", amass(absolute), inside + ["absolute path"]),
        ("AMASS ..", amass(up), inside + ["'..'"]),
        ("AMASS link out", amass(links["amass"]), inside + link),
        ("Mixamo absolute", mixamo(str(out / "wave.bvh")), inside + ["absolute path"]),
        ("Mixamo ..", mixamo("../wave.bvh"), inside + ["'..'"]),
        ("Mixamo link out", mixamo(links["bvh"]), inside + link),
        ("template absolute", template(str(out / "tpl")), inside + ["absolute path"]),
        ("template ..", template("../" + out.name + "/tpl"), inside + ["'..'"]),
        ("template folder link out", template(f"mimo_templates/{links['template_dir']}"), inside + link),
        ("template video link out", template(links["template_file"]), ["vid.mp4", "outside"] + link),
        ("body absolute", body(str(out / "body.npz")), model("smpl") + ["absolute path"]),
        ("body ..", body("../body.npz"), model("smpl") + ["'..'"]),
        ("body link out", body(links["smpl"]), model("smpl") + link),
        ("checkpoint absolute", model_loader(pose_guider=str(out / "pose_guider.pth")), model("mimo") + ["absolute"]),
        ("checkpoint ..", model_loader(pose_guider="../../pose_guider.pth"), model("mimo") + ["'..'"]),
        ("checkpoint link out", model_loader(pose_guider=links["mimo"]), model("mimo") + link),
        ("palette link out", render(palette=links["palette"]), model("mimo") + link),
        ("palette absolute", render(palette=str(out / "palette.npy")), model("mimo") + ["absolute path"]),
        ("SAM 2 link out", track(links["sam2"]), model("sam2") + link),
        ("SAM 2 absolute", track(str(out / "x.pt")), model("sam2") + ["absolute path"]),
        ("depth link out", depth(links["depth"]), model("depthanything") + link),
        ("NLF link out", from_video(links["nlf"]), model("nlf") + link),
        ("save template through a link", save_template(f"{links['output_dir']}/x"), ["refused", "links to",
                                                                                   "output folder"]),
        ("save template ..", save_template("../../x"), ["refused", "'..'", "output folder"]),
        ("save template absolute", save_template(str(out / "x")), ["refused", "output folder"]),
    ]
    run_class(env, "paths", cases, amass(AMASS_NAME))
    assert not list(env["out"].glob("x*")), "something was written outside the output folder"


def test_bad_motion_files_are_refused(env):
    cases = [
        ("AMASS NaN frames", amass("zz_bad/nan_poses.npz"), ["nan_poses.npz", "frames 5-14", "NaN", "re-export"]),
        ("AMASS betas shape", amass("zz_bad/betas_poses.npz"), ["betas_poses.npz", "'betas' has shape (10, 3)",
                                                                 "expected one shape vector"]),
        ("AMASS 5000 fps", amass("zz_bad/rate_poses.npz"), ["5000 fps", "implausible", "mocap_framerate"]),
        ("AMASS shape-only", amass("zz_bad/only_stagei.npz"), ["only a body shape", "_poses.npz"]),
        ("AMASS truncated", amass("zz_bad/truncated_poses.npz"), ["truncated_poses.npz", "truncated", "Re-download"]),
        ("AMASS random bytes", amass("zz_bad/random_poses.npz"), ["random_poses.npz", "not a .npz archive"]),
        ("BVH 1e9 fps", mixamo("zz_bad/fast.bvh", fps=0.0), ["fast.bvh", "1e+09 fps", "Frame Time"]),
        ("BVH garbage", mixamo("zz_bad/garbage.bvh"), ["garbage.bvh", "ends too early"]),
        ("FBX random bytes", mixamo("zz_bad/random.fbx"), ["random.fbx", "Not an FBX file"]),
        ("AMASS missing", amass("zz_bad/none_poses.npz"), ["was not found in ComfyUI's input folder", "press R"]),
        ("AMASS wrong extension", amass("zz_bad/fast.bvh"), ["is not a AMASS motion file", ".npz"]),
        ("start past the end", amass(AMASS_NAME, start_frame=500), ["start_frame 500 is past the end"]),
    ]
    run_class(env, "motion files", cases, amass(AMASS_NAME))


def test_bad_checkpoints_are_refused(env):
    marker = env["marker"]
    cases = [
        ("missing", model_loader(reference_unet="nowhere/reference_unet.pth"),
         ["nowhere/reference_unet.pth", "was not found in the 'mimo' model folders"]),
        ("zero bytes", model_loader(reference_unet="zz_bad/zero.pth"), ["zero.pth", "empty (0 bytes)", "Re-download"]),
        ("truncated", model_loader(reference_unet="zz_bad/truncated.pth"), ["truncated.pth", "Re-download"]),
        ("random bytes", model_loader(reference_unet="zz_bad/random.pth"), ["random.pth", "damaged", "Re-download"]),
        ("wrong slot", model_loader(reference_unet="tiny/pose_guider.pth"), ["pose_guider.pth", "reference_unet"]),
        ("code in a pickle", model_loader(pose_guider="zz_bad/evil.pth"), ["evil.pth", "refusing to load",
                                                                          "never runs code"]),
        ("code in a body .pkl", body("zz_evil.pkl"), ["zz_evil.pkl", "refusing to load"]),
        ("SAM 2 zero bytes", track("zz_zero.pt"), ["zz_zero.pt", "empty (0 bytes)", "Re-download"]),
        ("SAM 2 none", track("none"), ["SAM 2 model file '(none selected)'", "'sam2' model folders"]),
        ("depth random bytes", depth("zz_random.pth"), ["zz_random.pth", "damaged", "Re-download"]),
        ("NLF missing", from_video("missing.torchscript"), ["'missing.torchscript' was not found in the 'nlf'"]),
    ]
    run_class(env, "checkpoints", cases, model_loader())
    assert not marker.exists(), "a pickle ran code: the marker file was written"


def test_bad_images_and_templates_are_refused(env):
    black = empty_image(64, 64, 8, color=0)
    cases = [
        ("reference 1x1", generator(reference=empty_image(1, 1, 1)), ["too small", "1x1", "at least 32"]),
        ("empty reference mask", generator(mask={"class_type": "SolidMask",
                                                 "inputs": {"value": 0.0, "width": 64, "height": 64}}),
         ["mask is empty", "matte"]),
        ("all-black motion", generator(motion=black), ["all black", "no body is visible", "Rasterize Motion"]),
        ("sdc.mp4 without frames", template("mimo_templates/zz_empty_sdc"), ["sdc.mp4' has no frames", "Re-export"]),
        ("vid.mp4 not a video", template("mimo_templates/zz_text_vid"), ["vid.mp4' is not a readable video",
                                                                        "re-encode"]),
        ("not a template", template("zz_bad"), ["is not a MIMO template", "needs config.json"]),
    ]
    run_class(env, "images and templates", cases, template(TEMPLATE_NAME))
    # some black motion frames: runs, with the warning in the sampler's UI output
    motion = {"class_type": "ImageBatch", "inputs": {"image1": ["mo0", 0], "image2": ["blk", 0]}}
    prompt = generator(motion=motion)
    prompt["mo0"] = {"class_type": "LoadImage", "inputs": {"image": MOTION_NAME}}
    prompt["blk"] = empty_image(64, 64, 3, color=0)
    result = env["server"].run(prompt, timeout=300, check=True)
    text = " ".join(result.outputs["1"]["text"])
    assert "Warning: 3 of the 11 motion frames are black" in text and "frames 8-10" in text, text


def test_bad_sizes_counts_and_parameters_are_refused(env):
    def plan(width=64, scene_frames=3, scene_size=64):
        return {"m": empty_image(64, 64, 3), "s": empty_image(scene_size, scene_size, scene_frames),
                "1": {"class_type": "MIMOPlanROI", "inputs": {"motion": ["m", 0], "scene": ["s", 0], "width": width,
                                                              "height": 64}},
                "2": {"class_type": "PreviewAny", "inputs": {"source": ["1", 3]}}}

    inpaint = on_video("MIMOInpaintScene", masks=["k", 0], method="median", dilate=0, window=0)
    inpaint["k"] = {"class_type": "SolidMask", "inputs": {"value": 1.0, "width": 64, "height": 64}}
    occ = on_video("MIMOOcclusionLayer", human_mask=["k", 0], depth=["v", 0], sam2_model="none",
                   tracking="SAM 2, both ways (official)", candidates="depth regions (built-in)", output="hard",
                   feather=0.0, nearer_ratio=0.4, min_pixels_small=100, min_pixels_large=600, max_keyframes=5,
                   keyframe_gap=20)
    occ["k"] = {"class_type": "SolidMask", "inputs": {"value": 1.0, "width": 64, "height": 64}}
    cases = [
        ("ROI size not a multiple of 8", plan(width=100), ["100x64", "multiples of 8"]),
        ("ROI scene frame count", plan(scene_frames=2), ["'scene' has 2 frames but 3", "same frame count"]),
        ("ROI scene size", plan(scene_size=32), ["32x32", "64x64"]),
        ("odd template size", save_template("zz_odd", size=63), ["even width and height", "63x63"]),
        ("overlap >= context", generator(overlap=8), ["overlap", "context_frames"]),
        ("steps below the minimum", generator(steps=0), ["steps", "smaller than min"]),
        ("mask covers everything", inpaint, ["covers every pixel", "inverted"]),
        ("occluders without SAM 2", occ, ["need a SAM 2 model", "static (no tracking)"]),
        ("fps above the maximum", amass(AMASS_NAME, fps=500.0), ["fps", "bigger than max"]),
    ]
    run_class(env, "sizes, counts, parameters", cases, plan())


def test_work_beyond_the_machine_is_refused_before_it_starts(env):
    huge = {"class_type": "RepeatImageBatch", "inputs": {"image": ["small", 0], "amount": 64}}
    prompt = generator(motion=huge, width=2048, height=2048)
    prompt["small"] = empty_image(8, 8, 4096, color=0x808080)  # 262144 frames of 8x8: 200 MB here
    cases = [
        ("sampler: 262144 frames at 2048x2048", prompt, ["MIMO Sampler (262144 frames at 2048x2048",
                                                          "needs about", "can be used", "lower width/height"]),
        ("rasterizer: 3000 frames at 4096x4096", render("zz_bad/long_poses.npz", size=4096, supersample=2),
         ["MIMO Rasterize Motion (", "4096x4096", "needs about", "GiB", "lower width/height"]),
    ]
    run_class(env, "bounded work", cases, render(AMASS_NAME))
    print(f"\nbad-input matrix counts per class: {COUNTS} (total {sum(COUNTS.values())})")
