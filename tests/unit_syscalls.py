"""Run a command under the system call filter a unit in deploy/ asks for, built as systemd 252
builds it, so a test sees what the service's own code meets: its ``SystemCallFilter=`` lines
(an allow list, ``@default`` included, then ``~`` removals), ``SystemCallErrorNumber=`` for
the refused calls, and ``MemoryDenyWriteExecute=yes`` as systemd's seccomp rules (mmap asking
for writable and executable memory, mprotect and pkey_mprotect adding execute, shmat with
SHM_EXEC: refused with EPERM). The groups are read from ``systemd-analyze syscall-filter``.

    python -m tests.unit_syscalls UNIT -- COMMAND [ARG...]

Filters are loaded with libseccomp (systemd's own library) through ctypes; each refused call
fails with its errno, as under systemd, so the command shows what it does then.
"""

from __future__ import annotations

import ctypes
import errno
import os
import subprocess
import sys
from pathlib import Path

ALLOW = 0x7FFF0000  # SCMP_ACT_ALLOW
KILL_PROCESS = 0x80000000  # SCMP_ACT_KILL_PROCESS: systemd's answer without an errno
MASKED_EQ = 7  # SCMP_CMP_MASKED_EQ: (argument & mask) == value
PROT_WRITE, PROT_EXEC, SHM_EXEC = 0x2, 0x4, 0o100000


class ArgumentRule(ctypes.Structure):
    """libseccomp's struct scmp_arg_cmp."""

    _fields_ = (("arg", ctypes.c_uint), ("op", ctypes.c_int),
                ("datum_a", ctypes.c_uint64), ("datum_b", ctypes.c_uint64))


def refuse_with(number: int) -> int:
    """SCMP_ACT_ERRNO(number)."""
    return 0x00050000 | (number & 0xFFFF)


def service_settings(unit: Path) -> dict[str, list[str]]:
    """Every ``Name=value`` of the unit, each name's values in order (sections not told apart:
    the filter's settings are [Service]'s only)."""
    settings: dict[str, list[str]] = {}
    for raw in unit.read_text().replace("\\\n", " ").splitlines():
        line = raw.strip()
        if line and not line.startswith(("#", "[")) and "=" in line:
            name, _, value = line.partition("=")
            settings.setdefault(name.strip(), []).append(value.strip())
    return settings


def syscall_groups() -> dict[str, list[str]]:
    """systemd's groups (``@system-service``, ...) and what each lists, groups included."""
    listing = subprocess.run(["systemd-analyze", "syscall-filter", "--no-pager"], check=True,
                             capture_output=True, text=True, timeout=60).stdout
    groups: dict[str, list[str]] = {}
    members: list[str] = []
    for line in listing.splitlines():
        if line.startswith("@"):
            members = groups.setdefault(line.strip(), [])
        elif line.strip() and not line.strip().startswith("#"):
            members.append(line.strip())
    return groups


def expand(names: list[str], groups: dict[str, list[str]]) -> set[str]:
    """The system calls that names (calls and groups) stand for."""
    calls: set[str] = set()
    for name in names:
        calls |= expand(groups[name], groups) if name.startswith("@") else {name}
    return calls


def allowed_calls(filters: list[str], groups: dict[str, list[str]]) -> set[str]:
    """The allow list that ``SystemCallFilter=`` lines make: the first names what is allowed
    (``@default`` always with it), each later ``~`` line removes, each other line adds."""
    if not filters or filters[0].startswith("~"):
        raise ValueError(f"only an allow list is emulated here, not {filters}")
    allowed = expand(["@default"], groups)
    for line in filters:
        names = expand(line.removeprefix("~").split(), groups)
        allowed = allowed - names if line.startswith("~") else allowed | names
    return allowed


def load_memory_deny_write_execute(seccomp: ctypes.CDLL) -> None:
    """systemd's MemoryDenyWriteExecute=yes rules, as a filter of their own."""
    context = ctypes.c_void_p(seccomp.seccomp_init(ALLOW))
    for call, argument, mask in (("mmap", 2, PROT_WRITE | PROT_EXEC), ("mprotect", 2, PROT_EXEC),
                                 ("pkey_mprotect", 2, PROT_EXEC), ("shmat", 2, SHM_EXEC)):
        rule = ArgumentRule(argument, MASKED_EQ, mask, mask)
        number = seccomp.seccomp_syscall_resolve_name(call.encode())
        if seccomp.seccomp_rule_add_array(context, refuse_with(errno.EPERM), number, 1,
                                          ctypes.byref(rule)) != 0:
            raise OSError(f"libseccomp refused the rule for {call}")
    if seccomp.seccomp_load(context) != 0:
        raise OSError("libseccomp could not load the MemoryDenyWriteExecute filter")


def load_allow_list(seccomp: ctypes.CDLL, allowed: set[str], refusal: int) -> None:
    """Allow these calls (those this libseccomp knows); every other gets the refusal."""
    context = ctypes.c_void_p(seccomp.seccomp_init(refusal))
    for call in sorted(allowed):
        number = seccomp.seccomp_syscall_resolve_name(call.encode())
        if number >= 0 and seccomp.seccomp_rule_add(context, ALLOW, number, 0) != 0:
            raise OSError(f"libseccomp refused to allow {call}")
    if seccomp.seccomp_load(context) != 0:
        raise OSError("libseccomp could not load the allow list")


def confine(unit: Path) -> None:
    """Load the unit's filters into this process (and so into what it executes next)."""
    settings = service_settings(unit)
    seccomp = ctypes.CDLL("libseccomp.so.2", use_errno=True)
    seccomp.seccomp_init.restype = ctypes.c_void_p
    seccomp.seccomp_syscall_resolve_name.argtypes = (ctypes.c_char_p,)
    # this filter first: the allow list refuses seccomp() itself, as it does to the service
    if settings.get("MemoryDenyWriteExecute", ["no"])[-1] == "yes":
        load_memory_deny_write_execute(seccomp)
    if "SystemCallFilter" in settings:
        named = settings.get("SystemCallErrorNumber")
        refusal = refuse_with(getattr(errno, named[-1])) if named else KILL_PROCESS
        load_allow_list(seccomp, allowed_calls(settings["SystemCallFilter"], syscall_groups()),
                        refusal)


if __name__ == "__main__":
    split = sys.argv.index("--")
    confine(Path(sys.argv[1]))
    os.execvp(sys.argv[split + 1], sys.argv[split + 1:])
