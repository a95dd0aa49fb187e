"""Small helpers shared by every stage: clear errors, atomic writes, JSON state, reading a file or naming it,
locks, peak memory, settings."""
import contextlib
import errno
import fcntl
import functools
import hashlib
import json
import math
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import constants


class PipelineError(Exception):
    """A problem with the user's data, settings or files, reported as a message without a traceback."""


INTERRUPTED = ("interrupted; nothing half-written is kept, and the same command run again goes on from what was "
               "saved")


def friendly_errors(function=None, *, code=1, interrupted=INTERRUPTED):
    """Turn PipelineError (and a denied access or a full disk) into a one-line message and exit code `code`; Ctrl-C
    into the line `interrupted` and the same code (not click's bare "Aborted!")."""
    def decorate(function):
        @functools.wraps(function)
        def wrapper(*args, **kwargs):
            try:
                return function(*args, **kwargs)
            except KeyboardInterrupt:
                print(f"\n{interrupted}", file=sys.stderr)
                sys.exit(code)
            except PipelineError as error:
                print(f"error: {error}", file=sys.stderr)
                sys.exit(code)
            except OSError as error:
                if error.errno not in (errno.EACCES, errno.EPERM, errno.ENOSPC, errno.EROFS, errno.ENAMETOOLONG,
                                       errno.ENOENT, errno.EISDIR, errno.ENOTDIR):
                    raise
                print(f"error: {error.filename}: {error.strerror}", file=sys.stderr)
                sys.exit(code)
        return wrapper
    return decorate(function) if function is not None else decorate


# ----------------------------------------------------------------------------------------------------
# Work directory
# ----------------------------------------------------------------------------------------------------
def workdir():
    """The work directory of constants.WORKDIR, resolved."""
    return Path(constants.WORKDIR).expanduser().resolve()


def work_path(*parts):
    """A path inside the work directory (cache/, inputs/, runs/, evaluation/ ...)."""
    return workdir().joinpath(*parts)


def ensure_writable_dir(path, what=None, fix=None):
    """Create `path` (and parents) and check that files can be written in it; PipelineError if not (naming it as
    `what`, default the work directory, with `fix`)."""
    path = Path(path)
    try:
        path.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=path, prefix=".write-check-"):
            pass
    except OSError as error:
        what = what or f"the work directory {path}"
        fix = fix or "set DEEP_SPEAKER_WORKDIR to a folder you can write to"
        raise PipelineError(f"{what} is not writable ({error.strerror or error}); {fix}") from None
    return path


# ----------------------------------------------------------------------------------------------------
# Atomic writes: a file is either absent, or complete
# ----------------------------------------------------------------------------------------------------
@contextlib.contextmanager
def atomic_path(path):
    """Yield a temporary path beside `path`; on success it is renamed to `path`, on failure removed."""
    path = Path(path)
    name = path.name if len(path.name) <= 180 else hashlib.sha1(path.name.encode()).hexdigest()[:16] + "".join(
        path.suffixes[-2:])[-40:]  # a long name: a short temporary one (the name's limit is the file system's)
    tmp = path.with_name(f".tmp-{os.getpid()}-{name}")  # keeps the suffix: Keras checks it
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def unused_name(stem, taken, suffix=""):
    """`stem + suffix`, or with "-2", "-3" ... before the suffix, the first that is not in the set `taken` (which
    then holds it): one output per input, whatever names the inputs share."""
    name, count = stem + suffix, 1
    while name in taken:
        count += 1
        name = f"{stem}-{count}{suffix}"
    taken.add(name)
    return name


def save_array(path, array):
    """Write `array` as a pickle-free .npy file, atomically."""
    import numpy as np
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as handle:
            np.save(handle, array, allow_pickle=False)
    return Path(path)


def remove_stale_temporaries(folder):
    """Delete temporary files left by a killed run (their names start with '.tmp-')."""
    for tmp in Path(folder).rglob(".tmp-*"):
        tmp.unlink(missing_ok=True)


