"""The confinement primitives, one function per kernel mechanism (Linux; no-ops elsewhere).

Standard library only: the supervisor (supervisor.py) imports this file by path, in an
interpreter started with -I -S, before any of the project's dependencies could load.
Everything here acts on the calling process and its future children:

    unshare(flags)            new user / PID / network / IPC / mount namespaces
    write_id_maps(uid, gid)   the identity map of an unprivileged user namespace
    expose(paths, uid, gid)   in a private mount namespace, make `paths` reachable by uid:gid
    drop_capabilities()       uid 0 without any capability, for good (bounding set, securebits)
    set_limits(...)           RLIMIT_CPU / AS / FSIZE / NPROC / CORE / NOFILE
    install_seccomp(...)      refuse sockets other than AF_UNIX, io_uring, optionally new processes
    landlock_abi()            the kernel's Landlock ABI version (0: none)
    landlock_ruleset(...)     files: read here, write there, nothing else; no TCP; no signals out
    landlock_enforce(fd)      ... from now on, for this process and its children

Why each is there and what it guarantees: docs/sandbox.md.
"""

from __future__ import annotations

import ctypes
import errno
import os
import platform
import resource
import stat
import struct
import sys

LINUX = sys.platform.startswith("linux")
_libc = ctypes.CDLL(None, use_errno=True) if LINUX else None

CLONE_NEWNS = 0x00020000
CLONE_NEWIPC = 0x08000000
CLONE_NEWUSER = 0x10000000
CLONE_NEWPID = 0x20000000
CLONE_NEWNET = 0x40000000

PR_SET_PDEATHSIG = 1
PR_SET_SECUREBITS = 28
PR_CAPBSET_DROP = 24
PR_SET_SECCOMP = 22
PR_SET_CHILD_SUBREAPER = 36
PR_SET_NO_NEW_PRIVS = 38
PR_CAP_AMBIENT = 47
PR_CAP_AMBIENT_CLEAR_ALL = 4


def _check(ret: int, what: str) -> int:
    if ret < 0:
        e = ctypes.get_errno()
        raise OSError(e, f"{what}: {os.strerror(e)}")
    return ret


def prctl(option: int, a2: int = 0, a3: int = 0, a4: int = 0, a5: int = 0) -> int:
    return _check(_libc.prctl(ctypes.c_int(option), ctypes.c_ulong(a2), ctypes.c_ulong(a3), ctypes.c_ulong(a4),
                              ctypes.c_ulong(a5)), f"prctl({option})")


# --------------------------------------------------------------------------------------------
# Namespaces


def unshare(flags: int) -> None:
    _check(_libc.unshare(ctypes.c_int(flags)), f"unshare({flags:#x})")


def write_id_maps(uid: int, gid: int) -> None:
    """After unshare(CLONE_NEWUSER) by an unprivileged user: keep our own ids inside (an
    unmapped id could create no files). Inside the namespace we hold capabilities only until
    exec, which drops them because our uid there is not 0."""
    for name, text in (("setgroups", "deny"), ("uid_map", f"{uid} {uid} 1"), ("gid_map", f"{gid} {gid} 1")):
        with open(f"/proc/self/{name}", "w") as fh:
            fh.write(text)


MS_RDONLY, MS_NOSUID, MS_NODEV, MS_REMOUNT, MS_BIND, MS_REC, MS_PRIVATE = 1, 2, 4, 32, 4096, 16384, 1 << 18


def _mount(source: str, target: str, fstype: str | None, flags: int, data: str | None = None) -> None:
    _check(_libc.mount(source.encode() if source else None, target.encode(), fstype.encode() if fstype else None,
                       ctypes.c_ulong(flags), data.encode() if data else None), f"mount {target}")


def _traversable(st: os.stat_result, uid: int, gid: int, bit: int) -> bool:
    if st.st_uid == uid:
        return bool(st.st_mode & (bit << 6))
    if st.st_gid == gid:
        return bool(st.st_mode & (bit << 3))
    return bool(st.st_mode & bit)


def blocked_ancestor(path: str, uid: int, gid: int) -> str | None:
    """The highest directory above `path` (or `path` itself) that uid:gid cannot traverse or
    read, judged by the permission bits alone; None when it can reach and read `path`."""
    path = os.path.abspath(path)
    parts = path.strip("/").split("/")
    cur = "/"
    for i, part in enumerate([""] + parts):
        cur = os.path.join(cur, part) if part else "/"
        try:
            st = os.stat(cur)
        except OSError:
            return None  # a missing path needs no exposure
        last = i == len(parts)
        if stat.S_ISDIR(st.st_mode):
            ok = _traversable(st, uid, gid, 1) and (not last or _traversable(st, uid, gid, 4))
        else:
            ok = _traversable(st, uid, gid, 4)
        if not ok:
            return cur
    return None


