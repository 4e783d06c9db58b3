"""A real ComfyUI with the pack on this machine's device: the demo workflows, then Cancel in the middle
of a long sampler run, the next run, and the device memory before and after.

    python -m benchmarks.gpu_comfy            # on the GPU, default memory settings
    python -m benchmarks.gpu_comfy --lowvram  # ComfyUI's --lowvram
    python -m benchmarks.gpu_comfy --cpu      # the same on the CPU (what CI machines can do)

Prints one JSON line per check; exit status 1 when one fails.
"""

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

from . import ROOT, load_pack

WORKFLOWS = ("mimo_demo_tiny", "mimo_amass_demo_body")


def _vram(server) -> dict:
    dev = server.request("GET", "/system_stats")["devices"][0]
    return {"vram_free": dev.get("vram_free"), "torch_vram_free": dev.get("torch_vram_free"),
            "vram_total": dev.get("vram_total")}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--cpu", action="store_true")
    p.add_argument("--lowvram", action="store_true")
    args = p.parse_args(argv)
    pack = load_pack()
    from importlib import import_module

    host = import_module(f"{pack.__name__}.devtools.comfy_host")
    assets = import_module(f"{pack.__name__}.devtools.demo_assets")
    run_demo = import_module(f"{pack.__name__}.devtools.run_demo")
    to_api = import_module(f"{pack.__name__}.devtools.workflow_to_api").to_api

    label = "cpu" if args.cpu else ("gpu --lowvram" if args.lowvram else "gpu")
    failed = False
    with tempfile.TemporaryDirectory(prefix="mimo-gpu-check-") as tmp:
        models = Path(tmp) / "models"
        models.mkdir()
        run_demo.write_weights(models)
        extra = ["--lowvram"] if args.lowvram else []
        with host.ComfyServer(host.provision_comfyui(), ROOT, models_dir=models, run_dir=Path(tmp) / "run",
                              extra_args=extra, cpu=args.cpu) as server:
            assets.write_demo_assets(server.input_dir)
            info = server.object_info()
            prompts = {name: to_api(json.loads((ROOT / "workflows" / f"{name}.json").read_text()), info)
                       for name in WORKFLOWS}
            for name, prompt in prompts.items():
                start = time.perf_counter()
                result = server.run(prompt, timeout=900)
                failed |= not result.ok
                print(json.dumps({"check": "workflow", "server": label, "workflow": name, "ok": result.ok,
                                  "seconds": round(time.perf_counter() - start, 2),
                                  "error": None if result.ok else str(result.error)[:300]}), flush=True)
            before = _vram(server)
            long = json.loads(json.dumps(prompts["mimo_demo_tiny"]))
            node = next(n for n in long.values() if n["class_type"] == "MIMOSampler")
            node["inputs"].update(steps=200, seed=7)
            prompt_id = server.queue(long)
            time.sleep(4)
            server.interrupt()
            start = time.monotonic()
            entry = server.wait(prompt_id, timeout=300)
            stopped_s = time.monotonic() - start
            interrupted = "execution_interrupted" in [m[0] for m in entry["status"]["messages"]]
            again = server.run(prompts["mimo_demo_tiny"], timeout=900)
            after = _vram(server)
            drift = None
            if before["torch_vram_free"] is not None and not args.cpu:
                drift = (before["vram_free"] - after["vram_free"]) / 2**20
            ok = interrupted and again.ok and (drift is None or drift < 64)
            failed |= not ok
            print(json.dumps({"check": "interrupt", "server": label, "interrupted": interrupted,
                              "stopped_after_s": round(stopped_s, 2), "next_run_ok": again.ok,
                              "vram_free_drift_mib": None if drift is None else round(drift, 1),
                              "before": before, "after": after, "ok": ok}), flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
