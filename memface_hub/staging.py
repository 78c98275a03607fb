"""Staging folders and temporary files that say who owns them, and the removal of stale ones.

Every folder or file memface writes before renaming it into place (``.memface-write-*`` beside a video
output, ``.<name>.*`` beside a speaker or pipeline folder) and every temporary folder in the system temp
folder (``memface-template-*``, ``memface-adapt-*``) carries its owner in its name: ``<prefix><pid>@<host>.``.
A run killed with SIGKILL (or a power cut) cannot clean up after itself, so the next run removes what such
runs left behind: only entries older than :data:`STALE_AFTER_SECONDS` whose owning process is gone on this
host, so concurrent runs (other processes, other containers sharing the folder) are never disturbed.
Entries of another host, or of the older name scheme without an owner, are removed only after a day.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import shutil
import socket
import tempfile
import time
from pathlib import Path

logger = logging.getLogger(__name__)

STALE_AFTER_SECONDS = 600.0              # a staging entry younger than this is never touched
UNOWNED_STALE_AFTER_SECONDS = 86_400.0   # another host's (or an owner-less, older-scheme) entry: after a day
TEMP_PREFIXES = ("memface-template-", "memface-adapt-", "memface-push-", "memface-speaker-push-")


def host_key() -> str:
    """8 hex digits naming this host (so a folder shared between machines is judged per host)."""
    return hashlib.sha1(socket.gethostname().encode()).hexdigest()[:8]


def owner_tag() -> str:
    """``"<pid>@<host>."``: what a staging name carries after its prefix."""
    return f"{os.getpid()}@{host_key()}."


def process_alive(pid: int) -> bool:
    """Whether process ``pid`` exists on this host (a process of another user counts as alive)."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


_OWNER = re.compile(r"(\d+)@([0-9a-f]{8})\.")


def is_stale(path: Path, prefix: str, now: float | None = None, min_age: float = STALE_AFTER_SECONDS) -> bool:
    """Whether ``path`` (named ``prefix`` + owner tag + anything) was left behind by a run that is gone."""
    try:
        age = (time.time() if now is None else now) - path.lstat().st_mtime
    except FileNotFoundError:
        return False
    if age < min_age:
        return False
    owner = _OWNER.match(path.name[len(prefix):])
    if owner is None or owner.group(2) != host_key():
        return age >= max(min_age, UNOWNED_STALE_AFTER_SECONDS)
    pid = int(owner.group(1))
    return pid != os.getpid() and not process_alive(pid)


def remove_stale(directory: str | os.PathLike, prefixes: tuple[str, ...],
                 min_age: float = STALE_AFTER_SECONDS) -> list[Path]:
    """Remove the stale entries of ``directory`` whose names start with one of ``prefixes``; returns them.
    Never raises: a folder that cannot be listed or an entry that cannot be removed is left as it is."""
    removed: list[Path] = []
    try:
        entries = list(os.scandir(directory))
    except OSError:
        return removed
    now = time.time()
    for entry in entries:
        prefix = next((p for p in prefixes if entry.name.startswith(p)), None)
        if prefix is None or not is_stale(Path(entry.path), prefix, now, min_age):
            continue
        try:
            if entry.is_dir(follow_symlinks=False):
                shutil.rmtree(entry.path)
            else:
                os.remove(entry.path)
        except OSError as err:
            logger.debug("could not remove stale %s (%s)", entry.path, err)
            continue
        removed.append(Path(entry.path))
    if removed:
        logger.info("removed %d stale staging entr%s left by interrupted runs in %s: %s", len(removed),
                    "y" if len(removed) == 1 else "ies", directory, ", ".join(p.name for p in removed[:5]))
    return removed


def remove_stale_temp() -> list[Path]:
    """Stale ``memface-template-*`` / ``memface-adapt-*`` … folders in the system temp folder."""
    return remove_stale(tempfile.gettempdir(), TEMP_PREFIXES)


def temporary_directory(prefix: str, dir: str | os.PathLike | None = None) -> tempfile.TemporaryDirectory:
    """``tempfile.TemporaryDirectory`` whose name carries its owner (``<prefix><pid>@<host>.XXXX``), after
    removing stale ones of the same prefix left by killed runs."""
    remove_stale(dir or tempfile.gettempdir(), (prefix,))
    return tempfile.TemporaryDirectory(prefix=prefix + owner_tag(), dir=dir)
