"""Small valid files of every format the pack parses: the starting points the fuzzer mutates
(devtools/fuzz.py). All synthetic: no SMPL, AMASS or Mixamo data."""

import importlib
import io
import json
import pickle

import numpy as np

from .demo_assets import MIXAMO_BVH
from .run_demo import load_pack

KTIME = 46186158000  # FBX time ticks per second


def _mod(name: str):
    return importlib.import_module(f"{load_pack().__name__}.models.{name}")


def bvh_seed() -> bytes:
    return MIXAMO_BVH.encode()


def amass_seed(frames: int = 6, width: int = 156) -> bytes:
    rng = np.random.default_rng(1)
    buf = io.BytesIO()
    np.savez(buf, poses=rng.normal(0, 0.1, (frames, width)), trans=rng.normal(0, 0.1, (frames, 3)),
             betas=np.zeros(16), gender=np.array("neutral"), mocap_framerate=np.array(60.0))
    return buf.getvalue()


def amass_stageii_seed(frames: int = 5) -> bytes:
    rng = np.random.default_rng(2)
    buf = io.BytesIO()
    np.savez(buf, root_orient=rng.normal(0, 0.1, (frames, 3)), pose_body=rng.normal(0, 0.1, (frames, 63)),
             pose_hand=np.zeros((frames, 90)), trans=np.zeros((frames, 3)), betas=np.zeros(16),
             mocap_frame_rate=np.array(30.0), surface_model_type=np.array("smplx"), gender=np.array("male"))
    return buf.getvalue()


def _smpl_arrays(vertices: int = 12) -> dict:
    """A made-up 24-joint body with the SMPL kintree (not SMPL: random numbers, 12 vertices)."""
    parents = np.asarray(_mod("body.skeleton").SKELETONS["smpl"][1], np.int64)
    rng = np.random.default_rng(3)
    weights = rng.random((vertices, 24))
    return {
        "v_template": rng.normal(0, 0.3, (vertices, 3)), "shapedirs": rng.normal(0, 0.01, (vertices, 3, 10)),
        "posedirs": rng.normal(0, 0.01, (vertices, 3, 207)),
        "J_regressor": rng.random((24, vertices)) / vertices, "weights": weights / weights.sum(1, keepdims=True),
        "kintree_table": np.stack([np.where(parents < 0, 4294967295, parents), np.arange(24)]).astype(np.uint32),
        "f": rng.integers(0, vertices, (8, 3)).astype(np.uint32),
    }


def smpl_pkl_seed() -> bytes:
    return pickle.dumps(_smpl_arrays(), protocol=2)


def smpl_npz_seed() -> bytes:
    buf = io.BytesIO()
    np.savez(buf, **_smpl_arrays())
    return buf.getvalue()


def sdc_seed(vertices: int = 6890) -> bytes:
    colours = (np.random.default_rng(4).random((vertices, 3)) * 255).astype(np.uint8)
    buf = io.BytesIO()
    np.save(buf, np.array({"smpl": colours}, dtype=object), allow_pickle=True)
    return buf.getvalue()


def config_seed() -> bytes:
    return json.dumps({"fps": 30, "time_crop": {"start_idx": 0, "end_idx": 150}, "frame_crop": None,
                       "layer_recover": None}, indent=2).encode()


def fbx_seed(frames: int = 3) -> bytes:
    """A minimal ASCII FBX 7.4: three LimbNodes (cm, Y up), one stack with rotation curves."""
    names, parents = ["Hips", "Spine", "Head"], [-1, 0, 1]
    offsets = [(0, 100, 0), (0, 10, 0), (0, 40, 0)]
    lines = ["; FBX 7.4.0 project file", "FBXHeaderExtension:  {", "\tFBXHeaderVersion: 1003",
             "\tFBXVersion: 7400", "}", "GlobalSettings:  {", "\tVersion: 1000", "\tProperties70:  {",
             '\t\tP: "UpAxis", "int", "Integer", "",1', '\t\tP: "UnitScaleFactor", "double", "Number", "",1',
             '\t\tP: "TimeMode", "enum", "", "",14', '\t\tP: "CustomFrameRate", "double", "Number", "",30',
             "\t}", "}", "Objects:  {"]
    for j, name in enumerate(names):
        lines += [f'\tModel: {100 + j}, "Model::{name}", "LimbNode" {{', "\t\tProperties70:  {",
                  f'\t\t\tP: "Lcl Translation", "Lcl Translation", "", "A",{",".join(map(str, offsets[j]))}',
                  "\t\t}", "\t}"]
    stop = (frames - 1) * KTIME // 30
    lines += ['\tAnimationStack: 200, "AnimStack::Take 001", "" {', "\t\tProperties70:  {",
              f'\t\t\tP: "LocalStop", "KTime", "Time", "",{stop}', "\t\t}", "\t}",
              '\tAnimationLayer: 201, "AnimLayer::BaseLayer", "" {', "\t}"]
    conns = [f'\tC: "OO",{100 + j},{0 if p < 0 else 100 + p}' for j, p in enumerate(parents)] + ['\tC: "OO",201,200']
    times = ",".join(str(k * KTIME // 30) for k in range(frames))
    for j in range(len(names)):
        node = 300 + 10 * j
        lines += [f'\tAnimationCurveNode: {node}, "AnimCurveNode::R", "" {{', "\t}"]
        conns += [f'\tC: "OO",{node},201', f'\tC: "OP",{node},{100 + j}, "Lcl Rotation"']
        for a, axis in enumerate("XYZ"):
            values = ",".join(f"{10.0 * (k + 1) * (a + 1) * (j + 1):g}" for k in range(frames))
            lines += [f'\tAnimationCurve: {node + 1 + a}, "AnimCurve::", "" {{', "\t\tDefault: 0", "\t\tKeyVer: 4009",
                      f"\t\tKeyTime: *{frames} {{", f"\t\t\ta: {times}", "\t\t}",
                      f"\t\tKeyValueFloat: *{frames} {{", f"\t\t\ta: {values}", "\t\t}",
                      "\t\tKeyAttrFlags: *1 {", "\t\t\ta: 260", "\t\t}",
                      "\t\tKeyAttrDataFloat: *4 {", "\t\t\ta: 0,0,0,0", "\t\t}",
                      "\t\tKeyAttrRefCount: *1 {", f"\t\t\ta: {frames}", "\t\t}", "\t}"]
            conns.append(f'\tC: "OP",{node + 1 + a},{node}, "d|{axis}"')
    lines += ["}", "Connections:  {"] + conns + ["}", ""]
    return "\n".join(lines).encode()


def checkpoint_seeds() -> dict:
    """{name: bytes} of small weight files: the tiny pose guider as .pth and .safetensors, a tiny
    motion module slice (.pth)."""
    import torch
    from safetensors.torch import save

    _, reference, pose_guider = _mod("generate.tiny").tiny_networks()
    pg = {k: v.clone() for k, v in pose_guider.state_dict().items()}
    ref = {k: v.clone() for k, v in list(reference.state_dict().items())[:12]}
    out = {}
    for name, sd in (("pose_guider.pth", pg), ("reference_unet.pth", ref)):
        buf = io.BytesIO()
        torch.save(sd, buf)
        out[name] = buf.getvalue()
    out["pose_guider.safetensors"] = save(pg)
    return out
