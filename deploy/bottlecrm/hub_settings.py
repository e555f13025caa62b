"""BottleCRM's settings for the hub's tests and demos (DJANGO_SETTINGS_MODULE=hub_settings,
with this folder on PYTHONPATH). BottleCRM's own settings, changed in three ways:

- The database is the one named by ``DBNAME`` (``DBHOST``/``DBPORT``/``DBUSER``), no password.
- Celery runs tasks eagerly, in the process that queues them: a webhook is sent when the
  request that changed the record commits, with no broker nor worker to run.
- **BottleCRM's SSRF guard is relaxed, for local tests only**: it refuses webhook URLs on
  loopback addresses and on ports other than 80/443 (``webhooks/ssrf.py``), and the hub under
  test listens on 127.0.0.1 on a free port. Here plain http, any port and loopback addresses
  (127.0.0.0/8, ::1) are allowed; every other private, link-local or reserved address is still
  refused. Never use this module for a BottleCRM reachable from elsewhere.
"""

import os

from crm.settings import *  # noqa: F403

DEBUG = False
ALLOWED_HOSTS = ["127.0.0.1", "localhost"]
DATABASES = {
    "default": {
        "ENGINE": "django.db.backends.postgresql",
        "NAME": os.environ["DBNAME"],
        "USER": os.environ.get("DBUSER", "postgres"),
        "PASSWORD": os.environ.get("DBPASSWORD", ""),
        "HOST": os.environ.get("DBHOST", "127.0.0.1"),
        "PORT": os.environ.get("DBPORT", "5432"),
        "CONN_MAX_AGE": 0,
    }
}
CELERY_BROKER_URL = "memory://"
CELERY_RESULT_BACKEND = "cache+memory://"
CELERY_TASK_ALWAYS_EAGER = True
CELERY_TASK_EAGER_PROPAGATES = False
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]

MAILERS = {"default": {"BACKEND": "django.core.mail.backends.locmem.EmailBackend"}}
# Logs to files in the working directory (server.log, security_audit.log) are kept there; the
# fixture runs the server in a temporary directory.


def _relax_ssrf_guard() -> None:
    from webhooks import ssrf

    strict = ssrf.is_blocked

    def is_blocked(ip):  # type: ignore[no-untyped-def]
        if ip.is_loopback:
            return False
        return strict(ip)

    ssrf.is_blocked = is_blocked
    ssrf._allowed_schemes = lambda: ("https", "http")
    ssrf._allowed_ports = _any_port
    ssrf.DEFAULT_PORTS = {"https": 443, "http": 80}


class _AnyPortSet(frozenset):
    def __contains__(self, port: object) -> bool:
        return isinstance(port, int) and 0 < port < 65536


def _any_port() -> frozenset:
    return _AnyPortSet()


_relax_ssrf_guard()
