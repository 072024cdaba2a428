"""Configuration, read once from environment variables in each service's entrypoint.

Every setting has a production-sane default and is frozen after start. Groups are composed:
a service's settings hold the Kafka connection, the topic names and its own knobs, each read with
its own prefix (``KAFKA_``, ``ERASER_TOPIC_``, ``ERASER_INGEST_`` ...). docs/operations.md lists
them all.
"""

from __future__ import annotations

import ipaddress
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    Field,
    SecretStr,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from services.shared.schemas import BankName, BankPolicy

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


class KafkaSettings(BaseSettings):
    """How to reach the Kafka cluster (``KAFKA_*``)."""

    model_config = SettingsConfigDict(env_prefix="KAFKA_", frozen=True)

    bootstrap_servers: str = "localhost:9092"
    security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = "PLAINTEXT"
    sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] | None = None
    sasl_username: str | None = None
    sasl_password: SecretStr | None = None
    ssl_cafile: Path | None = None
    client_id: str = "eraser"
    # A batch must be processed well inside this; it is also how long a consumer-group join may
    # take, so it is kept short rather than Kafka's 5-minute default.
    max_poll_interval_ms: int = Field(default=10_000, ge=1_000)
    session_timeout_ms: int = Field(default=10_000, ge=1_000)
    heartbeat_interval_ms: int = Field(default=1_000, ge=100)
    # How long the broker may hold a fetch that finds nothing. Apache Kafka answers a held fetch
    # as soon as a record arrives, so there it only sets how often an idle consumer asks (deploy/
    # sets Kafka's own 500); the embedded broker answers it late, a median quarter of the wait,
    # so on it this is latency on every hop. Short, at the price of idle polling
    # (docs/operations.md: what was measured, and on which broker).
    fetch_max_wait_ms: int = Field(default=10, ge=0)
    request_timeout_ms: int = Field(default=30_000, ge=1_000)
    # Offsets are committed at most this often (and always before partitions go and at a clean
    # stop): a crash replays at most this much more, with the same event ids, while a commit per
    # batch cost a broker round trip for every few records.
    commit_interval_ms: int = Field(default=500, ge=0)
    # How long producing may block: send() waiting for metadata or buffer space, and the consume
    # loop's flush waiting for acknowledgements. Past it the batch fails without a commit.
    produce_timeout_ms: int = Field(default=30_000, ge=1_000)

    def client_options(self) -> dict[str, Any]:
        """Connection options shared by kafka-python's producer, consumer and admin client."""
        options: dict[str, Any] = {
            "bootstrap_servers": self.bootstrap_servers.split(","),
            "security_protocol": self.security_protocol,
            "client_id": self.client_id,
            "request_timeout_ms": self.request_timeout_ms,
        }
        if self.sasl_mechanism:
            options["sasl_mechanism"] = self.sasl_mechanism
            options["sasl_plain_username"] = self.sasl_username
            options["sasl_plain_password"] = (
                self.sasl_password.get_secret_value() if self.sasl_password else None
            )
        if self.ssl_cafile:
            options["ssl_cafile"] = str(self.ssl_cafile)
        return options


class TopicSettings(BaseSettings):
    """Topic names and how to create them (``ERASER_TOPIC_*``)."""

    model_config = SettingsConfigDict(env_prefix="ERASER_TOPIC_", frozen=True)

    uploads: str = "eraser.uploads"
    hashes: str = "eraser.hashes"
    verdicts: str = "eraser.verdicts"
    actions: str = "eraser.actions"
    registry: str = "eraser.registry"
    banks: str = "eraser.banks"
    audit: str = "eraser.audit"
    review: str = "eraser.review"
    cases: str = "eraser.cases"
    action_results: str = "eraser.action-results"
    ingest_dlq: str = "eraser.ingest.dlq"
    matcher_dlq: str = "eraser.matcher.dlq"
    actions_dlq: str = "eraser.actions.dlq"
    partitions: int = Field(default=6, ge=1, description="Partitions of the streaming topics.")
    registry_partitions: int = Field(default=1, ge=1)
    replication_factor: int = Field(default=1, ge=1)


