"""End-to-end generation speed and memory on this machine (issue: real time on the CPU).

    python scripts/benchmark.py                   # bundled demo pipeline + demo speaker, 30 s and 5 min
    python scripts/benchmark.py --long-seconds 60 --model my_pipeline --speaker my_speaker

Each measurement runs in a fresh child process (so its peak resident memory is its own): speech
made with espeak-ng, repeated to the requested length, generated to an mp4 with
``MemFacePipeline.generate_to_file``. Prints a table and writes ``docs/results/benchmark.json``:
``fps_end_to_end`` and ``stages_ms_per_frame`` (features, a2e, speaker preparation, drawing,
renderer, paste-back, encoding) from the 30 s run, ``first_frame_s``, the peak RSS of the 30 s
and the long run (flat memory means they are about the same), ``stream_latency_s`` (live streaming of
40 ms chunks at real-time pace: chunk in → its frame out, median), the renderer's ``gflop_per_frame`` and
``achieved_gflops``.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SENTENCE = ("The quick brown fox jumps over the lazy dog, while Bob and Pam map a path by the bay. "
            "Memories help a talking face move its mouth the way a person does.")


DTYPES = ("float32", "bfloat16")


def child(seconds: float, model: str | None, speaker: str, threads: int, dtype: str = "float32") -> dict:
    """Generate ``seconds`` of video in this process; returns timings and peak RSS."""
    import numpy as np
    import torch

    from memface_hub.io.video import probe
    from memface_hub.pipeline import MemFacePipeline, load_speaker

    torch.set_num_threads(threads)
    pipe = MemFacePipeline.from_pretrained(model, torch_dtype=getattr(torch, dtype))
    speaker_memory = load_speaker(speaker)
    samples, rate = pipe.speak(SENTENCE)
    samples = np.tile(samples, int(np.ceil(seconds * rate / len(samples))))[: int(seconds * rate)]
    with tempfile.TemporaryDirectory() as work:
        # a 1 s warm-up: the first call pays one-off costs (librosa's import, template decoding, memory encoding)
        warmup = pipe.generate_to_file((samples[:rate], rate), speaker_memory, Path(work) / "warmup.mp4")
        cold_first_frame = warmup.timings["first_frame_s"]
        started = time.perf_counter()
        result = pipe.generate_to_file((samples, rate), speaker_memory, Path(work) / "bench.mp4")
        wall = time.perf_counter() - started
        info = probe(Path(work) / "bench.mp4")
    peak_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    live = {**stream_latency(pipe, speaker_memory, samples, rate),
            "finetune_steps_per_s": finetune_speed(pipe, speaker_memory)} if seconds <= 60 else {}
    return {"seconds": seconds, "gflop_per_frame": renderer_gflop_per_frame(pipe, speaker_memory), **live,
            "frames": result.num_frames, "wall_s": wall, "timings": result.timings,
            "cold_first_frame_s": cold_first_frame,
            "peak_rss_mb": peak_kb / 1024.0, "crop_size": pipe.renderer.crop_size,
            "frame_size": [info.width, info.height]}


def stream_latency(pipe, speaker, samples, rate: int, seconds: float = 10.0, chunk_ms: float = 40.0) -> dict:
    """Live streaming at real-time pace: 40 ms chunks are fed no faster than they would arrive from a
    microphone; each frame's latency is the time from the arrival of the chunk that completes its audio to
    the frame coming out. Returns the median and 90th percentile (s) and the frames made."""
    import numpy as np

    step = int(rate * chunk_ms / 1000)
    audio = samples[: int(seconds * rate)]
    arrivals: list[float] = []
    started = time.perf_counter()

    def microphone():
        for index, begin in enumerate(range(0, len(audio), step)):
            due = started + index * chunk_ms / 1000
            time.sleep(max(0.0, due - time.perf_counter()))
            arrivals.append(time.perf_counter())
            yield audio[begin:begin + step]

    per_frame = rate / pipe.frontend.fps
    latencies, made = [], 0
    for frames, *_ in pipe.stream(microphone(), speaker, sampling_rate=rate, progress=False):
        now = time.perf_counter()
        for frame in range(made, made + len(frames)):
            chunk = min(int(np.ceil((frame + 1) * per_frame / step)) - 1, len(arrivals) - 1)
            latencies.append(now - arrivals[chunk])
        made += len(frames)
    return {"stream_latency_s": float(np.median(latencies)),
            "stream_latency_p90_s": float(np.percentile(latencies, 90)), "stream_frames": made}


def finetune_speed(pipe, speaker, steps: int = 30) -> float:
    """Adaptation's renderer fine-tuning, steps per second (batch 4, bf16 autocast), on the speaker's own
    template video; the held-out checks of a real adaptation (a few renders of 32 frames) are not counted."""
    import copy

    from memface_hub.training.adapt import adapt_speaker

    with tempfile.TemporaryDirectory() as work:
        renderer = copy.deepcopy(pipe.renderer).float()              # fine-tuning trains in float32 + bf16 autocast
        result = adapt_speaker(speaker.template_path, Path(work) / "speaker", renderer=renderer,
                               finetune_steps=steps, held_out_check=False, progress=False)
    return result.finetune_steps / result.finetune_seconds


def renderer_gflop_per_frame(pipe, speaker) -> float:
    """Floating-point operations of one renderer call per frame (torch's FLOP counter, a batch of 16),
    in GFLOP: multiply-adds count twice, the memory's encoding (done once per speaker) is not counted."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    renderer = pipe.renderer
    size, batch = renderer.crop_size, 16
    memory = {key: value for key, value in renderer.speaker_memory_inputs(speaker.keys, speaker.values).items()}
    dtype = renderer.out.weight.dtype
    inputs = (torch.rand(batch, 3, size, size, dtype=dtype), torch.rand(batch, 3, size, size, dtype=dtype),
              torch.from_numpy(speaker.keys[:1]).to(dtype).expand(batch, -1, -1))
    with torch.inference_mode(), FlopCounterMode(display=False) as counter:
        renderer(*inputs, **memory)
    return counter.get_total_flops() / batch / 1e9


def run_child(seconds: float, args) -> dict:
    command = [sys.executable, str(Path(__file__).resolve()), "--child", str(seconds), "--speaker", args.speaker,
               "--threads", str(args.threads), "--dtype", args.dtype] + (["--model", args.model] if args.model else [])
    output = subprocess.run(command, capture_output=True, text=True, check=True).stdout
    return json.loads(output.strip().splitlines()[-1])


def markdown_table(result: dict) -> str:
    short, long = result["short_seconds"], result["long_seconds"]
    width, height = result["frame_size"]
    lines = [f"`python scripts/benchmark.py` ({result['machine']}): bundled demo pipeline, renderer crop "
             f"{result['crop_size']}, {result['dtype']}, output frames {width}×{height}, speech from espeak-ng.", "",
             "| measure | value |", "|---|---|",
             f"| end-to-end frames/s, {short:g} s of audio | {result['fps_end_to_end']:.1f} |",
             f"| end-to-end frames/s, {long:g} s of audio | {result['fps_end_to_end_long']:.1f} |"]
    lines += [f"| {stage} (ms/frame) | {ms:.2f} |" for stage, ms in result["stages_ms_per_frame"].items()]
    lines += [f"| time to first frame (s), loaded pipeline | {result['first_frame_s']:.2f} |",
              f"| time to first frame (s), first call in a fresh process | {result['first_frame_s_cold']:.2f} |",
              f"| live stream latency, chunk in → its frame out (s), median / p90 | "
              f"{result['stream_latency_s']:.2f} / {result['stream_latency_p90_s']:.2f} |",
              f"| renderer GFLOP per frame | {result['gflop_per_frame']:.2f} |",
              f"| adaptation fine-tuning steps/s (batch 4) | {result['finetune_steps_per_s']:.2f} |",
              f"| renderer achieved GFLOP/s | {result['achieved_gflops']:.1f} |",
              f"| peak RSS, {short:g} s of audio (MB) | {result['peak_rss_mb_30s']:.0f} |",
              f"| peak RSS, {long:g} s of audio (MB) | {result['peak_rss_mb_5min']:.0f} |"]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default=None, help="pipeline folder or Hub id (default: bundled demo)")
    parser.add_argument("--speaker", default="demo", help="speaker folder, Hub id or 'demo'")
    parser.add_argument("--short-seconds", type=float, default=30.0)
    parser.add_argument("--long-seconds", type=float, default=300.0)
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1, help="torch threads")
    parser.add_argument("--dtype", default="bfloat16", choices=DTYPES,
                        help="the pipeline's dtype (bfloat16: oneDNN bf16 kernels on CPUs with avx512-bf16)")
    parser.add_argument("--out", default=str(ROOT / "docs" / "results" / "benchmark.json"))
    parser.add_argument("--readme", default=str(ROOT / "docs" / "results" / "README.md"))
    parser.add_argument("--child", type=float, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child is not None:
        print(json.dumps(child(args.child, args.model, args.speaker, args.threads, args.dtype)))
        return 0

    short = run_child(args.short_seconds, args)
    long = run_child(args.long_seconds, args)
    frames = short["frames"]
    stages = {stage: 1000.0 * short["timings"].get(stage, 0.0) / frames
              for stage in ("features", "a2e", "speaker", "drawing", "renderer", "paste_back", "encoding")}
    result = {
        "crop_size": short["crop_size"], "frame_size": short["frame_size"],
        "fps_end_to_end": frames / short["wall_s"], "fps_end_to_end_long": long["frames"] / long["wall_s"],
        "stages_ms_per_frame": stages, "peak_rss_mb_30s": short["peak_rss_mb"],
        "peak_rss_mb_5min": long["peak_rss_mb"], "first_frame_s": short["timings"]["first_frame_s"],
        "first_frame_s_cold": short["cold_first_frame_s"],
        "gflop_per_frame": short["gflop_per_frame"],
        "stream_latency_s": short["stream_latency_s"], "stream_latency_p90_s": short["stream_latency_p90_s"],
        "finetune_steps_per_s": short["finetune_steps_per_s"],
        "achieved_gflops": short["gflop_per_frame"] / max(stages["renderer"] / 1000.0, 1e-9),
        "short_seconds": args.short_seconds, "long_seconds": args.long_seconds,
        "machine": f"{os.cpu_count()} CPU cores, torch threads {args.threads}", "dtype": args.dtype,
    }
    from memface_hub.arrays_io import write_text_atomic
    from memface_hub.evaluation.report import provenance, write_markdown_section

    result = {**provenance({"model": args.model or "bundled", "speaker": args.speaker, "threads": args.threads,
                            "dtype": args.dtype}),
              **result}

    write_text_atomic(Path(args.out), json.dumps(result, indent=1))
    table = markdown_table(result)
    write_markdown_section(args.readme, "benchmark", "Generation speed and memory (`docs/results/benchmark.json`)",
                           table)
    print(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
