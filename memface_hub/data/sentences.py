"""Text of the synthetic talking-face corpus: GRID-like commands plus handwritten sentences.

    >>> sentences = corpus_sentences(num_grid=200, seed=0)   # handwritten first, then grid
    >>> splits = split_sentences(sentences)                  # {"train": [...], "val": [...], "test": [...]}

The split is by sentence text (a stable SHA-256 hash), so a sentence lands in the same split for
every speaker, seed and corpus size.
"""

from __future__ import annotations

import hashlib
import random

from memface_hub.errors import MemFaceInputError

# GRID grammar (Cooke et al., 2006): command color preposition letter digit adverb.
GRID_COMMANDS = ("bin", "lay", "place", "set")
GRID_COLORS = ("blue", "green", "red", "white")
GRID_PREPOSITIONS = ("at", "by", "in", "with")
GRID_LETTERS = tuple(letter for letter in "abcdefghijklmnopqrstuvwxyz" if letter != "w")
GRID_DIGITS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
GRID_ADVERBS = ("again", "now", "please", "soon")
_GRID_SLOTS = (GRID_COMMANDS, GRID_COLORS, GRID_PREPOSITIONS, GRID_LETTERS, GRID_DIGITS, GRID_ADVERBS)
NUM_GRID_SENTENCES = 4 * 4 * 4 * 25 * 10 * 4  # 64,000 distinct commands

HANDWRITTEN_SENTENCES: tuple[str, ...] = (
    "Mom made a map of the market.",
    "Bob put the big box by the pump.",
    "My father bought a bottle of apple juice.",
    "Palm trees sway above the warm sand.",
    "Please pass me the butter and the bread.",
    "The baby bear ate a bowl of plums.",
    "Mark parked the car far from the barn.",
    "Open the window and watch the boats go by.",
    "A bright moon hung above the calm harbour.",
    "The people in the park played ball all afternoon.",
    "Maybe the museum will open before noon.",
    "Pam and Ben baked a plum pie.",
    "Why are you always so happy on Monday mornings?",
    "The bus stopped at the top of the hill.",
    "I might buy a purple umbrella tomorrow.",
    "Boil the potatoes, then mash them with butter.",
    "A small mouse hid beneath the broom.",
    "Paul played the piano while Mary hummed along.",
    "The policeman wrote a brief report about the robbery.",
    "Father was amazed by the sheer size of the pyramid.",
    "How about a cup of hot tea?",
    "The lamb jumped over the muddy ditch.",
    "Bananas are my favourite breakfast.",
    "Thirty birds perched on the power line.",
    "She sells seashells by the seashore.",
    "The quick brown fox jumps over the lazy dog.",
    "Our neighbour's dog barks at every passing bike.",
    "Move the lamp a bit closer to the bed.",
    "A big black bug bit a big black bear.",
    "We watched the fireworks from the rooftop.",
    "My brother plays the trumpet in a marching band.",
    "The captain shouted orders above the roar of the storm.",
    "Put the empty boxes in the basement.",
    "Nobody knows the name of the masked man.",
    "Tom wants a warm bath after the long hike.",
    "The map shows a path around the mountain.",
    "Buy more milk on your way home.",
    "The boy opened the gate and ran across the lawn.",
    "Mix the flour, the eggs and the sugar in a bowl.",
    "Thank you for the beautiful flowers.",
    "The farmer drove his tractor past the barn.",
    "I love the smell of bread in the morning.",
    "Peter picked a peck of pickled peppers.",
    "A large owl watched us from the oak tree.",
    "Time flies when we are having fun.",
    "Could you bring me a pen and some paper?",
    "The ambulance arrived in a matter of minutes.",
    "Grandma keeps her buttons in an old biscuit tin.",
    "Pop music was playing in the shop.",
    "Every summer we camp by a quiet lake.",
    "The big soap bubble popped.",
    "Stop the bus, please!",
    "Bob, come home for supper.",
    "Maybe we can meet tomorrow.",
    "Please come back soon.",
    "Apples, plums and pears are on the table.",
    "Jump, my boy, jump!",
    "The umpire blew his whistle to start the match.",
    "A thousand balloons floated above the palace.",
    "My mother sometimes bakes pumpkin muffins on rainy Sundays.",
    "The mob of reporters pushed past the embassy guards.",
    "Put your boots by the door before you come in.",
    "Birds migrate south when autumn arrives.",
    "The hot air balloon drifted gently over the farm.",
    "Amber lamps lit the narrow path to the boathouse.",
    "Bring a map, a compass and plenty of water.",
    "Among the books was a map of a buried treasure.",
    "The pilot calmly announced that we would land in Boston.",
    "Her jaw dropped when she saw the price.",
    "We ate pizza and popcorn at the movies.",
    "Bob's mum bought him a bike for his birthday in May.",
    "Arm in arm, the pair marched proudly up the avenue.",
    "When the bell rang, the boys and girls ran out to play.",
    "My grandfather always said that a penny saved is a penny earned.",
    "After the meeting, Amanda walked along the embankment and watched the barges pass by.",
    "The brave firefighters pulled a puppy out of the burning apartment building.",
    "Oh my, what a mess!",
    "Jim bought a tub of warm popcorn.",
)


