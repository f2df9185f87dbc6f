"""Atomic file writes: write a temporary file next to the target, fsync it, rename it over the target, fsync the
folder. A crash, a kill or a full disk leaves the previous file, never a truncated one. Checkpoints go through
``tl_lightning.trainer.AtomicCheckpointIO``; summary.json, config_resolved.yaml and the caches through ``atomic_write``."""

import errno
import glob
import io
import logging
import os
from typing import Any, BinaryIO, Callable, Union

from tl_lightning.errors import WriteError

# No Lightning here: tl-predict and the config check import this module, and Lightning takes seconds to import.
log = logging.getLogger(__name__)
TMP_MARK = ".tmp-"


def write_error(path: str, exc: OSError) -> WriteError:
    """One line for a failed write: the path, the reason and the free space left on its filesystem."""
    try:
        st = os.statvfs(os.path.dirname(os.path.abspath(path)))
        free = f"{st.f_bavail * st.f_frsize / 2**20:.1f} MiB free there"
    except OSError:
        free = "free space unknown"
    what = "disk full" if exc.errno in (errno.ENOSPC, errno.EDQUOT) else (exc.strerror or str(exc))
    return WriteError(f"cannot write {path}: {what} ({free}); the previous file there, if any, is unchanged")


def _fsync_dir(folder: str) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def atomic_write(path: str, data: Union[bytes, str, memoryview]) -> str:
    """Replace ``path`` with ``data`` atomically (see the module doc); a failed write raises WriteError."""
    return atomic_write_with(path, lambda fh: fh.write(data.encode() if isinstance(data, str) else data))


def atomic_write_with(path: str, write: Callable[[BinaryIO], Any]) -> str:
    """``atomic_write`` for content that ``write`` streams into the open temporary file (a large array)."""
    folder = os.path.dirname(os.path.abspath(path))
    tmp = os.path.join(folder, f".{os.path.basename(path)}{TMP_MARK}{os.getpid()}")
    try:
        os.makedirs(folder, exist_ok=True)
        with open(tmp, "wb") as fh:
            write(fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
        _fsync_dir(folder)
    except OSError as exc:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise write_error(path, exc) from None
    return path


def atomic_torch_save(obj: Any, path: str) -> str:
    """``torch.save`` through ``atomic_write``: checkpoints, the feature cache and the token cache."""
    import torch

    buffer = io.BytesIO()
    torch.save(obj, buffer)
    return atomic_write(path, buffer.getbuffer())


def remove_stale_temporaries(folder: str) -> None:
    """Delete the temporaries of writes that were killed half-way (the run dir is locked: none is in progress)."""
    for path in glob.glob(os.path.join(folder, f".*{TMP_MARK}*")):
        log.info("removing %s, left by an interrupted write", path)
        os.unlink(path)


def remove_dead_temporaries(folder: str, name: str) -> None:
    """Delete the temporaries of ``name`` (``.<name>.tmp-<pid>...``) left by processes that no longer exist (a
    folder shared with other commands: a live process's temporary is its write in progress)."""
    for path in glob.glob(os.path.join(glob.escape(folder), f".{glob.escape(name)}{TMP_MARK}*")):
        pid = os.path.basename(path).split(TMP_MARK, 1)[1].split(".", 1)[0].split("-", 1)[0]
        if pid.isdigit() and not _alive(int(pid)):
            log.info("removing %s, left by an interrupted write", path)
            if os.path.isdir(path):
                import shutil

                shutil.rmtree(path, ignore_errors=True)
            else:
                os.unlink(path)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