def write_json(path, obj):
    """Write `obj` as indented JSON, atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(obj, indent=2, sort_keys=True) + "\n")


NUMBER = "a finite number"  # a kind for read_json's keys: an int or float (not a bool), neither NaN nor infinite


def read_json(path, default=None, what=None, fix=None, keys=None, check=None):
    """Read JSON from `path`; `default` when the file does not exist; CorruptFile when it cannot be decoded, or
    when `keys` are given and it is not an object holding them all: `keys` names them, or maps each to the kind
    (a type, NUMBER, None, or a tuple of those) its value must be, so that a hand-edited or damaged record is
    refused in one line, never a traceback further on or a NaN threshold used. `check(record)`, given, says what
    else is wrong deeper inside a record that holds its keys (None when nothing is)."""
    path = Path(path)
    if not path.exists():
        return default
    value = read_checked(path, lambda p: json.loads(Path(p).read_text()), what, fix)
    problem = None if keys is None else record_problem(value, keys)
    if not problem and check is not None:
        problem = check(value)
    if problem:
        raise CorruptFile(f"{path} is not a valid record ({problem}); it is {what or 'a file of the pipeline'}"
                          f"{'. ' + fix if fix else ''}")
    return value


@contextlib.contextmanager
def stored_record(path, again):
    """Reading a stored record's values in the block: a value missing or of the wrong kind deep inside it (a damaged
    or hand-edited file) ends in one line naming the file and `again`, the command that makes it anew."""
    try:
        yield
    except (KeyError, TypeError, ValueError, AttributeError, IndexError) as error:
        raise CorruptFile(f"{path} is not a valid record ({type(error).__name__}: {str(error)[:120]}); compute it "
                          f"again with `{again}`") from None


def record_problem(value, keys):
    """Why `value` is not an object holding `keys` (read_json), or None when it is."""
    if not isinstance(value, dict):
        return f"a JSON {type(value).__name__.replace('NoneType', 'null')}, not an object"
    missing = [key for key in keys if key not in value]
    if missing:
        return f"it lacks {', '.join(missing)}"
    for key, kind in (keys.items() if isinstance(keys, dict) else ()):
        if not is_of_kind(value[key], kind):
            return f"its {key} is not {kind_name(kind)}"
    return None


def is_of_kind(value, kind):
    """Whether `value` is of `kind` (read_json's keys)."""
    if isinstance(kind, tuple):
        return any(is_of_kind(value, k) for k in kind)
    if kind is None:
        return value is None
    if kind == NUMBER:
        return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    if kind is int:
        return isinstance(value, int) and not isinstance(value, bool)
    return isinstance(value, kind)


def kind_name(kind):
    """"a list", "a finite number or null": `kind` in words."""
    if isinstance(kind, tuple):
        return " or ".join(kind_name(k) for k in kind)
    if kind is None:
        return "null"
    if kind == NUMBER:
        return NUMBER
    return {dict: "an object", list: "a list", str: "a string", int: "an integer", bool: "true or false"}.get(
        kind, f"a {kind.__name__}")


def read_checked(path, reader, what=None, fix=None):
    """`reader(path)`, with any failure to read or decode it turned into one line: which file, what it is, the fix.

    Every file of the pipeline (inputs, norm, checkpoints, state, reports, gallery) is read through here, so a
    truncated or corrupt file never ends in a library's traceback.
    """
    try:
        return reader(path)
    except PipelineError:
        raise
    except MemoryError:
        raise
    except Exception as error:  # noqa: BLE001 - a decoder may raise anything; all mean "this file is damaged"
        if isinstance(error, OSError) and error.errno in (errno.EACCES, errno.EPERM):
            raise
        detail = f"{type(error).__name__}: {str(error).strip()[:160]}" if str(error).strip() else type(error).__name__
        raise CorruptFile(f"{path} is unreadable or corrupt ({detail}); it is {what or 'a file of the pipeline'}"
                          f"{'. ' + fix if fix else ''}") from None


class CorruptFile(PipelineError):
    """A file of the pipeline that exists but cannot be decoded."""


def file_digest(path):
    """(size in bytes, sha256 hex) of a file, read in blocks: both of the bytes read (a file replaced meanwhile is
    never given another file's size)."""
    digest, size = hashlib.sha256(), 0
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 22), b""):
            digest.update(block)
            size += len(block)
    return size, digest.hexdigest()


# ----------------------------------------------------------------------------------------------------
# Locks: one writer per folder; a dead holder's lock is released by the kernel
# ----------------------------------------------------------------------------------------------------
@contextlib.contextmanager
def folder_lock(folder, what):
    """Hold an exclusive lock on `folder` (its .lock file) for the block; PipelineError at once when taken.

    flock() locks die with their process, so a killed command never leaves a lock behind; the file
    keeps the holder's process id and command for the message.
    """
    folder = ensure_writable_dir(folder)
    path = folder / ".lock"
    handle = open(path, "a+")
    try:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            holder = handle.read().strip() or "another process"
            raise PipelineError(f"{what} ({folder}) is in use by {holder}; wait for it to finish, or stop it "
                                f"(a killed holder's lock is taken over automatically)") from None
        handle.seek(0)
        handle.truncate()
        handle.write(f"process {os.getpid()} ({' '.join(Path(a).name if i == 0 else a for i, a in enumerate(sys.argv))}"
                     f", since {time.strftime('%H:%M:%S')})")
        handle.flush()
        yield
    finally:
        handle.close()


def lock_holder(folder):
    """Who holds the lock of `folder` ("process N (...)"), or None when nobody does."""
    path = Path(folder) / ".lock"
    if not path.exists():
        return None
    with open(path, "a+") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            return handle.read().strip() or "another process"
        fcntl.flock(handle, fcntl.LOCK_UN)
    return None


def code_version():
    """The git commit of the code (with "+changes" when the tree differs from it, a new file not yet committed
    included), or "unknown"."""
    root = Path(__file__).resolve().parent
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True,
                                timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=normal"], cwd=root,
                               capture_output=True, text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return (commit + ("+changes" if dirty else "")) if commit else "unknown"


