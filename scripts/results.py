"""Rebuild the results in ``docs/results``: one command per table, run in order (``make results``).

    python scripts/results.py                      # every table, in order (CPU hours: see docs/results/README.md)
    python scripts/results.py --list               # the tables: command, JSON, what each needs
    python scripts/results.py benchmark real_speech  # only these tables
    python scripts/results.py --dry-run            # say what would run or be skipped, run nothing

Each table is one script under ``scripts/``; each writes its JSON stamped with ``git_commit``,
``memface_version``, ``command`` and ``config`` (``memface_hub.evaluation.report.provenance``) and its
section of ``docs/results/README.md``. The demo-corpus tables need nothing outside the repository (the
first one builds the corpus the next ones read). The real-people tables read data that is never committed:
the shared real clips and portraits (``--shared``, default: the ``shared`` folder beside the repository)
and the multi-person corpus built from them (``--data``/corpus, built by the ``real_corpus`` step when
missing). When those are absent the table is skipped with a line naming the missing folder; a skip is not
a failure. Exits 1 when a table's script failed.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class Table:
    """One step of ``make results``: a command run from the repository root.

    ``command`` and ``needs`` may hold ``{python}``, ``{shared}`` and ``{data}``; ``needs`` are the
    inputs from outside the repository that must exist; ``done_when`` marks a step whose output already
    exists (it is then not run again)."""

    name: str
    json: str | None                  # the file it writes under docs/results (None: a step that makes inputs)
    command: tuple[str, ...]
    about: str
    needs: tuple[str, ...] = ()
    done_when: str | None = None


TABLES = (
    Table("foundation", "foundation.json", ("{python}", "scripts/foundation_figures.py"),
          "tracking, demo corpus (built into outputs/foundation), preprocessing speed"),
    Table("a2e_training_budget", "a2e_training_budget.json", ("{python}", "scripts/a2e_training_budget.py"),
          "a2e ablation at longer training budgets (reuses the ablation's runs)"),
    Table("renderer_ablation", "renderer_ablation.json", ("{python}", "scripts/renderer_ablation.py"),
          "renderer ablation on the demo corpus, and adaptation to an unseen face (built when missing)"),
    Table("benchmark", "benchmark.json", ("{python}", "scripts/benchmark.py"),
          "generation speed, memory and live latency of the bundled pipeline"),
    Table("space", "space.json", ("{python}", "scripts/load_test.py"),
          "the Space's adapt/generate timings and a 20-request load test"),
    Table("real_corpus", None,
          ("{python}", "-m", "memface_hub.cli", "build-corpus", "--real", "{shared}/real_clips",
           "--portraits", "{shared}/portraits", "--out", "{data}/corpus", "--workers", "2", "--no-styles"),
          "the multi-person corpus the real-people tables read (outside the repository; one speaking style, as the "
          "bundled renderer was trained on)",
          needs=("{shared}/real_clips", "{shared}/portraits"), done_when="{data}/corpus/corpus.json"),
    Table("real_corpus_v3", None,
          ("{python}", "-m", "memface_hub.cli", "build-corpus", "--real", "{shared}/real_clips",
           "--portraits", "{shared}/portraits", "--out", "{data}/corpus_v3", "--synthetic-minutes", "1.0",
           "--workers", "2"),
          "the multi-person corpus with speaking styles (demo corpus v3) the a2e tables read",
          needs=("{shared}/real_clips", "{shared}/portraits"), done_when="{data}/corpus_v3/corpus.json"),
    Table("a2e_ablation", "a2e_ablation.json",
          ("{python}", "scripts/a2e_ablation.py", "--corpus", "{data}/corpus_v3", "--shards", "{data}/corpus_v3/shards",
           "--frontends", "mel", "--epochs", "150", "--real-repeat", "3", "--jobs", "2", "--work",
           "{data}/runs/a2e_ablation_v3"),
          "audio-to-expression ablation on the one-to-many corpus, 3 seeds", needs=("{data}/corpus_v3/corpus.json",)),
    *(Table(f"a2e_v3_{frontend}", None,
            ("{python}", "-m", "memface_hub.cli", "train-a2e", "--shards", f"{{data}}/{corpus}/shards", "--splits",
             f"{{data}}/{corpus}/corpus.json", "--frontend", frontend, "--epochs", "150", "--real-repeat", "3",
             "--out", f"{{data}}/runs/{run}"),
            f"an a2e model with the {frontend} front end for the real-speech comparison",
            needs=(f"{{data}}/{corpus}/corpus.json",), done_when=f"{{data}}/runs/{run}/best/config.json")
      for frontend, corpus, run in (("mel", "corpus_v3", "a2e_v3_mel"), ("phone_net", "corpus_v3", "a2e_v3_phone_net"),
                                    ("phonemes", "corpus", "a2e_phonemes_e150"))),
    Table("a2e_v3_aug6", None,
          ("{python}", "-m", "memface_hub.cli", "train-a2e", "--shards", "{data}/corpus_v3/shards", "--splits",
           "{data}/corpus_v3/corpus.json", "--frontend", "mel", "--epochs", "150", "--real-repeat", "1",
           "--real-augment", "6", "--out", "{data}/runs/a2e_v3_aug6"),
          "an a2e model trained with 6 augmented copies of each real voice for the real-speech comparison",
          needs=("{data}/corpus_v3/corpus.json",), done_when="{data}/runs/a2e_v3_aug6/best/config.json"),
    Table("real_clips", "real_clips.json", ("{python}", "scripts/corpus_table.py", "{data}/corpus"),
          "every shared real clip through preprocessing", needs=("{data}/corpus/corpus.json",)),
    Table("real_people", "real_people.json", ("{python}", "scripts/real_people_eval.py", "{shared}/real_clips"),
          "held-out real people: adaptation, colour, sharpness, lip correlation", needs=("{shared}/real_clips",)),
    Table("sharpness_ceiling", "sharpness_ceiling.json",
          ("{python}", "scripts/sharpness_ceiling.py", "--corpus", "{data}/corpus"),
          "the mouth sharpness a perfect renderer at crop 128 / 256 could reach on the held-out people",
          needs=("{data}/corpus/corpus.json",)),
    Table("real_renderer_ablation", "real_people.json",
          ("{python}", "scripts/real_renderer_ablation.py", "--corpus", "{data}/corpus"),
          "renderer ablation on held-out real people (the `ablation` rows)", needs=("{data}/corpus/corpus.json",)),
    Table("real_speech", "real_speech.json",
          ("{python}", "scripts/real_speech_eval.py", "--corpus", "{data}/corpus_v3", "--figure",
           "docs/real_speech_lips.png", "--compare", "{data}/runs/a2e_v3_mel/best", "{data}/runs/a2e_v3_phone_net/best",
           "{data}/runs/a2e_phonemes_e150/best", "{data}/runs/a2e_v3_aug6/best"),
          "lip-sync of the a2e model on real speech, and the front-end comparison",
          needs=("{data}/corpus_v3/corpus.json", "{data}/runs/a2e_v3_mel/best")),
    Table("real_speech_cv", "real_speech_cv.json",
          ("{python}", "scripts/real_speech_cv.py", "--corpus", "{data}/corpus_v3", "--folds", "4", "--work",
           "{data}/runs/real_speech_cv", "--jobs", "2", "--figure", "docs/real_speech_cv.png"),
          "lip-sync on real speech cross-validated by person: 4 a2e trainings with the bundled recipe",
          needs=("{data}/corpus_v3/corpus.json",)),
    Table("provenance", "provenance.json", ("{python}", "scripts/provenance_eval.py", "{shared}/real_clips"),
          "watermark and C2PA credentials on generated clips; false positives on real ones",
          needs=("{shared}/real_clips",)),
    Table("reliability", "reliability.json", ("{python}", "scripts/reliability.py"),
          "hostile artifacts, huge claims, bad outputs, truncated inputs, interruptions, a full disk, secrets"),
    Table("reliability_4k", "reliability.json", ("{python}", "scripts/reliability.py", "--4k"),
          "adapting to a 4K 60 s video, then a short generation: peak RSS and temporary disk (adds to the above)"),
)


def fill(text: str, places: dict[str, str]) -> str:
    return text.format(**places)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    names = ", ".join(t.name for t in TABLES)
    parser.add_argument("tables", nargs="*", help=f"tables to rebuild (default: all): {names}")
    parser.add_argument("--shared", default=os.environ.get("MEMFACE_SHARED", str(ROOT.parent / "shared")),
                        help="folder with real_clips/ and portraits/ (default: $MEMFACE_SHARED or ../shared)")
    parser.add_argument("--data", default=os.environ.get("MEMFACE_DATA", str(ROOT.parent / "data")),
                        help="folder for the multi-person corpus (default: $MEMFACE_DATA or ../data)")
    parser.add_argument("--list", action="store_true", help="list the tables and exit")
    parser.add_argument("--dry-run", action="store_true", help="say what would run or be skipped, run nothing")
    args = parser.parse_args(argv)
    unknown = sorted(set(args.tables) - {t.name for t in TABLES})
    if unknown:
        parser.error(f"unknown table(s) {', '.join(unknown)}; known: {names}")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    places = {"python": sys.executable, "shared": str(Path(args.shared).resolve()),
              "data": str(Path(args.data).resolve())}
    chosen = [t for t in TABLES if not args.tables or t.name in args.tables]
    if args.list:
        for table in chosen:
            needs = f"  needs {', '.join(fill(n, places) for n in table.needs)}" if table.needs else ""
            print(f"{table.name:<24} → {table.json or '(input for the tables after it)'}: {table.about}\n"
                  f"{'':<24}   {' '.join(table.command).replace('{python}', 'python')}{needs}")
        return 0
    outcome: dict[str, str] = {}
    for table in chosen:
        missing = [fill(n, places) for n in table.needs if not Path(fill(n, places)).exists()]
        command = [fill(part, places) for part in table.command]
        if table.done_when and Path(fill(table.done_when, places)).exists():
            outcome[table.name] = f"already there ({fill(table.done_when, places)})"
        elif missing:
            outcome[table.name] = f"skipped: {', '.join(missing)} not found (data outside the repository)"
        elif args.dry_run:
            outcome[table.name] = "would run: " + " ".join(command)
        else:
            print(f"== {table.name}: {' '.join(command)}", flush=True)
            started = time.perf_counter()
            code = subprocess.run(command, cwd=ROOT).returncode
            minutes = (time.perf_counter() - started) / 60
            outcome[table.name] = (f"done in {minutes:.1f} min" if code == 0
                                   else f"FAILED (exit {code}) after {minutes:.1f} min")
            print(f"== {table.name}: {outcome[table.name]}", flush=True)
    print("summary:\n" + "\n".join(f"  {name:<24} {text}" for name, text in outcome.items()))
    return 1 if any(text.startswith("FAILED") for text in outcome.values()) else 0


if __name__ == "__main__":
    sys.exit(main())
