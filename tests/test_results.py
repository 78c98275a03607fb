"""Results one command each: every JSON in docs/results has a table in scripts/results.py (and so in
``make results``), is listed in docs/results/README.md, and is written by a script that stamps it with
provenance(); the one mean ± std convention (ddof=1)."""

from __future__ import annotations

import importlib.util
import math
import re
import sys
from pathlib import Path

import numpy as np
import pytest

from memface_hub.evaluation.report import STD_CONVENTION, format_mean_std, mean_std, provenance

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "docs" / "results"


def load_results_script():
    spec = importlib.util.spec_from_file_location("results_script", ROOT / "scripts" / "results.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module               # dataclasses look their module up while the class is made
    spec.loader.exec_module(module)
    return module


def test_every_results_json_has_one_command_listed_in_the_results_page():
    tables = load_results_script().TABLES
    made = {table.json for table in tables if table.json}
    assert {path.name for path in RESULTS.glob("*.json")} <= made, "a results JSON that no table of make results makes"
    page = (RESULTS / "README.md").read_text()
    for table in tables:
        script = next(part for part in table.command if part.startswith("scripts/") or part == "memface_hub.cli")
        assert script == "memface_hub.cli" or (ROOT / script).is_file(), script
        assert f"`{table.name}`" in page, f"{table.name} is not in docs/results/README.md"


def test_every_script_that_writes_a_results_json_stamps_it():
    """A script with a default output in docs/results must call provenance() (commit, version, command, config)."""
    writers = [path for path in (ROOT / "scripts").glob("*.py")
               if re.search(r'"docs"\s*/\s*"results"|docs/results/\w+\.json"', path.read_text())]
    assert len(writers) >= 9
    unstamped = [path.name for path in writers if "provenance(" not in path.read_text()]
    assert unstamped == []


def test_tables_with_data_outside_the_repository_are_skipped_with_a_reason(tmp_path, capsys):
    module = load_results_script()
    code = module.main(["--dry-run", "--shared", str(tmp_path / "no_shared"), "--data", str(tmp_path / "no_data"),
                        "real_corpus", "real_people", "real_speech", "benchmark"])
    out = capsys.readouterr().out
    assert code == 0
    assert re.search(r"real_people\s+skipped: .*no_shared/real_clips not found", out)
    assert re.search(r"real_speech\s+skipped: .*no_data/(corpus_v3/corpus.json|runs/a2e_v3_mel/best) not found", out)
    assert re.search(r"real_corpus\s+skipped: .*no_shared/real_clips", out)
    assert re.search(r"benchmark\s+would run: .*scripts/benchmark.py", out)


def test_unknown_table_is_a_usage_error():
    with pytest.raises(SystemExit) as error:
        load_results_script().main(["no_such_table"])
    assert error.value.code == 2


def test_mean_std_is_the_sample_standard_deviation():
    mean, std = mean_std([1.0, 2.0, 3.0, 6.0])
    assert mean == 3.0 and std == pytest.approx(np.std([1, 2, 3, 6], ddof=1)) and std == pytest.approx(2.1602469)
    assert "ddof=1" in STD_CONVENTION


def test_mean_std_leaves_out_nan_and_has_no_spread_for_one_value():
    assert mean_std([1.0, float("nan"), 3.0]) == (2.0, pytest.approx(math.sqrt(2.0)))
    assert mean_std([0.5]) == (0.5, None)
    mean, std = mean_std([float("nan")])
    assert math.isnan(mean) and std is None
    assert format_mean_std(0.8661, 0.0081, 3) == "0.866 ± 0.008" and format_mean_std(0.8661, None, 2) == "0.87"


def test_provenance_names_commit_version_command_and_config():
    stamp = provenance({"seeds": 3})
    assert set(stamp) == {"git_commit", "memface_version", "command", "config"} and stamp["config"] == {"seeds": 3}
