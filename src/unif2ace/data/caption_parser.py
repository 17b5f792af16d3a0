"""Caption parser: maps free English text about a face back onto the ontology.

``parse_caption(text)`` returns ``{attribute: value}`` for the attributes the text *states*
(present, absent, or a categorical value), and nothing for those it does not mention. It is
used to check that FaceForge captions agree with their labels and, in evaluation (issue 6),
for caption attribute precision / recall / F1, so it reads phrases, not templates:

1. **Phrase rules** (regular expressions, most specific first): multi-word phrases such as
   "bags under her eyes", "clean-shaven", "head turned to the left", "no jewellery". A matched
   span is replaced by a placeholder so a later, shorter rule cannot match inside it
   ("laugh lines" is wrinkles, not laughing; "half-closed eyes" is not closed eyes).
2. **Head-noun attachment**: adjectives attach to the noun they modify — before it
   ("long, wavy auburn hair", "blue-eyed") or after a copula ("her hair is short and curly",
   "is her hair blond?"). Each head has its own lexicon, so "brown" means a hair colour next
   to "hair", an eye colour next to "eyes" and a skin tone next to "skin".
3. **Negation**: a cue ("no", "not", "without", "n't", "neither/nor", "free of", "rather
   than") scopes forward to the end of its clause; clause boundaries are punctuation, "but",
   "with", "while", … and "and"/"," followed by a new noun phrase ("no smile and a frown").
   A negated presence phrase states absence ("no earrings" -> earrings False); a negated
   categorical value or absence phrase states nothing ("her hair isn't blond").

Conflicting mentions of one attribute resolve to the most frequent value (first on ties).
"""

from __future__ import annotations

import re
from collections import Counter

from .ontology import BY_NAME, Value

