"""Reliability at full size (issue 16): hostile artifacts, huge claims, fps bombs, bad outputs, truncated inputs,
interruptions, a full disk, a token pasted as a repo name, and a generation from a 4K 60 s adaptation video.

Every case runs the real ``memface`` command in its own process (own temporary folder, a time limit), and is
judged from the outside: its exit code and stderr (a one-line ``memface …: error:`` is a clear error; any
``Traceback`` counts), a hang (the limit passed), a half-written output (an output that is neither absent nor
complete and playable, or an earlier output changed by a failed run), leftovers (staging folders beside the
output or ``memface-*`` entries in its temporary folder once the run ended), secrets (a token in its output),
peak RSS of its process tree and peak temporary disk. Writes ``docs/results/reliability.json`` and a table in
``docs/results/README.md``.

    python scripts/reliability.py                 # every class but the 4K one (a few minutes on 2 cores)
    python scripts/reliability.py --4k            # only the 4K adaptation + generation (adds it to the JSON)
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import psutil

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from memface_hub.io.audio import write_wav  # noqa: E402
from memface_hub.pipeline import DEMO_PIPELINE, DEMO_SPEAKER  # noqa: E402

TOKEN = "hf_" + "Zq8" * 12                  # a token-shaped secret that must never be printed back
SECRET = re.compile(r"\b(?:hf_|api_org_)[A-Za-z0-9]{30,}")
STAGING = re.compile(r"^\.(memface-write-|.+\.(old-)?\d+@[0-9a-f]{8}\.)")


@dataclass
class Case:
    name: str
    kind: str                      # hostile artifact, huge claim, fps bomb, bad output, truncated, interrupted …
    outcome: str = ""              # ok, clear error, traceback, hang, killed
    exit_code: int | None = None
    seconds: float = 0.0
    peak_rss_mb: float = 0.0
    peak_temp_mb: float = 0.0
    half_written: bool = False
    leftovers: list[str] = field(default_factory=list)
    secrets: int = 0
    message: str = ""


def speech(seconds: float) -> np.ndarray:
    time_axis = np.arange(int(seconds * 16_000)) / 16_000
    return (0.3 * np.sin(2 * np.pi * 220 * time_axis) * (0.5 + 0.5 * np.sin(2 * np.pi * 3 * time_axis) ** 2)
            ).astype(np.float32)


def tree_usage(process: psutil.Process, temp: Path) -> tuple[float, float]:
    """RSS of the process and its children (MB), and the disk the temporary folder holds (MB, allocated)."""
    rss = 0
    try:
        for member in [process, *process.children(recursive=True)]:
            try:
                rss += member.memory_info().rss
            except psutil.Error:
                pass
    except psutil.Error:
        pass
    disk = 0
    for path in temp.rglob("*"):
        try:
            disk += path.lstat().st_blocks * 512
        except OSError:
            pass
    return rss / 2**20, disk / 2**20


def run(case: Case, command: list[str], work: Path, out: Path | None = None, limit: float = 300.0,
        signal_after: tuple[int, str] | None = None, env: dict | None = None) -> Case:
    """Run ``memface COMMAND`` (or a ``python -c`` wrapper when ``command[0] == "-c"``) and judge it."""
    temp = work / "tmp"
    temp.mkdir(parents=True, exist_ok=True)
    before = out.read_bytes() if out is not None and out.is_file() else None
    argv = [sys.executable, *command] if command[0] == "-c" else [sys.executable, "-m", "memface_hub.cli", *command]
    environment = {**os.environ, "TMPDIR": str(temp), "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1",
                   "HF_HUB_OFFLINE": "1", **(env or {})}
    started = time.monotonic()
    process = subprocess.Popen(argv, cwd=work, env=environment, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                               text=True)
    watched = psutil.Process(process.pid)
    output: list[str] = []
    import threading

    reader = threading.Thread(target=lambda: output.extend(iter(lambda: process.stdout.read(256), "")), daemon=True)
    reader.start()
    sent = False
    while process.poll() is None:
        rss, disk = tree_usage(watched, temp)
        case.peak_rss_mb, case.peak_temp_mb = max(case.peak_rss_mb, rss), max(case.peak_temp_mb, disk)
        if signal_after and not sent and re.search(signal_after[1], "".join(output)):
            process.send_signal(signal_after[0])
            sent = True
        if time.monotonic() - started > limit:
            process.kill()
            case.outcome = "hang"
        time.sleep(0.1)
    reader.join(timeout=5)
    case.seconds = round(time.monotonic() - started, 2)
    case.exit_code = process.returncode
    text = "".join(output)
    (work / "log.txt").write_text(text)
    lines = [line for line in text.splitlines() if line.strip() and "generating:" not in line]
    case.secrets = len(SECRET.findall(text)) + text.count(TOKEN)
    if case.outcome != "hang":
        if "Traceback (most recent call last)" in text:
            case.outcome = "traceback"
        elif process.returncode == 0:
            case.outcome = "ok"
        elif process.returncode == 2 and lines and re.match(r"memface \S+: error: ", lines[-1]):
            case.outcome = "clear error"
        elif process.returncode in (128 + signal.SIGTERM, -signal.SIGKILL) and sent:
            case.outcome = "interrupted"
        else:
            case.outcome = f"exit {process.returncode}"
    case.message = (lines[-1] if lines else "")[:300]
    if out is not None:
        if process.returncode == 0:
            case.half_written = not playable(out)
        else:
            now = out.read_bytes() if out.is_file() else None
            case.half_written = now != before
        case.leftovers += [path.name for path in out.parent.iterdir() if STAGING.match(path.name)]
    case.leftovers += [path.name for path in temp.iterdir() if path.name.startswith("memface-")]
    case.peak_rss_mb, case.peak_temp_mb = round(case.peak_rss_mb, 1), round(case.peak_temp_mb, 1)
    return case


def playable(path: Path) -> bool:
    from memface_hub.io.video import iter_frames

    try:
        return path.is_file() and sum(1 for _ in iter_frames(path)) > 0
    except Exception:                       # noqa: BLE001 (any failure to decode means "not playable")
        return False


def edited_copy(source: Path, target: Path, file: str, value) -> Path:
    shutil.copytree(source, target)
    path = target / file
    if callable(value):
        value(path)
    else:
        data = json.loads(path.read_text())
        data.update(value)
        path.write_text(json.dumps(data))
    return target


def standard_cases(work: Path) -> list[Case]:
    audio = work / "speech.wav"
    write_wav(audio, speech(3.0), 16_000)
    out = work / "out" / "talk.mp4"
    out.parent.mkdir()
    cases = []

    def generate(name, kind, *extra, output=out, **options):
        folder = work / f"case_{len(cases)}"
        folder.mkdir()
        target = folder / output.name if output == out else output
        cases.append(run(Case(name, kind), ["generate", "--audio", str(audio), "--out", str(target), *extra],
                         folder, out=target if output == out else None, **options))

    # 1. hostile speaker folders and fps bombs
    for name, value in (("fps 1e9", {"fps": 1e9}), ("fps 0", {"fps": 0}), ("fps -25", {"fps": -25}),
                        ("fps '25'", {"fps": "25"})):
        speaker = edited_copy(DEMO_SPEAKER, work / "artifacts" / name.replace(" ", "_"), "speaker.json", value)
        generate(f"speaker {name}", "fps bomb", "--speaker", str(speaker))
    bombs = {"deep JSON": lambda p: p.write_text("[" * 100_000 + "]" * 100_000),
             "10 MB JSON": lambda p: p.write_text(json.dumps({"pad": "x" * 10_000_000})),
             "JSON list": lambda p: p.write_text("[1, 2, 3]"),
             "not JSON": lambda p: p.write_bytes(b"\xff\xfe\x00garbage")}
    for name, writer in bombs.items():
        speaker = edited_copy(DEMO_SPEAKER, work / "artifacts" / f"speaker_{name.replace(' ', '_')}", "speaker.json",
                              writer)
        generate(f"speaker.json {name}", "hostile artifact", "--speaker", str(speaker))
    # 2. hostile and huge-claim pipeline folders
    model_cases = {
        "a2e num_encoder_layers 1e6": ("a2e/config.json", {"num_encoder_layers": 1_000_000}, "huge claim"),
        "a2e d_model 2^20": ("a2e/config.json", {"d_model": 2**20}, "huge claim"),
        "renderer crop_size 2^20": ("renderer/config.json", {"crop_size": 2**20}, "huge claim"),
        "renderer base_channels 'many'": ("renderer/config.json", {"base_channels": "many"}, "hostile artifact"),
        "a2e front end → local pickle folder": ("a2e/config.json", {"frontend": {
            "name": "wav2vec2", "model_name_or_path": str(work / "pickles"), "layer": -1, "device": "cpu",
            "resample": False}}, "hostile artifact"),
        "a2e front end unknown": ("a2e/config.json", {"frontend": {"name": "whisper"}}, "hostile artifact"),
        "model_index front end revision": ("model_index.json", {"frontend": {
            "name": "wav2vec2", "model_name_or_path": "facebook/wav2vec2-base-960h", "revision": "main"}},
            "hostile artifact"),
        "model_index deep JSON": ("model_index.json", lambda p: p.write_text("[" * 100_000 + "]" * 100_000),
                                  "hostile artifact"),
        "a2e config 10 MB": ("a2e/config.json", lambda p: p.write_text(json.dumps({"pad": "x" * 10_000_000})),
                             "hostile artifact"),
    }
    (work / "pickles").mkdir()
    (work / "pickles" / "config.json").write_text(json.dumps({"model_type": "wav2vec2"}))
    (work / "pickles" / "pytorch_model.bin").write_bytes(b"\x80\x04not a real pickle")
    for index, (name, (file, value, kind)) in enumerate(model_cases.items()):
        model = edited_copy(DEMO_PIPELINE, work / "artifacts" / f"model_{index}", file, value)
        generate(name, kind, "--model", str(model))
    # 3. bad outputs
    (work / "a_file").write_text("not a folder")
    generate("output under /sys", "bad output", output=Path("/sys/talk.mp4"))
    generate("output's parent is a file", "bad output", output=work / "a_file" / "talk.mp4")
    (work / "a_folder.mp4").mkdir()
    generate("output is a folder", "bad output", output=work / "a_folder.mp4")
    generate("output is the input", "bad output", output=audio)
    # 4. truncated input: warned, generated from what was read
    data = audio.read_bytes()
    (work / "cut.wav").write_bytes(data[:len(data) // 2])
    folder = work / "truncated"
    folder.mkdir()
    case = run(Case("truncated WAV (half)", "truncated"), ["generate", "--audio", str(work / "cut.wav"), "--out",
                                                            str(folder / "talk.mp4")], folder, out=folder / "talk.mp4")
    case.message = next((line for line in case.message.splitlines()), case.message)
    cases.append(case)
    warned = [line for line in (folder / "log.txt").read_text().splitlines() if "truncated?" in line] \
        if (folder / "log.txt").exists() else []
    case.message = warned[0] if warned else case.message
    # 5. interruptions: SIGTERM mid-generation, SIGKILL then the next run in the same places
    long_audio = work / "long.wav"
    write_wav(long_audio, speech(30.0), 16_000)
    shared = work / "interrupted"
    shared.mkdir()
    target = shared / "talk.mp4"
    target.write_bytes(b"an earlier video")
    cases.append(run(Case("SIGTERM mid-generation", "interrupted"), ["generate", "--audio", str(long_audio), "--out",
                     str(target)], shared, out=target, signal_after=(signal.SIGTERM, r"\| *[1-9]\d*/\d+ \[")))
    killed = run(Case("SIGKILL mid-generation", "interrupted"), ["generate", "--audio", str(long_audio), "--out",
                 str(target)], shared, out=target, signal_after=(signal.SIGKILL, r"\| *[1-9]\d*/\d+ \["))
    left_by_kill = list(killed.leftovers)
    killed.leftovers = []                    # a SIGKILL cannot clean up; what counts is that the next run does
    killed.message = f"left {len(left_by_kill)} entries (removed by the next run below)"
    cases.append(killed)
    for path in [*shared.iterdir(), *(shared / "tmp").iterdir()]:   # as if the kill were an hour ago
        os.utime(path, (time.time() - 3600, time.time() - 3600))
    cases.append(run(Case("next run after SIGKILL", "interrupted"), ["generate", "--audio", str(audio), "--out",
                     str(target)], shared, out=target))
    # 6. a full disk (the writer fails after 10 frames), in process so the writer can be replaced
    folder = work / "disk_full"
    folder.mkdir()
    wrapper = ("import errno, sys, imageio_ffmpeg\n"
               "def full(path, *a, **k):\n"
               "    open(path, 'wb').write(b'partial')\n"
               "    for _ in range(11):\n"
               "        yield\n"
               "    raise OSError(errno.ENOSPC, 'No space left on device')\n"
               "imageio_ffmpeg.write_frames = full\n"
               "from memface_hub.cli import main\n"
               "sys.exit(main(sys.argv[1:]))\n")
    cases.append(run(Case("disk full while writing", "disk full"), ["-c", wrapper, "generate", "--audio", str(audio),
                     "--out", str(folder / "talk.mp4")], folder, out=folder / "talk.mp4"))
    # 7. a token pasted as the repo name
    folder = work / "token"
    folder.mkdir()
    cases.append(run(Case("token pasted as the repo name", "secrets"), ["push", str(DEMO_SPEAKER), "--repo",
                     f"someone/{TOKEN}", "--license", "mit", "--consent", "test"], folder))
    return cases


def four_k_cases(work: Path, source: Path) -> list[Case]:
    """Adapt from a 3840×2160, 60 s video (stored at 1920×1080), then a short generation from it."""
    speaker = work / "speaker_4k"
    adapt = run(Case("adapt from a 4K 60 s video", "large template"), ["adapt", str(source), "--out", str(speaker)],
                work, limit=290)
    cases = [adapt]
    if adapt.outcome == "ok":
        from memface_hub.io.video import probe

        info = probe(speaker / "template.mp4")
        adapt.message = f"template stored at {info.width}×{info.height}"
        audio = work / "short.wav"
        write_wav(audio, speech(1.2), 16_000)
        out = work / "out4k"
        out.mkdir()
        generation = run(Case("1.2 s generation from the 4K speaker", "large template"),
                         ["generate", "--audio", str(audio), "--speaker", str(speaker), "--out", str(out / "t.mp4")],
                         out, out=out / "t.mp4")
        if generation.outcome == "ok":
            video = probe(out / "t.mp4")
            generation.message = f"output {video.width}×{video.height}"
        cases.append(generation)
    return cases


def summarise(cases: list[Case]) -> dict:
    return {"cases": len(cases), "ok": sum(c.outcome == "ok" for c in cases),
            "clear_errors": sum(c.outcome == "clear error" for c in cases),
            "interrupted_cleanly": sum(c.outcome == "interrupted" for c in cases),
            "tracebacks": sum(c.outcome == "traceback" for c in cases),
            "hangs": sum(c.outcome == "hang" for c in cases),
            "other_failures": sum(c.outcome.startswith("exit") for c in cases),
            "half_written_outputs": sum(c.half_written for c in cases),
            "leftovers": sum(len(c.leftovers) for c in cases), "secrets_in_logs": sum(c.secrets for c in cases),
            "peak_rss_mb": max((c.peak_rss_mb for c in cases), default=0.0),
            "peak_temp_mb": max((c.peak_temp_mb for c in cases), default=0.0)}


def table(cases: list[Case]) -> str:
    rows = ["| case | class | outcome | peak RSS (MB) | peak temp (MB) | half-written | leftovers | what it said |",
            "|---|---|---|---|---|---|---|---|"]
    for case in cases:
        said = case.message.replace("|", "\\|")[:140]
        rows.append(f"| {case.name} | {case.kind} | {case.outcome} | {case.peak_rss_mb:.0f} | "
                    f"{case.peak_temp_mb:.0f} | "
                    f"{'yes' if case.half_written else 'no'} | {len(case.leftovers)} | {said} |")
    return "\n".join(rows)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--4k", dest="four_k", action="store_true", help="only the 4K adaptation + generation")
    parser.add_argument("--source-4k", default="outputs/reliability/source_4k.mp4",
                        help="the 4K 60 s video (made with ffmpeg from the demo speaker when missing)")
    parser.add_argument("--out", default="docs/results/reliability.json")
    parser.add_argument("--readme", default="docs/results/README.md")
    args = parser.parse_args()

    from memface_hub.arrays_io import write_text_atomic
    from memface_hub.evaluation.report import provenance, write_markdown_section

    previous = json.loads(Path(args.out).read_text()) if Path(args.out).is_file() else {}
    with tempfile.TemporaryDirectory(prefix="reliability-") as work:
        if args.four_k:
            source = Path(args.source_4k)
            if not source.is_file():
                make_4k_source(source)
            cases = [Case(**c) for c in previous.get("cases", []) if c["kind"] != "large template"]
            cases += four_k_cases(Path(work), source.resolve())
        else:
            cases = standard_cases(Path(work)) + [Case(**c) for c in previous.get("cases", [])
                                                  if c["kind"] == "large template"]
    result = {**provenance({"four_k": args.four_k, "source_4k": args.source_4k}), "summary": summarise(cases),
              "cases": [asdict(case) for case in cases]}
    kept = [case.name for case in cases if (case.kind == "large template") != args.four_k]
    if kept:          # the other kind of run's cases, with the commit they were run at
        same_kind = previous.get("config", {}).get("four_k") == args.four_k
        earlier = previous.get("carried_over", {}) if same_kind else previous
        result["carried_over"] = {"cases": kept, "git_commit": earlier.get("git_commit"),
                                  "command": earlier.get("command")}
    write_text_atomic(Path(args.out), json.dumps(result, indent=1) + "\n")
    summary = result["summary"]
    carried = result.get("carried_over")
    origin = f"commit `{result['git_commit']}`" + (f"; {len(carried['cases'])} cases carried over from commit "
                                                   f"`{carried['git_commit']}`" if carried else "")
    body = (f"`python scripts/reliability.py` then `python scripts/reliability.py --4k` ({origin}): "
            f"{summary['cases']} cases, {summary['clear_errors']} clear one-line errors, "
            f"{summary['ok']} ran fine, {summary['interrupted_cleanly']} interrupted cleanly; "
            f"**{summary['tracebacks']} "
            f"tracebacks, {summary['hangs']} hangs, {summary['half_written_outputs']} half-written outputs, "
            f"{summary['leftovers']} leftovers, {summary['secrets_in_logs']} secrets in logs**.\n\n" + table(cases))
    write_markdown_section(args.readme, "reliability", "Reliability (`docs/results/reliability.json`)", body)
    print(json.dumps(summary, indent=1))
    return 0


def make_4k_source(path: Path) -> Path:
    """3840×2160, 60 s, 25 fps: the demo speaker's template scaled to 1060 px on a plain background, looped."""
    from memface_hub.io.media import ffmpeg_exe

    path.parent.mkdir(parents=True, exist_ok=True)
    subprocess.run([ffmpeg_exe(), "-hide_banner", "-loglevel", "error", "-y", "-stream_loop", "3", "-i",
                    str(DEMO_SPEAKER / "template.mp4"), "-f", "lavfi", "-i", "color=c=0x607080:s=3840x2160:r=25",
                    "-filter_complex", "[0:v]scale=1060:1060:flags=bicubic[f];[1:v][f]overlay=1390:550:shortest=1,"
                    "format=yuv420p", "-t", "60", "-r", "25", "-c:v", "libx264", "-preset", "ultrafast", "-crf", "20",
                    str(path)], check=True)
    return path


if __name__ == "__main__":
    sys.exit(main())
