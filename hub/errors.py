"""The hub's errors, one small tree.

    HubError
     ├── ConfigError            a hub.yaml or mapping file is wrong (file, path, line, what)
     ├── WebhookRejected        ingress refuses a request; carries its HTTP status
     │    ├── UnknownConnection      404
     │    ├── BadSignature           401
     │    ├── PayloadTooLarge        413
     │    ├── UnsupportedMediaType   415
     │    └── MalformedPayload       400
     ├── BrokerUnavailable      the broker did not acknowledge in time (retriable)
     ├── ProcessingError        an event could not be processed; `retriable` says what to do
     │    ├── MappingFailed          a mapping raised (fatal): mapping, field, input path
     │    ├── SchemaViolation        output fails its canonical schema (fatal)
     │    ├── RouteConditionFailed   a route's `when:` could not be evaluated (fatal)
     │    ├── MasterDataUnavailable  a golden-id lookup could not be answered now (retriable)
     │    ├── CompletionFailed       what a webhook leaves out could not be read from its
     │    │                          system (retriable as the request was)
     │    └── DeliveryFailed         a destination refused or failed
     │         ├── DeliveryRetriable     5xx, 429, timeouts, connection errors
     │         └── DeliveryRejected      other 4xx: fatal
     ├── RequestFailed          a connector's request to its system failed (connectors/rest.py)
     │    ├── RequestRetriable       5xx, 408, 425, 429, timeouts, connection errors
     │    └── RequestRefused         other 4xx, or a request that cannot be sent: fatal
     ├── ConnectionCheckFailed  `hub connectors check`: a connection cannot reach its system
     ├── CrosswalkConflict      an external id is linked to another golden id already
     ├── MdmRefused             a merge, unmerge or review decision that cannot be made
     │                          (unknown id: 404, state does not allow it: 409)
     ├── DatabaseUnavailable    the state database cannot be opened
 ├── DatabaseSchemaError    the database's schema is not one this hub can run on, or its
 │    │                     upgrade failed (hub.migrations)
 │    ├── DatabaseTooNew         migrated by a newer hub (a revision this code does not know)
 │    └── DatabaseNotUpgraded    older than this hub, and migrations do not run here
     └── BrokerStartError       the embedded broker could not be started

Classification is by type: code that handles a failure asks `err.retriable`, never the message.
"""

from __future__ import annotations

from dataclasses import dataclass


class HubError(Exception):
    """Base of every error the hub raises on purpose."""


@dataclass(frozen=True)
class Problem:
    """One thing wrong in a configuration file."""

    file: str
    path: str
    message: str
    line: int | None = None

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}" if self.line else self.file
        at = f" at {self.path}" if self.path else ""
        return f"{where}{at}: {self.message}"


class ConfigError(HubError):
    """A configuration or mapping file is invalid; lists every problem found."""

    def __init__(self, problems: list[Problem]) -> None:
        self.problems = problems
        super().__init__("\n".join(str(p) for p in problems))


class WebhookRejected(HubError):
    status_code = 400
    code = "bad_request"

    def __init__(self, message: str) -> None:
        self.message = message
        super().__init__(message)


class UnknownConnection(WebhookRejected):
    status_code = 404
    code = "unknown_connection"


class ConnectionIdle(WebhookRejected):
    """The connection exists but no enabled route uses it: nothing would take its events."""

    status_code = 404
    code = "connection_idle"


class BadSignature(WebhookRejected):
    status_code = 401
    code = "bad_signature"


class PayloadTooLarge(WebhookRejected):
    status_code = 413
    code = "payload_too_large"


class UnsupportedMediaType(WebhookRejected):
    status_code = 415
    code = "unsupported_media_type"


class MalformedPayload(WebhookRejected):
    status_code = 400
    code = "malformed_payload"


class BrokerUnavailable(HubError):
    """The broker did not acknowledge a write in time; nothing was stored."""


class PollFailed(HubError):
    """A polling source could not be read this time (its system is down, refused, ...)."""

    def __init__(self, connection: str, message: str) -> None:
        self.connection = connection
        super().__init__(f"polling {connection}: {message}")