# ---------------------------------------------------------------------------------------------
# Phrase rules: (regex, ((attribute, value), ...), mode). Modes: "flip" = a negated match flips
# a binary value (categorical: glasses -> "none", others dropped); "fixed" = a negated match
# states nothing; "group" = only a negated match counts, setting every attribute to its value.
_P = r"(?:her|his|their|the|both)"
_WS = r"(?:slightly|a little|a bit|partly|partially|somewhat|gently|noticeably)"
_DIR = r"(?:to(?:wards?)? )?(?:the |her |his |their |one )?"
RULES: list[tuple[str, tuple[tuple[str, Value], ...], str]] = [
    # --- multi-attribute and absence phrases first ---
    (
        r"clean[- ]shaven|smooth[- ]shaven",
        (("beard", False), ("mustache", False), ("five_o_clock_shadow", False)),
        "fixed",
    ),
    (
        r"facial hair",
        (
            ("beard", False),
            ("mustache", False),
            ("five_o_clock_shadow", False),
            ("sideburns", False),
        ),
        "group",
    ),
    (r"jewell?e?ry", (("earrings", False), ("necklace", False)), "group"),
    (
        r"(?:closed|tight)[- ](?:mouth(?:ed)?|lip(?:ped)?) smile",
        (("smile", True), ("mouth_open", False)),
        "fixed",
    ),
    (
        r"half[- ]closed(?: eyes)?|heavy[- ]lidded(?: eyes)?|hooded eyes|squinting|squint",
        (("narrow_eyes", True),),
        "fixed",
    ),
    (r"wrinkl(?:es|ed|ing) " + _P + r" nose|nose (?:is )?wrinkled", (), "fixed"),  # disgust
    (
        r"laugh lines|smile lines|crow'?s[- ]feet|fine lines|creases|wrinkles?|wrinkled",
        (("wrinkles", True),),
        "flip",
    ),
    (r"unlined|wrinkle[- ]free", (("wrinkles", False),), "fixed"),
    (
        r"bags under " + _P + r" eyes|under-?eye bags|eye bags|puffy under-?eyes|puffy eyes"
        r"|dark circles under " + _P + r" eyes|dark circles",
        (("bags_under_eyes", True),),
        "flip",
    ),
    (r"widow'?s[- ]peak", (("hairline", "widows_peak"),), "fixed"),
    (r"full head of hair|thick head of hair", (("bald", False),), "fixed"),
    (
        r"bald(?:-headed)?|shaved head|shaven head|hairless scalp|shaved scalp",
        (("bald", True),),
        "flip",
    ),
    (r"bangs|fringe", (("bangs", True),), "flip"),
    (r"full beard|beard|bearded|goatee", (("beard", True),), "flip"),
    (r"five o'?clock shadow|stubble|stubbled|stubbly", (("five_o_clock_shadow", True),), "flip"),
    (r"mustache|moustache|mustached|mustachioed", (("mustache", True),), "flip"),
    (r"sideburns?", (("sideburns", True),), "flip"),
    # --- accessories ---
    (
        r"sunglasses|sun-glasses|shades|dark glasses|tinted glasses|tinted lenses",
        (("glasses", "sunglasses"),),
        "fixed",
    ),
    (r"eyeglasses|glasses|spectacles|specs|bespectacled", (("glasses", "eyeglasses"),), "flip"),
    (r"eyewear", (("glasses", "none"),), "group"),
    (
        r"face masks?|surgical masks?|medical masks?|face coverings?|masks?|masked",
        (("face_mask", True),),
        "flip",
    ),
    (r"bare[- ]headed|hatless|bare head", (("hat", False),), "fixed"),
    (r"hats?|caps?|beanie|beret|fedora|headwear|baseball cap", (("hat", True),), "flip"),
    (r"earrings?|ear studs?|ear-?rings", (("earrings", True),), "flip"),
    (r"necklaces?|pendant|choker|chain", (("necklace", True),), "flip"),
    # --- skin ---
    (r"freckles?|freckled", (("freckles", True),), "flip"),
    (r"moles?|beauty marks?|beauty spots?", (("moles", True),), "flip"),
    (
        r"rosy[- ]cheeked|rosy|ruddy|blushing|(?:flushed|pink|reddened) cheeks",
        (("rosy_cheeks", True),),
        "flip",
    ),
    # --- make-up ---
    (r"lipstick|painted lips|lip colou?r|lip gloss", (("lipstick", True),), "flip"),
    (r"eye makeup|eyeshadow|eye shadow|eyeliner|mascara", (("makeup", True),), "flip"),
    (r"makeup", (("makeup", False), ("lipstick", False)), "group"),
    (r"double chin", (("double_chin", True),), "flip"),
    (r"(?:defined|firm|chiseled|chiselled|taut) jaw(?:line)?", (("double_chin", False),), "fixed"),
    # --- actions ---
    (r"unsmiling|straight[- ]faced|straight face|poker face", (("smile", False),), "fixed"),
    (r"laugh(?:s|ing|ed|ter)?|chuckl(?:e|es|ing)|giggl(?:e|es|ing)", (("laugh", True),), "flip"),
    (r"smil(?:e|es|ed|ing)|grin(?:s|ning|ned)?|beam(?:s|ing)", (("smile", True),), "flip"),
    (
        r"glar(?:e|es|ed|ing)|glower(?:s|ing)?|hard stare|steely (?:gaze|stare)|stares? hard",
        (("glare", True),),
        "flip",
    ),
    (
        r"frown(?:s|ed|ing)?|scowl(?:s|ed|ing)?"
        r"|(?:furrowed|knitted|knit) (?:brows?|eyebrows|forehead)"
        r"|furrows? (?:her|his|their) (?:brows?|eyebrows|forehead)",
        (("frown", True),),
        "flip",
    ),
    (r"wink(?:s|ed|ing)?", (("wink", True),), "flip"),
    (
        r"eyes (?:are |remain |stay |held )?(?:not )?(?:gently |tightly |fully |softly )?"
        r"(?:closed|shut)|(?:closed|shut) eyes|clos(?:es|ing) " + _P + r" eyes",
        (("eyes_closed", True),),
        "flip",
    ),
    (r"eyes (?:are |remain |stay )?(?:wide )?open|open eyes", (("eyes_closed", False),), "fixed"),
    (
        r"mouth (?:is |hangs |hanging |falls |held )?(?:not )?(?:" + _WS + r" |wide |half )?"
        r"(?:open|agape|ajar)|open mouth|open-mouthed|lips (?:are )?(?:" + _WS + r" )?parted"
        r"|parted lips|talking|speaking|mid-sentence|mid-speech",
        (("mouth_open", True),),
        "flip",
    ),
    (
        r"mouth (?:is |stays |remains |held )?(?:closed|shut)|closed mouth|tight-lipped"
        r"|lips (?:are )?(?:pressed |held |kept )?(?:together|closed|sealed)",
        (("mouth_open", False),),
        "fixed",
    ),
    (
        r"rais(?:es|ing) " + _P + r" (?:eye)?brows|(?:eye)?brows (?:are )?(?:raised|lifted)",
        (("raised_eyebrows", True),),
        "flip",
    ),
    # --- head pose ---
    (
        r"(?:head|face) (?:is )?(?:turned|turning|angled) (?:" + _WS + r" )?" + _DIR + r"left"
        r"|(?:turns|turned|turning|looks|looking|glances|glancing|gazes|gazing|faces|facing)"
        r" (?:" + _WS + r" |off |away )?" + _DIR + r"left|leftward",
        (("head_turn", "left"),),
        "fixed",
    ),
    (
        r"(?:head|face) (?:is )?(?:turned|turning|angled) (?:" + _WS + r" )?" + _DIR + r"right"
        r"|(?:turns|turned|turning|looks|looking|glances|glancing|gazes|gazing|faces|facing)"
        r" (?:" + _WS + r" |off |away )?" + _DIR + r"right|rightward",
        (("head_turn", "right"),),
        "fixed",
    ),
    (
        r"(?:facing|faces|face) (?:the camera|the viewer|the lens|forward|front|us|straight ahead)"
        r"|look(?:s|ing)? (?:straight|directly) (?:ahead|at the camera|into the camera"
        r"|at the viewer|into the lens|at us)|head-on|straight-on|frontal|front-facing",
        (("head_turn", "frontal"),),
        "fixed",
    ),
    (
        r"head (?:is )?(?:held |kept )?(?:level|upright|straight)|holds "
        + _P
        + r" head (?:level|upright|straight)|level head",
        (("head_tilt", False),),
        "fixed",
    ),
    (
        r"tilted head|head (?:is )?(?:" + _WS + r" )?(?:tilted|tipped|cocked|tilting)"
        r"|(?:tilts|tilting|tips|cocks) " + _P + r" head|tilt(?:ed)?(?: of| to)? " + _P + r" head"
        r"|head tilt",
        (("head_tilt", True),),
        "flip",
    ),
    # --- age ---
    (
        r"middle-aged|middle age|midlife|in " + _P + r" (?:late |early |mid-)?(?:forties|fifties)",
        (("age", "middle_aged"),),
        "fixed",
    ),
    (
        r"young(?:ish)?|youthful|teenage|teenager|in "
        + _P
        + r" (?:late |early |mid-)?(?:teens|twenties|thirties)",
        (("age", "young"),),
        "fixed",
    ),
    (
        r"elderly|senior|older|later years|later life|old age"
        r"|(?<![-])(?<!years )(?<!how )old(?![-])"
        r"|in " + _P + r" (?:late |early |mid-)?(?:sixties|seventies|eighties|nineties)",
        (("age", "old"),),
        "fixed",
    ),
    # --- hair colour named through the person ---
    (r"brunette", (("hair_color", "brown"),), "fixed"),
    (r"redhead(?:ed)?", (("hair_color", "red"),), "fixed"),
    (
        r"blonde?(?= (?:woman|man|girl|boy|lady|person|guy))|(?:a|the) blonde?\b(?! hair)",
        (("hair_color", "blond"),),
        "fixed",
    ),
]
_COMPILED = [(re.compile(r"(?<![\w'])(?:" + rx + r")(?![\w'])"), av, m) for rx, av, m in RULES]

