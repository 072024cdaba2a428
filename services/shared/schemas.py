"""Every message eraser reads or writes, as typed models: the one place the wire contract lives.

Records are CloudEvents 1.0 in structured JSON mode. Each ``data`` model names its event type and
version; :func:`parse_event` is where a raw record becomes a validated event, and every service
reads records through it. docs/schemas/ holds the JSON Schema generated from these models
(``eraser schemas``), so the published contract cannot drift from the code.
"""

from __future__ import annotations

import base64
import binascii
import functools
import json
import re
import uuid
from datetime import UTC, datetime
from typing import Annotated, Any, ClassVar, Generic, Literal, TypeVar

from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationError,
    model_validator,
)

from services.shared.errors import MalformedEventError, UnsupportedEventError
from services.shared.keypoints import check_text
from services.shared.vpdq import normalised

SPEC_VERSION = "1.0"
_ID_NAMESPACE = uuid.UUID("6f1c2d4e-8a3b-5c7d-9e0f-1a2b3c4d5e6f")
_EXTENSION_NAME = re.compile(r"^[a-z0-9]{1,20}$")


def _lower_hex(value: Any) -> Any:
    return value.lower() if isinstance(value, str) else value


Hex256 = Annotated[
    str,
    BeforeValidator(_lower_hex),
    StringConstraints(pattern=r"^[0-9a-f]{64}$"),
    Field(description="256 bits as 64 lower-case hex digits (PDQ or SHA-256)."),
]
Hex128 = Annotated[
    str,
    BeforeValidator(_lower_hex),
    StringConstraints(pattern=r"^[0-9a-f]{32}$"),
    Field(description="128 bits as 32 lower-case hex digits (MD5)."),
]
Identifier = Annotated[str, StringConstraints(min_length=1, max_length=256)]
BankName = Annotated[
    str,
    StringConstraints(pattern=r"^[a-z0-9][a-z0-9_.-]{0,63}$"),
    Field(description="Bank name: lower-case letters, digits, '_', '.', '-' (at most 64)."),
]
Signal = Literal["sha256", "md5", "pdq", "embedding", "keypoints", "face", "vpdq"]
EMBEDDING_DIMENSIONS = 1280
FACE_DIMENSIONS = 128


def _float16s(count: int, what: str) -> Any:
    """A validator: base64 of exactly ``count`` float16 values."""

    def check(value: Any) -> Any:
        if isinstance(value, str):
            try:
                raw = base64.b64decode(value, validate=True)
            except (binascii.Error, ValueError):
                raise ValueError("not base64") from None
            if len(raw) != 2 * count:
                raise ValueError(f"{what} is {count} float16 values")
        return value

    return BeforeValidator(check)


FaceEmbedding = Annotated[
    str,
    _float16s(FACE_DIMENSIONS, "a face embedding"),
    Field(
        description="A face embedding: 128 little-endian float16 values, L2-normalised, base64. "
        "Model: SFace 2021dec on the face aligned by its 5 landmarks (biometric data)."
    ),
]
Embedding = Annotated[
    str,
    _float16s(EMBEDDING_DIMENSIONS, "an embedding"),
    Field(
        description="An image embedding: 1280 little-endian float16 values, L2-normalised, "
        "base64. Model: MobileNetV2 (ImageNet weights), generalised-mean pooled."
    ),
]
KeypointsText = Annotated[
    str,
    StringConstraints(max_length=24_000),  # 500 records of 36 bytes, base64
    AfterValidator(check_text),
    Field(
        description="ORB keypoints of the image scaled to at most 512 px: base64 of 36-byte "
        "records (x, y in eighths of a pixel as little-endian uint16; 32-byte descriptor), at "
        "most 500."
    ),
]
ActionKind = Literal["remove", "hide", "review"]
VpdqFeature = Annotated[
    str,
    BeforeValidator(lambda value: normalised(value) if isinstance(value, str) else value),
    StringConstraints(pattern=r"^[0-9a-f]{64},[0-9]{1,3},[0-9]+[.][0-9]{3}$"),
    Field(
        description="One hashed video frame as python-threatexchange's vPDQ signal holds it: "
        "'pdqhex,quality,timestamp' (PDQ of the frame, its quality 0-100, seconds to 3 decimals)."
    ),
]


