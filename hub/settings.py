"""Process settings, read from the environment (prefix ``HUB_``) or a ``.env`` file.

What the hub connects to is in ``hub.yaml`` (see :mod:`hub.config`); these settings say where
the process itself runs: broker, database, HTTP listener, limits.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BeforeValidator, Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

ENTITIES = ("customer", "product", "order", "inventory")

SOURCE_RETRY_WINDOW_S = 48 * 3600.0
"""The longest a shipped source retries a webhook (Shopify: 48 hours)."""


def _seconds(value: Any) -> Any:
    """A duration: a number of seconds, or text with a unit: ``250ms``, ``5s``, ``10m``, ``1h``."""
    if isinstance(value, str):
        text = value.strip()
        for unit, factor in (("ms", 0.001), ("s", 1), ("m", 60), ("h", 3600), ("d", 86400)):
            number = text.removesuffix(unit)
            if number != text:
                try:
                    return float(number) * factor
                except ValueError:
                    break
        raise ValueError(
            f"{value!r} is not a duration (a number of seconds, or 250ms, 5s, 10m, 1h, 1d)"
        )
    return value


Seconds = Annotated[float, BeforeValidator(_seconds), Field(ge=0)]


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="HUB_", env_file=".env", extra="ignore")

    config: Path = Field(Path("hub.yaml"), description="Path of the hub.yaml config file.")
    mappings_dir: Path | None = Field(
        None, description="Folder of mapping files; overrides `mappings:` in hub.yaml."
    )

    # Kafka. Empty bootstrap servers = start the embedded Tansu broker.
    kafka_bootstrap_servers: str = ""
    kafka_security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = "PLAINTEXT"
    kafka_sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] | None = None
    kafka_sasl_username: str | None = None
    kafka_sasl_password: SecretStr | None = None
    kafka_ssl_cafile: Path | None = None
    kafka_ssl_certfile: Path | None = None
    kafka_ssl_keyfile: Path | None = None
    kafka_topic_prefix: str = "hub."
    kafka_partitions: int = Field(3, ge=1)
    kafka_replication_factor: int = Field(1, ge=1)
    kafka_client_id: str = "hub"
    kafka_fetch_max_wait_ms: int = Field(
        50, ge=0, description="How long a consumer fetch may wait for data (latency vs idle CPU)."
    )
    kafka_fetch_min_bytes: int = Field(
        1, ge=1, description="How much data a consumer fetch waits for, up to the max wait."
    )
    kafka_commit_interval_ms: int = Field(
        100, ge=0, description="How often workers commit the offsets of the work done."
    )
    kafka_linger_ms: float = Field(
        5, ge=0, description="How long the producer waits to fill a batch (latency vs broker CPU)."
    )
    tansu_binary: Path | None = Field(None, description="Override the bundled Tansu binary.")

    state_dir: Path = Field(Path(".hub"), description="Local files: SQLite database, broker log.")
    database_url: str = Field("", description="SQLAlchemy async URL; default: SQLite in state_dir.")
    db_migrate: bool = Field(
        True,
        description="Upgrade the database schema when the hub starts; false: only check it "
        "(a job runs `hub db upgrade` before the deploy, and the hub's user needs no DDL rights).",
    )

    http_host: str = "127.0.0.1"
    http_port: int = 8080
    http_max_header_bytes: int = Field(
        64 * 1024, ge=1024, description="Largest request head (request line and headers)."
    )
    http_max_headers: int = Field(100, ge=1, description="Most header fields in a request.")

    metrics_host: str = Field(
        "127.0.0.1", description="Where the metrics listener listens (HUB_METRICS_PORT)."
    )
    metrics_port: int | None = Field(
        None,
        ge=0,
        le=65535,
        description="Serve /metrics, /livez and /readyz on this port too, in any role "
        "(a `--role workers` process has no other HTTP server); unset: no such listener.",
    )

    otel_endpoint: str | None = Field(
        None,
        description="OTLP/HTTP traces URL (http://collector:4318/v1/traces): export the hub's "
        "spans there (needs the otel extra); unset: no export.",
    )

    ops_token: SecretStr | None = Field(
        None, description="Bearer token for /api; unset: /api answers on loopback only."
    )
    ops_allowed_origins: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="Origins (scheme://host[:port], comma-separated) of web pages other than "
        "the hub's own that may send writes to /api, e.g. a dashboard served elsewhere.",
    )
    ingress_max_body_bytes: int = Field(1024 * 1024, ge=1)
    ingress_publish_timeout_s: float = Field(10.0, gt=0)

    # Defaults of every route's retry policy (a route's `retry:` overrides them).
    retry_max_attempts: int = Field(8, ge=1, description="Attempts before a dead letter.")
    retry_initial_delay_s: float = Field(1.0, ge=0)
    retry_max_delay_s: float = Field(300.0, ge=0)
    retry_max_total_s: float = Field(24 * 3600.0, ge=0, description="Time budget of retries.")
    retry_ordered: bool = Field(True, description="Later events of a key wait for a retry.")
    # Defaults of every destination's circuit breaker (a connection's `limits:` overrides them).
    breaker_failures: int = Field(5, ge=1)
    breaker_open_s: float = Field(5.0, ge=0)
    breaker_max_open_s: float = Field(300.0, ge=0)
    breaker_sync_interval_s: float = Field(
        0.5,
        gt=0,
        description="How often a delivery worker reads its destination's shared circuit.",
    )
    delivery_concurrency: int = Field(
        16, ge=1, description="Events in flight per destination and partition (different keys)."
    )

    # Retention of the tables that grow with every event (hub.retention); 0: keep for ever.
    receipts_retention: Seconds = Field(
        "7d",
        validate_default=True,
        description="Webhook receipts older than this are deleted: at least the sources' retry "
        "window (2 days), and no longer than the deliveries are kept.",
    )
    deliveries_retention: Seconds = Field(
        "30d",
        validate_default=True,
        description="Delivery records and finished replay jobs older than this are deleted.",
    )
    retention_interval: Seconds = Field(
        "1h", validate_default=True, description="How often old rows are deleted; 0: never."
    )

    crosswalk_cache_size: int = Field(
        100_000, ge=1, description="Crosswalk answers each process keeps (LRU), per kind."
    )
    crosswalk_negative_ttl_s: float = Field(
        5.0,
        ge=0,
        description="How long 'not linked' is believed before the crosswalk is asked again "
        "(another process may link the id meanwhile).",
    )

    mdm_config: Path | None = Field(
        None,
        description="Master data's match configuration (mdm.yaml): takes the place of hub.yaml's "
        "`mdm:`; checked at start (file:line errors) and reloaded when it changes.",
    )
    mdm_poll_s: float = Field(
        1.0,
        ge=0,
        description="How often this process asks the database whether master data merged or "
        "unmerged records (then its golden-id cache is dropped); 0: never.",
    )

    reload_interval_s: float = Field(
        2.0, ge=0, description="How often hub.yaml and mappings are checked for changes; 0: never."
    )

    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    log_format: Literal["text", "json"] = "text"

    @field_validator(
        "kafka_sasl_mechanism", "ops_token", "metrics_port", "otel_endpoint", mode="before"
    )
    @classmethod
    def _empty_is_none(cls, value: object) -> object:
        return None if value == "" else value

    @field_validator("ops_allowed_origins", mode="before")
    @classmethod
    def _origin_list(cls, value: object) -> object:
        if isinstance(value, str):
            return [o.strip().rstrip("/") for o in value.split(",") if o.strip()]
        return value

    @model_validator(mode="after")
    def _retention(self) -> Settings:
        receipts, deliveries = self.receipts_retention, self.deliveries_retention
        if receipts and receipts < SOURCE_RETRY_WINDOW_S:
            raise ValueError(
                f"HUB_RECEIPTS_RETENTION={receipts:g}s is shorter than a source's retry window "
                "(Shopify retries for 48h): a retry could then be taken for a new delivery"
            )
        if deliveries and (not receipts or deliveries < receipts):
            raise ValueError(
                "HUB_DELIVERIES_RETENTION must be at least HUB_RECEIPTS_RETENTION (and 0, for "
                "ever, when receipts are kept for ever): a webhook accepted again after its "
                "receipt is gone is kept from a second delivery only by its delivery record"
            )
        return self

    @model_validator(mode="after")
    def _default_database(self) -> Settings:
        if not self.database_url:
            self.database_url = f"sqlite+aiosqlite:///{self.state_dir / 'hub.db'}"
        return self

    @property
    def embedded_broker(self) -> bool:
        return not self.kafka_bootstrap_servers.strip()

    def topic(self, name: str) -> str:
        """A topic (or consumer group) name under the configured prefix."""
        return f"{self.kafka_topic_prefix}{name}"

    @property
    def ingest_topic(self) -> str:
        return self.topic("ingest")

    @property
    def deadletter_topic(self) -> str:
        return self.topic("deadletter")

    def canonical_topic(self, entity: str) -> str:
        return self.topic(f"canonical.{entity}")

    @property
    def mapper_group(self) -> str:
        return self.topic("mapper")

    @property
    def recorder_group(self) -> str:
        return self.topic("deadletter-recorder")

    def delivery_group(self, destination: str) -> str:
        return self.topic(f"deliver.{destination}")

    def all_topics(self) -> list[str]:
        return [
            self.ingest_topic,
            self.deadletter_topic,
            *(self.canonical_topic(e) for e in ENTITIES),
        ]
