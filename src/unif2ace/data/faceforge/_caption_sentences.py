"""Caption sentence builders: one function per attribute group (private to ``captions``).

Each builder takes the caption state :class:`Ctx`, states only *visible* attributes (through
``Ctx.say``) and returns one sentence, or ``""`` when it has nothing to say. ``GROUPS`` lists the
builders :func:`unif2ace.data.faceforge.captions.caption_with_facts` orders and calls after
:func:`intro_sentence`.
"""

from __future__ import annotations

from ._caption_phrases import (
    ACCESSORY,
    AGE_ADJ,
    AGE_DECADES,
    BROW_SHAPE,
    BUSHY,
    EMOTION_ADJ,
    EYE_COLOR,
    FACE_SHAPE,
    HAIR_COLOR,
    HAIR_LENGTH,
    HAIR_TYPE,
    LIPS,
    NARROW,
    NOSE_SIZE,
    POINTY,
    SKIN_TONE,
    TEXTURE,
    Ctx,
    art,
    cap,
    join,
)


# ---------------------------------------------------------------------------------------------
# Sentence builders. Each states only visible attributes (through ``Ctx.say``).
def intro_sentence(c: Ctx) -> str:
    c.say("gender")
    noun = c.pick(("woman", "lady") if c.female else ("man", "gentleman"))
    who = art(noun)
    if "age" in c.vis:
        if c.p(0.25):
            c.say("age")
            who = f"{art(noun)} in {c.poss} {c.pick(AGE_DECADES[c.vis['age']])}"
        else:
            who = art(f"{c.say('age', AGE_ADJ)} {noun}")
    with_ = ""
    if "skin_tone" in c.vis and c.p(0.5):
        tone = c.say("skin_tone", SKIN_TONE)
        with_ = c.pick((f" with {tone} skin", f" with {art(tone)} complexion"))
    t = c.pick(
        (
            "A close-up portrait of {w}.",
            "This image shows {w}.",
            "The photo captures {w}.",
            "Pictured here is {w}.",
            "We see the face of {w}.",
            "A headshot of {w}.",
            "{W} is shown in this portrait.",
            "The subject is {w}.",
            "Here is {w}.",
            "This is a portrait of {w}.",
            "Seen up close, {w} fills the frame.",
            "The picture presents {w}.",
            "A detailed view of {w}.",
            "Meet {w}.",
            "The camera frames {w}.",
            "This close-up shows {w}.",
            "In this photo we see {w}.",
            "Shown here: {w}.",
            "This is {w}.",
            "The portrait depicts {w}.",
        )
    )
    return t.format(w=who + with_, W=cap(who + with_))


def hair_sentence(c: Ctx) -> str:
    if c.is_("bald"):
        c.say("bald")
        return c.pick(
            ("{S} is completely bald.", "{P} head is shaved bald.", "{S} has a bald head.")
        ).format(S=cap(c.subj), P=cap(c.poss))
    if "hair_color" not in c.vis:
        return ""
    col, ln, ty = (
        c.say(a, b)
        for a, b in (
            ("hair_color", HAIR_COLOR),
            ("hair_length", HAIR_LENGTH),
            ("hair_type", HAIR_TYPE),
        )
    )
    S, P = cap(c.subj), cap(c.poss)
    opts = [
        f"{S} has {ln}, {ty} {col} hair.",
        f"{P} {ln}, {ty} {col} hair frames {c.poss} face.",
        f"{P} hair is {ln}, {ty} and {col}.",
        f"{P} {col} hair is {ln} and {ty}.",
        f"{P} {ln} {col} hair is {ty}.",
        f"{S} wears {c.poss} {col} hair {ln} and {ty}.",
    ]
    if c.vis["hair_type"] in ("wavy", "curly"):
        opts.append(
            f"{P} {ln} {col} hair falls in loose "
            f"{'waves' if c.vis['hair_type'] == 'wavy' else 'curls'}."
        )
    else:
        opts.append(f"{P} {ln} {col} hair hangs {ty}.")
    s = c.pick(opts)
    extra = []
    if c.is_("bangs") or (c.is_("bangs", False) and c.p(0.2)):
        c.say("bangs")
        extra.append(
            c.pick(("bangs across {p} forehead", "a neat fringe")) if c.vis["bangs"] else "no bangs"
        )
    if "hairline" in c.vis and (c.vis["hairline"] != "straight" or c.p(0.4)):
        c.say("hairline")
        extra.insert(
            0,
            c.pick(
                {
                    "straight": ("a straight hairline", "an even hairline"),
                    "receding": ("a receding hairline", "a thinning hairline"),
                    "widows_peak": ("a widow's peak",),
                }[c.vis["hairline"]]
            ),
        )
    if extra:
        e = join(extra).format(p=c.poss)
        there = "There are" if e.startswith(("bangs", "no")) else "There is"
        s += " " + c.pick((f"{cap(c.subj)} has {e}.", f"{there} {e}."))
    return s