class Schema(BaseModel):
    """Base of every ``data`` model: immutable, and unknown fields are an error."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    TYPE: ClassVar[str]


class UploadReceived(Schema):
    """A platform received an upload and asks eraser to scan it."""

    TYPE: ClassVar[str] = "eraser.upload.v1"

    content_id: Identifier = Field(description="The platform's id for the uploaded content.")
    media_url: Annotated[str, StringConstraints(min_length=1, max_length=4096)] | None = Field(
        default=None,
        description="Where to fetch the media: http(s)://, or file:// under ERASER_MEDIA_ROOT.",
    )
    media_b64: str | None = Field(
        default=None, description="The media bytes, base64-encoded (standard alphabet)."
    )
    mime_type: Annotated[str, StringConstraints(max_length=128)] | None = Field(
        default=None, description="The media type the platform saw; informational only."
    )
    uploader_id: Identifier | None = Field(
        default=None, description="The platform's id for the uploader; never logged by eraser."
    )
    platform: Identifier | None = Field(
        default=None, description="Which platform or surface the upload came from."
    )
    attributes: dict[str, str] = Field(
        default_factory=dict, max_length=64, description="Free-form string tags, passed through."
    )

    @model_validator(mode="after")
    def _one_media_source(self) -> UploadReceived:
        if (self.media_url is None) == (self.media_b64 is None):
            raise ValueError("exactly one of media_url and media_b64 is required")
        return self


class FaceBox(Schema):
    """Where a face is in an upload: pixels of the upright image as stored."""

    x: int = Field(ge=0, description="Left edge.")
    y: int = Field(ge=0, description="Top edge.")
    width: int = Field(gt=0, description="Width.")
    height: int = Field(gt=0, description="Height.")


class FaceSeen(Schema):
    """A face ingest found in an upload: where, how sure, and its embedding (no pixels)."""

    box: FaceBox = Field(description="Where the face is.")
    score: float = Field(ge=0, le=1, description="The detector's confidence.")
    embedding: FaceEmbedding


class VideoFrame(Schema):
    """One sampled frame of an uploaded video and its signals (no pixels)."""

    number: int = Field(ge=0, description="Frame number in decoding order (vPDQ's frameNumber).")
    timestamp: float = Field(ge=0, description="Seconds from the start: number / frame rate.")
    quality: int = Field(ge=0, le=100, description="PDQ quality of the frame (0-100).")
    pdq: list[Hex256] = Field(
        min_length=2,
        max_length=6,
        description="PDQ of the frame as vPDQ computes it (RGB at native size), then of its "
        "mirror image, then of its views: the centre 70% of the frame, and its content without "
        "added borders (letterbox bars, frames); views of PDQ quality under 50 are left out.",
    )
    embeddings: list[Embedding] = Field(
        default_factory=list,
        max_length=3,
        description="Image embeddings of the frame and of each content view (key frames only).",
    )
    keypoints: KeypointsText | None = Field(
        default=None, description="ORB keypoints of the frame (key frames only)."
    )
    faces: list[FaceSeen] = Field(
        default_factory=list,
        max_length=16,
        description="The largest faces on the frame, boxes in its pixels (key frames only, when "
        "ingest looks for faces): a face-swapped video is found by its faces.",
    )


class VideoHashed(Schema):
    """What ingest kept of an uploaded video: its frames sampled as vPDQ does, and their signals."""

    frame_rate: float = Field(gt=0, description="The video stream's average frame rate (fps).")
    frames_decoded: int = Field(ge=1, description="Frames decoded, every one, in order.")
    duration_s: float = Field(ge=0, description="Seconds decoded: frames_decoded / frame_rate.")
    seconds_per_hash: float = Field(
        gt=0,
        description="Sampling: frame i is hashed when i % int(seconds_per_hash x frame_rate) "
        "is 0 (at least every frame), as Meta's vPDQ does.",
    )
    frames: list[VideoFrame] = Field(
        min_length=1, max_length=3600, description="The hashed frames, in order."
    )


class MediaHashed(Schema):
    """Ingest fetched, decoded and hashed an upload (internal topic, ingest → matcher)."""

    TYPE: ClassVar[str] = "eraser.media.hashed.v1"

    upload_id: Identifier = Field(description="The upload event's CloudEvent id.")
    content_id: Identifier = Field(description="The platform's id for the uploaded content.")
    uploaded_at: AwareDatetime = Field(description="The upload event's CloudEvent time.")
    sha256: Hex256 = Field(description="SHA-256 of the media bytes as fetched.")
    md5: Hex128 = Field(description="MD5 of the media bytes, for hash lists that use it.")
    pdq: list[Hex256] = Field(
        max_length=24,
        description="PDQ of the image and its 7 other rotations/flips (the first is as uploaded), "
        "then 2 (as is, mirrored) for each view of its content without added borders, then 1 "
        "for each tile if the image is a 2x2 or 3x3 collage. Empty for a video, whose frames "
        "carry their own (see video).",
    )
    pdq_quality: int = Field(ge=0, le=100, description="PDQ quality of the image (0-100).")
    embeddings: list[Embedding] = Field(
        default_factory=list,
        max_length=12,
        description="Image embeddings of the image, of each content view and of each tile of a "
        "collage.",
    )
    keypoints: KeypointsText | None = Field(
        default=None, description="ORB keypoints of the image, for geometric verification."
    )
    faces: list[FaceSeen] = Field(
        default_factory=list,
        max_length=16,
        description="The largest faces in the image (at most ERASER_INGEST_MAX_FACES).",
    )
    width: int = Field(gt=0, description="Decoded width in pixels, after EXIF orientation.")
    height: int = Field(gt=0, description="Decoded height in pixels, after EXIF orientation.")
    format: Annotated[str, StringConstraints(max_length=16)] = Field(
        description="The image format Pillow detected (JPEG, PNG, WEBP, ...), or for a video its "
        "container (MP4, MATROSKA)."
    )
    video: VideoHashed | None = Field(
        default=None, description="A video's sampled frames and their signals; None for images."
    )

    @model_validator(mode="after")
    def _an_image_or_a_video(self) -> MediaHashed:
        if self.video is None and len(self.pdq) < 8:
            raise ValueError("an image has at least 8 PDQ hashes (its rotations and flips)")
        if self.video is not None and self.pdq:
            raise ValueError("a video's PDQ hashes are in its frames")
        return self


class FaceHit(Schema):
    """Which face of the upload matched a registered face, and how closely."""

    box: FaceBox = Field(description="Where the matching face is in the upload.")
    similarity: float = Field(ge=-1, le=1, description="Cosine of the two face embeddings.")


class Match(Schema):
    """One registered entry an upload matched, by one signal."""

    bank: BankName = Field(description="The bank holding the entry.")
    entry_id: Identifier = Field(description="The registered entry.")
    signal: Signal = Field(description="Which signal matched.")
    distance: int = Field(
        ge=0,
        le=256,
        description="Hamming distance for pdq, 0 for exact digests, for embedding and face "
        "round(100 x (1 - cosine)), and for keypoints 256 minus the number of keypoints in "
        "geometric agreement (at least 0). For vpdq, the median over the upload's matched "
        "frames of each one's smallest PDQ distance to the registered video.",
    )
    timestamps: list[float] = Field(
        default_factory=list,
        max_length=64,
        description="A video upload's matches: when (seconds) the frames that matched this entry "
        "were shown (the first 64); empty for images.",
    )
    match_percent: float | None = Field(
        default=None,
        ge=0,
        le=100,
        description="vpdq: the share (%) of the upload's distinct frames of quality >= 50 within "
        "the bank's PDQ threshold of some frame of the registered video.",
    )
    subject: Identifier | None = Field(
        default=None, description="The person the entry belongs to, for entries that name one."
    )
    face: FaceHit | None = Field(default=None, description="For a face match: which face.")


class VerdictIssued(Schema):
    """Eraser's decision for one upload event: exactly one per upload id (repeats share its id)."""

    TYPE: ClassVar[str] = "eraser.verdict.v1"

    upload_id: Identifier = Field(description="The upload event's CloudEvent id.")
    content_id: str = Field(
        max_length=256, description="The platform's content id ('' if the upload had none)."
    )
    verdict: Literal["clean", "match", "error"] = Field(description="The outcome of the scan.")
    matches: list[Match] = Field(default_factory=list, description="Every entry matched.")
    error: Annotated[str, StringConstraints(max_length=512)] | None = Field(
        default=None, description="Why the scan failed, when verdict is 'error'."
    )
    scanned_at: AwareDatetime = Field(description="When eraser reached the verdict.")

    @model_validator(mode="after")
    def _consistent(self) -> VerdictIssued:
        if (self.verdict == "match") != bool(self.matches):
            raise ValueError("a 'match' verdict needs matches, and only it may have them")
        if (self.verdict == "error") != (self.error is not None):
            raise ValueError("an 'error' verdict needs an error, and only it may have one")
        return self


