"""CelebV-HQ: one frame per clip, with the clip's appearance, action and emotion labels.

``celebvhq_info.json`` (format of the CelebV-HQ repository's README)::

    {"meta_info": {"appearance_mapping": [40 names], "action_mapping": [35 names]},
     "clips": {"M2Ohb0FAaJU_1": {
         "ytb_id": "M2Ohb0FAaJU", "duration": {"start_sec": 81.62, "end_sec": 86.17},
         "bbox": {"top": 0.0, "bottom": 0.8815, "left": 0.1964, "right": 0.6922},
         "attributes": {"appearance": [0, 1, ...], "action": [0, 0, ...],
                        "emotion": {"sep_flag": false, "labels": "neutral"}},
         "version": "v0.1"}, ...}}

With ``sep_flag`` true, ``labels`` is a list of ``{"emotion", "start_sec", "end_sec"}``; the
emotion covering the longest time is used. Labels are clip-level: an action labelled 1 happens
somewhere in the clip, so a single frame is a noisy witness (documented in docs/data.md).

Frames: ``<clip_id>.jpg|png`` anywhere under ``--root`` (pre-extracted, e.g. the middle frame).
A ``<clip_id>.mp4`` without a frame is decoded with PyAV when installed; otherwise the clip is
skipped with the reason. The downloaded *processed* clips are already cropped to the face, so
frames are centre-cropped; ``use_bbox=True`` applies the json's bbox instead (frames taken
from the raw YouTube videos).

Appearance names are CelebA's (``Blonde_Hair``, ``Sunglasses``, ``Wearing_Mask`` …) and go
through :func:`.celeba.map_celeba_attributes`. Actions (1 → True, 0 → False where one-to-one):

==========================  =========================================
CelebV-HQ action            ontology
==========================  =========================================
smile, laugh, glare, frown  smile, laugh, glare, frown
wink                        wink
close_eyes, sleep           eyes_closed (True if either; False if both 0)
talk, shout, sing, yawn,    mouth_open True if any is 1 (else unknown:
laugh, blow, whisper        the mouth may open for other reasons)
other 25 actions            not mapped (eat, drink, nod, turn, …)
==========================  =========================================

Emotion: neutral, happy, sad, anger→angry, fear→fearful, surprise→surprised,
disgust→disgusted, contempt.
"""

from __future__ import annotations

import io
import json
from pathlib import Path

from ...errors import UserError
from .celeba import map_celeba_attributes, norm_name
from .common import IMAGE_EXTS, VIDEO_EXTS, Item, SkipItem

INFO_FILE = "celebvhq_info.json"
ONE_TO_ONE = {
    "smile": "smile",
    "laugh": "laugh",
    "glare": "glare",
    "frown": "frown",
    "wink": "wink",
}
EYES_CLOSED = ("closeeyes", "sleep")
MOUTH_OPEN = ("talk", "shout", "sing", "yawn", "laugh", "blow", "whisper")
EMOTIONS = {
    "neutral": "neutral",
    "happy": "happy",
    "happiness": "happy",
    "sad": "sad",
    "sadness": "sad",
    "anger": "angry",
    "angry": "angry",
    "fear": "fearful",
    "fearful": "fearful",
    "surprise": "surprised",
    "surprised": "surprised",
    "disgust": "disgusted",
    "disgusted": "disgusted",
    "contempt": "contempt",
}


def map_actions(flags: dict[str, bool]) -> dict:
    """CelebV-HQ action flags (by name) → partial ontology labels (table above)."""
    f = {norm_name(k): bool(v) for k, v in flags.items()}
    out: dict = {attr: f[k] for k, attr in ONE_TO_ONE.items() if k in f}
    closed = [f[k] for k in EYES_CLOSED if k in f]
    if closed:
        out["eyes_closed"] = any(closed)
    if any(f.get(k) for k in MOUTH_OPEN):
        out["mouth_open"] = True
    return out


def map_emotion(emotion: dict | None) -> str | None:
    """The clip's dominant emotion (longest labelled span when ``sep_flag``), or None."""
    if not isinstance(emotion, dict):
        return None
    labels = emotion.get("labels")
    if isinstance(labels, str):
        return EMOTIONS.get(labels.strip().lower())
    if isinstance(labels, list):
        spans: dict[str, float] = {}
        for seg in labels:
            if isinstance(seg, dict) and isinstance(seg.get("emotion"), str):
                e = EMOTIONS.get(seg["emotion"].strip().lower())
                dur = float(seg.get("end_sec", 0) or 0) - float(seg.get("start_sec", 0) or 0)
                if e:
                    spans[e] = spans.get(e, 0.0) + max(dur, 0.0)
        if spans:  # max keeps the first of equal spans (dicts keep insertion order)
            return max(spans, key=lambda k: spans[k])
    return None


