"""Writing files safely: atomic writes, the overwrite policy, and names taken from data.

Every file rawcnn writes goes through `atomic_path` (or `atomic_open`): the content is written to a
temporary file in the target's folder, named

    .rawcnn-tmp-<pid>-<8 hex digits>-<target name>

(a name only rawcnn makes: its pid and a random token), then renamed onto the target with
os.replace, which is atomic on one file system. A crash leaves the previous file untouched and, at
worst, a temporary of that exact pattern; `remove_stale_temporaries` deletes those whose process is
gone, and nothing else.

The overwrite policy is a context, not a setting of the process: library calls may replace files
(outside any command); the command line runs each command inside `with command_outputs(overwrite)`,
and inside it a file that exists and was not written inside it is refused with OverwriteError unless
--overwrite was given. The OutputPolicy it yields remembers what the command wrote, so a command may
rewrite its own outputs (last.h5 every epoch). The policy lives in a contextvars.ContextVar: it holds
for the code the `with` block runs, in its thread, and is gone when the block ends (an exception
included); a thread the command starts sees the library's behaviour.
"""
import contextlib
import contextvars
import dataclasses
import os
import re
import secrets
import shutil

TMP_PREFIX = ".rawcnn-tmp-"
TMP_PATTERN = re.compile(r"^\.rawcnn-tmp-(\d+)-([0-9a-f]{8})-(.+)$")


class OverwriteError(ValueError):
    """An output that exists, was not written by this run, and --overwrite was not given."""


@dataclasses.dataclass
class OutputPolicy:
    """One command's outputs: whether it may replace files it did not write (`overwrite`, its
    --overwrite), the flag its refusals name, and the real paths of the files it wrote (`created`)."""
    overwrite: bool = False
    flag: str = "--overwrite"
    created: set = dataclasses.field(default_factory=set)


_COMMAND = contextvars.ContextVar("rawcnn_command_outputs", default=None)  # None: a library call


@contextlib.contextmanager
def command_outputs(overwrite=False, flag="--overwrite"):
    """Run a command's body under its own OutputPolicy (yielded): without `overwrite` it replaces no
    file it did not write itself. The previous policy (none, for a library caller) is back on exit."""
    policy = OutputPolicy(overwrite=bool(overwrite), flag=flag)
    token = _COMMAND.set(policy)
    try:
        yield policy
    finally:
        _COMMAND.reset(token)


def overwrite_allowed():
    """True for a library call, else the running command's --overwrite."""
    policy = _COMMAND.get()
    return policy is None or policy.overwrite


def _key(path):
    return os.path.realpath(os.fspath(path))


def mark_created(path):
    """Record that the running command wrote `path` (it may replace it again without --overwrite)."""
    policy = _COMMAND.get()
    if policy is not None:
        policy.created.add(_key(path))


def created_here(path):
    """Whether the running command wrote `path` (False for a library call: there is no run to remember)."""
    policy = _COMMAND.get()
    return policy is not None and _key(path) in policy.created


def check_target(path, what="file"):
    """Raise OverwriteError when `path` exists, this run did not create it, and overwriting is off."""
    path = os.fspath(path)
    policy = _COMMAND.get()
    if os.path.lexists(path) and not overwrite_allowed() and not created_here(path):
        raise OverwriteError(f"{path}: the {what} exists and this command did not create it; rawcnn replaces "
                             f"nothing unless asked: pass {policy.flag} to replace it, or choose another --out")


def check_targets(paths, what="file"):
    for p in paths:
        check_target(p, what)


# Folders no command writes into: the filesystem root, the top-level system folders themselves (a
# subfolder of /tmp, /home or /opt is fine), the well-known system subfolders, anything under /etc,
# /proc, /sys or /boot, and the user's home folder itself (HOME; its subfolders are fine).
SYSTEM_FOLDERS = ("/", "/bin", "/boot", "/dev", "/etc", "/lib", "/lib32", "/lib64", "/libx32", "/proc", "/root",
                  "/run", "/sbin", "/sys", "/usr", "/var", "/srv", "/opt", "/home", "/mnt", "/media", "/tmp",
                  "/usr/bin", "/usr/sbin", "/usr/lib", "/usr/lib32", "/usr/lib64", "/usr/libx32", "/usr/libexec",
                  "/usr/include", "/usr/share", "/usr/src", "/usr/local", "/usr/local/bin", "/usr/local/sbin",
                  "/usr/local/lib", "/usr/local/include", "/usr/local/share", "/usr/local/etc", "/var/lib",
                  "/var/log", "/var/cache", "/var/tmp", "/var/spool", "/var/run", "/var/lock", "/var/mail",
                  "/var/opt", "/var/local", "/var/backups", "/var/www")
SYSTEM_TREES = ("/etc", "/proc", "/sys", "/boot")


class SystemFolderError(ValueError):
    """An output folder that is the filesystem root, a system folder or the home folder itself."""


def _system_reason(folder):
    """Why `folder` (absolute, normalised) is not a place for outputs, or None."""
    if folder == "/":
        return "the filesystem root"
    home = os.environ.get("HOME")
    homes = {os.path.normpath(home), os.path.realpath(home)} if home and os.path.isabs(home) else set()
    if folder in homes:
        return "your home folder itself"
    if folder in SYSTEM_FOLDERS or folder in {os.path.realpath(f) for f in SYSTEM_FOLDERS}:
        return "a system folder"
    if any(folder.startswith(t + "/") for t in SYSTEM_TREES):
        return "inside a system folder"
    return None