class ActionDecided(Schema):
    """A removal service should act on a piece of content; ids repeat for repeated decisions."""

    TYPE: ClassVar[str] = "eraser.action.v1"

    action: ActionKind = Field(description="What to do with the content.")
    content_id: Identifier = Field(description="The platform's id for the content.")
    upload_id: Identifier = Field(description="The upload event that led to the decision.")
    bank: BankName = Field(description="The bank of the matched entry.")
    entry_id: Identifier = Field(description="The matched entry.")
    signal: Signal = Field(description="The signal behind the decision.")
    distance: int = Field(ge=0, le=256, description="Hamming distance (0 for exact signals).")
    reason: Annotated[str, StringConstraints(max_length=512)] = Field(
        description="Why this action, in words."
    )
    decided_at: AwareDatetime = Field(description="When the action was decided.")
    face: FaceHit | None = Field(
        default=None, description="For a face match: which face of the upload, how similar."
    )


class BankPolicy(Schema):
    """How one bank's matches are found and acted on."""

    pdq_threshold: int = Field(
        default=31, ge=0, le=35, description="PDQ match distance (the exact index answers to 35)."
    )
    auto_threshold: int = Field(
        default=24,
        ge=0,
        le=35,
        description="PDQ distance at or under which to act unreviewed (at most pdq_threshold).",
    )
    action: ActionKind = Field(default="remove", description="The automatic action.")
    quality_floor: int = Field(default=50, ge=0, le=100, description="Minimum PDQ quality.")
    embedding_threshold: float = Field(
        default=0.93, ge=0, le=1, description="Embedding cosine at or above which to match."
    )
    agreement_pdq_threshold: int = Field(
        default=64,
        ge=0,
        le=128,
        description="Two weaker signals agreeing also match: PDQ within this distance ...",
    )
    agreement_embedding_threshold: float = Field(
        default=0.80,
        ge=0,
        le=1,
        description="... and embedding cosine at or above this.",
    )
    keypoint_threshold: int = Field(
        default=20,
        ge=1,
        le=256,
        description="Keypoints in geometric agreement at or above which to match (unrelated "
        "photographs reach 9 on the accuracy benchmark).",
    )
    agreement_keypoint_threshold: int = Field(
        default=10,
        ge=1,
        le=256,
        description="Two weaker signals agreeing also match: this many keypoints in geometric "
        "agreement and an embedding cosine at or above agreement_embedding_threshold.",
    )
    faces: bool = Field(
        default=False,
        description="The bank may hold faces (biometric data: opt in, with consent), and uploads "
        "are searched for them. A face match alone only ever asks for review.",
    )
    face_threshold: float = Field(
        default=0.45, ge=0, le=1, description="Face embedding cosine at or above which to match."
    )
    face_agreement: int = Field(
        default=1,
        ge=1,
        le=16,
        description="How many of a subject's registered faces an upload's face must match.",
    )
    vpdq_match_percent: float = Field(
        default=80.0,
        ge=0,
        le=100,
        description="A video upload matches a registered video when at least this share (%) of "
        "its distinct frames of quality >= 50 are within pdq_threshold of the video's frames "
        "(vPDQ's query match percentage).",
    )
    enabled: bool = Field(default=True, description="Disabled banks neither match nor act.")
    negative: bool = Field(
        default=False,
        description="Entries are known false positives (a stock photo, say): an upload matching "
        "one gets no action from any bank.",
    )
    reviewers: int = Field(
        default=1,
        ge=1,
        le=2,
        description="Reviewers who must agree on a review item of this bank before its decision "
        "(a removal, or a rejection) takes effect.",
    )

    @model_validator(mode="after")
    def _auto_within_match(self) -> BankPolicy:
        # Only matches (distance <= pdq_threshold) reach the action policy, so a larger
        # auto_threshold would claim unreviewed actions that can never happen: refuse it.
        if self.auto_threshold > self.pdq_threshold:
            raise ValueError(
                f"auto_threshold ({self.auto_threshold}) must be at most "
                f"pdq_threshold ({self.pdq_threshold})"
            )
        if self.agreement_keypoint_threshold > self.keypoint_threshold:
            raise ValueError(
                f"agreement_keypoint_threshold ({self.agreement_keypoint_threshold}) must be at "
                f"most keypoint_threshold ({self.keypoint_threshold})"
            )
        return self


