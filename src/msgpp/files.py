"""File helpers used everywhere in msgpp: atomic writes, file checksums, swapping a rebuilt folder
into place, output folders and msgpp's cache folder.

A file is written so that it is either complete or absent: to a temporary name beside it, then
renamed. A reader never sees a half-written file, and an error or Ctrl-C leaves nothing.
Temporary names carry the writer's process id (`.<stem>.<pid>-<random>.tmp<suffix>`), so a
later writer of the same file removes what a killed process (SIGKILL, power cut) left behind,
and never touches the temporary of a writer that is still alive. The usual file mode
(0666 & ~umask) is given to every finished file; a full disk is named as such.

A folder (a separator's trained weights) is built in a hidden staging folder beside it and
swapped in by two renames, so it too is never half-written.

Two writers into one place are kept apart by a lock file (FileLock: fcntl.flock on POSIX): `msgpp
data` holds one per benchmark root and refuses a second writer, `msgpp separate` one per cached
track and waits for the writer that holds it. The kernel drops a lock when its holder exits,
however it exits, so a killed writer never leaves a stale lock behind.
"""

from __future__ import annotations

import errno
import hashlib
import logging
import os
import re
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from msgpp.errors import MsgppError, first_line

log = logging.getLogger(__name__)

_PID = re.compile(r"^(\d+)-")
_TEMPORARY = re.compile(r"^\..*\.tmp")
_TEMPORARY_PID = re.compile(r"\.(\d+)-[A-Za-z0-9_]+\.tmp")


def umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def usual_mode(path: str | os.PathLike) -> None:
    """Give a file made by mkstemp (owner-only) the mode an ordinary open() would give it."""
    os.chmod(path, 0o666 & ~umask())


def temporary_path(path: str | os.PathLike, suffix: str = ".tmp") -> str:
    """A new empty temporary file beside `path`, named for this process; stale ones of `path`
    left by dead processes are removed first."""
    path = Path(path)
    remove_stale_temporaries(path)
    descriptor, temporary = tempfile.mkstemp(prefix=f".{path.stem}.{os.getpid()}-", suffix=suffix, dir=path.parent)
    os.close(descriptor)
    return temporary


def remove_stale_temporaries(path: str | os.PathLike) -> list[Path]:
    """Remove the temporaries of `path` whose writing process no longer exists; returns them."""
    path = Path(path)
    prefix = f".{path.stem}."

    def writer(name: str) -> int | None:
        if not name.startswith(prefix) or ".tmp" not in name[len(prefix) :]:
            return None
        match = _PID.match(name[len(prefix) :])
        return int(match.group(1)) if match else None

    return _remove_dead_writers(path.parent, writer)


def remove_stale_in(folder: str | os.PathLike, legacy: bool = True) -> list[Path]:
    """Remove every temporary (`.NAME.tmp...`) in `folder` whose writer is dead; with `legacy`, also
    those without a process id (written before names carried one)."""

    def writer(name: str) -> int | None:
        if not _TEMPORARY.match(name):
            return None
        match = _TEMPORARY_PID.search(name)
        return int(match.group(1)) if match else (_NO_WRITER if legacy else None)

    return _remove_dead_writers(folder, writer)


_NO_WRITER = -1  # a temporary whose name carries no process id: nobody can still be writing it


def _remove_dead_writers(folder: str | os.PathLike, writer) -> list[Path]:
    """Unlink the files of `folder` for which `writer(name)` names a process that no longer runs
    (or _NO_WRITER); None leaves a file alone. Returns what was removed."""
    removed = []
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return removed
    for entry in entries:
        pid = writer(entry.name)
        if pid is None or (pid != _NO_WRITER and _alive(pid)):
            continue
        try:
            os.unlink(entry.path)
            removed.append(Path(entry.path))
        except OSError:
            pass
    return removed


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError, OSError):
        return True
    return True


def output_folder(folder: str | os.PathLike, label: str = "") -> Path:
    """Make `folder` (and its parents) for outputs, or say in one line why not: it is a file, it
    cannot be created, or it is not writable. `label` names it in the message (e.g. "--out")."""
    folder = Path(folder)
    name = f"{label} {folder}" if label else str(folder)
    if folder.exists() and not folder.is_dir():
        raise MsgppError(f"{name}: exists and is not a folder")
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise MsgppError(f"{name}: cannot create the folder ({error.strerror})") from None
    if not os.access(folder, os.W_OK | os.X_OK):
        raise MsgppError(f"{name}: folder is not writable")
    return folder


def describe_write_error(error: BaseException) -> str:
    """A short reason for a failed write; a full disk (or quota) is named as such, also when a
    library (libsndfile) reports it in words only."""
    if isinstance(error, OSError):
        if error.errno in (errno.ENOSPC, errno.EDQUOT):
            return f"disk full: {error.strerror or 'No space left on device'}"
        if error.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
            return f"not writable ({error.strerror})"
        return error.strerror or str(error) or type(error).__name__
    text = first_line(error)
    return f"disk full: {text}" if "no space left" in text.lower() else text


@contextmanager
def temporary_file(path: str | os.PathLike, suffix: str = ".tmp") -> Iterator[str]:
    """Yield a new temporary file name beside `path` (see temporary_path); it is removed when
    the block ends, however it ends. For scratch files a writer needs on the way to `path`."""
    temporary = temporary_path(path, suffix)
    try:
        yield temporary
    finally:
        Path(temporary).unlink(missing_ok=True)


