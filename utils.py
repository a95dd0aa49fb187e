"""Small helpers shared by every stage: clear errors, atomic writes, JSON state, peak memory, settings."""
import contextlib
import errno
import functools
import json
import os
import resource
import sys
import tempfile
from pathlib import Path

import constants


class PipelineError(Exception):
    """A problem with the user's data, settings or files, reported as a message without a traceback."""


def friendly_errors(function):
    """Turn PipelineError (and a denied access or a full disk) into a one-line message and exit code 1."""
    @functools.wraps(function)
    def wrapper(*args, **kwargs):
        try:
            return function(*args, **kwargs)
        except PipelineError as error:
            sys.exit(f"error: {error}")
        except OSError as error:
            if error.errno not in (errno.EACCES, errno.EPERM, errno.ENOSPC, errno.EROFS):
                raise
            sys.exit(f"error: {error.filename}: {error.strerror}")
    return wrapper


# ----------------------------------------------------------------------------------------------------
# Work directory
# ----------------------------------------------------------------------------------------------------
def workdir():
    """The work directory of constants.WORKDIR, resolved."""
    return Path(constants.WORKDIR).expanduser().resolve()


def work_path(*parts):
    """A path inside the work directory (cache/, inputs/, runs/, evaluation/ ...)."""
    return workdir().joinpath(*parts)


def ensure_writable_dir(path):
    """Create `path` (and parents) and check that files can be written in it; PipelineError if not."""
    path = Path(path)
    try:
        path.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=path, prefix=".write-check-"):
            pass
    except OSError as error:
        raise PipelineError(f"the work directory {path} is not writable ({error.strerror}); set "
                            f"DEEP_SPEAKER_WORKDIR to a folder you can write to") from None
    return path


# ----------------------------------------------------------------------------------------------------
# Atomic writes: a file is either absent, or complete
# ----------------------------------------------------------------------------------------------------
@contextlib.contextmanager
def atomic_path(path):
    """Yield a temporary path beside `path`; on success it is renamed to `path`, on failure removed."""
    path = Path(path)
    tmp = path.with_name(f".tmp-{os.getpid()}-{path.name}")  # keeps the suffix: Keras checks it
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def remove_stale_temporaries(folder):
    """Delete temporary files left by a killed run (their names start with '.tmp-')."""
    for tmp in Path(folder).rglob(".tmp-*"):
        tmp.unlink(missing_ok=True)


def write_json(path, obj):
    """Write `obj` as indented JSON, atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(obj, indent=2, sort_keys=True) + "\n")


def read_json(path, default=None):
    """Read JSON from `path`; `default` when the file does not exist."""
    path = Path(path)
    if not path.exists():
        return default
    return json.loads(path.read_text())


# ----------------------------------------------------------------------------------------------------
# Reporting
# ----------------------------------------------------------------------------------------------------
def peak_memory_mib(children=False):
    """Peak resident memory of this process (or of its finished children) in MiB, as the OS counts it."""
    who = resource.RUSAGE_CHILDREN if children else resource.RUSAGE_SELF
    return resource.getrusage(who).ru_maxrss / 1024  # Linux reports KiB


def print_overrides():
    """Print the environment overrides of constants.py in effect (nothing when there are none)."""
    for name, value in constants.OVERRIDES.items():
        shown = ",".join(map(str, value)) if isinstance(value, list) else value
        print(f"override: {name} = {shown}")


def settings_snapshot(names):
    """{name: value} of the named constants, for the records each stage writes beside its output."""
    return {name: getattr(constants, name) for name in names}