class BankConfigured(BankPolicy):
    """A bank's policy was set; keyed by bank name on the banks topic (a tombstone resets it)."""

    TYPE: ClassVar[str] = "eraser.bank.v1"

    bank: BankName = Field(description="The bank.")
    description: Annotated[str, StringConstraints(max_length=512)] = Field(
        default="", description="What the bank holds and who feeds it."
    )

    def policy(self) -> BankPolicy:
        """The policy alone, without the bank's name and description."""
        return BankPolicy.model_validate(self.model_dump(include=set(BankPolicy.model_fields)))


class Signals(Schema):
    """The hashes registered for one protected image; the image itself is never kept."""

    pdq: list[Hex256] = Field(
        default_factory=list, max_length=64, description="PDQ hashes of the image (or its crops)."
    )
    sha256: Hex256 | None = Field(default=None, description="SHA-256 of the original file.")
    md5: Hex128 | None = Field(default=None, description="MD5 of the original file.")
    embedding: list[Embedding] = Field(
        default_factory=list,
        max_length=32,
        description="Image embeddings of the image and of crops and small rotations of it.",
    )
    keypoints: KeypointsText | None = Field(
        default=None, description="ORB keypoints of the image, for geometric verification."
    )
    face: FaceEmbedding | None = Field(
        default=None, description="A face entry's one face embedding (and no other signal)."
    )
    vpdq: list[VpdqFeature] = Field(
        default_factory=list,
        max_length=10_000,
        description="A registered video's frame hashes (vPDQ), in order; the entry is a video.",
    )
    frame_views: list[Hex256] = Field(
        default_factory=list,
        max_length=10_000,
        description="A registered video's frames seen without what copies add: PDQ of each kept "
        "frame's centre 70% and of its content without bars (eraser's own; vPDQ lists lack it).",
    )

    @model_validator(mode="after")
    def _not_empty(self) -> Signals:
        image = self.pdq or self.sha256 or self.md5 or self.embedding or self.keypoints
        if self.vpdq and (self.pdq or self.embedding or self.keypoints or self.face):
            raise ValueError("a video's signals are its frames (vpdq) and file digests")
        if self.frame_views and not self.vpdq:
            raise ValueError("frame_views are views of a video's frames (vpdq)")
        if not (image or self.face or self.vpdq):
            raise ValueError("at least one signal is required")
        if image and self.face:
            raise ValueError("a face is an entry of its own, with no image signal beside it")
        if self.keypoints and not self.embedding:
            # Keypoints are checked for the entries an upload's embedding shortlists.
            raise ValueError("keypoints need an embedding beside them")
        return self