def _brows(c: Ctx) -> str:
    words = []
    if "bushy_eyebrows" in c.vis and (c.vis["bushy_eyebrows"] or c.p(0.5)):
        words.append(c.say("bushy_eyebrows", BUSHY))
    if "eyebrow_shape" in c.vis and c.p(0.7):
        words.append(c.say("eyebrow_shape", BROW_SHAPE))
    return ", ".join(words) + " " + c.pick(("eyebrows", "brows")) if words else ""


def eyes_sentence(c: Ctx) -> str:
    brows, S, P = _brows(c), cap(c.subj), cap(c.poss)
    if c.is_("glasses", "sunglasses"):
        c.say("glasses")
        g = c.pick(("dark sunglasses", "black sunglasses", "a pair of sunglasses"))
        s = c.pick((f"{P} eyes are hidden behind {g}", f"{cap(g)} cover {c.poss} eyes"))
        return s + (f", just below {brows}." if brows else ".")
    if c.is_("eyes_closed"):
        c.say("eyes_closed")
        return f"{P} eyes are closed" + (f" beneath {brows}." if brows else ".")
    if "eye_color" not in c.vis:
        return f"{S} has {brows}." if brows else ""
    col = c.say("eye_color", EYE_COLOR)
    narrow = ""
    if "narrow_eyes" in c.vis and (c.vis["narrow_eyes"] or c.p(0.4)):
        narrow = c.say("narrow_eyes", NARROW) + ", "
    under = c.pick(("under", "beneath", "below"))
    return c.pick(
        (
            f"{S} has {narrow}{col} eyes" + (f" {under} {brows}." if brows else "."),
            f"{P} {narrow}{col} eyes sit {under} "
            + (brows + "." if brows else "a smooth forehead."),
            cap(f"{narrow}{col} eyes look out") + (f" from {under} {brows}." if brows else "."),
            f"{S} gazes out with {narrow}{col} eyes" + (f" set {under} {brows}." if brows else "."),
        )
    )


def face_sentence(c: Ctx) -> str:
    nps, S = [], cap(c.subj)
    if "face_shape" in c.vis and c.p(0.6):
        nps.append(art(c.say("face_shape", FACE_SHAPE)) + " face")
    if "nose_size" in c.vis and (c.is_("pointy_nose") or c.p(0.55)):
        w = [c.say("nose_size", NOSE_SIZE)]
        if "pointy_nose" in c.vis and (c.vis["pointy_nose"] or c.p(0.5)):
            w.append(c.say("pointy_nose", POINTY))
        nps.append(art(", ".join(w)) + " nose")
    if "lips" in c.vis and c.p(0.6):
        nps.append(c.say("lips", LIPS) + " lips")
    if c.is_("high_cheekbones") or (c.is_("high_cheekbones", False) and c.p(0.1)):
        c.say("high_cheekbones")
        nps.append("high cheekbones" if c.vis["high_cheekbones"] else "low cheekbones")
    if c.is_("double_chin") or (c.is_("double_chin", False) and c.p(0.25)):
        c.say("double_chin")
        nps.append(
            "a double chin"
            if c.vis["double_chin"]
            else c.pick(("a defined jawline", "a firm jawline"))
        )
    if not nps:
        return ""
    return c.pick(
        (
            f"{S} has {join(nps)}.",
            f"Other features include {join(nps)}.",
            f"{cap(join(nps))} complete the picture." if len(nps) > 1 else f"{S} has {nps[0]}.",
            f"{cap(c.poss)} features include {join(nps)}.",
        )
    )


