"""Deploy the Gradio Space: create the Space repo (if needed) and upload exactly the files it runs from.

    python scripts/deploy_space.py your-name/memface                     # bundled demo weights and speaker
    python scripts/deploy_space.py your-name/memface --model your-name/memface-pipeline --private
    python scripts/deploy_space.py your-name/memface --stage-only /tmp/space   # write the files, upload nothing

What goes up (and nothing else — no tests, scripts, training data or results):

* ``README.md``: ``SPACE_README.md``, its front matter completed: ``models:`` lists the Hub repos the app loads
  (``--model``, ``--speaker``; none when it runs on the weights bundled in the Space), ``suggested_hardware``;
  it already asks for "Sign in with Hugging Face" (``hf_oauth``, scopes ``write-repos`` + ``contribute-repos``);
* ``requirements.txt``: ``requirements-space.txt``, the Space's own minimal requirements;
* ``packages.txt``: the Debian packages the Space needs (``ffmpeg``, with ``ffprobe``: gradio muxes the Generate
  tab's streamed video segments with them);
* ``space_app.py`` and the ``memface_hub`` package as a wheel would hold it (its ``.py`` files, card templates,
  bundled demo weights and speaker, the people split JSON);
* ``docs/space_generate.png``, ``docs/space_adapt.png``: the pictures the card shows.

``--model`` / ``--speaker`` (Hub ids) also become the Space variables ``MEMFACE_SPACE_MODEL`` /
``MEMFACE_SPACE_SPEAKER``, which space_app.py reads. A C2PA signing key is a secret: set ``MEMFACE_C2PA_CERT`` and
``MEMFACE_C2PA_KEY`` in the Space's settings (the PEM text itself); without them its videos are watermarked only.
Files of an earlier deployment that are no longer part of the Space are deleted in the same commit.
The token: ``--token``, else ``HF_TOKEN`` or ``hf auth login``.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
PACKAGE = "memface_hub"
PACKAGE_DATA = ["card_templates/*.md", "assets/**/*", "data/*.json"]   # as pyproject.toml's package-data
CARD_PICTURES = ["docs/space_generate.png", "docs/space_adapt.png"]
DEFAULT_HARDWARE = "cpu-upgrade"


def space_files(root: Path = REPO) -> dict[str, Path]:
    """Path in the Space repo → file here, for everything the Space runs from except README and requirements."""
    files = {"space_app.py": root / "space_app.py"}
    package = root / PACKAGE
    sources = [path for path in package.rglob("*.py") if "__pycache__" not in path.parts]
    for pattern in PACKAGE_DATA:
        sources += [path for path in package.glob(pattern) if path.is_file()]
    for path in sorted(set(sources)):
        files[path.relative_to(root).as_posix()] = path
    for picture in CARD_PICTURES:
        files[picture] = root / picture
    return files


def space_card(models: list[str], hardware: str, root: Path = REPO):
    """``SPACE_README.md`` as a ``SpaceCard`` with ``models`` and ``suggested_hardware`` set."""
    from huggingface_hub import SpaceCard

    card = SpaceCard.load(root / "SPACE_README.md")
    if models:
        card.data.models = models
    else:
        card.data.pop("models", None)          # the app runs on the weights bundled in the Space itself
    card.data.suggested_hardware = hardware
    return card


def stage(folder: Path, models: list[str], hardware: str, root: Path = REPO) -> Path:
    """Write the Space's files into ``folder`` (made empty first)."""
    if folder.exists():
        shutil.rmtree(folder)
    for target, source in space_files(root).items():
        (folder / target).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(source, folder / target)
    space_card(models, hardware, root).save(folder / "README.md")
    shutil.copy2(root / "requirements-space.txt", folder / "requirements.txt")
    (folder / "packages.txt").write_text("ffmpeg\n")
    return folder


def deploy(repo_id: str, *, model: str | None = None, speaker: str | None = None, hardware: str = DEFAULT_HARDWARE,
           private: bool = False, token: str | None = None) -> str:
    """Create the Space (``exist_ok``) and upload its files in one commit; returns the Space's URL."""
    from huggingface_hub import HfApi

    api = HfApi(token=token)
    models = [repo for repo in (model, speaker) if repo and repo != "demo"]
    variables = {"MEMFACE_SPACE_MODEL": model, "MEMFACE_SPACE_SPEAKER": speaker}
    url = api.create_repo(repo_id, repo_type="space", space_sdk="gradio", private=private, exist_ok=True)
    for key, value in variables.items():
        if value:
            api.add_space_variable(url.repo_id, key, value, description="set by scripts/deploy_space.py")
    with tempfile.TemporaryDirectory(prefix="memface-space-") as tmp:
        folder = stage(Path(tmp) / "space", models, hardware)
        space_card(models, hardware).validate(repo_type="space")      # the Hub's check of the front matter
        api.upload_folder(repo_id=url.repo_id, repo_type="space", folder_path=folder, delete_patterns=["*"],
                          commit_message="Deploy the memface_hub Space (scripts/deploy_space.py)")
    return str(url)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter,
                                     epilog=__doc__.split("\n\n", 1)[1])
    parser.add_argument("repo_id", help="the Space, e.g. your-name/memface")
    parser.add_argument("--model", default=None, help="pipeline Hub id the Space serves (default: bundled weights)")
    parser.add_argument("--speaker", default=None, help="default speaker Hub id (default: the bundled demo speaker)")
    parser.add_argument("--hardware", default=DEFAULT_HARDWARE,
                        help=f"suggested_hardware in the card (default: {DEFAULT_HARDWARE})")
    parser.add_argument("--private", action="store_true", help="create the Space private")
    parser.add_argument("--token", default=None, help="Hub token with write access (default: HF_TOKEN / hf auth login)")
    parser.add_argument("--stage-only", type=Path, default=None, metavar="DIR",
                        help="write the Space's files into DIR and upload nothing")
    args = parser.parse_args(argv)
    if args.stage_only is not None:
        models = [repo for repo in (args.model, args.speaker) if repo and repo != "demo"]
        print(stage(args.stage_only, models, args.hardware))
        return 0
    print(deploy(args.repo_id, model=args.model, speaker=args.speaker, hardware=args.hardware,
                 private=args.private, token=args.token))
    return 0


if __name__ == "__main__":
    sys.exit(main())