class PolicySettings(BaseSettings):
    """Fallback bank policies: ``ERASER_BANKS`` (JSON, bank → policy) and the default.

    Policies published on the banks topic (``eraser bank set``, the admin API) take precedence.
    """

    model_config = SettingsConfigDict(env_prefix="ERASER_", frozen=True)

    banks: dict[BankName, BankPolicy] = Field(default_factory=dict)
    default_policy: BankPolicy = Field(default_factory=BankPolicy)

    def for_bank(self, bank: str) -> BankPolicy:
        """The policy of ``bank``, or the default."""
        return self.banks.get(bank, self.default_policy)

    def widest_pdq_threshold(self) -> int:
        """The largest PDQ distance any bank accepts: the radius to search the index with."""
        return max(
            [self.default_policy.pdq_threshold, *(p.pdq_threshold for p in self.banks.values())]
        )


class MediaSettings(BaseSettings):
    """Where media may come from and how large it may be (``ERASER_*``)."""

    model_config = SettingsConfigDict(env_prefix="ERASER_", frozen=True)

    media_root: Path | None = Field(default=None, description="The only folder file:// may read.")
    max_media_bytes: int = Field(default=32 * 1024 * 1024, ge=1024)
    max_pixels: int = Field(default=64_000_000, ge=64 * 64)
    fetch_connect_timeout_s: float = Field(default=3.0, gt=0)
    fetch_read_timeout_s: float = Field(default=10.0, gt=0, description="Longest wait for bytes.")
    fetch_deadline_s: float = Field(
        default=10.0,
        gt=0,
        description="The whole fetch of one upload: attempts, redirects, connections, bytes.",
    )
    fetch_attempts: int = Field(default=3, ge=1, le=10)
    fetch_max_redirects: int = Field(default=5, ge=0, le=20)
    fetch_allowed_hosts: Annotated[tuple[str, ...], NoDecode] = Field(
        default=(), description="If set, the only hosts http(s) may fetch from."
    )
    fetch_allowed_networks: Annotated[tuple[Network, ...], NoDecode] = Field(
        default=(), description="Private or reserved networks fetching may reach anyway."
    )

    @field_validator("fetch_allowed_hosts", "fetch_allowed_networks", mode="before")
    @classmethod
    def _comma_separated(cls, value: Any) -> Any:
        if isinstance(value, str):
            return tuple(part.strip() for part in value.split(",") if part.strip())
        return value

    @model_validator(mode="after")
    def _root_is_absolute(self) -> MediaSettings:
        if self.media_root is not None and not self.media_root.is_absolute():
            raise ValueError("ERASER_MEDIA_ROOT must be an absolute path")
        return self


_FRAME_BYTES, _KEY_FRAME_BYTES, _RECORD_BUDGET = 480, 35_000, 900_000


class VideoSettings(BaseSettings):
    """How ingest scans videos, and the hard limits on each (``ERASER_VIDEO_*``).

    Bytes are capped by ``ERASER_MAX_MEDIA_BYTES`` like every upload. Decoding is the cost
    (every frame is decoded, in order): the limits bound it before decoding, from the header,
    and while decoding, frame by frame.
    """

    model_config = SettingsConfigDict(env_prefix="ERASER_VIDEO_", frozen=True)

    enabled: bool = Field(default=True, description="Scan videos; off, they get error verdicts.")
    max_pixels: int = Field(default=4096 * 2160, ge=64 * 64, description="Per frame.")
    max_duration_s: float = Field(default=600.0, gt=0, description="Declared or decoded.")
    max_frames: int = Field(default=36_000, ge=1, description="Frames decoded per video.")
    max_scan_s: float = Field(
        default=60.0, gt=0, description="Wall time to decode and hash a video (lowered: see below)."
    )
    seconds_per_hash: float = Field(
        default=1.0, gt=0, description="vPDQ sampling of uploads: one frame per this many seconds."
    )
    max_hashed_frames: int = Field(
        default=300,
        ge=1,
        le=3600,
        description="At most this many frames hashed per video: longer ones are sampled sparser.",
    )
    key_frames: int = Field(
        default=16,
        ge=0,
        le=64,
        description="Frames per video that also get embeddings and keypoints (scene changes).",
    )

    @model_validator(mode="after")
    def _fits_one_record(self) -> VideoSettings:
        """Refuse caps whose hashed video could outgrow a Kafka record (1 MB by default).

        A hashed frame takes up to about 480 bytes on the wire, a key frame's embeddings and
        keypoints about 27 KB more, and its faces up to 8 KB (16 faces of ~500 B).
        """
        size = self.max_hashed_frames * _FRAME_BYTES + self.key_frames * _KEY_FRAME_BYTES
        if size > _RECORD_BUDGET:
            raise ValueError(
                f"max_hashed_frames x {_FRAME_BYTES} B + key_frames x {_KEY_FRAME_BYTES} B "
                f"is {size} B, over the {_RECORD_BUDGET} B a hashed-media record may take"
            )
        return self