def skin_sentence(c: Ctx) -> str:
    items = [
        c.pick(TEXTURE[a]).format(p=c.poss) for a in TEXTURE if c.is_(a) and (c.say(a) or True)
    ]
    adjs = []
    if c.is_("wrinkles", False) and c.p(0.3):
        c.say("wrinkles")
        adjs.append("smooth")
    if "skin_tone" in c.vis and "skin_tone" not in c.stated:
        adjs.append(c.say("skin_tone", SKIN_TONE))
    tone, pred = ", ".join(adjs), " and ".join(adjs)  # attributive / predicative
    S, P = cap(c.subj), cap(c.poss)
    if not items:
        return c.pick((f"{S} has {tone} skin.", f"{P} complexion is {pred}.")) if tone else ""
    if not tone:
        return c.pick(
            (
                f"{S} has {join(items)}.",
                f"Look closely and you notice {join(items)}.",
                f"{P} skin shows {join(items)}.",
            )
        )
    return c.pick(
        (
            f"{S} has {tone} skin with {join(items)}.",
            f"{P} skin is {pred}, and {c.subj} has {join(items)}.",
            f"{P} {tone} skin shows {join(items)}.",
        )
    )


def facial_hair_sentence(c: Ctx) -> str:
    S, parts = cap(c.subj), []
    if c.is_("beard"):
        c.say("beard")
        b = c.pick(("a full beard", "a thick beard", "a neatly trimmed beard"))
        if c.is_("mustache"):
            c.say("mustache")
            b += " and mustache"
        parts.append(b)
    elif c.is_("five_o_clock_shadow"):
        c.say("five_o_clock_shadow")
        parts.append(c.pick(("light stubble", "a five o'clock shadow")))
    if c.is_("mustache") and "mustache" not in c.stated:
        c.say("mustache")
        parts.append(c.pick(("a mustache", "a thin mustache", "a neat moustache")))
    if c.is_("sideburns"):
        c.say("sideburns")
        parts.append(c.pick(("long sideburns", "sideburns")))
    if parts:
        return c.pick((f"{S} has {join(parts)}.", f"{S} sports {join(parts)}."))
    shaven = all(c.is_(a, False) for a in ("beard", "mustache", "five_o_clock_shadow"))
    if shaven and not c.female and c.p(0.85):
        for a in ("beard", "mustache", "five_o_clock_shadow"):
            c.say(a)
        return c.pick((f"{S} is clean-shaven.", f"{S} is clean-shaven, {c.poss} jaw bare."))
    return ""


def makeup_sentence(c: Ctx) -> str:
    S, items = cap(c.subj), []
    if c.is_("lipstick"):
        c.say("lipstick")
        items.append(c.pick(("lipstick", "a coat of lipstick")))
    if c.is_("makeup"):
        c.say("makeup")
        items.append(c.pick(("eye makeup", "eyeshadow", "subtle eye makeup")))
    if items:
        return c.pick((f"{S} wears {join(items)}.", f"{S} is wearing {join(items)}."))
    if c.female and c.is_("lipstick", False) and c.is_("makeup", False) and c.p(0.4):
        c.say("lipstick"), c.say("makeup")
        return c.pick((f"{S} wears no makeup.", f"{cap(c.poss)} face is free of makeup."))
    return ""


def accessories_sentence(c: Ctx) -> str:
    S, P = cap(c.subj), cap(c.poss)
    pos = [
        c.pick(ACCESSORY[a]).format(p=c.poss) for a in ACCESSORY if c.is_(a) and (c.say(a) or True)
    ]
    if c.is_("glasses", "eyeglasses"):
        c.say("glasses")
        pos.append(c.pick(("glasses", "a pair of glasses", "eyeglasses")))
    neg = []
    if c.is_("glasses", "none") and c.p(0.6):
        c.say("glasses")
        neg.append("glasses")
    if c.is_("earrings", False) and c.is_("necklace", False) and c.p(0.4):
        c.say("earrings"), c.say("necklace")
        neg.append("jewellery")
    if c.is_("hat", False) and c.p(0.15):
        c.say("hat")
        neg.append("hat")
    s = ""
    if pos:
        s = c.pick(
            ("{S} wears {x}", "{S} is wearing {x}")
            + (("{P} accessories are {x}", "{S} has on {x}") if len(pos) > 1 else ())
        )
        s = s.format(S=S, P=P, x=join(pos)) + (f", but no {join(neg, 'or')}." if neg else ".")
    elif neg:
        s = c.pick((f"{S} wears no {join(neg, 'or')}.", f"{S} has no {join(neg, 'or')} on."))
    if c.is_("face_mask"):
        c.say("face_mask")
        m = c.pick(
            (
                "A surgical mask covers {p} nose and mouth.",
                "A face mask hides the lower half of {p} face.",
            )
        )
        s = (s + " " + m.format(p=c.poss)).strip()
    return s


