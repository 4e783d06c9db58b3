"""The main figures of a ``gpu_check.sh`` log as a short table (the device tool returns only the end of
a command's output, so the check prints this last; the full lines stay in the log).

    python -m benchmarks.gpu_summary gpu_check.jsonl

Reads the JSON lines the check's parts print and writes one text line per figure: the speed-up over
the official pipeline, each sampler run (s/step, first step, peak), parity and the fp16/bf16 bound,
ComfyUI, the rasterizer, the long runs, the profile's kinds and slowest ops, the layer variants,
the window-parallel runs, and the seconds each part took.
"""

import json
import sys
from pathlib import Path


def _records(path: Path) -> list[dict]:
    records = []
    for line in path.read_text(errors="replace").splitlines():
        line = line.strip()
        if line.startswith("{"):
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError:
                continue  # a line cut off when a part was stopped
    return records


def _sampler(r: dict) -> str:
    how = (", compiled" if r.get("compiled") else "") + (f", attention {r['sdpa']}" if "sdpa" in r else "")
    return (f"ours {r['width']}x{r['height']}x{r['frames']} {r['memory']}{how} {r['dtype']}: "
            f"{r['step_s_median']} s/step, first step {r['first_step_s']} s, peak {r['peak_gib']} GiB")


def _distance(d: dict) -> str:
    return f"{d['max_abs']:.3g}/{d['mean_abs']:.3g}"


def line_of(r: dict) -> str | None:
    """One text line for a record, or None for those the table leaves out."""
    check = r.get("check")
    if check == "speedup_vs_official":
        if "skipped" in r:
            return f"speed-up over the official, {r['frames']} frames: not measured ({r['skipped']})"
        return (f"speed-up over the official, {r['frames']} frames: {r['ratio']}x (official {r['official_s_per_step']}"
                f" s/step, {r['official_peak_gib']} GiB; ours {r['ours_s_per_step']} s/step, {r['ours_peak_gib']} GiB)")
    if check == "precision_bound":
        if "skipped" in r:
            return f"precision bound: not measured ({r['skipped']})"
        return (f"precision {r['case']}{' compiled' if r.get('compile') or r.get('compiled') else ''} (max/mean abs "
                f"from fp32): official fp16 {_distance(r['official_fp16_vs_fp32'])}, ours fp16 "
                f"{_distance(r['ours_fp16_vs_fp32'])} (within: {r['fp16_within_bound']}), ours bf16 "
                f"{_distance(r['ours_bf16_vs_fp32'])} (within: {r['bf16_within_bound']})")
    if check == "workflow":
        return f"ComfyUI {r['server']}: {r['workflow']} {'ran' if r['ok'] else 'FAILED: ' + str(r['error'])} in {r['seconds']} s"
    if check == "interrupt":
        return (f"ComfyUI {r['server']}: Cancel stopped the run in {r['stopped_after_s']} s, next run ok: "
                f"{r['next_run_ok']}, free memory drift {r['vram_free_drift_mib']} MiB, ok: {r['ok']}")
    if check == "part":
        if "skipped" in r:
            return f"part {r['part']}: not run ({r['skipped']})"
        return f"part {r['part']}: {r['s']} s{' STOPPED at the budget' if r['timed_out'] else ''}{'' if r['ok'] else ', a figure failed'}"
    if check == "total":
        return f"whole check: {r['s']} s (budget {r['budget_s'] or 'none'}), all ok: {r['ok']}"
    if check is not None:
        return f"{check}: {json.dumps(r)[:200]}"
    if "scaling" in r:
        return (f"long videos {r['scaling']}: s/frame ratio {r['s_per_frame_step_ratio']} (1 = linear), "
                f"peak ratio {r['peak_gib_ratio']} (1 = flat)")
    if "memory" in r and "failed" in r:
        return f"ours {r['width']}x{r['height']}x{r['frames']} {r['memory']}, attention {r.get('sdpa')}: {r['failed']}"
    if "memory" in r and "step_s_median" in r:
        text = _sampler(r)
        profile = r.get("profile")
        if profile and "ms_by_kind" in profile:
            kinds = ", ".join(f"{k} {v}" for k, v in list(profile["ms_by_kind"].items())[:7])
            text += f"; profile {profile['step_ms']} ms a step: {kinds}"
            for op in profile.get("ops", [])[:6]:
                text += f"\n  op {op['op']} {op['shapes'][:2]} x{op['calls']}: {op['ms']} ms, {op['gb_s']} GB/s"
        return text
    if "gpu" in r and "step_s_median" in r:
        return f"official: {r['step_s_median']} s/step, first step {r['first_step_s']} s, peak {r['peak_gib']} GiB"
    if "max_abs" in r and "case" in r:
        return (f"parity {r['case']} {r.get('device', 'cpu')} {r.get('dtype', 'fp32')}: max abs {r['max_abs']:.3g}, "
                f"mean abs {r['mean_abs']:.3g}")
    if "frames_per_second" in r:
        return f"rasterizer {r['width']}x{r['height']} {r['backend']} on {r['device']}: {r['frames_per_second']} frames/s"
    if "bit_identical" in r:
        return (f"window-parallel {r['workers']} workers ({','.join(r['devices'])}), {r['windows']} windows: speed-up "
                f"{r['speedup']}, overhead {r['overhead_ms_per_step']} ms a step, same bits: {r['bit_identical']}")
    if "layer" in r:
        times = ", ".join(f"{k} {v}" for k, v in r.items() if k != "layer" and isinstance(v, float))
        return f"kernel {r['layer']} (ms): {times}"
    if r.get("impl") == "ours" and "step_peak_gib" in r:
        return (f"counted {r['width']}x{r['height']}x{r['frames']} {r['memory']}: peak {r['peak_gib']} GiB, "
                f"{r['tflop_per_step']} TFLOP/step")
    return None


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 1 or not Path(argv[0]).is_file():
        print("usage: python -m benchmarks.gpu_summary LOG (the JSON lines gpu_check.sh wrote)", file=sys.stderr)
        return 2
    print("=== gpu_check summary ===")
    for r in _records(Path(argv[0])):
        try:
            text = line_of(r)
        except (KeyError, TypeError) as error:  # a record of another shape: shown, not fatal
            text = f"(unreadable record, {type(error).__name__} {error}): {json.dumps(r)[:160]}"
        if text:
            print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
