"""The integration hub: canonical events on Kafka between shops, CRMs, ERPs and SCM systems."""

__version__ = "0.1.0"
