"""A real ComfyUI with the pack on this machine's device: the demo workflows, then Cancel in the middle
of a long sampler run, the next run, and the device memory before and after.

    python -m benchmarks.gpu_comfy            # on the GPU, default memory settings
    python -m benchmarks.gpu_comfy --lowvram  # ComfyUI's --lowvram
    python -m benchmarks.gpu_comfy --cpu      # the same on the CPU (what CI machines can do)
    ... --comfyui DIR --front-end-root DIR    # a ComfyUI folder as is (its requirements importable), no pip

Without --comfyui the pinned ComfyUI is provisioned (downloaded once, requirements installed by pip).

Prints one JSON line per check; exit status 1 when one fails.
"""

import argparse
import asyncio
import json
import sys
import tempfile
import time
import uuid
from pathlib import Path

from . import ROOT, load_pack

WORKFLOWS = ("mimo_demo_tiny", "mimo_amass_demo_body")


def _vram(server) -> dict:
    dev = server.request("GET", "/system_stats")["devices"][0]
    return {"vram_free": dev.get("vram_free"), "torch_vram_free": dev.get("torch_vram_free"),
            "vram_total": dev.get("vram_total")}


async def _queue_until_progress(server, prompt: dict, node_id: str, steps_done: int, timeout: float):
    """Queue ``prompt`` and follow the server's websocket (aiohttp: a ComfyUI requirement) until node
    ``node_id`` reports ``steps_done`` of its progress; (prompt id, that progress, or None when the
    prompt ended or ``timeout`` passed first)."""
    import aiohttp

    client_id = uuid.uuid4().hex
    async with aiohttp.ClientSession() as session, session.ws_connect(f"{server.url}/ws?clientId={client_id}") as ws:
        prompt_id = server.queue(prompt, client_id=client_id)
        try:
            async with asyncio.timeout(timeout):
                async for msg in ws:
                    if msg.type != aiohttp.WSMsgType.TEXT:
                        continue
                    message = json.loads(msg.data)
                    kind, data = message.get("type"), message.get("data") or {}
                    if data.get("prompt_id") not in (None, prompt_id):
                        continue
                    if kind == "progress" and data.get("node") == node_id and data.get("value", 0) >= steps_done:
                        return prompt_id, {"value": data["value"], "max": data.get("max")}
                    if kind in ("execution_success", "execution_error", "execution_interrupted"):
                        break
        except TimeoutError:
            pass
    return prompt_id, None


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--cpu", action="store_true")
    p.add_argument("--lowvram", action="store_true")
    p.add_argument("--comfyui", type=Path, help="ComfyUI folder to use as is (default: provision 0.3.75)")
    p.add_argument("--front-end-root", type=Path, help="frontend folder (ComfyUI's --front-end-root)")
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
        if args.front_end_root:
            extra += ["--front-end-root", str(args.front_end_root)]
        comfy = args.comfyui or host.provision_comfyui()
        if not (comfy / "main.py").is_file():
            p.error(f"--comfyui {comfy}: no main.py there (give the ComfyUI folder itself)")
        with host.ComfyServer(comfy, ROOT, models_dir=models, run_dir=Path(tmp) / "run",
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
            sampler_id = next(k for k, n in long.items() if n["class_type"] == "MIMOSampler")
            long[sampler_id]["inputs"].update(steps=200, seed=7)
            # Cancel once the sampler has reported 2 of its 200 steps: in the middle of its loop
            prompt_id, progress = asyncio.run(_queue_until_progress(server, long, sampler_id, 2, timeout=600))
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
            ok = progress is not None and interrupted and again.ok and (drift is None or drift < 64)
            failed |= not ok
            print(json.dumps({"check": "interrupt", "server": label, "sampler_progress_at_cancel": progress,
                              "interrupted": interrupted,
                              "stopped_after_s": round(stopped_s, 2), "next_run_ok": again.ok,
                              "vram_free_drift_mib": None if drift is None else round(drift, 1),
                              "before": before, "after": after, "ok": ok}), flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
