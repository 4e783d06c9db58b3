"""Fuzzing of every file parser in the pack with hypothesis: mutated real-format files (byte flips,
truncations, insertions, spliced ranges, token swaps) and structurally wrong content (arrays of the
wrong dtype or shape, wrong JSON types). Each input must either load or raise the pack's own
``MIMOInputError`` with a message; any other exception, a hang (``--timeout``) or a crash fails.

    python -m devtools.fuzz --examples 5000            # every target, 5000 examples each
    python -m devtools.fuzz --only bvh,amass --examples 20000 --seed 3

tests/test_fuzz_parsers.py runs the same targets with a few examples each (derandomized)."""

from __future__ import annotations

import argparse
import importlib
import os
import pickle
import signal
import sys
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from .run_demo import load_pack

PACK = load_pack().__name__


def _mod(name: str):
    return importlib.import_module(f"{PACK}.models.{name}")


# ----------------------------------------------------------------------------- mutations

_INTERESTING = [b"0", b"-1", b"1e999", b"nan", b"-inf", b"99999999999", b"1e-300", b"{", b"}", b"\x00", b"\xff" * 4,
                b"CHANNELS", b"JOINT", b"End", b"MOTION", b"Frames:", b"\x80", b"*", b"\"", b"[", b"]"]


@st.composite
def mutated(draw, seed: bytes, max_ops: int = 4) -> bytes:
    """``seed`` with 0..max_ops random edits (a truncation among them, often)."""
    data = bytearray(seed)
    for _ in range(draw(st.integers(0, max_ops))):
        op = draw(st.sampled_from(["flip", "truncate", "insert", "delete", "splice", "interesting"]))
        n = len(data)
        at = draw(st.integers(0, max(0, n - 1)))
        if op == "flip" and n:
            data[at] ^= 1 << draw(st.integers(0, 7))
        elif op == "truncate":
            del data[at:]
        elif op == "insert":
            data[at:at] = draw(st.binary(min_size=1, max_size=16))
        elif op == "delete":
            del data[at:at + draw(st.integers(1, 64))]
        elif op == "splice" and n:  # a copied range elsewhere (duplicated structure)
            start = draw(st.integers(0, n - 1))
            data[at:at] = data[start:start + draw(st.integers(1, 256))]
        elif op == "interesting":
            data[at:at + draw(st.integers(0, 8))] = draw(st.sampled_from(_INTERESTING))
    return bytes(data)


@st.composite
def token_mutated(draw, text: str, max_ops: int = 4) -> bytes:
    """Whitespace-token edits of a text format (BVH): replace, drop or repeat tokens."""
    tokens = text.split()
    vocab = sorted(set(tokens)) + [t.decode("latin1") for t in _INTERESTING] + ["1e308", "-0", "3.5", "2147483648"]
    for _ in range(draw(st.integers(1, max_ops))):
        if not tokens:
            break
        at = draw(st.integers(0, len(tokens) - 1))
        op = draw(st.sampled_from(["replace", "drop", "repeat", "cut"]))
        if op == "replace":
            tokens[at] = draw(st.sampled_from(vocab))
        elif op == "drop":
            del tokens[at]
        elif op == "repeat":
            tokens[at:at] = tokens[at:at + draw(st.integers(1, 40))]
        else:
            del tokens[at:]
    return " ".join(tokens).encode()


_DTYPES = ["f8", "f4", "f2", "i8", "i4", "u1", "u4", "b1", "c8", "U3", "S2", "V4", "O"]


