"""Hub loading rules shared by every MemFace model: safetensors only, strict, validated.

``PyTorchModelHubMixin`` gives ``save_pretrained`` / ``from_pretrained`` / ``push_to_hub``
(``config.json`` + ``model.safetensors``). Its default loader is lenient (``strict=False``) and
falls back to pickled ``pytorch_model.bin``; :class:`StrictHubMixin` replaces it with a loader
that reads only ``model.safetensors`` and refuses missing, unexpected or mis-shaped tensors,
naming them, before anything reaches ``load_state_dict``.
"""

from __future__ import annotations

import logging
import os
import re
from pathlib import Path

import torch
from huggingface_hub import PyTorchModelHubMixin, hf_hub_download
from safetensors import SafetensorError, safe_open

from .artifact_json import MAX_CONFIG_BYTES, MAX_JSON_DEPTH, check_config, json_depth, read_json_file  # noqa: F401
from .errors import MemFaceInputError

logger = logging.getLogger(__name__)

WEIGHTS_FILE = "model.safetensors"
PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".pkl", ".pickle", ".ckpt", ".npy", ".npz", ".joblib")


TOKEN_LIKE = re.compile(r"(^|/)(hf_|api_org_)[A-Za-z0-9_]{8,}")     # what Hugging Face access tokens look like


def refuse_token_like(repo_id: str) -> None:
    """A repo name that looks like an access token (one pasted into the wrong field) is refused, without
    repeating it: it must never reach a log line, an error message or the Hub."""
    if TOKEN_LIKE.search(repo_id or ""):
        raise MemFaceInputError("repo", "this looks like an access token, not a repo name; pass the token as the "
                                "token (and consider revoking it if it was shared)")


def unreachable_errors() -> tuple[type[BaseException], ...]:
    """Exceptions meaning "the Hub cannot be reached" for the installed ``huggingface_hub`` client."""
    errors: list[type[BaseException]] = [ConnectionError, TimeoutError]
    for module_name in ("httpx2", "httpx", "requests"):
        try:
            module = __import__(module_name)
        except ImportError:
            continue
        for name in ("ConnectError", "TimeoutException", "ConnectionError", "Timeout"):
            candidate = getattr(module, name, None)
            if isinstance(candidate, type) and issubclass(candidate, BaseException):
                errors.append(candidate)
    return tuple(errors)


def hub_file_list(repo_id: str, revision: str | None = None, token: str | bool | None = None,
                  repo_type: str | None = None) -> list[str] | None:
    """The files of a Hub repo, or ``None`` when offline (``HF_HUB_OFFLINE=1``) or the Hub is unreachable:
    then callers read only what the local cache already holds. Refuses a repo with pickle-capable files.
    Hub errors (``RepositoryNotFoundError`` ...) reach the caller unchanged."""
    from huggingface_hub import HfApi, constants
    from huggingface_hub.errors import OfflineModeIsEnabled

    if constants.HF_HUB_OFFLINE:
        return None
    try:
        files = HfApi(token=token).list_repo_files(repo_id, revision=revision, repo_type=repo_type)
    except (OfflineModeIsEnabled, *unreachable_errors()) as err:
        logger.warning("%s: the Hub is unreachable (%s); using the local cache only", repo_id, type(err).__name__)
        return None
    unsafe = sorted(name for name in files if name.lower().endswith(PICKLE_SUFFIXES))
    if unsafe:
        raise MemFaceInputError(repo_id, f"repo carries pickle-capable files {unsafe[:5]}; memface_hub loads "
                                "only safetensors and JSON")
    return files


FLOAT_DTYPES = (torch.float32, torch.float16, torch.bfloat16, torch.float64)


def load_state_strict(model: torch.nn.Module, path: str | os.PathLike, map_location: str = "cpu") -> None:
    """Load ``path`` into ``model``: every tensor must exist in the model with the same shape and dtype;
    a floating-point tensor saved in another float precision (a float16 or bfloat16 checkpoint) is cast to
    the model's (checked finite after the cast)."""
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
                if tensor.dtype != reference.dtype and tensor.dtype in FLOAT_DTYPES and reference.dtype in FLOAT_DTYPES:
                    tensor = tensor.to(reference.dtype)
                if tensor.shape != reference.shape or tensor.dtype != reference.dtype:
                    raise MemFaceInputError(path, f"tensor {name!r} is {tuple(tensor.shape)} {tensor.dtype}, "
                                            f"expected {tuple(reference.shape)} {reference.dtype}")
                if tensor.is_floating_point() and not torch.isfinite(tensor).all():
                    raise MemFaceInputError(path, f"tensor {name!r} contains non-finite values")
                state[name] = tensor
    except (SafetensorError, OSError) as err:
        raise MemFaceInputError(path, f"not a valid safetensors file ({err})") from None
    model.load_state_dict(state, strict=True)


CONFIG_FILE = "config.json"


class StrictHubMixin(PyTorchModelHubMixin):
    """``PyTorchModelHubMixin`` whose ``from_pretrained`` reads only validated safetensors, strictly, after
    checking ``config.json`` against the class's ``config_limits`` (sizes a hostile config could inflate)."""

    config_limits: dict = {}

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path, *args, **kwargs):
        """A model folder or a Hub repo id; a path that names no folder is a one-line error, not a Hub lookup."""
        name = str(pretrained_model_name_or_path)
        if os.path.isdir(name):
            config_path = Path(name) / CONFIG_FILE
            if not config_path.is_file():
                raise MemFaceInputError(name, f"no {CONFIG_FILE}")
        elif name.startswith(("/", ".", "~")) or name.count("/") > 1 or os.path.exists(name):
            raise MemFaceInputError(name, "no such model folder (and not a Hub repo id user/name)")
        else:
            options = {key: kwargs[key] for key in ("revision", "cache_dir", "force_download", "token",
                                                    "local_files_only") if key in kwargs}
            config_path = hf_hub_download(repo_id=name, filename=CONFIG_FILE, **options)
        if cls.config_limits:
            check_config(read_json_file(config_path), cls.config_limits, config_path)
        return super().from_pretrained(pretrained_model_name_or_path, *args, **kwargs)

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