# ---------------------------------------------------------------------------------------------
# Head nouns and their adjective lexicons: head -> {adjective: ((attribute, value), ...)}.
_HEAD_WORDS = {
    "hair": ("hair", "locks", "curls", "waves", "ringlets", "mane", "tresses", "hairstyle"),
    "eyes": ("eyes", "eye", "irises", "iris"),
    "brows": ("eyebrows", "eyebrow", "brows", "brow"),
    "face": ("face", "face-shape"),
    "nose": ("nose",),
    "lips": ("lips", "lip"),
    "skin": ("skin", "complexion", "skin-tone"),
    "cheekbones": ("cheekbones", "cheekbone"),
    "cheeks": ("cheeks", "cheek"),
    "hairline": ("hairline",),
}
HEAD_OF = {w: h for h, ws in _HEAD_WORDS.items() for w in ws}
_COMPOUND = {
    "haired": "hair",
    "eyed": "eyes",
    "browed": "brows",
    "faced": "face",
    "nosed": "nose",
    "lipped": "lips",
    "skinned": "skin",
    "cheeked": "cheeks",
}
# Head words that imply a value by themselves.
_IMPLIED = {
    "curls": (("hair_type", "curly"),),
    "ringlets": (("hair_type", "curly"),),
    "waves": (("hair_type", "wavy"),),
}