# ----------------------------------------------------------------------------------------------------
# Reporting
# ----------------------------------------------------------------------------------------------------
def peak_memory_mib(children=False):
    """Peak resident memory of this process (or of its finished children) in MiB, as the OS counts it."""
    who = resource.RUSAGE_CHILDREN if children else resource.RUSAGE_SELF
    return resource.getrusage(who).ru_maxrss / 1024  # Linux reports KiB


def progress(iterable=None, **options):
    """A tqdm bar: refreshed continuously in a terminal, a line every 30 s in a log file."""
    from tqdm import tqdm
    options.setdefault("mininterval", 0.1 if sys.stderr.isatty() else 30)
    return tqdm(iterable, **options)


def print_overrides(file=None):
    """Print the recipe of constants.py when it is not the default, then the environment overrides in effect
    (nothing when there are none); lists are shown as their variable is written, an empty one as []. To
    `file` (default stdout; stderr where stdout carries JSON)."""
    def shown(value):
        return (",".join(map(str, value)) or "[]") if isinstance(value, list) else value

    if constants.RECIPE != "default":
        values = ", ".join(f"{name} = {shown(value)}" for name, value in constants.RECIPE_VALUES.items())
        print(f"recipe: {constants.RECIPE} ({values})", file=file)
    for name, value in constants.OVERRIDES.items():
        print(f"override: {name} = {shown(value)}", file=file)


def settings_snapshot(names):
    """{name: value} of the named constants, for the records each stage writes beside its output."""
    return {name: json_value(getattr(constants, name)) for name in names}


def json_value(value):
    """`value` as it reads back from JSON (tuples become lists), so records compare equal to the constants."""
    return json.loads(json.dumps(value))


def settings_mismatches(recorded):
    """[(name, recorded value, value now)] of the recorded settings that differ from constants.py now."""
    return [(name, value, json_value(getattr(constants, name))) for name, value in sorted(recorded.items())
            if hasattr(constants, name) and json_value(getattr(constants, name)) != value]


class SettingsChanged(PipelineError):
    """A setting differs from the one a stage's input was built with."""


def refuse_changed_settings(recorded, what, fix):
    """SettingsChanged in one line when a setting now differs from `recorded`: the setting, both values, the fix.

    `what` says what was built with the recorded settings (e.g. "the inputs in work/inputs"), `fix` how to
    rebuild it under the current ones; restoring the old value is offered as well.
    """
    mismatches = settings_mismatches(recorded)
    if not mismatches:
        return
    mismatches.sort(key=lambda m: m[0] != "RECIPE")  # a changed recipe explains the other differences
    name, old, new = mismatches[0]
    more = f" (also {', '.join(m[0] for m in mismatches[1:])})" if len(mismatches) > 1 else ""
    where = (f"unset {constants.ENV_PREFIX}{name}" if name in constants.OVERRIDES
             else f"set {constants.ENV_PREFIX}{name}={shown_value(old)}")
    raise SettingsChanged(f"{what} {'were' if what.startswith('the inputs') else 'was'} built with "
                          f"{name}={shown_value(old)}, but it is {shown_value(new)} now{more}, so it does not fit: {fix}, or "
                          f"{where} to use it as it is")


def shown_value(value):
    """A setting's value as the user would type it (lists comma-separated)."""
    return ",".join(map(str, value)) if isinstance(value, list) else str(value)


def workdir_option(function):
    """A click option --workdir that sets constants.WORKDIR before the command runs (as DEEP_SPEAKER_WORKDIR)."""
    import click

    def apply(context, parameter, value):
        if value is not None:
            constants.WORKDIR = str(value)
        return value
    return click.option("--workdir", type=click.Path(file_okay=False, path_type=Path), default=None,
                        expose_value=False, is_eager=True, callback=apply,
                        help="The work directory [default: DEEP_SPEAKER_WORKDIR, else work/].")(function)


def import_tensorflow_quietly():
    """Import TensorFlow (and Keras) with their C++ start-up lines (oneDNN, absl) silenced: nothing a user can
    act on. Whatever it printed is shown when the import fails."""
    if "keras" in sys.modules:
        return
    saved = os.dup(2)
    with tempfile.TemporaryFile() as log:
        os.dup2(log.fileno(), 2)
        try:
            import keras  # noqa: F401
            import tensorflow

            from ml.distribution import split_cpu
            split_cpu(tensorflow)  # before the runtime starts: CPU_DEVICES logical devices
        except BaseException:
            os.dup2(saved, 2)
            log.seek(0)
            sys.stderr.write(log.read().decode(errors="replace"))
            raise
        finally:
            os.dup2(saved, 2)
            os.close(saved)


def stop_cleanly_on_termination():
    """Turn SIGTERM into SystemExit, so that locks are released and temporary files removed as on Ctrl-C."""
    import signal

    def stop(signum, frame):
        raise SystemExit(f"stopped by signal {signum}")
    signal.signal(signal.SIGTERM, stop)
