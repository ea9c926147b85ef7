"""The seccomp filter every box runs under, compiled once to BPF for ``bwrap --seccomp FD``.

Default allow, with a deny list aimed at what namespaces do not cover:
- sockets of any family but AF_UNIX (AF_VSOCK reaches the VM host whatever the network
  namespace says; AF_INET/INET6/NETLINK/PACKET are gone too, belt and braces);
- kernel attack surface and escape tools: ptrace, mount, unshare/setns and namespace
  flags on clone, keyctl, bpf, perf_event_open, userfaultfd, io_uring, personality,
  module loading, kexec, swap, reboot;
- clone3 answers ENOSYS (its flags sit in memory BPF cannot read), so libc falls back
  to clone, whose flags we can check.
Syscalls of other architectures (x32, i386 via int 0x80) kill the process: libseccomp's
default bad-arch action.
"""

from __future__ import annotations

import errno
import os
import socket

DENIED_SYSCALLS = (
    "ptrace", "process_vm_readv", "process_vm_writev",
    "mount", "umount2", "pivot_root", "chroot", "move_mount", "open_tree", "fsopen",
    "fsconfig", "fsmount", "fspick", "mount_setattr",
    "unshare", "setns",
    "keyctl", "add_key", "request_key",
    "bpf", "perf_event_open", "userfaultfd",
    "io_uring_setup", "io_uring_enter", "io_uring_register",
    "personality",
    "init_module", "finit_module", "delete_module", "kexec_load", "kexec_file_load",
    "swapon", "swapoff", "reboot", "acct", "quotactl",
    "open_by_handle_at", "name_to_handle_at",
    "lookup_dcookie", "syslog",
)

# CLONE_NEW* flags: a clone with any of them would create namespaces.
CLONE_NAMESPACE_FLAGS = (
    0x00020000,  # CLONE_NEWNS
    0x02000000,  # CLONE_NEWCGROUP
    0x04000000,  # CLONE_NEWUTS
    0x08000000,  # CLONE_NEWIPC
    0x10000000,  # CLONE_NEWUSER
    0x20000000,  # CLONE_NEWPID
    0x40000000,  # CLONE_NEWNET
    0x00000080,  # CLONE_NEWTIME
)


_CACHE: list[bytes] = []


def build_filter_bpf() -> bytes:
    """The compiled filter (cached: it is the same for every box)."""
    if _CACHE:
        return _CACHE[0]
    import pyseccomp as sc

    f = sc.SyscallFilter(defaction=sc.ALLOW)
    deny = sc.ERRNO(errno.EPERM)
    for name in DENIED_SYSCALLS:
        try:
            f.add_rule(deny, name)
        except (OSError, ValueError, RuntimeError):
            continue  # a syscall this kernel/libseccomp does not know: nothing to deny
    for name in ("socket", "socketpair"):
        f.add_rule(sc.ERRNO(errno.EAFNOSUPPORT), name, sc.Arg(0, sc.NE, socket.AF_UNIX))
    for flag in CLONE_NAMESPACE_FLAGS:
        f.add_rule(deny, "clone", sc.Arg(0, sc.MASKED_EQ, flag, flag))
    f.add_rule(sc.ERRNO(errno.ENOSYS), "clone3")
    fd = os.memfd_create("seccomp-bpf", 0)
    try:
        with os.fdopen(os.dup(fd), "wb") as out:
            f.export_bpf(out)
        size = os.lseek(fd, 0, os.SEEK_END)
        bpf = os.pread(fd, size, 0)
    finally:
        os.close(fd)
    if not bpf or len(bpf) % 8:
        raise RuntimeError(f"unexpected BPF program size {len(bpf)}")
    _CACHE.append(bpf)
    return bpf