def _lex(spec: dict[str, tuple[str, Value]]) -> dict[str, tuple[tuple[str, Value], ...]]:
    out: dict[str, tuple[tuple[str, Value], ...]] = {}
    for words, av in spec.items():
        for w in words.split():
            out[w] = out.get(w, ()) + (av,)
    return out


LEXICON: dict[str, dict[str, tuple[tuple[str, Value], ...]]] = {
    "hair": _lex(
        {
            "black jet-black dark raven ebony": ("hair_color", "black"),
            "brown brunette chestnut dark-brown light-brown deep-brown mousy": (
                "hair_color",
                "brown",
            ),
            "blond blonde golden fair flaxen honey-blond platinum-blond": ("hair_color", "blond"),
            "red ginger auburn copper coppery fiery strawberry-blond": ("hair_color", "red"),
            "gray grey silver silvery graying greying salt-and-pepper": ("hair_color", "gray"),
            "white snow-white snowy": ("hair_color", "white"),
            "short cropped close-cropped buzzed chin-length": ("hair_length", "short"),
            "medium-length shoulder-length mid-length": ("hair_length", "medium"),
            "long flowing waist-length": ("hair_length", "long"),
            "straight sleek poker-straight": ("hair_type", "straight"),
            "wavy": ("hair_type", "wavy"),
            "curly coily tightly-curled": ("hair_type", "curly"),
        }
    ),
    "eyes": _lex(
        {
            "brown dark-brown chocolate": ("eye_color", "brown"),
            "blue": ("eye_color", "blue"),
            "green emerald": ("eye_color", "green"),
            "gray grey steel-gray": ("eye_color", "gray"),
            "hazel amber": ("eye_color", "hazel"),
            "narrow almond-shaped slanted": ("narrow_eyes", True),
            "wide large round wide-set": ("narrow_eyes", False),
            "closed shut": ("eyes_closed", True),
            "open": ("eyes_closed", False),
        }
    ),
    "brows": _lex(
        {
            "straight flat level": ("eyebrow_shape", "straight"),
            "arched curved": ("eyebrow_shape", "arched"),
            "angled angular peaked": ("eyebrow_shape", "angled"),
            "bushy thick heavy full": ("bushy_eyebrows", True),
            "thin fine slender sparse delicate": ("bushy_eyebrows", False),
            "raised lifted": ("raised_eyebrows", True),
            "relaxed lowered": ("raised_eyebrows", False),
        }
    ),
    "face": _lex(
        {
            "oval egg-shaped": ("face_shape", "oval"),
            "round": ("face_shape", "round"),
            "square angular square-jawed": ("face_shape", "square"),
            "heart-shaped": ("face_shape", "heart"),
            "long oblong elongated": ("face_shape", "long"),
        }
    ),
    "nose": _lex(
        {
            "small button little tiny petite": ("nose_size", "small"),
            "medium-sized average-sized medium average moderate": ("nose_size", "medium"),
            "big large prominent": ("nose_size", "big"),
            "pointy pointed sharp": ("pointy_nose", True),
            "rounded round soft blunt": ("pointy_nose", False),
        }
    ),
    "lips": _lex(
        {
            "thin narrow": ("lips", "thin"),
            "medium medium-sized average moderate": ("lips", "medium"),
            "full plump fleshy pouty": ("lips", "full"),
            "painted": ("lipstick", True),
        }
    ),
    "skin": _lex(
        {
            "pale porcelain ivory alabaster": ("skin_tone", "pale"),
            "light fair light-toned": ("skin_tone", "light"),
            "medium olive medium-toned": ("skin_tone", "medium"),
            "tan tanned bronze bronzed sun-tanned": ("skin_tone", "tan"),
            "brown light-brown caramel": ("skin_tone", "brown"),
            "dark deep-brown dark-brown ebony deep": ("skin_tone", "dark"),
            "smooth": ("wrinkles", False),
            "lined": ("wrinkles", True),
        }
    ),
    "cheekbones": _lex(
        {
            "high prominent sculpted pronounced chiseled chiselled": ("high_cheekbones", True),
            "low flat": ("high_cheekbones", False),
        }
    ),
    "cheeks": _lex({"rosy flushed pink ruddy reddened": ("rosy_cheeks", True)}),
    "hairline": _lex(
        {
            "straight even neat regular": ("hairline", "straight"),
            "receding thinning": ("hairline", "receding"),
        }
    ),
}
# Words allowed inside an adjective run without breaking it.
FILLERS = frozenset(
    "and , a an very quite rather fairly slightly somewhat naturally neatly noticeably distinctly "
    "strikingly richly deep bright pale light dark rich warm cool soft striking vivid clear "
    "sparkling piercing thick glossy shiny neat natural lovely beautiful pretty well-groomed "
    "groomed fine sharply gently softly her his their cut worn kept styled tone color shade "
    "unmistakably clearly also both".split()
)
COPULAS = frozenset(
    "is are was were looks look appears appear seems seem remains remain stays stay falls fall "
    "hangs hang 's".split()
)
# Emotion words anywhere in the text.
EMOTION_WORDS = _lex(
    {
        "neutral calm expressionless impassive composed blank": ("emotion", "neutral"),
        "happy joyful cheerful delighted glad joyous gleeful elated happiness joy": (
            "emotion",
            "happy",
        ),
        "sad unhappy downcast sorrowful melancholy gloomy dejected glum mournful sadness sorrow": (
            "emotion",
            "sad",
        ),
        "angry furious annoyed irritated irate enraged livid anger fury": ("emotion", "angry"),
        "surprised astonished amazed startled shocked surprise astonishment amazement": (
            "emotion",
            "surprised",
        ),
        "fearful scared frightened afraid terrified alarmed fear fright": ("emotion", "fearful"),
        "disgusted repulsed revolted disgust revulsion": ("emotion", "disgusted"),
        "contemptuous scornful disdainful contempt disdain scorn sneering sneer": (
            "emotion",
            "contempt",
        ),
    }
)
GENDER_NOUNS = {
    **dict.fromkeys("woman women female lady girl".split(), "female"),
    **dict.fromkeys("man men male gentleman guy boy".split(), "male"),
}
GENDER_PRONOUNS = {
    **dict.fromkeys("she her hers herself".split(), "female"),
    **dict.fromkeys("he his him himself".split(), "male"),
}