class ServiceSettings(BaseSettings):
    """What every service has: Kafka, topics, its consumer group, batch size and HTTP port."""

    model_config = SettingsConfigDict(frozen=True)

    kafka: KafkaSettings = Field(default_factory=KafkaSettings)
    topics: TopicSettings = Field(default_factory=TopicSettings)
    group_id: str
    batch_size: int = Field(ge=1, le=10_000)
    http_port: int = Field(ge=0, le=65535, description="/metrics, /healthz, /readyz; 0 = off.")
    fetch_max_wait_ms: int | None = Field(
        default=None,
        ge=0,
        description="The input consumer's fetch wait (unset: KAFKA_FETCH_MAX_WAIT_MS).",
    )
    liveness_timeout_s: float | None = Field(
        default=None,
        gt=0,
        description="/healthz fails when a consume-loop iteration takes longer (unset: derived).",
    )

    @field_validator("liveness_timeout_s")
    @classmethod
    def _outlasts_an_iteration(cls, timeout_s: float | None, info: ValidationInfo) -> float | None:
        """Refuse a bound a healthy iteration can reach: it would restart working processes."""
        kafka = info.data.get("kafka")
        if timeout_s is None or not isinstance(kafka, KafkaSettings):
            return timeout_s  # derived, or kafka invalid already and reported as such
        if timeout_s <= _longest_iteration_s(kafka):
            raise ValueError(
                "must exceed KAFKA_MAX_POLL_INTERVAL_MS + 2 x KAFKA_PRODUCE_TIMEOUT_MS (in s)"
            )
        return timeout_s

    def liveness_bound_s(self) -> float:
        """The liveness bound: as set, else twice the longest iteration a healthy loop takes."""
        return self.liveness_timeout_s or 2 * _longest_iteration_s(self.kafka)


def _longest_iteration_s(kafka: KafkaSettings) -> float:
    """A batch inside max_poll_interval_ms, then send() and the flush, each inside the timeout."""
    return (kafka.max_poll_interval_ms + 2 * kafka.produce_timeout_ms) / 1000


