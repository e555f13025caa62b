"""What deploy/tryton/setup.py and deploy/bottlecrm/setup.py share: the cache folder, one
builder at a time, and a cached virtual environment per set of pinned packages.

Only the standard library is used here, so any Python 3.11+ can run it.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import subprocess
import time
import venv
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path


def cache_dir() -> Path:
    """``$HUB_TEST_CACHE_DIR``, else ``$XDG_CACHE_HOME/hub-tests``, else ``~/.cache/hub-tests``."""
    explicit = os.environ.get("HUB_TEST_CACHE_DIR")
    if explicit:
        return Path(explicit).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg) if xdg else Path.home() / ".cache") / "hub-tests"


@contextlib.contextmanager
def locked(path: Path) -> Iterator[None]:
    """One builder at a time (several test sessions may start together)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def ensure_venv(
    env: Path,
    packages: Sequence[str],
    log: Callable[[str], None],
    python: str | None = None,
) -> Path:
    """The virtual environment ``env`` with ``packages`` installed, made unless its stamp
    (``.installed``, written last) is there; with ``python`` (another interpreter) or this
    one."""
    stamp = env / ".installed"
    if stamp.exists():
        return env
    started = time.monotonic()
    log(f"installing {', '.join(packages)} into {env}")
    if env.exists():
        shutil.rmtree(env)
    if python is None:
        venv.EnvBuilder(clear=True, with_pip=True).create(env)
    else:
        subprocess.run([python, "-m", "venv", str(env)], check=True)
    subprocess.run(
        [str(env / "bin" / "python"), "-m", "pip", "install", "--quiet", *packages], check=True
    )
    stamp.write_text("\n".join(packages) + "\n")
    log(f"installed in {time.monotonic() - started:.0f}s")
    return env
