"""Sentences for the embedded corpus, from a small English grammar written for this project.

No text corpus is copied: templates and word lists below are our own. The grammar yields a few
hundred thousand distinct sentences of roughly 6 to 20 words (2 to 7 seconds of speech), which
is plenty for a corpus of hours; :class:`SentenceGenerator` additionally never repeats a sentence.
"""

import numpy as np

NAMES = (
    "Anna", "Ben", "Clara", "David", "Elena", "Frank", "Grace", "Henry", "Iris", "Jack",
    "Karen", "Leo", "Maria", "Nathan", "Olivia", "Peter", "Rosa", "Samuel", "Tina", "Victor",
    "Wendy", "Oscar", "Lucy", "Martin", "Nora", "Hugo", "Emma", "Felix", "Julia", "Tom",
)
ADJECTIVES = (
    "old", "new", "small", "large", "quiet", "noisy", "bright", "dark", "warm", "cold",
    "heavy", "light", "empty", "full", "wooden", "yellow", "green", "red", "blue", "broken",
    "clean", "dusty", "strange", "simple", "narrow", "wide", "famous", "hidden", "round", "soft",
)
NOUNS = (
    "book", "letter", "basket", "bicycle", "camera", "window", "garden", "kettle", "ladder",
    "lamp", "map", "notebook", "piano", "radio", "suitcase", "table", "ticket", "umbrella",
    "violin", "wallet", "bottle", "blanket", "bridge", "candle", "chair", "clock", "coat",
    "door", "engine", "fence", "guitar", "hammer", "jacket", "key", "mirror", "painting",
    "pencil", "phone", "rope", "shovel", "spoon", "tent", "tower", "train", "truck", "boat",
)
PLACES = (
    "the kitchen", "the station", "the library", "the market", "the harbour", "the office",
    "the garden", "the school", "the museum", "the bakery", "the hospital", "the village",
    "the forest", "the airport", "the workshop", "the river bank", "the corner shop",
    "the old church", "the city centre", "the top floor", "the car park", "the small hotel",
)
VERBS_PAST = (
    "found", "moved", "painted", "repaired", "carried", "cleaned", "sold", "borrowed",
    "opened", "dropped", "packed", "noticed", "ordered", "returned", "checked", "wrapped",
    "measured", "described", "forgot", "lifted", "hid", "bought", "lost", "photographed",
)
VERBS_BASE = (
    "find", "move", "paint", "repair", "carry", "clean", "sell", "borrow", "open", "pack",
    "check", "wrap", "measure", "describe", "lift", "hide", "buy", "bring", "take", "fix",
)
TIMES = (
    "this morning", "last night", "yesterday", "on Monday", "on Friday evening",
    "after lunch", "before dinner", "at noon", "early today", "last week", "in the spring",
    "during the storm", "at half past seven", "around midnight", "on Sunday afternoon",
)
ADVERBS = (
    "slowly", "carefully", "quickly", "quietly", "happily", "suddenly", "gently",
    "proudly", "patiently", "nervously", "finally", "easily",
)
NUMBERS = (
    "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten", "eleven",
    "twelve", "fifteen", "twenty", "thirty", "forty", "fifty", "a hundred",
)
WEATHER = (
    "it rained all day", "the wind was strong", "the sun came out", "it was very foggy",
    "the sky turned grey", "snow covered the roofs", "the air was warm and still",
)
FEELINGS = (
    "surprised", "tired", "pleased", "worried", "curious", "hungry", "calm", "excited",
)
PLURALS = (
    "apples", "boxes", "chairs", "letters", "photos", "tickets", "bottles", "candles",
    "keys", "coins", "plates", "shirts", "tools", "flowers", "stones", "papers",
)