@st.composite
def arrays(draw, max_dims: int = 3, max_side: int = 8):
    dtype = draw(st.sampled_from(_DTYPES))
    shape = tuple(draw(st.lists(st.integers(0, max_side), max_size=max_dims)))
    size = int(np.prod(shape))
    if dtype == "O":
        values = draw(st.lists(st.sampled_from([None, 1, "a", (1, 2), 2.5]), min_size=size, max_size=size))
        out = np.empty(size, dtype=object)
        out[:] = values
        return out.reshape(shape)
    nbytes = size * np.dtype(dtype).itemsize
    if nbytes > 4096:  # big arrays: a drawn 4 KiB pattern repeated (drawing every byte is slow)
        raw = (draw(st.binary(min_size=4096, max_size=4096)) * (nbytes // 4096 + 1))[:nbytes]
    else:
        raw = draw(st.binary(min_size=nbytes, max_size=nbytes))
    return np.frombuffer(raw, dtype=dtype).reshape(shape).copy()


def _npz_bytes(entries: dict) -> bytes:
    import io

    buf = io.BytesIO()
    np.savez(buf, **entries)
    return buf.getvalue()


@st.composite
def npz_structured(draw, keys: list[str], seed_entries: dict) -> bytes:
    """A seed's arrays with some replaced by arrays of random dtype/shape, dropped, or added."""
    entries = dict(seed_entries)
    for key in draw(st.lists(st.sampled_from(keys), max_size=4, unique=True)):
        if draw(st.booleans()) and key in entries:
            del entries[key]
        else:
            entries[key] = draw(arrays())
    return _npz_bytes(entries)


# ----------------------------------------------------------------------------- running one input

class Hang(Exception):
    pass


@contextmanager
def _time_limit(seconds: float):
    if seconds <= 0 or not hasattr(signal, "SIGALRM"):
        yield
        return

    def fire(*_):
        raise Hang(f"no answer after {seconds:g} s")

    old = signal.signal(signal.SIGALRM, fire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)


STATS: dict[str, list[int]] = {}  # target -> [loaded, refused]


def expect_clean(target: str, fn, *args, timeout: float = 30.0):
    """fn(*args) loads, or raises MIMOInputError with a message; anything else propagates."""
    error_type = _mod("errors").MIMOInputError
    counts = STATS.setdefault(target, [0, 0])
    try:
        with _time_limit(timeout):
            result = fn(*args)
    except error_type as e:
        if not str(e).strip():
            raise AssertionError(f"{target}: {type(e).__name__} without a message") from e
        counts[1] += 1
        return None
    counts[0] += 1
    return result


def _file(data: bytes, name: str) -> Path:
    folder = Path(tempfile.mkdtemp(prefix="mimo_fuzz_"))
    path = folder / name
    path.write_bytes(data)
    return path


def _cleanup(path: Path) -> None:
    for p in path.parent.iterdir():
        p.unlink()
    path.parent.rmdir()


def _on_file(target: str, fn, name: str, data: bytes, timeout: float = 30.0):
    path = _file(data, name)
    try:
        return expect_clean(target, fn, path, timeout=timeout)
    finally:
        _cleanup(path)


# ----------------------------------------------------------------------------- targets

def _seeds():
    from . import fuzz_seeds

    return fuzz_seeds


def _bvh_strategy():
    text = _seeds().bvh_seed().decode()
    return st.one_of(mutated(text.encode()), token_mutated(text))


def _bvh(data: bytes):
    _on_file("bvh", _mod("motion.bvh").load_bvh, "clip.bvh", data)


def _amass_strategy():
    seeds = _seeds()
    entries = dict(np.load(__import__("io").BytesIO(seeds.amass_seed())))
    keys = ["poses", "trans", "betas", "gender", "mocap_framerate", "mocap_frame_rate", "root_orient", "pose_body",
            "pose_hand", "surface_model_type"]
    return st.one_of(mutated(seeds.amass_seed()), mutated(seeds.amass_stageii_seed()),
                     npz_structured(keys, entries))


def _amass(data: bytes):
    _on_file("amass", _mod("motion.amass").load_amass, "clip_poses.npz", data)


def _fbx_strategy():
    return mutated(_seeds().fbx_seed(), max_ops=3)


def _fbx(data: bytes):
    load = _mod("motion.fbx").load_fbx
    _on_file("fbx", lambda p: load(p, timeout=20.0), "clip.fbx", data, timeout=40.0)


def _smpl_strategy():
    seeds = _seeds()
    arrays_ = seeds._smpl_arrays()
    keys = list(arrays_) + ["J", "bs_style"]

    @st.composite
    def structured_pickle(draw):
        entries = dict(arrays_)
        for key in draw(st.lists(st.sampled_from(keys), min_size=1, max_size=3, unique=True)):
            if draw(st.booleans()) and key in entries:
                del entries[key]
            else:
                a = draw(arrays())
                entries[key] = a if a.dtype != object else a.tolist()
        return pickle.dumps(entries, protocol=draw(st.integers(0, 5)))

    return st.one_of(st.tuples(st.just(".pkl"), mutated(seeds.smpl_pkl_seed())),
                     st.tuples(st.just(".pkl"), structured_pickle()),
                     st.tuples(st.just(".npz"), mutated(seeds.smpl_npz_seed())),
                     st.tuples(st.just(".npz"), npz_structured(keys, arrays_)))


def _smpl(case):
    suffix, data = case
    _on_file("smpl", _mod("body.files").read_body_model, f"model{suffix}", data)


@st.composite
def palette_shaped(draw):
    """[V, C] arrays near the real palette size, of any dtype."""
    rows = draw(st.sampled_from([0, 1, 6889, 6890, 6891]))
    cols = draw(st.integers(0, 5))
    dtype = draw(st.sampled_from([d for d in _DTYPES if d != "O"]))
    return np.full((rows, cols), draw(st.binary(min_size=16, max_size=16)), dtype="V16").view("u1")[
        :, :cols * np.dtype(dtype).itemsize].copy().view(dtype) if rows * cols else np.zeros((rows, cols), dtype)


def _sdc_strategy():
    seeds = _seeds()

    @st.composite
    def structured(draw):
        import io

        colours = st.builds(lambda a: {"smpl": a}, st.one_of(arrays(max_dims=2), palette_shaped()))
        value = draw(st.one_of(arrays(), colours))
        buf = io.BytesIO()
        np.save(buf, np.array(value, dtype=object) if isinstance(value, dict) else value, allow_pickle=True)
        return buf.getvalue()

    return st.one_of(mutated(seeds.sdc_seed()), structured())


def _sdc(data: bytes):
    _on_file("sdc_info", _mod("render.palette").load_sdc_info, "sdc_info.npy", data)


_JSON = st.recursive(st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=5),
                     lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3),
                     max_leaves=8)