# ---------------------------------------------------------------------------------------------
# Negation.
NEG_TOKENS = frozenset(
    "no not without never neither nor none nothing lacks lacking lack absence free-of "
    "cannot".split()
)
BOUNDARY_TOKENS = frozenset(
    ". ; : ! ? but with while whereas although though yet so because since which who plus "
    "instead".split()
)
NEW_NP = frozenset(  # after "and" / ",": a new noun phrase or predicate starts
    "a an the some her his their its she he they it there this that one which who just only "
    "merely wears wearing has having is looks seems appears shows showing sports sporting "
    "gives giving holds holding keeps".split()
)
_JOIN = [  # multi-word adjectives that must stay one token
    (r"\b(deep|dark|light) brown\b", r"\1-brown"),
    (r"\bjet black\b", "jet-black"),
    (r"\bsalt and pepper\b", "salt-and-pepper"),
    (r"\b(shoulder|medium|mid|chin) length\b", r"\1-length"),
    (r"\b(heart|almond|egg) shaped\b", r"\1-shaped"),
    (r"\b(medium|average) sized\b", r"\1-sized"),
    (r"\bskin tone\b", "skin-tone"),
    (r"\bface shape\b", "face-shape"),
    (r"\bsnow white\b", "snow-white"),
    (r"\bclose cropped\b", "close-cropped"),
    (r"\b(\w+)-free\b", r"free-of \1"),
    (r"\bfree of\b", "free-of"),
    (r"\b(make-up|make up)\b", "makeup"),
    (r"\bcolour", "color"),
    (r"\bjewelry\b", "jewellery"),
]
_TOKEN = re.compile(r"§\d+|[a-z0-9]+(?:['-][a-z0-9]+)*|n't|'s|[.,;:!?]")


