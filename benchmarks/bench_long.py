"""Long videos: time per frame and peak memory for 100, 300 and 1,000 frames (one process each, so
every peak is its own).

    python -m benchmarks.bench_long --tiny --width 64 --height 64 --steps 2 --device cpu   # scaling on a CPU
    python -m benchmarks.bench_long --width 784 --height 784 --steps 2 --dtype fp16         # full size, a GPU

Prints one JSON line per length (bench_sampler's fields) and a last line with the ratios: time per
frame and peak memory of the longest run over the shortest (1.0 = linear time, flat memory).
"""

import argparse
import json
import subprocess
import sys

from . import ROOT


def main(argv=None) -> list[dict]:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--frames", type=int, nargs="+", default=[100, 300, 1000])
    p.add_argument("--width", type=int, default=784)
    p.add_argument("--height", type=int, default=784)
    p.add_argument("--steps", type=int, default=2)
    p.add_argument("--dtype", default="fp16")
    p.add_argument("--device", default=None)
    p.add_argument("--memory", default="auto")
    p.add_argument("--tiny", action="store_true")
    args = p.parse_args(argv)
    results = []
    for frames in args.frames:
        cmd = [sys.executable, "-m", "benchmarks.bench_sampler", "--frames", str(frames), "--width", str(args.width),
               "--height", str(args.height), "--steps", str(args.steps), "--dtype", args.dtype,
               "--memory", args.memory, "--no-decode"]
        cmd += ["--device", args.device] if args.device else []
        cmd += ["--tiny"] if args.tiny else []
        out = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, check=True).stdout
        result = json.loads(out.strip().splitlines()[-1])
        results.append(result)
        print(json.dumps(result), flush=True)
    first, last = results[0], results[-1]
    print(json.dumps({
        "scaling": f"{first['frames']} -> {last['frames']} frames",
        "s_per_frame_step_ratio": round(last["s_per_frame_step"] / first["s_per_frame_step"], 3),
        "peak_gib_ratio": round(last["peak_gib"] / first["peak_gib"], 3),
    }))
    return results


if __name__ == "__main__":
    main()