def check_out_folder(path, *, folder=True, flag="--out"):
    """Raise SystemFolderError when output `path` would put files straight into the filesystem root, a
    system folder (SYSTEM_FOLDERS, anything under SYSTEM_TREES) or the home folder itself.

    folder: True when `path` is the output folder, False when it is a file (or a file's stem) whose
    folder is checked. The path is checked as given (made absolute) and with symbolic links resolved.
    --overwrite does not change this.
    """
    p = os.path.abspath(os.fspath(path))
    d = p if folder else os.path.dirname(p)
    for cand in dict.fromkeys((os.path.normpath(d), os.path.realpath(d))):
        why = _system_reason(cand)
        if why:
            what = f"{flag} {path}" if folder else f"the folder of {flag} {path}, {cand},"
            shown = "" if cand == os.path.normpath(d) else f" ({cand} with links resolved)"
            hint = ("one under your home folder" if why.startswith("inside") else
                    f"a subfolder, e.g. {os.path.join(cand, 'rawcnn-out')}")
            raise SystemFolderError(f"{what}{shown} is {why}; rawcnn writes its outputs only into a folder of "
                                    f"your own: give {hint}")


def temp_name(path):
    """A fresh temporary path beside `path` (see the module docstring for the pattern)."""
    path = os.fspath(path)
    d, base = os.path.split(os.path.abspath(path))
    return os.path.join(d, f"{TMP_PREFIX}{os.getpid()}-{secrets.token_hex(4)}-{base}")


def _fsync_dir(d):
    try:
        fd = os.open(d, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


@contextlib.contextmanager
def atomic_path(path, *, check=True, fsync=False, what="file"):
    """Yield a temporary path to write; on success rename it onto `path` (policy-checked first).

    The temporary ends with the target's own name, so writers that pick the format from the
    extension (cv2.imwrite) see the right one. On any exception the temporary is removed and the
    target is left as it was.
    """
    path = os.fspath(path)
    if check:
        check_target(path, what)
    d = os.path.dirname(os.path.abspath(path))
    os.makedirs(d, exist_ok=True)
    tmp = temp_name(path)
    try:
        yield tmp
        if fsync:
            with open(tmp, "rb+") as fh:
                os.fsync(fh.fileno())
        if os.path.exists(tmp):
            umask = os.umask(0)
            os.umask(umask)
            os.chmod(tmp, 0o666 & ~umask)
        os.replace(tmp, path)
        mark_created(path)
        if fsync:
            _fsync_dir(d)
    except BaseException:
        with contextlib.suppress(OSError):
            os.remove(tmp)
        raise


@contextlib.contextmanager
def atomic_open(path, mode="w", *, check=True, fsync=False, **kw):
    """open() a temporary for writing and rename it onto `path` when the block ends without error."""
    with atomic_path(path, check=check, fsync=fsync) as tmp:
        with open(tmp, mode, **kw) as fh:
            yield fh


def copy_atomic(src, dst, *, check=True, fsync=False):
    """Copy file `src` onto `dst` atomically (through a temporary beside dst)."""
    with atomic_path(dst, check=check, fsync=fsync) as tmp:
        shutil.copyfile(src, tmp)


def _alive(pid):
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True
    return True


def remove_stale_temporaries(folder, target_names=None):
    """Delete rawcnn's own temporaries in `folder` left by a process that is gone; returns their paths.

    Only names matching the pattern of temp_name are considered (optionally only those for the
    targets `target_names`); a temporary of a running process is left alone.
    """
    removed = []
    try:
        names = os.listdir(folder)
    except OSError:
        return removed
    for name in names:
        m = TMP_PATTERN.match(name)
        if not m or (target_names is not None and m.group(3) not in target_names):
            continue
        if _alive(int(m.group(1))):
            continue
        p = os.path.join(folder, name)
        if os.path.isfile(p) and not os.path.islink(p):
            with contextlib.suppress(OSError):
                os.remove(p)
                removed.append(p)
    return removed


_UNSAFE = re.compile(r"[^A-Za-z0-9._+-]+")


def safe_name(name, default="item", max_len=120):
    """A file name made from a string taken from data: no folders, no '..', no hidden or odd characters.

    '../../x' -> 'x', '/abs/path' -> 'abs_path', 'normal/MCUCXR_0001_0' -> 'normal_MCUCXR_0001_0'.
    """
    s = str(name).replace("\\", "/")
    parts = [p for p in s.split("/") if p not in ("", ".", "..")]
    s = _UNSAFE.sub("_", "_".join(parts)).strip("._") or default
    return s[:max_len]


def inside(folder, name):
    """os.path.join(folder, safe_name(name)), checked to stay inside `folder`."""
    p = os.path.join(folder, safe_name(name))
    root = os.path.realpath(folder)
    if os.path.commonpath([root, os.path.realpath(p)]) != root:
        raise ValueError(f"{name!r}: would write outside {folder}")
    return p
