"""The `memface` command line."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from memface_hub.cli import build_parser, main


def test_every_flag_has_help():
    parser = build_parser()
    subparsers = next(a for a in parser._actions if a.dest == "command")
    for name, sub in subparsers.choices.items():
        for action in sub._actions:
            if action.dest != "help":
                assert action.help, f"memface {name} {action.option_strings or action.dest} has no help"


def test_console_script_runs():
    result = subprocess.run([sys.executable, "-m", "memface_hub.cli", "--help"], capture_output=True, text=True)
    assert result.returncode == 0 and "preprocess" in result.stdout and "demo-data" in result.stdout


def test_preprocess_reports_failures_with_exit_code(tmp_path, capsys):
    code = main(["preprocess", str(tmp_path / "nope.mp4"), "--out", str(tmp_path / "out")])
    assert code == 1


def test_fit_mouth_model_on_empty_folder_is_a_clear_error(tmp_path, capsys):
    code = main(["fit-mouth-model", str(tmp_path), "--out", str(tmp_path / "m.safetensors")])
    err = capsys.readouterr().err.strip()
    assert code == 2 and err.endswith("no finished clip shards found") and "\n" not in err


def test_eval_a2e_with_a_bad_model_path_is_a_one_line_error(tmp_path, capsys):
    code = main(["eval-a2e", str(tmp_path / "no" / "such" / "model"), "--shards", str(tmp_path),
                 "--corpus", str(tmp_path)])
    err = capsys.readouterr().err.strip()
    assert code == 2 and err.startswith("memface eval-a2e: error:") and "\n" not in err


def test_eval_a2e_names_the_held_out_groups_of_a_multi_person_corpus(tmp_path, capsys):
    import json

    bundled = Path(__file__).resolve().parents[1] / "memface_hub" / "assets" / "demo_pipeline" / "a2e"
    (tmp_path / "corpus.json").write_text(json.dumps({"splits": {"train": [], "test": []},
                                                      "a2e_splits": {"train": [], "test_voice": []}}))
    code = main(["eval-a2e", str(bundled), "--shards", str(tmp_path), "--corpus", str(tmp_path), "--split", "test"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and "--split=test" in err and "test_voice, train" in err and "\n" not in err


import pytest  # noqa: E402


@pytest.mark.parametrize("argv", [
    ["adapt", "clip.mp4", "--out", "spk", "--entries", "0"],
    ["adapt", "clip.mp4", "--out", "spk", "--entries", "-1"],
    ["adapt", "clip.mp4", "--out", "spk", "--finetune-steps", "-1"],
    ["adapt", "clip.mp4", "--out", "spk", "--finetune-seconds", "nan"],
    ["generate", "--text", "hi", "--out", "x.mp4", "--max-seconds", "nan"],
    ["generate", "--text", "hi", "--out", "x.mp4", "--max-seconds", "inf"],
    ["preprocess", "a.mp4", "--out", "o", "--workers", "zero"],
])
def test_bad_numbers_are_one_line_errors(argv, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert exit_info.value.code == 2 and "error: argument" in err and ("at least 1" in err or "finite" in err
                                                                       or "expected" in err)


def test_output_equal_to_the_input_is_refused(tmp_path, capsys):
    audio = tmp_path / "speech.mp4"
    audio.write_bytes(b"not really a video")
    code = main(["generate", "--audio", str(audio), "--out", str(audio)])
    err = capsys.readouterr().err.strip()
    assert code == 2 and "is also the input audio" in err and audio.read_bytes() == b"not really a video"
    (tmp_path / "file").write_text("x")
    code = main(["adapt", str(audio), "--out", str(tmp_path / "file")])
    assert code == 2 and "is a file" in capsys.readouterr().err


@pytest.mark.parametrize("device", ["bogus", "cuda:7"])
def test_an_unusable_device_is_a_one_line_error(device, capsys):
    import torch

    if device.startswith("cuda") and torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    code = main(["generate", "--text", "Hi.", "--out", "never.mp4", "--device", device])
    err = capsys.readouterr().err.strip()
    assert code == 2 and err.startswith("memface generate: error: device:") and "\n" not in err


def test_the_cli_and_the_pipeline_need_none_of_the_extras():
    """`pip install memface_hub` without [space,train,wav2vec2,phonemes]: the extras' packages are made
    unimportable in a fresh interpreter, and `memface --help` and loading the bundled pipeline still work."""
    code = ("import sys\n"
            "for name in ('gradio', 'accelerate', 'transformers', 'pocketsphinx', 'matplotlib', 'skvideo'):\n"
            "    sys.modules[name] = None\n"
            "from memface_hub.pipeline import MemFacePipeline\n"
            "MemFacePipeline.from_pretrained()\n"
            "from memface_hub.cli import main\n"
            "main(['--help'])\n")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0 and "build-corpus" in result.stdout, result.stderr[-2000:]