class IngestSettings(ServiceSettings):
    """Ingest (``ERASER_INGEST_*``)."""

    model_config = SettingsConfigDict(env_prefix="ERASER_INGEST_", frozen=True)

    group_id: str = "eraser-ingest"
    # Small: each upload's fetch gets interval / 2 / batch size (see below), and a batch of 4
    # scans takes about 0.2 s, so polling, producing and committing cost little per upload.
    batch_size: int = Field(default=4, ge=1, le=10_000)
    http_port: int = Field(default=9101, ge=0, le=65535)
    media: MediaSettings = Field(default_factory=MediaSettings, validate_default=True)
    embeddings: bool = Field(
        default=True, description="Compute image embeddings (about 12 ms per view on one core)."
    )
    keypoints: bool = Field(
        default=True, description="Compute ORB keypoints for geometric verification (a few ms)."
    )
    faces: bool = Field(
        default=True,
        description="Find faces and embed them while some bank has faces on (none: no face work).",
    )
    max_faces: int = Field(
        default=5, ge=1, le=16, description="Faces embedded per upload: the largest ones."
    )
    overlap_signals: bool = Field(
        default=True,
        description="Scan a lone upload on two threads (lower latency, a few % more CPU); "
        "off where a replica is limited to one core.",
    )
    video: VideoSettings = Field(default_factory=VideoSettings, validate_default=True)
    policies: PolicySettings = Field(default_factory=PolicySettings)

    @field_validator("media")
    @classmethod
    def _fetching_fits_the_poll_interval(
        cls, media: MediaSettings, info: ValidationInfo
    ) -> MediaSettings:
        """The fetch deadline, lowered to one upload's share of half the poll interval.

        kafka-python leaves the group when poll() is not called again within
        max_poll_interval_ms; the next owner of the partition redoes the whole batch, and a batch
        that is always too slow (uploads naming an origin that drips bytes) is redone forever.
        So a batch whose every upload runs into the deadline must still finish in time: fetching
        gets half the interval, decoding, hashing and producing the other half. Lowering rather
        than refusing to start keeps every consistent setup (a short interval in development, a
        long one for slow origins) working; the effective deadline is in every reason it causes.
        """
        kafka, batch_size = info.data.get("kafka"), info.data.get("batch_size")
        if not isinstance(kafka, KafkaSettings) or not isinstance(batch_size, int):
            return media  # invalid already, and reported as such
        share = kafka.max_poll_interval_ms / 1000 / 2 / batch_size
        if media.fetch_deadline_s <= share:
            return media
        return media.model_copy(update={"fetch_deadline_s": share})

    @field_validator("video")
    @classmethod
    def _scanning_fits_the_poll_interval(
        cls, video: VideoSettings, info: ValidationInfo
    ) -> VideoSettings:
        """The video scan's wall-time limit, lowered to one upload's share of the other half.

        Fetching gets half the poll interval (above); decoding and hashing a batch whose every
        upload is a video must fit in the other half, or the batch would be redone forever.
        """
        kafka, batch_size = info.data.get("kafka"), info.data.get("batch_size")
        if not isinstance(kafka, KafkaSettings) or not isinstance(batch_size, int):
            return video  # invalid already, and reported as such
        share = kafka.max_poll_interval_ms / 1000 / 2 / batch_size
        if video.max_scan_s <= share:
            return video
        return video.model_copy(update={"max_scan_s": share})


class MatcherSettings(ServiceSettings):
    """Matcher (``ERASER_MATCHER_*``)."""

    model_config = SettingsConfigDict(env_prefix="ERASER_MATCHER_", frozen=True)

    group_id: str = "eraser-matcher"
    # A batch must be searched well inside max_poll_interval_ms, or the consumer leaves its group
    # and the rejoin stalls every verdict: at 10M PDQ entries an upload's 12 hashes take about
    # 40 ms on a shared core, so 256 uploads overran a 3 s interval; 32 take about 1.2 s.
    batch_size: int = Field(default=32, ge=1, le=10_000)
    http_port: int = Field(default=9102, ge=0, le=65535)
    policies: PolicySettings = Field(default_factory=PolicySettings)
    snapshot_dir: Path | None = Field(
        default=None, description="Where to keep registry snapshots (a local volume); off if unset."
    )
    snapshot_interval_s: float = Field(
        default=600.0, gt=0, description="Snapshot at least this often."
    )
    delta_limit: int = Field(
        default=100_000,
        ge=1,
        description="Registrations held outside the generation before compacting.",
    )
    video_delta_frames: int = Field(
        default=200_000,
        ge=1,
        description="Registered video frames held outside the video generation before compacting.",
    )
    keypoint_candidates: int = Field(
        default=8,
        ge=0,
        le=64,
        description="Entries nearest by embedding whose keypoints are checked, per upload.",
    )
    keypoint_min_cosine: float = Field(
        default=0.5, ge=0, le=1, description="... if their embedding cosine is at least this."
    )
    snapshot_max_age_s: float = Field(
        default=12 * 3600.0,
        gt=0,
        description="Start from a snapshot only if it was current this recently; keep it under "
        "half the registry topic's delete.retention.ms, or withdrawals can be missed.",
    )