def expose(paths: list[str], uid: int, gid: int, writable: list[str] = ()) -> list[str]:
    """In a new private mount namespace (the caller has unshared CLONE_NEWNS as root): for each
    path that uid:gid cannot reach because a directory above it is closed (an interpreter under
    /root, say), cover that directory with an empty tmpfs and bind the needed paths back into
    it, read-only (`writable` ones read-write). Everything else under the covered directory
    disappears from this namespace. Returns the covered directories."""
    _mount("none", "/", None, MS_REC | MS_PRIVATE)
    rw = {os.path.abspath(w) for w in writable}
    groups: dict[str, list[str]] = {}
    for p in list(paths) + sorted(rw):
        b = blocked_ancestor(p, uid, gid)
        if b is not None and b != os.path.abspath(p):
            groups.setdefault(b, []).append(os.path.abspath(p))
    covered = []
    for top in sorted(groups, key=len):
        if any(top.startswith(c + "/") for c in covered):
            continue
        inner = sorted({p for b, ps in groups.items() if b == top or b.startswith(top + "/") for p in ps}, key=len)
        keep = []
        for p in inner:  # nested paths are carried by their parent's bind mount (but a writable one is bound itself)
            if p in rw or not any(p.startswith(k + "/") for k in keep):
                keep.append(p)
        fds = [(p, os.open(p, os.O_PATH | os.O_CLOEXEC)) for p in keep]
        _mount("tmpfs", top, "tmpfs", MS_NOSUID | MS_NODEV, "mode=0755,size=64k")
        for p, fd in fds:
            isdir = stat.S_ISDIR(os.fstat(fd).st_mode)
            rel = os.path.relpath(p, top)
            parent = os.path.join(top, os.path.dirname(rel))
            os.makedirs(parent, mode=0o755, exist_ok=True)
            if isdir:
                os.makedirs(p, mode=0o755, exist_ok=True)
            else:
                open(p, "a").close()
            _mount(f"/proc/self/fd/{fd}", p, None, MS_BIND | MS_REC)
            if p not in rw:
                _mount("none", p, None, MS_REMOUNT | MS_BIND | MS_RDONLY | MS_REC)
            os.close(fd)
        covered.append(top)
    return covered


# --------------------------------------------------------------------------------------------
# Users and capabilities


class _CapHeader(ctypes.Structure):
    _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]


class _CapData(ctypes.Structure):
    _fields_ = [("effective", ctypes.c_uint32), ("permitted", ctypes.c_uint32), ("inheritable", ctypes.c_uint32)]


def drop_capabilities() -> None:
    """Stay uid 0 but hold no capability, now or after any exec: securebits NOROOT (locked),
    an empty bounding set, no ambient capabilities, empty capability sets."""
    bits = 0x01 | 0x02 | 0x04 | 0x08 | 0x20 | 0x40 | 0x80  # NOROOT, NO_SETUID_FIXUP, KEEP_CAPS off, NO_AMBIENT: locked
    prctl(PR_SET_SECUREBITS, bits)
    try:
        last = int(open("/proc/sys/kernel/cap_last_cap").read())
    except OSError:
        last = 40
    for cap in range(last + 1):
        try:
            prctl(PR_CAPBSET_DROP, cap)
        except OSError as e:
            if e.errno != errno.EINVAL:
                raise
    prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL)
    hdr = _CapHeader(0x20080522, 0)  # _LINUX_CAPABILITY_VERSION_3
    data = (_CapData * 2)()
    _check(_libc.capset(ctypes.byref(hdr), ctypes.byref(data)), "capset")


def become(uid: int, gid: int) -> None:
    """Switch every id to uid:gid with no supplementary groups (from root)."""
    os.setgroups([])
    os.setresgid(gid, gid, gid)
    os.setresuid(uid, uid, uid)


def count_processes(uid: int) -> int:
    """Processes (threads count too, as RLIMIT_NPROC counts them) of `uid` in this PID namespace."""
    n = 0
    try:
        for d in os.listdir("/proc"):
            if d.isdigit():
                try:
                    if os.stat(f"/proc/{d}").st_uid == uid:
                        n += len(os.listdir(f"/proc/{d}/task"))
                except OSError:
                    pass
    except OSError:
        return 0
    return n


# --------------------------------------------------------------------------------------------
# Resource limits


