"""Model cards for Hub uploads: a template from ``model_cards/`` filled in with the artifact's metadata.

Templates are Markdown with ``$name`` placeholders (``string.Template``); ``$card_data`` sits between the
``---`` lines and receives the YAML front matter, written by ``huggingface_hub.ModelCardData``.

Where templates live: ``model_cards/`` at the repository root is their home, read by a source checkout and
an editable install. Wheels cannot reach that folder, so the package ships an identical copy as package data
in ``memface_hub/card_templates/`` (``pyproject.toml``), read when ``model_cards/`` is absent; a test keeps
the two copies identical.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path
from string import Template

from huggingface_hub import ModelCardData

REPO_TEMPLATES = Path(__file__).resolve().parent.parent / "model_cards"
PACKAGE_TEMPLATES = "card_templates"


def card_template(name: str) -> str:
    """The text of template ``name`` (e.g. ``"speaker_card.md"``): ``model_cards/`` first, else the package copy."""
    path = REPO_TEMPLATES / name
    if path.is_file():
        return path.read_text(encoding="utf-8")
    return (resources.files("memface_hub") / PACKAGE_TEMPLATES / name).read_text(encoding="utf-8")


def render_card(template: str, card_data: ModelCardData, /, **fields: object) -> str:
    """Template ``template`` with its front matter (``card_data``) and every ``$field`` filled in.

    A placeholder without a value is a ``KeyError`` naming it: a card is never written half-filled.
    """
    values = {key: str(value) for key, value in fields.items()}
    return Template(card_template(template)).substitute(values, card_data=card_data.to_yaml().strip())
