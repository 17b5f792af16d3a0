import numpy as np
import pytest

from unif2ace.data import ontology as onto
from unif2ace.data.faceforge.labels import sample_labels
from unif2ace.errors import UserError


def test_exactly_46_unique_attributes_in_paper_taxonomy():
    assert len(onto.ATTRIBUTES) == 46
    assert len(set(onto.NAMES)) == 46
    groups = {a.group for a in onto.ATTRIBUTES}
    assert groups == {"appearance", "emotion", "action"}
    subgroups = {a.subgroup for a in onto.ATTRIBUTES if a.group == "appearance"}
    assert subgroups == {"hair", "beard", "accessories", "skin", "others"}
    emotion = onto.BY_NAME["emotion"]
    assert set(emotion.values) == {
        "neutral",
        "happy",
        "sad",
        "angry",
        "surprised",
        "fearful",
        "disgusted",
        "contempt",
    }


def test_every_attribute_has_phrases_for_every_value():
    for a in onto.ATTRIBUTES:
        keys = ("yes", "no") if a.is_binary else a.values
        for k in keys:
            assert a.phrases[k], (a.name, k)
        assert a.question


def test_sampled_labels_are_complete_and_coherent():
    rng = np.random.default_rng(0)
    for _ in range(500):
        labels = sample_labels(rng)
        onto.validate(labels)  # raises on any violation
        assert set(labels) == set(onto.NAMES)
        if labels["bald"]:
            assert all(labels[k] is None for k in onto.HAIR_ATTRIBUTES)


def test_sampler_is_deterministic_and_honours_fixed_attributes():
    a = [sample_labels(np.random.default_rng(7)) for _ in range(2)]
    assert a[0] == a[1]
    rng = np.random.default_rng(1)
    for fixed in (
        {"frown": True},
        {"hair_color": "red", "glasses": "eyeglasses"},
        {"emotion": "surprised", "earrings": True},
        {"laugh": True},
    ):
        for _ in range(20):
            labels = sample_labels(rng, fixed)
            assert all(labels[k] == v for k, v in fixed.items())


def test_soft_correlations_look_like_faces():
    rng = np.random.default_rng(3)
    ls = [sample_labels(rng) for _ in range(1500)]
    women = [l for l in ls if l["gender"] == "female"]
    old = [l for l in ls if l["age"] == "old"]
    young = [l for l in ls if l["age"] == "young"]
    assert sum(l["beard"] for l in women) == 0
    assert np.mean([l["wrinkles"] for l in old]) > 0.6 > np.mean([l["wrinkles"] for l in young])
    happy = [l for l in ls if l["emotion"] == "happy"]
    assert all(l["smile"] for l in happy)


@pytest.mark.parametrize(
    "fixed,msg",
    [
        ({"bald": True, "hair_color": "red"}, "bald excludes hair_color"),
        ({"smile": True, "emotion": "sad"}, "excludes smiling"),
        ({"hair_colour": "red"}, "unknown attribute"),
        ({"hair_color": "purple"}, "no value 'purple'"),
        ({"bangs": "yes"}, "binary"),
    ],
)
def test_bad_requests_end_in_one_clear_message(fixed, msg):
    with pytest.raises(UserError, match=msg):
        sample_labels(np.random.default_rng(0), fixed)


def test_visibility_rules():
    labels = sample_labels(np.random.default_rng(0), {"glasses": "sunglasses", "face_mask": True})
    hidden = onto.hidden_attributes(labels)
    assert {"eye_color", "eyes_closed", "lipstick", "beard", "mustache"} <= hidden
    assert "glasses" not in hidden and "face_mask" not in hidden
    vis = onto.visible_labels(labels)
    assert "eye_color" not in vis and "hair_length" in vis or labels["bald"]


def test_parse_value_and_manifest_form():
    assert onto.parse_value("bangs", "Yes") is True
    assert onto.parse_value("hair_color", "Blond") == "blond"
    assert onto.parse_value("emotion", "happy") == "happy"
    with pytest.raises(UserError):
        onto.parse_value("nose", "big")
    d = onto.ontology_dict()
    assert d["version"] == onto.ONTOLOGY_VERSION and len(d["attributes"]) == 46
    assert len(onto.ontology_hash()) == 16