def _action_nps(c: Ctx) -> list[str]:
    nps, p = [], c.poss
    if c.is_("laugh"):
        c.say("laugh"), c.say("smile")
        nps += [c.pick(("a hearty laugh", "a burst of laughter")), "a broad smile"]
    elif c.is_("smile"):
        c.say("smile")
        if c.is_("mouth_open") and c.p(0.5):
            c.say("mouth_open")
            nps.append("a wide, open-mouthed smile")
        elif c.is_("mouth_open", False) and c.p(0.5):
            c.say("mouth_open")
            nps.append("a closed-mouth smile")
        else:
            nps.append(c.pick(("a warm smile", "a gentle smile", "a broad smile")))
    if c.is_("mouth_open") and "mouth_open" not in c.stated:
        c.say("mouth_open")
        nps.append(c.pick((f"{p} mouth wide open", "parted lips", "an open mouth")))
    if c.is_("frown"):
        c.say("frown")
        nps.append(c.pick(("a deep frown", "a furrowed brow")))
    if c.is_("glare"):
        c.say("glare")
        nps.append(c.pick(("a hard glare", "a steely stare")))
    if c.is_("wink"):
        c.say("wink")
        nps.append("a playful wink")
    if c.is_("raised_eyebrows"):
        c.say("raised_eyebrows")
        nps.append(c.pick(("raised eyebrows", "lifted brows")))
    if c.is_("mouth_open", False) and "mouth_open" not in c.stated and c.p(0.25):
        c.say("mouth_open")
        nps.append(c.pick(("lips pressed together", f"{p} mouth closed")))
    if c.is_("smile", False) and "frown" not in c.stated and c.is_("frown", False) and c.p(0.3):
        c.say("smile"), c.say("frown")
        nps.append("neither a smile nor a frown")
    return nps


def expression_sentence(c: Ctx) -> str:
    nps = _action_nps(c)
    if "emotion" not in c.vis:
        return f"{cap(c.subj)} shows {join(nps)}." if nps else ""
    emo, S, P = c.say("emotion", EMOTION_ADJ), cap(c.subj), cap(c.poss)
    if not nps:
        return c.pick(
            (
                f"{S} looks {emo}.",
                f"{P} expression is {emo}.",
                f"{S} wears {art(emo)} expression.",
                f"The expression is {emo}.",
            )
        )
    x = join(nps)
    return c.pick(
        (
            f"{S} looks {emo}, with {x}.",
            f"{P} expression is {emo}, with {x}.",
            f"With {x}, {c.subj} seems {emo}.",
            f"{cap(art(emo))} expression shows on {c.poss} face, with {x}.",
        )
    )


def pose_sentence(c: Ctx) -> str:
    S, P = cap(c.subj), cap(c.poss)
    parts = []
    tilt = c.is_("head_tilt") or (c.is_("head_tilt", False) and c.p(0.3))
    if "head_turn" in c.vis:
        c.say("head_turn")
        d = c.vis["head_turn"]
        parts.append(
            c.pick(
                (
                    f"{S} faces the camera",
                    f"{S} is looking straight at the camera",
                    f"{S} is facing the viewer",
                )
            )
            if d == "frontal"
            else c.pick(
                (
                    f"{S} is turned slightly to the {d}",
                    f"{S} looks off to the {d}",
                )
                + (() if tilt else (f"{P} head is turned to the {d}",))
            )
        )
    if tilt:
        c.say("head_tilt")
        t = (
            c.pick(("{p} head tilted slightly", "a slight tilt of {p} head"))
            if c.vis["head_tilt"]
            else "{p} head held level"
        )
        parts.append(("with " + t).format(p=c.poss))
    if not parts:
        return ""
    return cap(", ".join(parts)) + "."


GROUPS = (
    hair_sentence,
    eyes_sentence,
    face_sentence,
    skin_sentence,
    facial_hair_sentence,
    makeup_sentence,
    accessories_sentence,
    expression_sentence,
    pose_sentence,
)
