"""Dead letters: published whole to the dead-letter topic (:mod:`.topic`), copied into the
``dead_letters`` table by the recorder worker, and searched, replayed or discarded there
(:mod:`.store`)."""

from .store import (
    ATTEMPT_HEADER,
    REPLAY_HEADER,
    REPLAY_HEADERS,
    DeadLetterStore,
    Filter,
    decode_cursor,
    encode_cursor,
    new_attempt,
    public,
    row_from_record,
    summary,
)
from .topic import Stage, dead_letter

__all__ = [
    "ATTEMPT_HEADER",
    "REPLAY_HEADER",
    "REPLAY_HEADERS",
    "DeadLetterStore",
    "Filter",
    "Stage",
    "dead_letter",
    "decode_cursor",
    "encode_cursor",
    "new_attempt",
    "public",
    "row_from_record",
    "summary",
]