class RequestFailed(HubError):
    """A request from a connector to its system failed. Sinks turn it into a
    :class:`DeliveryFailed` (:func:`delivery_failed`), polling sources into a
    :class:`PollFailed`; ``retriable`` says whether trying again later may succeed."""

    retriable: bool = True

    def __init__(
        self,
        system: str,
        message: str,
        status: int | None = None,
        retry_after_s: float | None = None,
    ) -> None:
        self.system = system
        self.reason = message
        self.status = status
        self.retry_after_s = retry_after_s  # the system asked to wait (Retry-After)
        super().__init__(f"{system}: {message}")


class RequestRetriable(RequestFailed):
    retriable = True


class RequestRefused(RequestFailed):
    retriable = False


class ConnectionCheckFailed(HubError):
    """A connection's check failed: the message says what failed and what to do next."""


class DatabaseUnavailable(HubError):
    """The hub's database cannot be opened."""


class DatabaseSchemaError(HubError):
    """The database's schema is not one this hub can run on, or upgrading it failed."""


class DatabaseTooNew(DatabaseSchemaError):
    """The database is at a revision this hub does not know: a newer hub migrated it."""


class DatabaseNotUpgraded(DatabaseSchemaError):
    """The database is behind this hub and migrations do not run in this process."""


class BrokerStartError(HubError):
    """The embedded broker could not be started."""


class ProcessingError(HubError):
    """An event could not be processed at some stage."""

    retriable = False


class MappingFailed(ProcessingError):
    def __init__(self, mapping: str, field: str, input_path: str | None, reason: str) -> None:
        self.mapping = mapping
        self.field = field
        self.input_path = input_path
        self.reason = reason
        source = f" (input {input_path})" if input_path else ""
        super().__init__(f"mapping {mapping}: field {field}{source}: {reason}")


class SchemaViolation(ProcessingError):
    def __init__(self, entity: str, errors: list[str]) -> None:
        self.entity = entity
        self.errors = errors
        super().__init__(f"{entity} fails its schema: " + "; ".join(errors))


class RouteConditionFailed(ProcessingError):
    def __init__(self, route: str, condition: str, error: BaseException) -> None:
        self.route = route
        super().__init__(f"route {route}: condition {condition!r} failed: {error}")


class MasterDataUnavailable(ProcessingError):
    """The master-data service could not answer now; the event is retried later."""

    retriable = True


class CompletionFailed(ProcessingError):
    """What a webhook leaves out (a deal's lines) could not be read from its system's API
    before mapping (:meth:`connectors.WebhookSource.complete`): retried later when the request
    may succeed then (the system is down), else a dead letter."""

    def __init__(self, connection: str, event_type: str, error: RequestFailed) -> None:
        self.connection = connection
        self.retriable = error.retriable
        super().__init__(f"completing {event_type} from {connection}'s API failed: {error}")


class CrosswalkConflict(HubError):
    """Linking an external id that is linked to another golden id: never relinked silently
    (a merge or a steward's decision changes links, see :mod:`hub.crosswalk`)."""

    def __init__(
        self, entity: str, system: str, external_id: str, linked_to: str, asked: str
    ) -> None:
        super().__init__(
            f"{entity} {external_id!r} in {system} is linked to {linked_to}, not {asked}: "
            "not relinked"
        )
        self.entity = entity
        self.system = system
        self.external_id = external_id
        self.linked_to = linked_to
        self.asked = asked


class MdmRefused(HubError):
    """A master-data change that cannot be made (hub.mdm_service): ``status`` 404 when an id is
    unknown, 409 when the records' state does not allow it (merged already, decided already)."""

    def __init__(self, message: str, status: int = 409) -> None:
        super().__init__(message)
        self.status = status


class DeliveryFailed(ProcessingError):
    def __init__(
        self,
        destination: str,
        message: str,
        status: int | None = None,
        retry_after_s: float | None = None,
    ) -> None:
        self.destination = destination
        self.status = status
        self.retry_after_s = retry_after_s  # the destination asked to wait (Retry-After)
        super().__init__(f"delivery to {destination} failed: {message}")


class DeliveryRetriable(DeliveryFailed):
    retriable = True


class DeliveryRejected(DeliveryFailed):
    retriable = False


def delivery_failed(exc: RequestFailed) -> DeliveryFailed:
    """The delivery error a sink raises for a failed request to its destination."""
    kind = DeliveryRetriable if exc.retriable else DeliveryRejected
    return kind(exc.system, exc.reason, exc.status, exc.retry_after_s)
