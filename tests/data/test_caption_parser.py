"""The caption parser reads phrases, synonyms and negations back onto the ontology."""

import pytest

from unif2ace.data import ontology as onto
from unif2ace.data.caption_parser import parse_answer, parse_caption, parse_prompt

# Hand-written text (not produced by FaceForge) with its complete gold reading.
HAND_WRITTEN = [
    (
        "a woman with blond hair and no glasses",
        {"gender": "female", "hair_color": "blond", "glasses": "none"},
    ),
    (
        "A smiling young woman with red curly hair, freckles and gold earrings",
        {
            "gender": "female",
            "age": "young",
            "smile": True,
            "hair_color": "red",
            "hair_type": "curly",
            "freckles": True,
            "earrings": True,
        },
    ),
    (
        "An elderly man with a grey beard, bushy eyebrows and a receding hairline. He isn't "
        "wearing glasses and looks rather sad.",
        {
            "gender": "male",
            "age": "old",
            "beard": True,
            "bushy_eyebrows": True,
            "hairline": "receding",
            "glasses": "none",
            "emotion": "sad",
        },
    ),
    (
        "Close-up of a bald guy in sunglasses, clean-shaven, frowning.",
        {
            "gender": "male",
            "bald": True,
            "glasses": "sunglasses",
            "beard": False,
            "mustache": False,
            "five_o_clock_shadow": False,
            "frown": True,
        },
    ),
    (
        "She has brown eyes, black hair and brown skin; her lips are full and painted.",
        {
            "gender": "female",
            "eye_color": "brown",
            "hair_color": "black",
            "skin_tone": "brown",
            "lips": "full",
            "lipstick": True,
        },
    ),
    (
        "portrait of a blue-eyed, curly-haired man with a mustache, head turned to the right",
        {
            "gender": "male",
            "eye_color": "blue",
            "hair_type": "curly",
            "mustache": True,
            "head_turn": "right",
        },
    ),
    (
        "The man is neither smiling nor frowning; his mouth is slightly open as if he is talking.",
        {"gender": "male", "smile": False, "frown": False, "mouth_open": True},
    ),
    (
        "A middle-aged woman with laugh lines, no makeup and no jewellery, wearing a hat.",
        {
            "gender": "female",
            "age": "middle_aged",
            "wrinkles": True,
            "makeup": False,
            "lipstick": False,
            "earrings": False,
            "necklace": False,
            "hat": True,
        },
    ),
    (
        "Her hair is shoulder-length and wavy, and her eyes are not closed.",
        {"gender": "female", "hair_length": "medium", "hair_type": "wavy", "eyes_closed": False},
    ),
    (
        "A surprised lady with raised eyebrows, a face mask and half-closed eyes",
        {
            "gender": "female",
            "emotion": "surprised",
            "raised_eyebrows": True,
            "face_mask": True,
            "narrow_eyes": True,
        },
    ),
    (
        "There is no smile, just a hard glare from under thick, straight brows.",
        {"smile": False, "glare": True, "bushy_eyebrows": True, "eyebrow_shape": "straight"},
    ),
    (
        "He has an oval face, a big pointed nose, thin lips and high cheekbones.",
        {
            "gender": "male",
            "face_shape": "oval",
            "nose_size": "big",
            "pointy_nose": True,
            "lips": "thin",
            "high_cheekbones": True,
        },
    ),
]


HAND_WRITTEN += [
    (
        "A man with short black hair and a goatee, wearing glasses.",
        {
            "gender": "male",
            "hair_length": "short",
            "hair_color": "black",
            "beard": True,
            "glasses": "eyeglasses",
        },
    ),
    (
        "She's got freckles across her nose and bright green eyes.",
        {"gender": "female", "freckles": True, "eye_color": "green"},
    ),
    (
        "The person appears surprised, eyebrows raised and mouth open.",
        {"emotion": "surprised", "raised_eyebrows": True, "mouth_open": True},
    ),
    (
        "A brunette woman with wavy hair, not wearing any jewelry.",
        {
            "gender": "female",
            "hair_color": "brown",
            "hair_type": "wavy",
            "earrings": False,
            "necklace": False,
        },
    ),
    ("How old does he look?", {"gender": "male"}),
]


