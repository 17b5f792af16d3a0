"""Reasoning sentences for FaceForge captions (private to ``captions``).

Inferences the visible attributes support (NOTES.md §6: "reasoning" captions), e.g. bags under
the eyes and narrow eyes -> looks tired. Each rule also restates the attributes it relies on.
"""

from __future__ import annotations

from ._caption_phrases import HAIR_COLOR, Ctx, cap


def _reasons(c: Ctx) -> list[tuple[str, tuple[str, ...]]]:
    """(sentence, attributes it restates) for every rule the visible labels satisfy."""
    S, P, p, o, s = cap(c.subj), cap(c.poss), c.poss, c.obj, c.subj
    out, v, emo = [], c.vis, c.vis.get("emotion")
    if c.is_("bags_under_eyes") and c.is_("narrow_eyes"):
        out.append(
            (
                f"The bags under {p} eyes and {p} half-closed eyes make {o} look tired.",
                ("bags_under_eyes", "narrow_eyes"),
            )
        )
    if c.is_("bags_under_eyes") and c.is_("eyes_closed"):
        out.append(
            (
                f"With {p} eyes closed and bags under {p} eyes, {s} seems exhausted.",
                ("bags_under_eyes", "eyes_closed"),
            )
        )
    if c.is_("laugh") and emo == "happy":
        out.append(
            (
                c.pick((f"{S} seems to be enjoying a joke.", f"Something has clearly amused {o}.")),
                (),
            )
        )
    if c.is_("mouth_open") and emo == "neutral" and c.is_("smile", False):
        out.append(
            (
                f"With {p} mouth open and a calm expression, {s} appears to be talking.",
                ("mouth_open", "emotion"),
            )
        )
    if c.is_("wrinkles") and v.get("hair_color") in ("gray", "white") and "age" in v:
        col = c.pick(HAIR_COLOR[v["hair_color"]])
        if v["age"] == "old":
            out.append(
                (
                    f"The wrinkles and {col} hair suggest {s} is in {p} later years.",
                    ("wrinkles", "hair_color", "age"),
                )
            )
        elif v["age"] == "middle_aged":
            out.append(
                (
                    f"The wrinkles and {col} hair hint at middle age.",
                    ("wrinkles", "hair_color", "age"),
                )
            )
    if c.is_("glare") and c.is_("frown"):
        out.append(
            (
                f"{S} seems irritated, glaring with a deep frown."
                if emo == "angry"
                else f"The glare and the frown suggest {s} is displeased with something.",
                ("glare", "frown") + (("emotion",) if emo == "angry" else ()),
            )
        )
    if c.is_("raised_eyebrows") and c.is_("mouth_open") and emo == "surprised":
        out.append(
            (
                "The raised eyebrows and open mouth suggest something has just caught "
                f"{o} off guard.",
                ("raised_eyebrows", "mouth_open"),
            )
        )
    if c.is_("raised_eyebrows") and emo == "fearful":
        out.append(
            (
                f"{P} raised eyebrows give {o} an alarmed look, as if {s} has seen "
                "something unsettling.",
                ("raised_eyebrows", "emotion"),
            )
        )
    if c.is_("wink") and c.is_("smile"):
        out.append(
            (
                f"The wink and the smile make {o} look playful, as if sharing a secret.",
                ("wink", "smile"),
            )
        )
    if c.is_("eyes_closed") and emo == "neutral":
        out.append(
            (f"With {p} eyes closed, {s} seems relaxed, perhaps lost in thought.", ("eyes_closed",))
        )
    if c.is_("eyes_closed") and c.is_("smile") and c.is_("laugh", False):
        out.append(
            (
                f"Smiling with {p} eyes closed, {s} seems to be savouring the moment.",
                ("eyes_closed", "smile"),
            )
        )
    if c.is_("glasses", "sunglasses") and c.is_("hat"):
        out.append(("The sunglasses and the hat suggest a sunny day outdoors.", ("glasses", "hat")))
    if c.is_("face_mask"):
        out.append((f"The face mask suggests {s} is taking health precautions.", ("face_mask",)))
    if emo == "sad" and c.is_("frown"):
        out.append((f"Something seems to weigh on {p} mind.", ()))
    if emo == "contempt" and c.is_("smile"):
        out.append((f"{P} smile looks more mocking than friendly.", ("smile",)))
    if emo == "disgusted":
        out.append((f"{S} looks as if {s} has just smelled something unpleasant.", ()))
    return out


def reasoning_sentences(c: Ctx) -> list[str]:
    """One or two reasoning sentences, when any rule applies."""
    rules = _reasons(c)
    if not rules:
        return []
    k = min(len(rules), 1 + int(c.p(0.5)))
    chosen = sorted(int(i) for i in c.rng.choice(len(rules), size=k, replace=False))
    for i in chosen:
        for a in rules[i][1]:
            c.say(a)
    return [rules[i][0] for i in chosen]