def _normalise(text: str) -> str:
    t = text.lower().replace("\u2019", "'").replace("\u2018", "'").replace("\u2014", ", ")
    t = re.sub(r"\b(she|he|it|that|there)'s\b", r"\1 is", t)
    for rx, rep in _JOIN:
        t = re.sub(rx, rep, t)
    return t


def _is_neg(tokens: list[str], i: int) -> bool:
    if i < 0 or i >= len(tokens):
        return False
    t = tokens[i]
    return (
        t in NEG_TOKENS
        or t.endswith("n't")
        or (t == "than" and i > 0 and tokens[i - 1] == "rather")
        or (t == "of" and i > 0 and tokens[i - 1] in ("instead", "devoid"))
    )


def _negated(tokens: list[str], i: int) -> bool:
    """True when a negation cue scopes over position ``i`` (scan back to the clause start)."""
    for j in range(i - 1, -1, -1):
        t = tokens[j]
        if _is_neg(tokens, j):
            return True
        if t in BOUNDARY_TOKENS:
            return False
        if t in ("and", ",") and j + 1 < len(tokens) and tokens[j + 1] in NEW_NP:
            return False
    return False


def _apply_rules(text: str) -> tuple[str, list[tuple[tuple[tuple[str, Value], ...], str, str]]]:
    """Replace rule matches by placeholders ``§k``; return the text and the matches."""
    matches: list[tuple[tuple[tuple[str, Value], ...], str, str]] = []

    def sub(av, mode):
        def repl(m: re.Match) -> str:
            matches.append((av, mode, m.group(0)))
            return f" §{len(matches) - 1} "

        return repl

    for rx, av, mode in _COMPILED:
        text = rx.sub(sub(av, mode), text)
    return text, matches


def _rule_hits(tokens, matches, add) -> None:
    for i, tok in enumerate(tokens):
        if not tok.startswith("§"):
            continue
        av, mode, matched = matches[int(tok[1:])]
        neg = _negated(tokens, i) or bool(re.search(r"\bnot\b|n't", matched))
        if mode == "group":
            if neg:
                for a, v in av:
                    add(a, v, i)
            continue
        for a, v in av:
            if not neg:
                add(a, v, i)
            elif mode == "flip" and isinstance(v, bool):
                add(a, not v, i)
            elif mode == "flip" and a == "glasses":
                add(a, "none", i)


def _attach(tokens, i, head, lexicon, add, words) -> None:
    """Attach the adjective ``words`` (list of (position, word)) to ``head``."""
    for pos, w in words:
        for a, v in lexicon[head].get(w, ()):
            neg = _negated(tokens, pos)
            if not neg:
                add(a, v, pos)
            elif isinstance(v, bool):
                add(a, not v, pos)