class ActionsSettings(ServiceSettings):
    """Actions (``ERASER_ACTIONS_*``)."""

    model_config = SettingsConfigDict(env_prefix="ERASER_ACTIONS_", frozen=True)

    group_id: str = "eraser-actions"
    batch_size: int = Field(default=256, ge=1, le=10_000)
    http_port: int = Field(default=9103, ge=0, le=65535)
    # Removal can wait a tenth of a second; a 10 ms wait would poll a hundred times a second,
    # which on a broker that holds empty fetches for the whole wait costs CPU for nothing.
    fetch_max_wait_ms: int | None = Field(default=100, ge=0)
    policies: PolicySettings = Field(default_factory=PolicySettings)
    dedup_window: int = Field(
        default=1_000_000, ge=0, description="How many recent action ids to remember."
    )
    # No default: unsigned actions would be refused by removal services, so refuse to start.
    signing_key: SecretStr = Field(min_length=16, description="HMAC-SHA256 key for actions.")
    signing_key_id: str = Field(default="1", pattern=r"^[A-Za-z0-9._-]{1,64}$")


class ReviewSettings(BaseSettings):
    """The review console and the requesters' case pages (``ERASER_REVIEW_*``).

    Nobody can sign in until ``ERASER_REVIEW_USERS`` names someone, and nothing is confirmed until
    the admin process holds the actions signing key: the console has no default account.
    """

    model_config = SettingsConfigDict(
        env_prefix="ERASER_REVIEW_", frozen=True, env_ignore_empty=True
    )

    # name:role:password-hash triples, comma-separated (`eraser review password` makes a hash).
    users: Annotated[dict[str, tuple[str, str]], NoDecode] = Field(default_factory=dict)
    session_key: SecretStr | None = Field(
        default=None, min_length=16, description="Signs session cookies and CSRF tokens."
    )
    session_hours: float = Field(default=8.0, gt=0, le=24 * 7)
    signing_key: SecretStr | None = Field(
        default=None,
        min_length=16,
        validation_alias="ERASER_ACTIONS_SIGNING_KEY",
        description="Confirmed removals are signed as the actions service signs its actions.",
    )
    signing_key_id: str = Field(
        default="1",
        pattern=r"^[A-Za-z0-9._-]{1,64}$",
        validation_alias="ERASER_ACTIONS_SIGNING_KEY_ID",
    )
    media_url: str | None = Field(
        default=None,
        description="Where the platform serves a content id's media, with {content_id} in it.",
    )
    claim_seconds: float = Field(default=600.0, gt=0, description="How long a claim lasts.")
    blur: bool = Field(default=True, description="Media blurred and grey until revealed.")
    negative_bank: BankName = Field(
        default="false-positives", description="Where rejected uploads' hashes go."
    )
    priorities: dict[str, int] = Field(
        default_factory=lambda: {"face": 0, "pdq": 1, "keypoints": 2, "embedding": 3},
        description="Queue order by signal: lower first; oldest first within one.",
    )
    pin_attempts: int = Field(default=5, ge=1, description="Wrong PINs a case allows per window.")
    pin_window_s: float = Field(default=900.0, gt=0)

    @field_validator("users", mode="before")
    @classmethod
    def _user_triples(cls, value: Any) -> Any:
        if not isinstance(value, str):
            return value
        users = {}
        for part in filter(None, (p.strip() for p in value.split(","))):
            name, _, rest = part.partition(":")
            role, _, hashed = rest.partition(":")
            if not name or role not in ("reviewer", "lead", "admin") or not hashed:
                raise ValueError("expected name:role:hash, role one of reviewer, lead, admin")
            users[name] = (role, hashed)
        return users

    @field_validator("media_url")
    @classmethod
    def _names_the_content(cls, value: str | None) -> str | None:
        if value is not None and "{content_id}" not in value:
            raise ValueError("must contain {content_id}")
        return value