def _config_strategy():
    import json

    seed = _seeds().config_seed()
    crop = st.one_of(_JSON, st.fixed_dictionaries({"start_idx": _JSON, "end_idx": _JSON}))
    structured = st.fixed_dictionaries({"fps": _JSON, "time_crop": crop}).map(
        lambda d: json.dumps(d, allow_nan=True).encode())
    return st.one_of(mutated(seed), structured, _JSON.map(lambda v: json.dumps(v).encode()))


def _config(data: bytes):
    template = _mod("composite.template")

    def read(path):
        config = template.read_config(path.parent)
        template.time_crop(config, 30.0)  # what load_template does with it next
        template.time_crop(config, 7.5)
        return config

    _on_file("config", read, "config.json", data)


def _checkpoint_strategy():
    seeds = _seeds().checkpoint_seeds()
    return st.one_of(*[st.tuples(st.just(name), mutated(data, max_ops=3)) for name, data in seeds.items()])


def _checkpoint(case):
    name, data = case
    ck = _mod("generate.checkpoints")
    loading = _mod("generate.loading")

    def classify(path):
        sd = ck.read_state_dict(path)
        ck.classify(sd)
        for slot in ck.MIMO_FILES:
            try:
                ck.expect_kind(sd, path, slot, (slot,))
            except ck.CheckpointError:
                pass
        return loading._mimo_parts(loading.MIMOFiles(denoising_unet=None, pose_guider=path))

    _on_file("checkpoint", classify, name, data)