class EntryRegistered(Schema):
    """A protected image was registered (or re-registered) in a bank; keyed by entry_id."""

    TYPE: ClassVar[str] = "eraser.registration.v1"

    entry_id: Identifier = Field(description="Stable id of the entry; the record key.")
    bank: BankName = Field(description="The bank the entry belongs to.")
    signals: Signals = Field(description="The entry's hashes.")
    labels: dict[str, str] = Field(
        default_factory=dict, max_length=64, description="Free-form string labels."
    )
    subject: Identifier | None = Field(
        default=None,
        description="The person the entry is of: the photographs and faces registered for one "
        "child share it, so a face match and an image match of the same subject can agree.",
    )


class AuditRecorded(Schema):
    """Someone changed what eraser protects: who, what and why (never media or personal data)."""

    TYPE: ClassVar[str] = "eraser.audit.v1"

    actor: Identifier = Field(description="Who: an operator, an admin-API token's name.")
    operation: Literal[
        "register",
        "withdraw",
        "import",
        "set-bank",
        "reset-bank",
        "review-view",
        "review-reveal",
        "review-claim",
        "review-skip",
        "review-decide",
        "case-open",
    ] = Field(
        description="What was done (review-*: in the review console; case-*: by a requester)."
    )
    bank: BankName | None = Field(default=None, description="The bank concerned, if one.")
    batch: Identifier | None = Field(default=None, description="The import batch, if one.")
    entry_ids: list[Identifier] = Field(
        default_factory=list, max_length=1000, description="The entries (up to 1,000 listed)."
    )
    count: int = Field(ge=0, description="How many entries were affected in all.")
    reason: Annotated[str, StringConstraints(max_length=1024)] = Field(
        description="Why, in the actor's words (a request reference, not personal data)."
    )
    details: dict[str, str] = Field(
        default_factory=dict, max_length=32, description="Operation details (policy, format)."
    )


