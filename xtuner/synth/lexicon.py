"""The source lexicon: a few hundred English-like lemmas, each with its UPOS tag.

Lemma keys are the English forms (verbs by their base form, past forms in EN_PAST); nouns pluralise with "s". Names and digits are
the shared anchors that every language keeps unchanged.
"""

from __future__ import annotations

AGENTS = [
    "farmer",
    "teacher",
    "doctor",
    "child",
    "dog",
    "cat",
    "horse",
    "bird",
    "king",
    "queen",
    "soldier",
    "student",
    "baker",
    "sailor",
    "writer",
    "singer",
    "painter",
    "driver",
    "nurse",
    "pilot",
    "hunter",
    "fisher",
    "monk",
    "judge",
    "lawyer",
    "tailor",
    "merchant",
    "miner",
    "guard",
    "cook",
    "dancer",
    "player",
    "priest",
    "clerk",
    "boy",
    "girl",
    "woman",
    "man",
    "friend",
    "neighbor",
]

OBJECTS = [
    "apple",
    "bread",
    "book",
    "letter",
    "box",
    "key",
    "ring",
    "cup",
    "table",
    "chair",
    "car",
    "boat",
    "stone",
    "flower",
    "tree",
    "coat",
    "hat",
    "shoe",
    "knife",
    "map",
    "lamp",
    "clock",
    "bottle",
    "basket",
    "rope",
    "coin",
    "drum",
    "bell",
    "wheel",
    "window",
    "door",
    "carpet",
    "mirror",
    "candle",
    "pencil",
    "paper",
    "blanket",
    "bag",
    "hammer",
    "ladder",
    "plate",
    "spoon",
    "bucket",
    "shirt",
    "glove",
    "egg",
    "cake",
    "fish",
    "onion",
    "lemon",
    "orange",
    "banana",
    "jar",
    "pot",
    "kettle",
]

PLACES = [
    "house",
    "garden",
    "market",
    "school",
    "river",
    "forest",
    "village",
    "city",
    "church",
    "kitchen",
    "field",
    "harbor",
    "station",
    "castle",
    "bridge",
    "library",
    "hospital",
    "farm",
    "mountain",
    "island",
    "office",
    "shop",
    "street",
    "park",
    "valley",
]

# transitive verbs: (past, base); agent and patient can be any noun
VERBS = {
    "saw": "see", "found": "find", "bought": "buy", "sold": "sell", "carried": "carry", "took": "take",
    "brought": "bring", "held": "hold", "opened": "open", "closed": "close", "painted": "paint", "built": "build",
    "broke": "break", "washed": "wash", "cut": "cut", "cooked": "cook", "read": "read", "drew": "draw",
    "pushed": "push", "pulled": "pull", "lifted": "lift", "dropped": "drop", "stole": "steal", "hid": "hide",
    "cleaned": "clean", "fixed": "fix", "watched": "watch", "wanted": "want", "kept": "keep", "lost": "lose",
}  # fmt: skip
# verbs whose patient is a person or animal (PAWS-style swaps need both roles animate)
SOCIAL_VERBS = {
    "met": "meet", "helped": "help", "called": "call", "followed": "follow", "visited": "visit",
    "thanked": "thank", "praised": "praise", "warned": "warn", "taught": "teach", "married": "marry",
    "paid": "pay", "invited": "invite", "greeted": "greet", "chased": "chase", "trusted": "trust",
}  # fmt: skip

# intransitive verbs (used with a prepositional phrase, e.g. "Maria worked for Acme Bank in Paris")
INTRANSITIVE = {"worked": "work", "lived": "live", "slept": "sleep", "waited": "wait", "arrived": "arrive"}

ADJECTIVES = [
    "big",
    "small",
    "old",
    "young",
    "red",
    "blue",
    "green",
    "black",
    "white",
    "heavy",
    "light",
    "happy",
    "sad",
    "tall",
    "short",
    "new",
    "rich",
    "poor",
    "quiet",
    "loud",
    "clever",
    "brave",
    "angry",
    "tired",
    "hungry",
    "strong",
    "weak",
    "cold",
    "warm",
    "dark",
    "bright",
    "clean",
    "dirty",
    "famous",
    "strange",
    "gentle",
    "proud",
    "lazy",
    "busy",
    "kind",
]