def grid_sentences(count: int, seed: int) -> list[str]:
    """``count`` distinct GRID-like commands ("bin blue at f two now"), deterministic for ``seed``."""
    if not 0 <= count <= NUM_GRID_SENTENCES:
        raise MemFaceInputError(
            f"count={count}", f"must be in [0, {NUM_GRID_SENTENCES}] (the number of distinct GRID commands)"
        )
    rng = random.Random(seed)
    sentences = []
    for code in rng.sample(range(NUM_GRID_SENTENCES), count):
        words = []
        for slot in reversed(_GRID_SLOTS):  # mixed-radix decoding, last slot varies fastest
            code, index = divmod(code, len(slot))
            words.append(slot[index])
        sentences.append(" ".join(reversed(words)))
    return sentences


def corpus_sentences(num_grid: int = 200, seed: int = 0) -> list[str]:
    """The handwritten sentences followed by ``num_grid`` GRID commands."""
    return list(HANDWRITTEN_SENTENCES) + grid_sentences(num_grid, seed)


def _unit_hash(sentence: str, seed: int) -> float:
    """Stable hash of ``(seed, sentence)`` mapped to [0, 1)."""
    digest = hashlib.sha256(f"{seed}\0{sentence}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def split_sentences(
    sentences: list[str] | tuple[str, ...],
    seed: int = 0,
    val_fraction: float = 0.1,
    test_fraction: float = 0.1,
) -> dict[str, list[str]]:
    """Split sentences into ``"train"``/``"val"``/``"test"`` by a stable hash of their text.

    Each distinct sentence goes to exactly one split (duplicates are dropped; input order is kept
    inside each split). A sentence goes to test when its hash is below ``test_fraction``, to val
    when below ``test_fraction + val_fraction``, otherwise to train. With at least 3 distinct
    sentences no split is left empty: the sentence whose hash is nearest an empty split's range is
    moved there from a split that can spare one.
    """
    if not (0.0 <= val_fraction and 0.0 <= test_fraction and val_fraction + test_fraction < 1.0):
        raise MemFaceInputError(
            f"val_fraction={val_fraction}, test_fraction={test_fraction}", "must be >= 0 and sum to < 1"
        )
    unique = list(dict.fromkeys(sentences))
    hashes = {sentence: _unit_hash(sentence, seed) for sentence in unique}
    bounds = {"test": (0.0, test_fraction), "val": (test_fraction, test_fraction + val_fraction),
              "train": (test_fraction + val_fraction, 1.0)}  # fmt: skip

    def split_of(value: float) -> str:
        for name, (low, high) in bounds.items():
            if low <= value < high:
                return name
        return "train"

    assignment = {sentence: split_of(hashes[sentence]) for sentence in unique}
    if len(unique) >= 3:
        for name in ("test", "val", "train"):
            if any(split == name for split in assignment.values()):
                continue
            low, high = bounds[name]
            sizes = {split: sum(1 for s in assignment.values() if s == split) for split in bounds}
            movable = [s for s in unique if sizes[assignment[s]] > 1]
            centre = (low + high) / 2
            chosen = min(movable, key=lambda s: (abs(hashes[s] - centre), s))
            assignment[chosen] = name
    return {name: [s for s in unique if assignment[s] == name] for name in ("train", "val", "test")}