@contextmanager
def atomic_path(path: str | os.PathLike, suffix: str = ".tmp") -> Iterator[str]:
    """Yield a temporary file name beside `path` to write to. When the block ends without error the
    file gets the usual mode (0666 & ~umask; mkstemp makes owner-only files) and is renamed onto
    `path`; otherwise it is removed. An OSError (full disk, read-only folder) becomes a one-line
    MsgppError naming `path`. `suffix` ends the temporary's name, for writers that choose a format
    by the extension (matplotlib: ".tmp.png")."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with temporary_file(path, suffix) as temporary:
            yield temporary
            usual_mode(temporary)
            os.replace(temporary, path)
    except OSError as error:
        raise MsgppError(f"{path}: cannot write ({describe_write_error(error)})") from None


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    """Write `data` to `path` atomically (see atomic_path); returns the path."""
    with atomic_path(path) as temporary, open(temporary, "wb") as handle:
        handle.write(data)
    return Path(path)


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    """Write UTF-8 `text` to `path` atomically (see atomic_path); returns the path."""
    with atomic_path(path) as temporary, open(temporary, "w", encoding="utf-8") as handle:
        handle.write(text)
    return Path(path)


def sha256_file(path: str | os.PathLike) -> str:
    """The sha256 (hex) of a file's bytes, read in blocks (about 2 ms per 20-s WAV song)."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()


# -- locks ---------------------------------------------------------------------------------------
LOCK_NAME = ".lock"  # the lock file's usual name inside the folder it guards


class FileLock:
    """An exclusive advisory lock on the file `path` (created when missing, never removed: removing
    a lock file another process has open would let a third one lock a new file of the same name).

        with FileLock(root / ".lock").held(busy="another run is writing here"):   # refuse a second writer
            ...
        lock = FileLock(folder / ".lock"); lock.acquire(); ...; lock.release()     # wait for the first one

    The lock belongs to the open file, so a second FileLock on the same path conflicts even within
    one process, and the kernel releases it when the holder exits or is killed. Where locking is not
    available (not POSIX, or a file system without flock), a warning is logged and the lock is
    taken as held: the run is not refused for it."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        self._handle = None  # the open lock file while held
        self.locked = False

    def acquire(self, wait: bool = True) -> bool:
        """Take the lock, waiting for its holder when `wait`; False when it is held elsewhere
        (only without `wait`). A lock file that cannot be created is a one-line MsgppError."""
        if self.locked:
            return True
        try:
            import fcntl
        except ImportError:  # not POSIX: no locks
            self.locked = True
            return True
        try:
            handle = open(self.path, "a")  # held open for as long as the lock is
        except OSError as error:
            raise MsgppError(f"{self.path}: cannot create the lock file ({describe_write_error(error)})") from None
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
        except BlockingIOError:
            handle.close()
            return False
        except OSError as error:  # e.g. ENOLCK on a network file system: go on without a lock
            log.warning("%s: cannot lock (%s); going on without a lock", self.path, error.strerror or error)
        self._handle, self.locked = handle, True
        return True

    def release(self) -> None:
        if self._handle is not None:
            self._handle.close()  # closing releases the lock
        self._handle, self.locked = None, False

    @contextmanager
    def held(self, busy: str | None = None) -> Iterator[FileLock]:
        """Hold the lock for a block. With `busy`, a lock held elsewhere is refused at once with
        MsgppError(busy); without, the block waits for it."""
        if not self.acquire(wait=busy is None):
            raise MsgppError(busy)
        try:
            yield self
        finally:
            self.release()


# -- folders -------------------------------------------------------------------------------------
def work_folder(parent: str | os.PathLike, prefix: str) -> Path:
    """A new hidden scratch folder `<parent>/<prefix><pid>-<random>` for this process; the ones a
    killed process left there (its process id no longer runs) are removed first. The caller
    removes its own when done."""
    parent = Path(parent)
    pattern = re.compile(re.escape(prefix) + r"(\d+)-")
    try:
        entries = list(os.scandir(parent))
    except OSError:
        entries = []
    for entry in entries:
        match = pattern.match(entry.name)
        if match and entry.is_dir(follow_symlinks=False) and not _alive(int(match.group(1))):
            shutil.rmtree(entry.path, ignore_errors=True)
    return Path(tempfile.mkdtemp(prefix=f"{prefix}{os.getpid()}-", dir=parent))


def staging_folder(out: str | os.PathLike) -> Path:
    """The hidden folder beside `out` (`.<name>.new`) to build its replacement in; what a killed
    run left there is removed first. Hand it to swap_in when complete."""
    out = Path(out)
    staging = out.parent / f".{out.name}.new"
    shutil.rmtree(staging, ignore_errors=True)
    return staging


def swap_in(staging: str | os.PathLike, out: str | os.PathLike, keep: tuple[str, ...] = ()) -> Path:
    """Replace the folder `out` by the complete folder `staging`: the old one is renamed aside,
    the new one into place, then the old one is removed, so `out` is never half-written. `keep`
    names entries of the old folder that move into the new one when it has none of its own
    (what this run did not produce: a requirements file, an environment)."""
    staging, out = Path(staging), Path(out)
    old = out.parent / f".{out.name}.old"
    shutil.rmtree(old, ignore_errors=True)
    if out.exists():
        for name in keep:
            if (out / name).exists() and not (staging / name).exists():
                os.replace(out / name, staging / name)
        os.replace(out, old)
    os.replace(staging, out)
    shutil.rmtree(old, ignore_errors=True)
    return out


def cache_dir() -> Path:
    """msgpp's cache (exported ONNX graphs, downloaded enhancers): $MSGPP_CACHE_DIR, else
    $XDG_CACHE_HOME/msgpp, else ~/.cache/msgpp."""
    if os.environ.get("MSGPP_CACHE_DIR"):
        return Path(os.environ["MSGPP_CACHE_DIR"])
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "msgpp"