TIME_ADVERBS = [
    "yesterday",
    "today",
    "often",
    "sometimes",
    "quickly",
    "slowly",
    "carefully",
    "again",
    "early",
    "late",
]

DETERMINERS = ("the", "a", "this", "every", "some")
PREPOSITIONS = ("in", "near", "behind", "at", "under")
PRONOUNS = ("he", "she", "they")
FUNCTION_WORDS = {
    # word: UPOS
    "did": "AUX",
    "not": "PART",
    "and": "CCONJ",
    "but": "CCONJ",
    "because": "SCONJ",
    "who": "PRON",
    "what": "PRON",
    "where": "ADV",
    "how": "ADV",
    "many": "ADJ",
    "for": "ADP",
    "oh": "INTJ",
    "%": "SYM",
}

PERSON_FIRST = [
    "Maria",
    "Ahmed",
    "Kenji",
    "Olga",
    "Pedro",
    "Amina",
    "Lars",
    "Priya",
    "Tomas",
    "Yuki",
    "Fatima",
    "Ivan",
    "Chen",
    "Sofia",
    "Omar",
    "Hana",
    "Diego",
    "Leila",
    "Mateo",
    "Ingrid",
    "Ravi",
    "Nadia",
    "Kofi",
    "Elena",
    "Jonas",
    "Mei",
    "Tariq",
    "Anya",
    "Luca",
    "Zara",
]
PERSON_LAST = [
    "Lopez",
    "Khan",
    "Tanaka",
    "Novak",
    "Silva",
    "Haddad",
    "Berg",
    "Sharma",
    "Costa",
    "Sato",
    "Ali",
    "Petrov",
    "Wang",
    "Rossi",
]
ORG_NAMES = [
    "Acme",
    "Globex",
    "Initech",
    "Umbrella",
    "Stark",
    "Wayne",
    "Hooli",
    "Vandelay",
    "Tyrell",
    "Cyberdyne",
    "Soylent",
    "Oscorp",
    "Nakatomi",
    "Monarch",
]
ORG_SUFFIX = ("Bank", "Group", "Motors", "Labs", "Press")  # kept as anchors: part of the name
LOC_NAMES = [
    "Paris",
    "Lima",
    "Cairo",
    "Oslo",
    "Delhi",
    "Tokyo",
    "Lagos",
    "Quito",
    "Dublin",
    "Hanoi",
    "Accra",
    "Riga",
    "Perth",
    "Boston",
    "Madrid",
    "Kyoto",
    "Nairobi",
    "Vienna",
    "Prague",
    "Seoul",
]
LOC_TWO = ("New Haven", "San Remo", "Port Louis", "Cape Town", "Buenos Aires", "Hong Kong")


def content_lemmas() -> dict[str, str]:
    """Every relexifiable lemma -> UPOS (content words first, then function words)."""
    out: dict[str, str] = {}
    for w in AGENTS + OBJECTS + PLACES:
        out[w] = "NOUN"
    for base in {**VERBS, **SOCIAL_VERBS, **INTRANSITIVE}.values():
        out[base] = "VERB"
    for w in ADJECTIVES:
        out[w] = "ADJ"
    for w in TIME_ADVERBS:
        out[w] = "ADV"
    return out


def function_lemmas() -> dict[str, str]:
    out = {d: "DET" for d in DETERMINERS}
    out.update({p: "ADP" for p in PREPOSITIONS})
    out.update({p: "PRON" for p in PRONOUNS})
    out.update(FUNCTION_WORDS)
    return out


# English past tense by base form (the other languages inflect regularly: stem + past suffix)
EN_PAST = {base: past for past, base in {**VERBS, **SOCIAL_VERBS, **INTRANSITIVE}.items()}
