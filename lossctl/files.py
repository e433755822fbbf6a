"""Files lossctl writes (reports, saved benches, repro scripts): checked before the run, written atomically."""

from __future__ import annotations

import contextlib
import os
import stat
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from lossctl.errors import LossctlError


class WriteError(LossctlError):
    """A file lossctl was asked to write cannot be written; names the flag, the path and the reason."""


@dataclass(frozen=True)
class Stamp:
    """What a target file was before the run, to notice another process replacing it meanwhile."""

    inode: int | None
    mtime_ns: int | None

    @classmethod
    def of(cls, path: Path) -> Stamp:
        try:
            info = path.stat()
        except OSError:
            return cls(None, None)
        return cls(info.st_ino, info.st_mtime_ns)


def check_writable(path: Path, flag: str) -> Stamp:
    """Refuse, before anything runs, a path that cannot take a file: a folder, a missing folder,
    one where no file can be created. Returns the target's stamp."""
    where = f"{flag} {path}"
    if str(path) == "":
        raise WriteError(f"{flag}: empty path", hint="name a file, e.g. report.json")
    if path.is_dir():
        raise WriteError(f"{where}: is a folder", hint="name a file inside it")
    parent = path.parent
    if not parent.exists():
        raise WriteError(
            f"{where}: the folder {parent} does not exist", hint=f"create it first (mkdir -p {parent}) or fix the path"
        )
    if not parent.is_dir():
        raise WriteError(f"{where}: {parent} is not a folder")
    if _is_special(path):
        if not os.access(path, os.W_OK):
            raise WriteError(f"{where}: not writable")
        return Stamp.of(path)
    try:  # creating a file is the only sure test (permissions, read-only mounts, /proc)
        fd, probe = tempfile.mkstemp(dir=parent, prefix=f".{path.name}.", suffix=".probe")
    except OSError as error:
        raise WriteError(f"{where}: cannot create a file in {parent} ({_reason(error)})") from None
    os.close(fd)
    with contextlib.suppress(OSError):
        os.unlink(probe)
    return Stamp.of(path)


def check_distinct(paths: Sequence[tuple[str, Path]]) -> None:
    """Two flags naming the same file would overwrite one another: a usage error."""
    seen: dict[str, str] = {}
    for flag, path in paths:
        key = os.path.realpath(path)
        if key in seen:
            raise WriteError(f"{flag} {path}: the same file as {seen[key]}", hint="give each --output its own file")
        seen[key] = f"{flag} {path}"


def write_atomic(path: Path, text: str, flag: str, *, before: Stamp | None = None) -> bool:
    """Write `text` to `path` so that a reader (or a crash, kill -9, full disk) sees the old file or
    the whole new one, never a part: a temp file in the same folder, fsync, rename. A device or
    pipe (/dev/stdout) is written directly. Returns True when another process replaced the file
    since `before` (this write then won: it came last). Raises WriteError naming the reason."""
    data = text.encode("utf-8")
    where = f"{flag} {path}"
    if _is_special(path):
        try:
            with open(path, "wb") as handle:
                handle.write(data)
                handle.flush()
        except OSError as error:
            raise WriteError(f"{where}: cannot write ({_reason(error)})") from None
        return False
    try:
        fd, temp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    except OSError as error:
        raise WriteError(f"{where}: cannot create a file in {path.parent} ({_reason(error)})") from None
    try:
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
            os.fsync(fd)
            os.fchmod(fd, 0o666 & ~_umask())  # mkstemp makes 0600; a report is an ordinary file
        finally:
            os.close(fd)
        replaced = before is not None and Stamp.of(path) != before
        os.replace(temp, path)
    except OSError as error:
        with contextlib.suppress(OSError):
            os.unlink(temp)
        raise WriteError(f"{where}: cannot write ({_reason(error)}); any previous file is unchanged") from None
    except BaseException:  # Ctrl-C mid-write: leave no temp file behind
        with contextlib.suppress(OSError):
            os.unlink(temp)
        raise
    _sync_folder(path.parent)
    return replaced


def _is_special(path: Path) -> bool:
    """An existing target that is not a regular file (a device, a pipe): renaming over it would
    replace the device node itself."""
    try:
        mode = path.stat().st_mode
    except OSError:
        return False
    return not stat.S_ISREG(mode) and not stat.S_ISDIR(mode)


def _sync_folder(folder: Path) -> None:
    # The rename is durable once the folder's entry is on disk; some filesystems refuse: fine.
    with contextlib.suppress(OSError):
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _reason(error: OSError) -> str:
    return error.strerror or str(error)


def check_repro_folder(folder: Path) -> None:
    """--repro names a folder (created if missing, like `mkdir -p`); refuse a file or an unwritable place."""
    if folder.exists() and not folder.is_dir():
        raise WriteError(f"--repro {folder}: is a file, not a folder", hint="name a folder for the scripts")
    existing = folder
    while not existing.exists():
        existing = existing.parent
    if not existing.is_dir() or not os.access(existing, os.W_OK | os.X_OK):
        raise WriteError(f"--repro {folder}: cannot create files under {existing}")