@st.composite
def _state_dicts(draw):
    import torch

    words = ["conv_in", "conv_out", "blocks", "0", "1", "weight", "bias", "down_blocks", "motion_modules", "encoder",
             "down", "decoder", "up", "vision_model", "model", "diffusion_model", "denoising_unet", "pose_guider",
             "resnets", "conv1", "pos_encoder", "pe", "input_blocks", "first_stage_model"]
    keys = draw(st.lists(st.lists(st.sampled_from(words), min_size=1, max_size=5).map(".".join), max_size=8))
    sd = {}
    for k in keys:
        shape = draw(st.lists(st.integers(0, 9), max_size=4))
        sd[k] = torch.zeros(shape, dtype=draw(st.sampled_from([torch.float32, torch.float16, torch.int64, torch.bool])))
    return sd


def _state_dict_strategy():
    return _state_dicts()


def _state_dict(sd):
    ck = _mod("generate.checkpoints")

    def run(sd):
        kind = ck.classify(sd)
        assert kind in ck.DESCRIPTIONS, kind
        return kind

    expect_clean("classify", run, sd)


# name: (strategy factory, runner, examples in the test suite)
TARGETS = {
    "bvh": (_bvh_strategy, _bvh, 250),
    "amass": (_amass_strategy, _amass, 150),
    "smpl": (_smpl_strategy, _smpl, 150),
    "sdc_info": (_sdc_strategy, _sdc, 120),
    "config": (_config_strategy, _config, 200),
    "checkpoint": (_checkpoint_strategy, _checkpoint, 80),
    "classify": (_state_dict_strategy, _state_dict, 200),
    "fbx": (_fbx_strategy, _fbx, 12),
}


def run(name: str, examples: int | None = None, derandomize: bool = True, seed: int | None = None) -> dict:
    """Runs one target; returns {'examples', 'loaded', 'refused', 'seconds'}. Failures raise."""
    make, runner, default = TARGETS[name]
    examples = default if examples is None else examples
    STATS.pop(name, None)
    test = settings(max_examples=examples, deadline=None, derandomize=derandomize and seed is None, database=None,
                    suppress_health_check=list(HealthCheck), print_blob=False)(given(make())(runner))
    if seed is not None:
        from hypothesis import seed as hseed

        test = hseed(seed)(test)
    import logging

    logger = logging.getLogger("MIMO")
    level, logger.level = logger.level, logging.ERROR  # the parsers' warnings, thousands of times
    start = time.perf_counter()
    try:
        test()
    finally:
        logger.setLevel(level)
    loaded, refused = STATS.get(name, [0, 0])
    return {"examples": loaded + refused, "loaded": loaded, "refused": refused,
            "seconds": time.perf_counter() - start}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--examples", type=int, default=1000, help="examples per target")
    parser.add_argument("--only", default="", help=f"comma-separated targets ({', '.join(TARGETS)})")
    parser.add_argument("--seed", type=int, default=None, help="random seed (default: a new one each run)")
    args = parser.parse_args(argv)
    names = [n for n in args.only.split(",") if n] or list(TARGETS)
    unknown = set(names) - set(TARGETS)
    if unknown:
        parser.error(f"unknown targets {sorted(unknown)}; choose from {', '.join(TARGETS)}")
    failed = 0
    for name in names:
        try:
            r = run(name, args.examples, derandomize=False, seed=args.seed)
            print(f"{name:12s} {r['examples']:6d} inputs ({r['loaded']} loaded, {r['refused']} refused) "
                  f"in {r['seconds']:.1f} s", flush=True)
        except Exception as e:  # noqa: BLE001 - report and go on with the next target
            failed += 1
            import traceback

            print(f"{name:12s} FAILED: {type(e).__name__}: {e}", flush=True)
            for sub in getattr(e, "exceptions", [e]):
                frames = [f for f in traceback.extract_tb(sub.__traceback__) if "/models/" in f.filename]
                where = f"{frames[-1].filename}:{frames[-1].lineno} {frames[-1].line}" if frames else "?"
                print(f"  {type(sub).__name__}: {str(sub)[:300]}\n    at {where}", flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    os.environ.setdefault("PYTHONHASHSEED", "0")
    sys.exit(main())
