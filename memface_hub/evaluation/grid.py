"""GRID corpus sentences: the words from a clip id, and their phones by forced alignment.

GRID sentences follow one grammar, *command colour preposition letter digit adverb*, and a GRID
file name spells the sentence with one character per word: ``bbaf2n`` is "bin blue at f two now".
Knowing the words, pocketsphinx's forced alignment (its bundled en-us acoustic model and
dictionary, offline) gives each phone's start and end, hence the m/b/p centres that the bilabial
closure of docs/EVALUATION.md needs on real speech, where no TTS timeline exists.
"""

from __future__ import annotations

import numpy as np

from ..errors import MemFaceInputError

GRID_PREFIX = "grid_"
COMMANDS = {"b": "bin", "l": "lay", "p": "place", "s": "set"}
COLOURS = {"b": "blue", "g": "green", "r": "red", "w": "white"}
PREPOSITIONS = {"a": "at", "b": "by", "i": "in", "w": "with"}
LETTERS = {letter: letter for letter in "abcdefghijklmnopqrstuvxyz"}   # no "w" in GRID
DIGITS = {"z": "zero", "0": "zero", "1": "one", "2": "two", "3": "three", "4": "four", "5": "five", "6": "six",
          "7": "seven", "8": "eight", "9": "nine"}
ADVERBS = {"a": "again", "n": "now", "p": "please", "s": "soon"}
GRAMMAR = (("command", COMMANDS), ("colour", COLOURS), ("preposition", PREPOSITIONS), ("letter", LETTERS),
           ("digit", DIGITS), ("adverb", ADVERBS))

# The docs/EVALUATION.md phone classes in ARPAbet (pocketsphinx's phones, no stress marks): the espeak open
# vowels a, aa, A, A:, A@, 0, aI, aU, V, O, O:, OI, E are AE/AA, AY, AW, AH, AO, OY and EH.
ARPABET_BILABIALS: frozenset[str] = frozenset({"M", "B", "P"})
ARPABET_OPEN_VOWELS: frozenset[str] = frozenset({"AA", "AE", "AH", "AO", "AW", "AY", "OY", "EH"})
ALIGNMENT_FRAME_SECONDS = 0.01   # pocketsphinx frames are 10 ms


def is_grid_clip(clip_id: str) -> bool:
    return clip_id.startswith(GRID_PREFIX)


def grid_sentence(clip_id: str) -> list[str]:
    """The six words of a GRID clip id (``grid_bbaf2n`` or ``bbaf2n`` → ``bin blue at f two now``)."""
    code = clip_id[len(GRID_PREFIX):] if clip_id.startswith(GRID_PREFIX) else clip_id
    code = code.lower()
    if len(code) != len(GRAMMAR):
        raise MemFaceInputError(clip_id, f"a GRID clip id has {len(GRAMMAR)} characters after {GRID_PREFIX!r}, "
                                         f"got {len(code)}")
    words = []
    for char, (slot, table) in zip(code, GRAMMAR):
        if char not in table:
            raise MemFaceInputError(clip_id, f"{char!r} is not a GRID {slot} (expected one of {''.join(table)})")
        words.append(table[char])
    return words


class ForcedAligner:
    """pocketsphinx forced alignment of known words: ``align(waveform, words)`` → words and phones
    with start and end in seconds. The decoder is made on first use and reused."""

    def __init__(self, sampling_rate: int = 16_000):
        self.sampling_rate = int(sampling_rate)
        self._decoder = None

    def _get_decoder(self):
        if self._decoder is None:
            from pocketsphinx import Decoder

            self._decoder = Decoder(samprate=self.sampling_rate, lm=None, loglevel="ERROR")
        return self._decoder

    def _decode(self, pcm: bytes) -> None:
        decoder = self._get_decoder()
        decoder.reinit_feat()               # forget noise/CMN estimates from earlier utterances
        decoder.start_utt()
        decoder.process_raw(pcm, full_utt=True)
        decoder.end_utt()

    def align(self, waveform: np.ndarray, words: list[str]) -> dict[str, list[list]]:
        """``{"words": [[word, start_s, end_s], ...], "phones": [[PHONE, start_s, end_s], ...]}`` (silences
        left out). Raises ``RuntimeError`` when the decoder finds no path through the words."""
        pcm = (np.clip(np.asarray(waveform, np.float32), -1.0, 1.0) * 32767.0).astype("<i2").tobytes()
        decoder = self._get_decoder()
        unknown = [word for word in words if decoder.lookup_word(word) is None]
        if unknown:
            raise RuntimeError(f"words not in the pocketsphinx dictionary: {unknown}")
        decoder.set_align_text(" ".join(words))
        self._decode(pcm)                       # 1. words (the align-text search)
        if decoder.hyp() is None:
            raise RuntimeError("forced alignment found no path through the words")
        decoder.set_alignment()
        self._decode(pcm)                       # 2. phones and states (hyp() must not be called here: it crashes)
        alignment = decoder.get_alignment()
        if alignment is None:
            raise RuntimeError("forced alignment returned nothing")
        step = ALIGNMENT_FRAME_SECONDS
        result = {"words": [], "phones": []}
        for word in alignment:
            if word.name.startswith("<") or word.name.startswith("["):
                continue
            result["words"].append([word.name, word.start * step, (word.start + word.duration) * step])
            for phone in word:
                if phone.name != "SIL":
                    result["phones"].append([phone.name, phone.start * step, (phone.start + phone.duration) * step])
        aligned = [name.split("(")[0] for name, _, _ in result["words"]]
        if aligned != list(words):
            raise RuntimeError(f"alignment gave the words {aligned}, expected {list(words)}")
        return result
