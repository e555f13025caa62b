"""Where a hub process spends its Python CPU: py-spy samples, summed by the hub code responsible.

py-spy (``.venv/bin/pip install py-spy``; not a dependency of the project) samples a running
process from outside, without slowing it much. With ``--gil`` it only samples the thread that
holds the GIL, so the samples are Python CPU time: C code that releases the GIL (librdkafka's
threads, SQLite's engine, the kernel) is not in them.

Each sample is charged twice, once per view:

* by stage: to the outermost frame of the hub's own code (``hub/`` or ``connectors/``) below
  the process's entry (``receive_webhook``, ``MapperWorker.process``, ...), with everything it
  called;
* by function: to the innermost such frame, with everything it called:
  ``Database.webhook_event`` includes SQLAlchemy below it.

A sample with no such frame (the HTTP server and framework around the handler, the event loop,
worker threads, SQLAlchemy's greenlets, which py-spy shows as stacks of their own) is charged
to the package of its innermost frame, in brackets; the stage view groups those packages into
families (``[database driver]``: SQLAlchemy, aiosqlite, asyncpg, ...).
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from collections import Counter
from pathlib import Path

ROOT_FILES = ("hub/cli.py", "hub/runtime.py")  # the process's entry: never "responsible"
DISPATCH_FILE = "hub/workers/base.py"
FRAME = re.compile(r"^(?P<func>.*?) \((?P<file>[^:()]+)(?::\d+)?\)$")


def py_spy() -> str | None:
    here = Path(sys.executable).parent / "py-spy"  # the venv the bench runs in
    return str(here) if here.exists() else shutil.which("py-spy")


def start(pid: int, seconds: float, out: Path, rate: int = 250) -> subprocess.Popen[bytes]:
    exe = py_spy()
    if exe is None:
        raise FileNotFoundError("py-spy is not installed: .venv/bin/pip install py-spy")
    return subprocess.Popen(
        [
            exe,
            "record",
            "--pid",
            str(pid),
            "--duration",
            str(max(1, round(seconds))),
            "--rate",
            str(rate),
            "--gil",
            "--nonblocking",
            "--format",
            "raw",
            "--output",
            str(out),
        ],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def _package(file: str) -> str:
    if file.startswith("<frozen "):
        return file[len("<frozen ") :].rstrip(">").split(".")[0]
    return file.split("/")[0].removesuffix(".py")


def charge(stack: str) -> tuple[str, str]:
    """The labels one sample is charged to: (stage, function); see the module docstring."""
    frames = [m for m in (FRAME.match(f) for f in stack.split(";")) if m]
    own = [
        m
        for m in frames
        if m["file"].startswith(("hub/", "connectors/")) and not m["file"].startswith(ROOT_FILES)
    ]
    if own:
        # the worker loop's dispatch frame is not a stage: what it dispatched to is
        stage = next((m for m in own if m["file"] != DISPATCH_FILE), own[0])
        return f"{stage['func']} ({stage['file']})", f"{own[-1]['func']} ({own[-1]['file']})"
    label = _other(frames)
    return family(label), label


FAMILIES = {
    "HTTP server and framework": ("uvicorn", "h11", "httptools", "starlette", "fastapi"),
    "event loop": ("asyncio", "selectors", "uvloop"),
    "database driver": ("sqlalchemy", "aiosqlite", "sqlite3", "asyncpg", "greenlet"),
    "Kafka client": ("aiokafka", "kafka", "confluent_kafka"),
    "HTTP client": ("httpx", "httpcore"),
    "threads": ("threading", "queue", "concurrent"),
}
FAMILY_OF = {pkg: family for family, pkgs in FAMILIES.items() for pkg in pkgs}


def _other(frames: list[re.Match[str]]) -> str:
    """Label of a sample without hub frames: the package of its innermost frame."""
    if not frames:
        return "[unknown]"
    where = ""
    root = frames[0]["func"]
    if root.startswith("Thread._bootstrap"):
        where = "thread: "
    elif root != "_run_module_as_main":
        where = "partial stack: "  # a greenlet (SQLAlchemy) or a stack py-spy cut short
    return f"[{where}{_package(frames[-1]['file'])}]"


def family(label: str) -> str:
    """The stage view groups library labels into families: "[partial stack: sqlalchemy]" ->
    "[database driver]"."""
    if not label.startswith("["):
        return label
    pkg = label.strip("[]").rpartition(": ")[2]
    return f"[{FAMILY_OF.get(pkg, pkg)}]"


def summarise(path: Path) -> tuple[int, Counter[str], Counter[str]]:
    """(samples, samples per stage, samples per function) of one py-spy raw file."""
    stages: Counter[str] = Counter()
    functions: Counter[str] = Counter()
    total = 0
    for line in path.read_text(errors="replace").splitlines():
        stack, _, n = line.rpartition(" ")
        if not n.isdigit():
            continue
        total += int(n)
        stage, function = charge(stack)
        stages[stage] += int(n)
        functions[function] += int(n)
    return total, stages, functions


def report(name: str, path: Path, seconds: float, rate: int = 250, top: int = 12) -> str:
    total, stages, functions = summarise(path)
    if not total:
        return f"{name}: no samples (py-spy failed? run it by hand to see why)"
    busy = 100.0 * total / (rate * seconds)
    lines = [
        f"{name}: {total} samples with the GIL held = {busy:.0f}% of one core in Python "
        f"({path.name})"
    ]
    for title, counts, n_top in (("by stage", stages, 8), ("by function", functions, top)):
        lines.append(f"  {title}:")
        for label, n in counts.most_common(n_top):
            lines.append(f"    {100.0 * n / total:5.1f}%  {label}")
        rest = total - sum(n for _, n in counts.most_common(n_top))
        if rest:
            lines.append(f"    {100.0 * rest / total:5.1f}%  (the rest)")
    return "\n".join(lines)