#: Templates: ``{slot}`` names pick a random word of the list of that name (a trailing digit
#: distinguishes two picks of the same list, as in ``{name2}``).
TEMPLATES = (
    "{name} {verb_past} the {adjective} {noun} in {place} {time}.",
    "{time}, {name} {adverb} {verb_past} a {adjective} {noun}.",
    "Please {verb_base} the {noun} and put it near the {adjective} {noun2}.",
    "Did {name} really {verb_base} the {adjective} {noun} {time}?",
    "We counted {number} {plural} on the table in {place}.",
    "{name} and {name2} met at {place} {time} and talked for hours.",
    "The {adjective} {noun} that {name} {verb_past} was still in {place}.",
    "When {weather}, {name} stayed inside and felt {feeling}.",
    "Could you {verb_base} {number} {plural} for {name} before {time2}?",
    "There were {number} {adjective} {plural} next to the {noun} in {place}.",
    "{name} {adverb} walked to {place}, because {weather}.",
    "I think the {noun} belongs to {name}, but I am not sure.",
    "Why did {name} leave the {adjective} {noun} at {place}?",
    "{name} was {feeling} when {name2} {verb_past} the {noun}.",
    "Remember to {verb_base} the {noun} and the {noun2} {time}.",
    "The train to {place_bare} leaves at {clock} from platform {small_number}.",
    "{name} said that {weather} in {place} {time}.",
    "After {name} {verb_past} the {noun}, everyone felt {feeling}.",
    "My {noun} is {adjective}, but your {noun2} is even more {adjective2}.",
    "Nobody knew who {verb_past} the {adjective} {noun} {time}.",
    "{name} bought {number} {plural} and a {adjective} {noun} at {place}.",
    "Is the {adjective} {noun} in {place} or in {place2}?",
    "{name} {adverb} {verb_past} {number} {plural} and went home.",
    "Tell {name} that the {noun} is ready in {place}.",
)
CLOCK_HOURS = ("one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten")
CLOCK_MINUTES = ("o'clock", "fifteen", "thirty", "forty five", "ten", "twenty")
SMALL_NUMBERS = ("one", "two", "three", "four", "five", "six", "seven", "eight", "nine")

_LISTS = {
    "name": NAMES,
    "adjective": ADJECTIVES,
    "noun": NOUNS,
    "place": PLACES,
    "verb_past": VERBS_PAST,
    "verb_base": VERBS_BASE,
    "time": TIMES,
    "adverb": ADVERBS,
    "number": NUMBERS,
    "weather": WEATHER,
    "feeling": FEELINGS,
    "plural": PLURALS,
    "small_number": SMALL_NUMBERS,
}


def _fill(slot, rng, used):
    """Picks a word for one slot, avoiding a word already used in the sentence."""
    base = slot.rstrip("0123456789")
    if base == "place_bare":
        return str(rng.choice(PLACES)).replace("the ", "", 1)
    if base == "clock":
        return f"{rng.choice(CLOCK_HOURS)} {rng.choice(CLOCK_MINUTES)}"
    words = _LISTS[base]
    for _ in range(8):
        word = str(words[rng.integers(len(words))])
        if word not in used:
            break
    used.add(word)
    return word


def make_sentence(rng):
    """Makes one random sentence from the grammar.

    Arguments
    ---------
    rng : numpy.random.Generator
        The random source (the sentence is a pure function of its state).

    Returns
    -------
    str
        A sentence such as "Anna repaired the old radio in the kitchen this morning."

    Example
    -------
    >>> import numpy as np
    >>> a = make_sentence(np.random.default_rng(0))
    >>> a == make_sentence(np.random.default_rng(0)), a.endswith((".", "?"))
    (True, True)
    """
    template = TEMPLATES[rng.integers(len(TEMPLATES))]
    used = set()
    out, rest = [], template
    while "{" in rest:
        head, tail = rest.split("{", 1)
        slot, rest = tail.split("}", 1)
        out.append(head)
        out.append(_fill(slot, rng, used))
    out.append(rest)
    sentence = "".join(out)
    return sentence[0].upper() + sentence[1:]


class SentenceGenerator:
    """Draws sentences that never repeat (across every split drawn from the same generator).

    Arguments
    ---------
    seed : int
        Seed of the sentence stream.

    Example
    -------
    >>> gen = SentenceGenerator(1)
    >>> batch = gen.draw(20)
    >>> len(set(batch)) == 20 and batch == SentenceGenerator(1).draw(20)
    True
    """

    def __init__(self, seed):
        self.rng = np.random.default_rng(seed)
        self.seen = set()

    def draw(self, count=None):
        """Returns ``count`` new distinct sentences (one string when ``count`` is None).

        Arguments
        ---------
        count : int, optional
            How many sentences.

        Returns
        -------
        str or list of str
            The sentence(s).

        Example
        -------
        >>> isinstance(SentenceGenerator(0).draw(), str)
        True
        """
        if count is None:
            return self.draw(1)[0]
        out = []
        while len(out) < count:
            sentence = make_sentence(self.rng)
            if sentence not in self.seen:
                self.seen.add(sentence)
                out.append(sentence)
        return out
