"""Hub loading rules shared by every MemFace model: safetensors only, strict, validated.

``PyTorchModelHubMixin`` gives ``save_pretrained`` / ``from_pretrained`` / ``push_to_hub``
(``config.json`` + ``model.safetensors``). Its default loader is lenient (``strict=False``) and
falls back to pickled ``pytorch_model.bin``; :class:`StrictHubMixin` replaces it with a loader
that reads only ``model.safetensors`` and refuses missing, unexpected or mis-shaped tensors,
naming them, before anything reaches ``load_state_dict``.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch
from huggingface_hub import PyTorchModelHubMixin, hf_hub_download
from safetensors import SafetensorError, safe_open

from .errors import MemFaceInputError

WEIGHTS_FILE = "model.safetensors"
PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".pkl", ".pickle", ".ckpt", ".npy", ".npz", ".joblib")


def refuse_pickle_files(repo_id: str, revision: str | None = None, token: str | bool | None = None,
                        repo_type: str | None = None) -> None:
    """Refuse a Hub repo that carries pickle-capable files, before anything is downloaded.

    Offline (``HF_HUB_OFFLINE=1``) there is nothing to ask; the caller then reads only the
    JSON and safetensors files already in the cache.
    """
    from huggingface_hub import HfApi, constants
    from huggingface_hub.errors import HfHubHTTPError

    if constants.HF_HUB_OFFLINE:
        return
    try:
        files = HfApi(token=token).list_repo_files(repo_id, revision=revision, repo_type=repo_type)
    except (HfHubHTTPError, ValueError, OSError) as err:
        raise MemFaceInputError(repo_id, f"cannot read the repo on the Hub ({type(err).__name__}: "
                                f"{str(err).splitlines()[0] if str(err) else ''})") from None
    unsafe = sorted(name for name in files if name.lower().endswith(PICKLE_SUFFIXES))
    if unsafe:
        raise MemFaceInputError(repo_id, f"repo carries pickle-capable files {unsafe[:5]}; memface_hub loads "
                                "only safetensors and JSON")


def load_state_strict(model: torch.nn.Module, path: str | os.PathLike, map_location: str = "cpu") -> None:
    """Load ``path`` into ``model``: every tensor must exist in the model with the same shape and dtype."""
    expected = model.state_dict()
    try:
        with safe_open(str(path), framework="pt", device=str(map_location)) as file:
            names = set(file.keys())
            missing = sorted(set(expected) - names)
            unexpected = sorted(names - set(expected))
            if missing or unexpected:
                raise MemFaceInputError(path, f"weights do not match {type(model).__name__}: "
                                        f"missing keys {missing[:8]}{'…' if len(missing) > 8 else ''}, "
                                        f"unexpected keys {unexpected[:8]}{'…' if len(unexpected) > 8 else ''}")
            state = {}
            for name in names:
                tensor = file.get_tensor(name)
                reference = expected[name]
                if tensor.shape != reference.shape or tensor.dtype != reference.dtype:
                    raise MemFaceInputError(path, f"tensor {name!r} is {tuple(tensor.shape)} {tensor.dtype}, "
                                            f"expected {tuple(reference.shape)} {reference.dtype}")
                if tensor.is_floating_point() and not torch.isfinite(tensor).all():
                    raise MemFaceInputError(path, f"tensor {name!r} contains non-finite values")
                state[name] = tensor
    except (SafetensorError, OSError) as err:
        raise MemFaceInputError(path, f"not a valid safetensors file ({err})") from None
    model.load_state_dict(state, strict=True)


class StrictHubMixin(PyTorchModelHubMixin):
    """``PyTorchModelHubMixin`` whose ``from_pretrained`` reads only validated safetensors, strictly."""

    @classmethod
    def _from_pretrained(cls, *, model_id: str, revision: str | None, cache_dir: str | Path | None,
                         force_download: bool, local_files_only: bool, token: str | bool | None,
                         map_location: str = "cpu", **model_kwargs):
        model = cls(**model_kwargs)
        if os.path.isdir(model_id):
            weights = Path(model_id) / WEIGHTS_FILE
            if not weights.is_file():
                raise MemFaceInputError(model_id, f"no {WEIGHTS_FILE} (only safetensors weights are loaded)")
        else:
            weights = hf_hub_download(repo_id=model_id, filename=WEIGHTS_FILE, revision=revision,
                                      cache_dir=cache_dir, force_download=force_download, token=token,
                                      local_files_only=local_files_only)
        load_state_strict(model, weights, map_location)
        model.eval()
        return model