def set_limits(cpu_s: int | None, memory_mb: int | None, fsize_mb: int | None, nproc: int | None,
               nofile: int | None = 256) -> None:
    """Lower soft and hard limits (never raise one above the hard limit we were given).
    CPU: SIGXCPU at cpu_s, SIGKILL one second later."""
    def lower(lim, soft, hard=None):
        hard = soft if hard is None else hard
        cur_soft, cur_hard = resource.getrlimit(lim)
        if cur_hard != resource.RLIM_INFINITY:
            soft, hard = min(soft, cur_hard), min(hard, cur_hard)
        resource.setrlimit(lim, (soft, hard))

    if cpu_s is not None:
        lower(resource.RLIMIT_CPU, int(cpu_s), int(cpu_s) + 1)
    if memory_mb is not None and hasattr(resource, "RLIMIT_AS"):
        lower(resource.RLIMIT_AS, int(memory_mb) << 20)
    if fsize_mb is not None:
        lower(resource.RLIMIT_FSIZE, int(fsize_mb) << 20)
    if nproc is not None and hasattr(resource, "RLIMIT_NPROC"):
        lower(resource.RLIMIT_NPROC, int(nproc))
    if nofile is not None:
        lower(resource.RLIMIT_NOFILE, int(nofile))
    lower(resource.RLIMIT_CORE, 0)


# --------------------------------------------------------------------------------------------
# seccomp: a few system calls refused


_ARCH = {  # machine: (AUDIT_ARCH, nr(socket), nr(io_uring_setup), nr(clone), nr(clone3), nr(fork), nr(vfork), x32 bit)
    "x86_64": (0xC000003E, 41, 425, 56, 435, 57, 58, 0x40000000),
    "aarch64": (0xC00000B7, 198, 425, 220, 435, None, None, None),
}
AF_UNIX = 1
CLONE_THREAD = 0x00010000


def seccomp_supported() -> bool:
    return LINUX and platform.machine() in _ARCH


def install_seccomp(no_processes: bool = False) -> None:
    """Refuse socket() for every family but AF_UNIX (EACCES) and io_uring (ENOSYS, it could
    open sockets without socket()); with no_processes, refuse fork, vfork, clone without
    CLONE_THREAD (EAGAIN, as a full process table would) and clone3 (ENOSYS: the C library
    falls back to clone for threads). Other architectures' calls on this kernel: ENOSYS.
    Needs no_new_privs (set here)."""
    arch, nr_socket, nr_uring, nr_clone, nr_clone3, nr_fork, nr_vfork, x32 = _ARCH[platform.machine()]
    LD, JEQ, JGE, JSET, RET = 0x20, 0x15, 0x35, 0x45, 0x06
    ALLOW, ERRNO = 0x7FFF0000, 0x00050000
    prog: list[tuple[int, object, object, int]] = []  # (code, jt label or 0, jf label or 0, k)
    labels: dict[str, int] = {}

    def op(code, k, jt=0, jf=0):
        prog.append((code, jt, jf, k))

    op(LD, 4)                                   # seccomp_data.arch
    op(JEQ, arch, 0, "enosys")
    op(LD, 0)                                   # seccomp_data.nr
    if x32 is not None:
        op(JGE, x32, "enosys", 0)
    op(JEQ, nr_uring, "enosys", 0)
    if no_processes:
        op(JEQ, nr_clone3, "enosys", 0)
        for nr in (nr_fork, nr_vfork):
            if nr is not None:
                op(JEQ, nr, "eagain", 0)
        op(JEQ, nr_clone, 0, "not_clone")
        op(LD, 16)                              # args[0] (flags), low 32 bits
        op(JSET, CLONE_THREAD, "allow", "eagain")
        labels["not_clone"] = len(prog)
    op(JEQ, nr_socket, 0, "allow")
    op(LD, 16)                                  # args[0] (family), low 32 bits
    op(JEQ, AF_UNIX, "allow", 0)
    labels["eacces"] = len(prog)
    op(RET, ERRNO | errno.EACCES)
    labels["allow"] = len(prog)
    op(RET, ALLOW)
    labels["enosys"] = len(prog)
    op(RET, ERRNO | errno.ENOSYS)
    labels["eagain"] = len(prog)
    op(RET, ERRNO | errno.EAGAIN)

    raw = b""
    for pc, (code, jt, jf, k) in enumerate(prog):
        rel = [labels[j] - pc - 1 if isinstance(j, str) else j for j in (jt, jf)]
        raw += struct.pack("=HBBI", code, rel[0], rel[1], k)
    buf = ctypes.create_string_buffer(raw, len(raw))

    class SockFprog(ctypes.Structure):
        _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_void_p)]

    fprog = SockFprog(len(prog), ctypes.cast(buf, ctypes.c_void_p))
    prctl(PR_SET_NO_NEW_PRIVS, 1)
    _check(_libc.prctl(ctypes.c_int(PR_SET_SECCOMP), ctypes.c_ulong(2), ctypes.byref(fprog), ctypes.c_ulong(0),
                       ctypes.c_ulong(0)), "prctl(PR_SET_SECCOMP)")


