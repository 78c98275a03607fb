"""Time the Space's adapt and generate, and load it with concurrent generate requests.

Launches ``space_app.py`` as its own process on 127.0.0.1 (so its memory is measured alone) and drives
it through ``gradio_client``, the way a user's script would:

1. **adapt** a 15 s clip of one person: seconds from starting the upload until the adapted speaker is
   listed as selectable (``/adapt`` then ``/speakers``), with the Space's own fine-tuning budget;
2. **generate** 10 s of video from a 10 s speech file (``/generate``), upload and download included;
3. **load**: ``--requests`` (20) generate requests with short texts submitted at once; each must
   complete (or be told its place in the queue while it waits), none may fail, all within ``--timeout``;
   the server's resident memory (its process and children) is sampled throughout.

Writes ``docs/results/space.json``::

    {"adapt_15s_seconds": …, "generate_10s_seconds": …,
     "load_20": {"completed": …, "failed": …, "p50_s": …, "p95_s": …, "peak_rss_mb": …}, "setup": {…}}

Run (bundled demo weights)::

    .venv/bin/python scripts/load_test.py
    .venv/bin/python scripts/load_test.py --model PIPELINE_DIR --speaker SPEAKER_DIR --out /tmp/space.json

Exits 1 when a request failed or the server's peak memory went over ``--max-rss-mb``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))

from memface_hub.evaluation.report import provenance  # noqa: E402
from memface_hub.io.audio import write_wav  # noqa: E402
from memface_hub.io.video import concatenate_videos, probe  # noqa: E402

FOUNDATION_CLIPS = REPO_ROOT / "outputs" / "foundation" / "corpus" / "clips"
SHORT_TEXTS = ["Bob and Pam met by the map.", "Hello there.", "Peter picked a pepper.", "We meet at nine.",
               "Bring me a big map."]
LONG_TEXT = ("Bob and Pam met by the map in the morning. They walked along the river to the old mill, "
             "where a man was painting the bridge blue. Peter picked a pepper and put it in a paper bag.")


def adaptation_clip(seconds: float, out: Path, work: Path) -> tuple[Path, str]:
    """A ``seconds``-long clip of the demo person: joined clips of the demo corpus in outputs/ when it
    exists, else of a small demo corpus built here. Returns the clip and where it came from."""
    clips = sorted(FOUNDATION_CLIPS.glob("*.mp4")) if FOUNDATION_CLIPS.is_dir() else []
    source = f"{FOUNDATION_CLIPS.relative_to(REPO_ROOT)}"
    if sum(probe(clip).duration for clip in clips[:40]) < seconds:
        from memface_hub.data.demo_corpus import build_demo_corpus

        corpus = work / "corpus"
        index = build_demo_corpus(corpus, minutes=max(0.5, seconds / 60 * 1.5), seed=11, progress=False)
        clips, source = [corpus / clip["video"] for clip in index["clips"]], "build_demo_corpus(minutes=0.5)"
    return concatenate_videos(clips, seconds, out), source


def speech_file(seconds: float, out: Path) -> Path:
    """Exactly ``seconds`` of espeak-ng speech (the long text, repeated as needed) as a 16 kHz WAV."""
    import librosa

    from memface_hub.audio.tts import synthesize

    speech = synthesize(LONG_TEXT)
    samples = librosa.resample(speech.samples, orig_sr=speech.sample_rate, target_sr=16_000)
    wanted = int(round(seconds * 16_000))
    samples = np.tile(samples, int(np.ceil(wanted / len(samples))))[:wanted]
    return write_wav(out, samples, 16_000)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class MemorySampler(threading.Thread):
    """Samples the resident memory of a process and its children every ``interval`` seconds."""

    def __init__(self, pid: int, interval: float = 0.25):
        super().__init__(daemon=True)
        import psutil

        self.process, self.interval, self.peak_bytes = psutil.Process(pid), interval, 0
        self._stop_event = threading.Event()

    def run(self) -> None:
        import psutil

        while not self._stop_event.is_set():
            try:
                processes = [self.process, *self.process.children(recursive=True)]
                total = 0
                for process in processes:
                    try:
                        total += process.memory_info().rss
                    except psutil.Error:
                        pass
                self.peak_bytes = max(self.peak_bytes, total)
            except psutil.Error:
                return
            self._stop_event.wait(self.interval)

    def stop(self) -> float:
        self._stop_event.set()
        self.join(timeout=5)
        return self.peak_bytes / 2**20


def start_server(args: argparse.Namespace, port: int, work: Path, log) -> subprocess.Popen:
    command = [sys.executable, str(REPO_ROOT / "space_app.py"), "--host", "127.0.0.1", "--port", str(port),
               "--work-dir", str(work / "space"), "--concurrency", str(args.concurrency),
               "--queue-size", str(max(64, args.requests * 2)), "--finetune-seconds", str(args.finetune_seconds)]
    if args.model:
        command += ["--model", args.model]
    if args.speaker:
        command += ["--speaker", args.speaker]
    environment = {**os.environ, "GRADIO_ANALYTICS_ENABLED": "False", "NO_PROXY": "127.0.0.1,localhost"}
    return subprocess.Popen(command, cwd=REPO_ROOT, stdout=log, stderr=subprocess.STDOUT, env=environment)


def wait_for_server(url: str, server: subprocess.Popen, timeout: float) -> None:
    import httpx

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise SystemExit(f"the Space exited with code {server.returncode} before serving (see its log)")
        try:
            if httpx.get(url + "gradio_api/info", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    raise SystemExit(f"the Space did not answer at {url} within {timeout:g} s")


def load(client, requests: int, timeout: float) -> dict:
    """Submit ``requests`` short-text generations at once; follow each until done or the deadline."""
    from gradio_client.utils import Status

    started = time.monotonic()
    jobs = [client.submit("demo", None, SHORT_TEXTS[i % len(SHORT_TEXTS)], api_name="/generate")
            for i in range(requests)]
    latency: dict[int, float] = {}
    failed: dict[int, str] = {}
    queued, best_rank = set(), {}
    while len(latency) + len(failed) < requests and time.monotonic() - started < timeout:
        for index, job in enumerate(jobs):
            if index in latency or index in failed:
                continue
            status = job.status()
            if status.code == Status.IN_QUEUE:
                queued.add(index)
                if status.rank is not None:
                    best_rank[index] = max(best_rank.get(index, 0), int(status.rank))
            if job.done():
                try:
                    job.result()
                    latency[index] = time.monotonic() - started
                except Exception as err:   # an app error, a queue-full refusal, a dropped connection
                    failed[index] = f"{type(err).__name__}: {err}"
        time.sleep(0.1)
    for index, job in enumerate(jobs):
        if index not in latency and index not in failed:
            failed[index] = f"not done after {timeout:g} s"
            job.cancel()
    times = np.array(sorted(latency.values())) if latency else np.zeros(1)
    return {"completed": len(latency), "failed": len(failed), "p50_s": round(float(np.percentile(times, 50)), 2),
            "p95_s": round(float(np.percentile(times, 95)), 2), "told_queued": len(queued),
            "max_queue_rank": max(best_rank.values(), default=0), "errors": sorted(set(failed.values()))[:5]}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", help="pipeline folder or Hub id (default: the bundled demo weights)")
    parser.add_argument("--speaker", help="default speaker folder or Hub id (default: the bundled demo speaker)")
    parser.add_argument("--requests", type=int, default=20, help="concurrent generate requests in the load phase")
    parser.add_argument("--concurrency", type=int, default=1, help="the Space's generations at once")
    parser.add_argument("--finetune-seconds", type=float, default=30.0, help="the Space's fine-tuning budget")
    parser.add_argument("--adapt-seconds", type=float, default=15.0, help="length of the clip to adapt to")
    parser.add_argument("--generate-seconds", type=float, default=10.0, help="length of the speech to generate from")
    parser.add_argument("--timeout", type=float, default=900.0, help="deadline for the load phase (seconds)")
    parser.add_argument("--max-rss-mb", type=float, default=6144.0, help="fail when the server's peak RSS exceeds this")
    parser.add_argument("--out", type=Path, default=REPO_ROOT / "docs" / "results" / "space.json", help="result JSON")
    args = parser.parse_args(argv)

    from gradio_client import Client, handle_file

    with tempfile.TemporaryDirectory(prefix="memface-load-") as work_name:
        work = Path(work_name)
        clip, clip_source = adaptation_clip(args.adapt_seconds, work / "clip.mp4", work)
        speech = speech_file(args.generate_seconds, work / "speech.wav")
        port = free_port()
        url = f"http://127.0.0.1:{port}/"
        with open(work / "space.log", "w") as log:
            server = start_server(args, port, work, log)
            sampler = None
            try:
                wait_for_server(url, server, timeout=300)
                sampler = MemorySampler(server.pid)
                sampler.start()
                client = Client(url, verbose=False, analytics_enabled=False, download_files=str(work / "downloads"))

                # 1. adapt: upload → the speaker is selectable
                started = time.perf_counter()
                _, adapt_summary = client.predict(handle_file(str(clip)), "load-test", True, api_name="/adapt")
                selectable = adapt_summary["speaker"] in client.predict(api_name="/speakers")
                adapt_seconds = time.perf_counter() - started
                if not selectable:
                    raise SystemExit(f"{adapt_summary['speaker']} is not listed by /speakers after adapting")
                print(f"adapt {args.adapt_seconds:g} s clip: {adapt_seconds:.1f} s {adapt_summary}", flush=True)

                # 2. generate 10 s of video from 10 s of speech
                started = time.perf_counter()
                video, generation, _, _ = client.predict("demo", handle_file(str(speech)), "", api_name="/generate")
                generate_seconds = time.perf_counter() - started
                video = Path(video["video"] if isinstance(video, dict) else video)
                print(f"generate {args.generate_seconds:g} s: {generate_seconds:.1f} s, video "
                      f"{probe(video).duration:.2f} s {generation}", flush=True)

                # 3. concurrent load
                result = load(client, args.requests, args.timeout)
                peak = sampler.stop()
                sampler = None
            finally:
                if sampler is not None:
                    sampler.stop()
                server.terminate()
                try:
                    server.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    server.kill()
        if result["failed"]:
            print((work / "space.log").read_text()[-4000:], file=sys.stderr)

    load_key = f"load_{args.requests}"
    config = {key: str(value) if isinstance(value, Path) else value for key, value in vars(args).items()}
    report = {**provenance(config),
              "adapt_15s_seconds" if args.adapt_seconds == 15 else f"adapt_{args.adapt_seconds:g}s_seconds":
              round(adapt_seconds, 2),
              "generate_10s_seconds" if args.generate_seconds == 10 else f"generate_{args.generate_seconds:g}s_seconds":
              round(generate_seconds, 2),
              load_key: {key: result[key] for key in ("completed", "failed", "p50_s", "p95_s")} | {
                  "peak_rss_mb": round(peak, 1)},
              "setup": {"model": args.model or "bundled demo", "speaker": args.speaker or "bundled demo",
                        "adapt_clip": clip_source, "finetune_seconds": args.finetune_seconds,
                        "adapt_finetune_steps": adapt_summary["finetune_steps"],
                        "generate_server_seconds": generation["generation_seconds"],
                        "space_concurrency": args.concurrency, "told_queued": result["told_queued"],
                        "max_queue_rank": result["max_queue_rank"], "cpu": platform.processor() or platform.machine(),
                        "cpu_count": os.cpu_count()}}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=1) + "\n")
    print(json.dumps(report, indent=1))
    problems = []
    if result["failed"]:
        problems.append(f"{result['failed']} of {args.requests} requests failed: {result['errors']}")
    if peak > args.max_rss_mb:
        problems.append(f"server peak RSS {peak:.0f} MB is over --max-rss-mb {args.max_rss_mb:g}")
    for problem in problems:
        print(f"load_test: {problem}", file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