class ActionResultReported(Schema):
    """A removal service reports what became of an action: taken down, failed, or refused."""

    TYPE: ClassVar[str] = "eraser.action-result.v1"

    action_id: Identifier = Field(description="The CloudEvent id of the eraser.action.v1 acted on.")
    outcome: Literal["done", "failed", "refused"] = Field(
        description="done: the content is down (or hidden); failed: it could not be, yet; "
        "refused: the platform decided not to act."
    )
    reason: Annotated[str, StringConstraints(max_length=512)] = Field(
        default="", description="Why, in a short phrase (no personal data)."
    )


DataT = TypeVar("DataT", bound=Schema)


class CloudEvent(BaseModel, Generic[DataT]):
    """A CloudEvents 1.0 envelope in structured JSON mode; extension attributes are kept."""

    model_config = ConfigDict(frozen=True, extra="allow")

    specversion: Literal["1.0"] = Field(description="CloudEvents version.")
    id: Identifier = Field(description="Unique per event; repeats of one event share it.")
    source: Identifier = Field(description="Who produced the event (URI reference).")
    type: str = Field(description="Event type and version, e.g. eraser.upload.v1.")
    time: AwareDatetime = Field(description="When the event happened (RFC 3339).")
    datacontenttype: Literal["application/json"] = Field(
        default="application/json", description="Always application/json."
    )
    subject: str | None = Field(default=None, description="Optional CloudEvents subject.")
    data: DataT = Field(description="The event payload.")

    @model_validator(mode="after")
    def _extensions_are_well_formed(self) -> CloudEvent[DataT]:
        for name, value in (self.model_extra or {}).items():
            if not _EXTENSION_NAME.match(name):
                raise ValueError(f"extension attribute name {name[:24]!r} is not [a-z0-9]{{1,20}}")
            if not isinstance(value, str | int | bool):
                raise ValueError(f"extension attribute {name!r} must be a string, integer or bool")
        return self