class AdminSettings(BaseSettings):
    """The admin API (``ERASER_ADMIN_*``)."""

    model_config = SettingsConfigDict(env_prefix="ERASER_ADMIN_", frozen=True)

    kafka: KafkaSettings = Field(default_factory=KafkaSettings)
    topics: TopicSettings = Field(default_factory=TopicSettings)
    policies: PolicySettings = Field(default_factory=PolicySettings)
    http_port: int = Field(default=9104, ge=1, le=65535)
    # name:token pairs, comma-separated; the name is the actor in the audit log. No default.
    tokens: Annotated[dict[str, SecretStr], NoDecode] = Field(min_length=1)
    max_image_bytes: int = Field(default=32 * 1024 * 1024, ge=1024)
    review: ReviewSettings = Field(default_factory=ReviewSettings)
    media: MediaSettings = Field(default_factory=MediaSettings)

    @field_validator("tokens", mode="before")
    @classmethod
    def _name_token_pairs(cls, value: Any) -> Any:
        if not isinstance(value, str):
            return value
        pairs = [part.strip().split(":", 1) for part in value.split(",") if part.strip()]
        if any(len(pair) != 2 or not pair[0] or len(pair[1]) < 16 for pair in pairs):
            raise ValueError("expected name:token pairs, each token at least 16 characters")
        return dict(pairs)


# How to fix the settings people most often leave out; every other problem points at the docs.
_FIXES = {
    "ERASER_ACTIONS_SIGNING_KEY": "removal services verify actions with it; set a random one, "
    "e.g. export ERASER_ACTIONS_SIGNING_KEY=$(openssl rand -hex 32)",
    "ERASER_ADMIN_TOKENS": "set name:token pairs, "
    "e.g. export ERASER_ADMIN_TOKENS=ops:$(openssl rand -hex 16)",
}
_SETTINGS = {
    kind.__name__: kind
    for kind in (
        KafkaSettings,
        TopicSettings,
        PolicySettings,
        MediaSettings,
        IngestSettings,
        MatcherSettings,
        ActionsSettings,
        ReviewSettings,
        AdminSettings,
    )
}


def configuration_problems(*kinds: type[BaseSettings]) -> list[str]:
    """One line per environment variable that is missing or wrong for any of ``kinds``."""
    problems: list[str] = []
    for kind in kinds:
        problems += [line for line in _problems(kind) if line not in problems]
    return problems


def _problems(kind: type[BaseSettings]) -> list[str]:
    """Every problem of ``kind``'s variables, its groups' (Kafka, media, ...) and its own.

    Building settings stops at the first group that fails; that group is then stood in for by its
    defaults, unchecked, so the settings after it are checked too.
    """
    problems: list[str] = []
    stand_ins: dict[str, Any] = {}
    while True:
        try:
            kind(**stand_ins)
        except ValidationError as error:
            problems += explain(error)
            group = _field_of_type(kind, error.title)
            if group is None or group in stand_ins:
                return problems
            group_type: Any = kind.model_fields[group].annotation
            stand_ins[group] = group_type.model_construct()
        else:
            return problems


def _field_of_type(kind: type[BaseSettings], type_name: str) -> str | None:
    """The field of ``kind`` that holds settings of the type named ``type_name``, if any."""
    fields = kind.model_fields.items()
    return next((n for n, f in fields if getattr(f.annotation, "__name__", "") == type_name), None)


def explain(error: ValidationError) -> list[str]:
    """Each problem of a settings ``error`` as one line: the variable, what is wrong, the fix."""
    kind = _SETTINGS.get(error.title)
    prefix = str(kind.model_config.get("env_prefix", "")) if kind else ""
    lines = []
    for item in error.errors(include_url=False, include_input=False):
        variable = f"{prefix}{item['loc'][0]}".upper() if item["loc"] else error.title
        what = "not set" if item["type"] == "missing" else item["msg"]
        fix = _FIXES.get(variable, "docs/operations.md lists every setting")
        lines.append(f"{variable}: {what}; {fix}")
    return lines
