"""Bank policy: what to do about a match verdict, entry by entry.

For each matched entry the strongest signal counts: an exact digest (SHA-256, MD5) beats PDQ, PDQ
beats keypoints, keypoints beat the embedding, and the smallest distance wins. Exact matches, PDQ
matches at or under the bank's auto threshold, and matches where two signals agree (PDQ and the
embedding, or enough keypoints and either) get the bank's action; a weaker PDQ match, keypoints
alone, fewer keypoints with an embedding (two photographs of the same objects can agree that
far), or the embedding alone, goes to human review. A video upload matching a registered video
(vpdq) counts as PDQ does, by the median distance of its matched frames. A face match says "this
may be the child", not "this is the registered photograph": alone it only ever asks for review,
whatever the bank's action; when a face and an image signal of the same subject both match, the
bank's action applies to both entries. A match in a negative bank (known false positives, such as
a stock photo) means no action at all for that upload.
"""

from __future__ import annotations

from datetime import datetime

from services.shared.banks import BankBook
from services.shared.schemas import ActionDecided, BankPolicy, Match, VerdictIssued

_EXACT = ("sha256", "md5")


def decide(verdict: VerdictIssued, policies: BankBook, decided_at: datetime) -> list[ActionDecided]:
    """The actions a match verdict calls for: one per matched entry, in entry order."""
    if suppressed(verdict, policies):
        return []
    signals: dict[tuple[str, str], set[str]] = {}
    for match in verdict.matches:
        signals.setdefault((match.bank, match.entry_id), set()).add(match.signal)
    agreeing = _face_and_image_agree(verdict.matches)
    decided = []
    for match in strongest_per_entry(verdict.matches):
        policy = policies.for_bank(match.bank)
        action = _action(verdict, match, policy, signals[(match.bank, match.entry_id)], decided_at)
        if match.subject in agreeing and action.action == "review":
            other = "an image signal" if match.signal == "face" else "a face"
            reason = f"{match.signal} and {other} of the same subject agree"
            action = action.model_copy(update={"action": policy.action, "reason": reason})
        decided.append(action)
    return decided


def _face_and_image_agree(matches: list[Match]) -> set[str]:
    """The subjects that both a face match and an image match (any other signal) name."""
    faces = {m.subject for m in matches if m.signal == "face" and m.subject}
    images = {m.subject for m in matches if m.signal != "face" and m.subject}
    return faces & images


def suppressed(verdict: VerdictIssued, policies: BankBook) -> bool:
    """Whether the upload matched a negative bank, which vetoes every action."""
    return any(policies.for_bank(match.bank).negative for match in verdict.matches)


def strongest_per_entry(matches: list[Match]) -> list[Match]:
    """The strongest match of each entry."""
    best: dict[tuple[str, str], Match] = {}
    for match in matches:
        key = (match.bank, match.entry_id)
        if key not in best or _strength(match) > _strength(best[key]):
            best[key] = match
    return [best[key] for key in sorted(best)]


def _strength(match: Match) -> tuple[bool, bool, bool, int]:
    signal = match.signal
    return signal in _EXACT, signal in ("pdq", "vpdq"), signal == "keypoints", -match.distance


def _action(
    verdict: VerdictIssued,
    match: Match,
    policy: BankPolicy,
    signals: set[str],
    decided_at: datetime,
) -> ActionDecided:
    if match.signal in _EXACT:
        action, reason = policy.action, f"{match.signal} equal to the registered file"
    elif match.signal == "vpdq":
        auto = match.distance <= policy.auto_threshold
        action = policy.action if auto else "review"
        reason = (
            f"vpdq: {match.match_percent:g}% of the video's frames matched, median distance "
            f"{match.distance} {'<=' if auto else '>'} auto threshold {policy.auto_threshold}"
        )
    elif match.signal == "pdq" and match.distance <= policy.auto_threshold:
        action = policy.action
        reason = f"pdq distance {match.distance} <= auto threshold {policy.auto_threshold}"
    elif match.signal == "keypoints" and 256 - match.distance < policy.keypoint_threshold:
        action = "review"  # fewer keypoints than match alone, with an embedding: a person looks
        reason = f"{256 - match.distance} keypoints and an embedding agree, below the keypoint "
        reason += f"threshold ({policy.keypoint_threshold}): needs a person"
    elif {"pdq", "embedding"} <= signals:
        action = policy.action
        reason = f"pdq (distance {match.distance}) and embedding agree"
    elif "keypoints" in signals and signals & {"pdq", "embedding"}:
        action = policy.action
        reason = f"keypoints and {' and '.join(sorted(signals - {'keypoints'}))} agree"
    elif match.signal == "pdq":
        action = "review"
        reason = f"pdq distance {match.distance} > auto threshold {policy.auto_threshold}"
    elif match.signal == "keypoints":
        action = "review"
        agreeing = f"{256 - match.distance}" if match.distance else "256 or more"
        reason = f"{agreeing} keypoints agree, no other signal: needs a person"
    elif match.signal == "face":
        action = "review"
        reason = "a face alone may be the child, not this photograph: a person must confirm"
    else:
        action = "review"
        reason = "embedding alone: needs a person to confirm"
    if match.timestamps:
        reason += f"; in the video at {_times(match.timestamps)}"
    return ActionDecided(
        action=action,
        content_id=verdict.content_id,
        upload_id=verdict.upload_id,
        bank=match.bank,
        entry_id=match.entry_id,
        signal=match.signal,
        distance=match.distance,
        reason=reason,
        decided_at=decided_at,
        face=match.face,
    )


def _times(timestamps: list[float]) -> str:
    """When a video's frames matched, for the action's reason: the first few, in seconds."""
    shown = ", ".join(f"{t:.1f}" for t in timestamps[:5])
    return f"{shown} s" + (f" and {len(timestamps) - 5} more" if len(timestamps) > 5 else "")