def _flags(names: list, values: list | None) -> dict[str, bool]:
    if not isinstance(values, list) or len(values) != len(names):
        return {}
    return {str(n): bool(v) and v not in (-1, "-1") for n, v in zip(names, values, strict=True)}


def clip_labels(meta: dict, clip: dict) -> dict:
    """Partial ontology labels of one clip."""
    attrs = clip.get("attributes") or {}
    labels = map_celeba_attributes(
        _flags(meta.get("appearance_mapping", []), attrs.get("appearance"))
    )
    labels.update(map_actions(_flags(meta.get("action_mapping", []), attrs.get("action"))))
    emotion = map_emotion(attrs.get("emotion"))
    if emotion:
        labels["emotion"] = emotion
    return labels


def middle_frame(video: Path) -> bytes:
    """PNG bytes of a clip's middle frame, decoded with PyAV. Raises SkipItem without it."""
    try:
        import av  # optional: PyAV
    except ImportError:
        raise SkipItem(
            f"video {video.name} not decoded: no decoder installed (pip install "
            f"av) and no pre-extracted frame {video.stem}.jpg/.png"
        ) from None
    try:
        with av.open(str(video)) as container:
            stream = container.streams.video[0]
            target, frame = (stream.frames or 0) // 2, None  # frames = 0 when unknown
            for i, decoded in enumerate(container.decode(stream)):
                frame = decoded
                if i >= target:
                    break
        if frame is None:
            raise SkipItem(f"video {video.name} has no frames")
        buf = io.BytesIO()
        frame.to_image().save(buf, format="PNG")
        return buf.getvalue()
    except (OSError, ValueError, av.error.FFmpegError) as err:
        raise SkipItem(f"video {video.name} unreadable ({err})") from None


def _index_files(root: Path) -> tuple[dict[str, Path], dict[str, Path]]:
    """clip id → frame path and clip id → video path, for every file under ``root``."""
    frames: dict[str, Path] = {}
    videos: dict[str, Path] = {}
    for p in sorted(root.rglob("*")):
        ext = p.suffix.lower()
        if ext in IMAGE_EXTS:
            frames.setdefault(p.stem, p)
        elif ext in VIDEO_EXTS:
            videos.setdefault(p.stem, p)
    return frames, videos


def scan_celebvhq(root: str | Path, use_bbox: bool = False) -> tuple[list[Item], dict]:
    """Items of a CelebV-HQ folder: one per clip in ``celebvhq_info.json``."""
    root = Path(root)
    info_path = root / INFO_FILE
    if not info_path.is_file():
        raise UserError(
            f"no {INFO_FILE} in {root}; pass the folder holding the CelebV-HQ "
            "annotation file (and the frames or clips) as --root"
        )
    try:
        info = json.loads(info_path.read_text())
        meta, clips = info.get("meta_info", {}), info["clips"]
    except (json.JSONDecodeError, KeyError, AttributeError) as err:
        raise UserError(
            f"{info_path} is not CelebV-HQ's format ({err}); it needs "
            "'meta_info' and 'clips' — re-download celebvhq_info.json"
        ) from None
    if not meta.get("appearance_mapping") or not meta.get("action_mapping"):
        raise UserError(
            f"{info_path} lacks meta_info.appearance_mapping/action_mapping; "
            "re-download celebvhq_info.json"
        )
    frames, videos = _index_files(root)
    items, n_video = [], 0
    for clip_id, clip in clips.items():
        b = clip.get("bbox") or {}
        bbox = tuple(b.get(k) for k in ("top", "bottom", "left", "right"))
        ok_box = use_bbox and all(isinstance(v, int | float) for v in bbox)
        frame, video = frames.get(clip_id), videos.get(clip_id)
        if frame is None and video is not None:
            n_video += 1
            image, file = (lambda v=video: middle_frame(v)), str(video.relative_to(root))
        else:
            file = str(frame.relative_to(root)) if frame else f"{clip_id}.jpg"
            image = frame if frame else root / f"{clip_id}.jpg"
        items.append(
            Item(
                id=clip_id,
                file=file,
                image=image,
                labels=clip_labels(meta, clip),
                bbox=bbox if ok_box else None,
            )
        )
    notes = {
        "clips": len(clips),
        "frames_found": sum(c in frames for c in clips),
        "videos_to_decode": n_video,
        "use_bbox": use_bbox,
        "appearance_names": len(meta["appearance_mapping"]),
        "action_names": len(meta["action_mapping"]),
    }
    return items, notes