# --------------------------------------------------------------------------------------------
# Landlock: which files, TCP ports and signals the process may use


_SYS_CREATE, _SYS_ADD, _SYS_RESTRICT = 444, 445, 446  # the same numbers on every architecture
FS_EXECUTE, FS_WRITE_FILE, FS_READ_FILE, FS_READ_DIR = 1, 2, 4, 8
FS_REFER, FS_TRUNCATE, FS_IOCTL_DEV = 1 << 13, 1 << 14, 1 << 15
FS_MAKE_CHAR, FS_MAKE_BLOCK = 1 << 6, 1 << 11
FILE_RIGHTS = FS_EXECUTE | FS_WRITE_FILE | FS_READ_FILE | FS_TRUNCATE | FS_IOCTL_DEV


def landlock_abi() -> int:
    if not LINUX:
        return 0
    r = _libc.syscall(ctypes.c_long(_SYS_CREATE), None, ctypes.c_size_t(0), ctypes.c_uint32(1))
    return max(0, r)


def handled_fs(abi: int) -> int:
    rights = (1 << 13) - 1
    if abi >= 2:
        rights |= FS_REFER
    if abi >= 3:
        rights |= FS_TRUNCATE
    if abi >= 5:
        rights |= FS_IOCTL_DEV
    return rights


def landlock_ruleset(abi: int, read: list[str], write: list[str], listable: list[str] = (),
                     devices: list[str] = ()) -> int:
    """A Landlock ruleset (an fd; enforce it with landlock_enforce): files and directories may be
    read (and executed) only beneath `read`, written only beneath `write`; `listable`
    directories may be listed, not read; `devices` (/dev/null, ...) opened read-write. With
    ABI >= 4 no TCP bind or connect at all; with ABI >= 6 no signal to a process outside the
    domain and no abstract UNIX socket outside it. Paths are opened now (missing ones skipped),
    so build it before giving up the rights to reach them."""
    fs = handled_fs(abi)
    net = 3 if abi >= 4 else 0
    scoped = 3 if abi >= 6 else 0
    attr = struct.pack("=QQQ", fs, net, scoped)[: 8 if abi < 4 else 16 if abi < 6 else 24]
    buf = ctypes.create_string_buffer(attr, len(attr))
    fd = _check(_libc.syscall(ctypes.c_long(_SYS_CREATE), buf, ctypes.c_size_t(len(attr)), ctypes.c_uint32(0)),
                "landlock_create_ruleset")
    read_rights = FS_EXECUTE | FS_READ_FILE | FS_READ_DIR
    write_rights = fs & ~(FS_MAKE_CHAR | FS_MAKE_BLOCK)
    dev_rights = (FS_READ_FILE | FS_WRITE_FILE | (FS_IOCTL_DEV if abi >= 5 else 0)) & fs
    for paths, rights in ((read, read_rights), (write, write_rights), (listable, FS_READ_DIR), (devices, dev_rights)):
        for p in paths:
            try:
                pfd = os.open(p, os.O_PATH | os.O_CLOEXEC)
            except OSError:
                continue
            try:
                r = rights if stat.S_ISDIR(os.fstat(pfd).st_mode) else rights & FILE_RIGHTS
                if not r:
                    continue
                rule = ctypes.create_string_buffer(struct.pack("=Qi", r, pfd), 12)
                _check(_libc.syscall(ctypes.c_long(_SYS_ADD), ctypes.c_int(fd), ctypes.c_int(1), rule,
                                     ctypes.c_uint32(0)), f"landlock_add_rule({p})")
            finally:
                os.close(pfd)
    return fd


def landlock_enforce(fd: int) -> None:
    """Confine this process and its future children to the ruleset `fd` (for good)."""
    prctl(PR_SET_NO_NEW_PRIVS, 1)
    _check(_libc.syscall(ctypes.c_long(_SYS_RESTRICT), ctypes.c_int(fd), ctypes.c_uint32(0)), "landlock_restrict_self")
    os.close(fd)
