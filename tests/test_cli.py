"""The `memface` command line."""

from __future__ import annotations

import subprocess
import sys

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
