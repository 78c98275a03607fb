"""Evaluate an audio-to-expression model on held-out synthetic utterances (a demo corpus, or the synthetic
clips of a multi-person corpus), whose phoneme timelines give the bilabial closure."""

from __future__ import annotations

import functools
import json
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from ..a2e import MemFaceAudioToExpression
from ..audio import build_frontend, cached_features
from ..data.a2e_clips import FEATURE_CACHE
from ..errors import MemFaceInputError
from ..io.audio import AUDIO_SAMPLE_RATE, load_audio
from ..io.shards import load_shard
from .a2e_metrics import UtteranceResult, evaluate_utterance, pool_results


def predict_clip_vertices(model: MemFaceAudioToExpression, shard, frontend=None) -> np.ndarray:
    """Predicted canonical mouth vertices ``(T, V, 3)`` for a shard's audio, with the shard's neutral mouth."""
    frontend = frontend or build_frontend(model.frontend)
    audio = load_audio(shard.audio_path)
    features = cached_features(frontend, audio, AUDIO_SAMPLE_RATE, shard.num_frames, shard.path / FEATURE_CACHE)
    expressions = model.predict(features)                                              # (T, K)
    neutral = torch.as_tensor(shard.neutral_mouth, device=expressions.device)
    return model.vertices(expressions, neutral).cpu().numpy()


def clip_timeline(corpus_dir: str | os.PathLike, clip_id: str) -> dict:
    """A synthetic clip's timeline: ``<corpus>/clips/<id>.json`` of a demo corpus, or the JSON beside the
    clip's video in a multi-person corpus. A clip without one (a real clip) is refused in one line."""
    corpus_dir = Path(corpus_dir)
    direct = corpus_dir / "clips" / f"{clip_id}.json"
    if direct.is_file():
        return json.loads(direct.read_text())
    clips = _corpus_clips(str(corpus_dir.resolve()))
    info = clips.get(clip_id)
    if info is None or info.get("source") != "synthetic":
        raise MemFaceInputError(direct, "no phoneme timeline for this clip (not a synthetic clip of the corpus)")
    return json.loads(Path(info["video"]).with_suffix(".json").read_text())


@functools.lru_cache(maxsize=4)
def _corpus_clips(corpus_dir: str) -> dict:
    path = Path(corpus_dir) / "corpus.json"
    clips = json.loads(path.read_text()).get("clips") if path.is_file() else None
    return clips if isinstance(clips, dict) else {}


def evaluate_a2e(model: MemFaceAudioToExpression, shard_root: str | os.PathLike, corpus_dir: str | os.PathLike,
                 clip_ids: Sequence[str], progress: bool = False) -> dict:
    """Pooled metrics over ``clip_ids`` (shards under ``shard_root``, timelines by :func:`clip_timeline`)."""
    model.eval()
    frontend = build_frontend(model.frontend)
    results: list[UtteranceResult] = []
    for clip_id in tqdm(clip_ids, disable=not progress, desc="evaluating", unit="clip"):
        shard = load_shard(Path(shard_root) / clip_id)
        timeline = clip_timeline(corpus_dir, clip_id)
        predicted = predict_clip_vertices(model, shard, frontend)
        results.append(evaluate_utterance(predicted, shard.mouth_vertices, timeline["phonemes"], timeline["fps"]))
    return pool_results(results)