def _adjective_run(tokens, start, step, head) -> list[tuple[int, str]]:
    """Collect lexicon adjectives from ``start`` moving by ``step`` through fillers."""
    lex, out, j = LEXICON[head], [], start
    while 0 <= j < len(tokens):
        t = tokens[j]
        if t in lex:
            out.append((j, t))
        elif not (t in FILLERS or _is_neg(tokens, j)):
            break
        j += step
    return out


def _head_hits(tokens, add) -> None:
    for i, tok in enumerate(tokens):
        head, words = HEAD_OF.get(tok), []
        if head is None and "-" in tok:  # compounds: "blue-eyed", "curly-haired"
            pre, _, suf = tok.rpartition("-")
            head = _COMPOUND.get(suf)
            if head and pre in LEXICON[head]:
                words = [(i, pre)]
        elif head is not None:
            for a, v in _IMPLIED.get(tok, ()):
                if not _negated(tokens, i):
                    add(a, v, i)
            words = _adjective_run(tokens, i - 1, -1, head)
            j = i + 1
            while j < len(tokens) and tokens[j] in ("tone", "color", "shape"):
                j += 1
            if j < len(tokens) and tokens[j] in COPULAS:
                words += _adjective_run(tokens, j + 1, 1, head)
            else:  # post-modifier at a clause end: "is her hair blond?"
                post = _adjective_run(tokens, j, 1, head)
                end = post[-1][0] + 1 if post else j
                if post and (end == len(tokens) or tokens[end] in ".,;:!?"):
                    words += post
        if head:
            _attach(tokens, i, head, LEXICON, add, words)


def _word_hits(tokens, add) -> None:
    gender_nouns: list[tuple[str, int]] = []
    pronouns: list[tuple[str, int]] = []
    for i, t in enumerate(tokens):
        for a, v in EMOTION_WORDS.get(t, ()):
            if not _negated(tokens, i):
                add(a, v, i)
        if t in GENDER_NOUNS:
            gender_nouns.append((GENDER_NOUNS[t], i))
        elif t in GENDER_PRONOUNS:
            pronouns.append((GENDER_PRONOUNS[t], i))
    for g, i in gender_nouns or pronouns:
        add("gender", g, i)


def parse_caption(text: str) -> dict[str, str | bool]:
    """Attributes a text states about a face: ``{attribute: value}``.

    Binary attributes map to ``True`` (stated present) or ``False`` (stated absent);
    categorical ones to one of their ontology values. Unmentioned attributes are absent.
    """
    norm, matches = _apply_rules(_normalise(text))
    tokens = _TOKEN.findall(norm)
    hits: dict[str, list[tuple[int, Value]]] = {}

    def add(attr: str, value: Value, pos: int) -> None:
        hits.setdefault(attr, []).append((pos, value))

    _rule_hits(tokens, matches, add)
    _head_hits(tokens, add)
    _word_hits(tokens, add)
    out: dict[str, str | bool] = {}
    for attr, found in hits.items():
        found.sort(key=lambda pv: pv[0])
        counts = Counter(v for _, v in found)
        best = max(counts.values())
        out[attr] = next(v for _, v in found if counts[v] == best)
    return {a: out[a] for a in BY_NAME if a in out}


parse_prompt = parse_caption


def parse_answer(attribute: str, answer: str) -> Value:
    """The value a short answer (or question) names for ``attribute``; ``None`` if unclear.

    Binary: "yes..." -> True, "no..." -> False. Categorical: the single value the text names
    (through the same phrase rules and lexicons as :func:`parse_caption`).
    """
    attr = BY_NAME[attribute]
    t = _normalise(answer).strip()
    if attr.is_binary:
        if re.match(r"yes\b", t):
            return True
        if re.match(r"no\b", t):
            return False
        return None
    found = parse_caption(answer).get(attribute)
    if found is not None:
        return found
    values = set()
    for v, phrases in attr.phrases.items():
        words = set(phrases) | {v.replace("_", " "), v.replace("_", "-")}
        for lex in LEXICON.values():
            words |= {w for w, avs in lex.items() if (attribute, v) in avs}
        if any(re.search(r"(?<![\w'-])" + re.escape(w) + r"(?![\w'-])", t) for w in words):
            values.add(v)
    return values.pop() if len(values) == 1 else None