@pytest.mark.parametrize("text,gold", HAND_WRITTEN)
def test_hand_written_sentences_parse_exactly(text, gold):
    assert parse_caption(text) == gold


def test_hand_written_precision_and_recall():
    tp = fp = fn = 0
    for text, gold in HAND_WRITTEN:
        got = parse_caption(text)
        tp += sum(got.get(a) == v for a, v in gold.items())
        fp += sum(a not in gold or gold[a] != v for a, v in got.items())
        fn += sum(got.get(a) != v for a, v in gold.items())
    assert tp / (tp + fp) == 1.0 and tp / (tp + fn) == 1.0


def _phrase_sentence(attr: str, phrase: str) -> str:
    frame = {
        "hair_color": "She has {} hair.",
        "hair_length": "She has {} hair.",
        "hair_type": "She has {} hair.",
        "skin_tone": "She has {} skin.",
        "eye_color": "She has {} eyes.",
        "face_shape": "She has a {} face.",
        "eyebrow_shape": "She has {} eyebrows.",
        "nose_size": "She has a {} nose.",
        "lips": "She has {} lips.",
        "age": "A {} person.",
        "emotion": "The person looks {}.",
        "head_turn": "The person is {}.",
        "gender": "A {} person.",
    }.get(attr, "The person has {}.")
    return frame.format(phrase)


def test_every_ontology_phrase_parses_to_its_value():
    for a in onto.ATTRIBUTES:
        for key, phrases in a.phrases.items():
            want = {"yes": True, "no": False}.get(key, key) if a.is_binary else key
            for phrase in phrases:
                got = parse_caption(_phrase_sentence(a.name, phrase))
                assert got.get(a.name) == want, (a.name, phrase, got)


def test_same_word_means_different_attributes_by_head_noun():
    got = parse_caption("brown hair, blue eyes and pale skin")
    assert (got["hair_color"], got["eye_color"], got["skin_tone"]) == ("brown", "blue", "pale")
    got = parse_caption("blond hair and brown eyes")
    assert (got["hair_color"], got["eye_color"]) == ("blond", "brown")
    got = parse_caption("long straight hair and a long face")
    assert (got["hair_length"], got["hair_type"], got["face_shape"]) == ("long", "straight", "long")


def test_negation_scope_ends_at_a_new_noun_phrase_or_clause():
    got = parse_caption("with no smile and a frown")
    assert got["smile"] is False and got["frown"] is True
    got = parse_caption("She wears no glasses, but she has earrings.")
    assert got["glasses"] == "none" and got["earrings"] is True
    got = parse_caption("without earrings, necklace or hat")
    assert got["earrings"] is False and got["necklace"] is False and got["hat"] is False
    # A negated categorical value states nothing.
    assert "hair_color" not in parse_caption("her hair isn't blond")
    # A negated absence phrase states nothing either.
    assert "beard" not in parse_caption("he is not clean-shaven")


def test_phrase_rules_win_over_shorter_words():
    assert parse_caption("laugh lines") == {"wrinkles": True}
    assert parse_caption("half-closed eyes") == {"narrow_eyes": True}
    assert parse_caption("dark sunglasses") == {"glasses": "sunglasses"}
    assert "hat" not in parse_caption("a face mask")


def test_unrelated_text_states_nothing():
    assert parse_caption("") == {}
    assert parse_caption("A photograph taken outdoors on a sunny afternoon.") == {}


def test_parse_prompt_is_parse_caption():
    assert parse_prompt is parse_caption


def test_parse_answer_names_the_value():
    assert parse_answer("smile", "Yes") is True
    assert parse_answer("smile", "No, not at all.") is False
    assert parse_answer("eye_color", "I can't tell: her eyes are covered.") is None
    assert parse_answer("hair_length", "Medium-length") == "medium"
    assert parse_answer("face_shape", "Long") == "long"
    assert parse_answer("head_turn", "Turned to the left") == "left"
    assert parse_answer("glasses", "No glasses") == "none"
    assert parse_answer("hair_color", "Is her hair blond?") == "blond"
