"""Dead letters: published whole to the dead-letter topic (:mod:`.topic`), copied into the
``dead_letters`` table by the recorder worker, and searched, replayed or discarded there
(:mod:`.store`)."""

from .store import REPLAY_HEADER, DeadLetterStore, Filter, public, row_from_record
from .topic import Stage, dead_letter

__all__ = [
    "REPLAY_HEADER",
    "DeadLetterStore",
    "Filter",
    "Stage",
    "dead_letter",
    "public",
    "row_from_record",
]