def event_id(*parts: str) -> str:
    """A deterministic event id, so a repeated decision is recognisable as a repeat."""
    return str(uuid.uuid5(_ID_NAMESPACE, "\x1f".join(parts)))


def now() -> datetime:
    """The current time, timezone-aware (UTC)."""
    return datetime.now(UTC)


def new_event(
    data: DataT, *, id: str, source: str, time: datetime | None = None
) -> CloudEvent[DataT]:
    """Wrap ``data`` in a CloudEvent of its own type."""
    envelope: Any = _envelope(type(data))
    event: CloudEvent[DataT] = envelope(
        specversion=SPEC_VERSION,
        id=id,
        source=source,
        type=data.TYPE,
        time=time or now(),
        data=data,
    )
    return event


@functools.cache
def _envelope(model: type[Schema]) -> Any:
    """``CloudEvent[model]``, built once per process.

    Pydantic keeps parametrized models only weakly: between batches the garbage collector took
    them and each verdict paid for building the class and its validator again.
    """
    return CloudEvent[model]  # type: ignore[valid-type]


def encode(event: CloudEvent[Any]) -> bytes:
    """Serialise an event as compact JSON (absent optional fields are left out)."""
    return event.model_dump_json(exclude_none=True).encode()


def parse_event(raw: bytes | None, model: type[DataT]) -> CloudEvent[DataT]:
    """Validate a raw record as a CloudEvent carrying ``model``.

    Raises:
        MalformedEventError: the bytes are not JSON, not a CloudEvent, or the data is invalid.
        UnsupportedEventError: the event is of another type or version.
    """
    document = _json_object(raw)
    seen_type = document.get("type")
    if seen_type != model.TYPE:
        raise UnsupportedEventError(f"unsupported event type {str(seen_type)[:64]!r}")
    try:
        parsed: CloudEvent[DataT] = _envelope(model).model_validate(document)
        return parsed
    except ValidationError as error:
        raise MalformedEventError(f"invalid event: {describe(error)}") from None


def readable_fields(raw: bytes | None) -> tuple[str | None, str | None]:
    """Best-effort (event id, content id) of a record that failed validation, for error verdicts."""
    try:
        document = _json_object(raw)
    except MalformedEventError:
        return None, None
    event_id_, data = document.get("id"), document.get("data")
    content_id = data.get("content_id") if isinstance(data, dict) else None
    return (
        event_id_ if isinstance(event_id_, str) and 0 < len(event_id_) <= 256 else None,
        content_id if isinstance(content_id, str) and len(content_id) <= 256 else None,
    )


def describe(error: ValidationError) -> str:
    """Summarise a validation error by field and problem, never echoing the input values."""
    parts = []
    for item in error.errors(include_url=False, include_input=False, include_context=False)[:5]:
        location = ".".join(str(part) for part in item["loc"]) or "event"
        parts.append(f"{location}: {item['msg']}")
    return "; ".join(parts)[:400]


def _json_object(raw: bytes | None) -> dict[str, Any]:
    if raw is None:
        raise MalformedEventError("empty record")
    try:
        document = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError):
        raise MalformedEventError("record is not JSON") from None
    if not isinstance(document, dict):
        raise MalformedEventError("record is not a JSON object")
    return document


PUBLIC_EVENTS: tuple[type[Schema], ...] = (
    UploadReceived,
    VerdictIssued,
    ActionDecided,
    EntryRegistered,
    BankConfigured,
    AuditRecorded,
    ActionResultReported,
)
INTERNAL_EVENTS: tuple[type[Schema], ...] = (MediaHashed,)


def embedding_to_text(vector: Any) -> str:
    """An embedding (1280 floats) in its wire form: float16, little-endian, base64."""
    import numpy as np

    return base64.b64encode(np.asarray(vector, dtype="<f2").tobytes()).decode()


def embedding_from_text(text: str) -> Any:
    """An embedding from its wire form, as 1280 float32."""
    import numpy as np

    return np.frombuffer(base64.b64decode(text), dtype="<f2").astype(np.float32)
