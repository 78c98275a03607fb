"""scripts/deploy_space.py against the test Hub (tests/hub_server.py): a gradio Space holding exactly the files the
app runs from, its card asking for "Sign in with Hugging Face", naming what it loads; a redeploy updates it."""

from __future__ import annotations

import importlib.util
import subprocess
import sys

from conftest import REPO_ROOT


def load_deploy_script():
    spec = importlib.util.spec_from_file_location("deploy_space", REPO_ROOT / "scripts" / "deploy_space.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_staged_space_holds_what_the_app_runs_from_and_nothing_else(tmp_path):
    deploy_space = load_deploy_script()
    folder = deploy_space.stage(tmp_path / "space", models=[], hardware="cpu-upgrade")
    files = {path.relative_to(folder).as_posix() for path in folder.rglob("*") if path.is_file()}
    assert {"README.md", "requirements.txt", "space_app.py", "memface_hub/__init__.py", "memface_hub/pipeline.py",
            "memface_hub/provenance/watermark.py", "memface_hub/assets/demo_pipeline/model_index.json",
            "memface_hub/assets/demo_speaker/template.mp4", "memface_hub/data/real_people.json",
            "docs/space_generate.png"} <= files
    assert not [name for name in files if name.startswith(("tests/", "scripts/", "outputs/", "docs/results"))
                or "__pycache__" in name or name.endswith(".pyc")]
    assert (folder / "requirements.txt").read_text() == (REPO_ROOT / "requirements-space.txt").read_text()
    assert "ffmpeg" in (folder / "packages.txt").read_text().split()     # gradio's streamed video output needs it
    # the staged folder is a working app on its own: its memface_hub is the one imported there
    check = ("import memface_hub, space_app, sys; "
             "assert memface_hub.__file__.startswith(sys.argv[1]), memface_hub.__file__; "
             "space_app.build_parser()")
    result = subprocess.run([sys.executable, "-c", check, str(folder)], cwd=folder, capture_output=True, text=True,
                            timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]


def test_deploy_creates_a_gradio_space_with_oauth_and_updates_it(hub_env, capsys):
    from huggingface_hub import HfApi, SpaceCard

    deploy_space = load_deploy_script()
    space = hub_env.repo_id("memface-space")
    model = f"{hub_env.user}/memface-pipeline"
    assert deploy_space.main([space, "--model", model]) == 0
    assert capsys.readouterr().out.strip() == f"{hub_env.endpoint}/spaces/{space}"

    repo = hub_env.server.repos[("space", space)]
    assert repo.sdk == "gradio" and not repo.private
    assert repo.variables["MEMFACE_SPACE_MODEL"]["value"] == model
    api = HfApi()
    files = set(api.list_repo_files(space, repo_type="space"))
    assert files == {".gitattributes", *deploy_space.space_files(), "README.md", "requirements.txt", "packages.txt"}
    card = SpaceCard.load(space, repo_type="space")
    assert card.data.sdk == "gradio" and card.data.app_file == "space_app.py"
    assert card.data.hf_oauth is True and "write-repos" in card.data.hf_oauth_scopes
    assert card.data.models == [model] and card.data.suggested_hardware == "cpu-upgrade"

    # a redeploy (the Space exists) with the bundled weights: models: is dropped, files no longer there go
    api.upload_file(path_or_fileobj=b"stale", path_in_repo="memface_hub/old_module.py", repo_id=space,
                    repo_type="space")
    assert deploy_space.main([space, "--hardware", "cpu-basic"]) == 0
    files = set(api.list_repo_files(space, repo_type="space"))
    assert "memface_hub/old_module.py" not in files and "space_app.py" in files
    card = SpaceCard.load(space, repo_type="space")
    assert card.data.get("models") is None and card.data.suggested_hardware == "cpu-basic"
