"""Run a command under the system call filters a unit in deploy/ asks for, built as systemd 252
builds them, so a test sees what the service's own code meets:
- ``SystemCallFilter=`` lines: an allow list (``@default`` included) that later ``~`` lines
  take from, or a deny list (the first line ``~``), the groups read from ``systemd-analyze
  syscall-filter``; ``SystemCallErrorNumber=`` for the refused calls (none: killed);
- ``MemoryDenyWriteExecute=yes``: mmap asking for writable and executable memory, mprotect and
  pkey_mprotect adding execute, shmat with SHM_EXEC: refused with EPERM;
- ``RestrictNamespaces=``: unshare and clone asking for a namespace type not allowed, setns
  into one (or of an unnamed type): EPERM; clone3: ENOSYS, so the C library falls back to clone;
- ``RestrictAddressFamilies=`` (an allow list): socket() of any other family: EAFNOSUPPORT.

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
EQ, GE, MASKED_EQ = 4, 5, 7  # SCMP_CMP_*: argument == a, argument >= a, (argument & a) == b
PROT_WRITE, PROT_EXEC, SHM_EXEC = 0x2, 0x4, 0o100000
NAMESPACE_FLAGS = {"cgroup": 0x02000000, "ipc": 0x08000000, "net": 0x40000000,
                   "mnt": 0x00020000, "pid": 0x20000000, "user": 0x10000000, "uts": 0x04000000}
ADDRESS_FAMILIES = {"AF_UNIX": 1, "AF_INET": 2, "AF_INET6": 10, "AF_NETLINK": 16,
                    "AF_PACKET": 17}
AF_MAX = 46  # Linux 6.x: the families above it do not exist


# (call, action, (argument, comparison, a, b)): the action when the comparison holds
Rule = tuple[str, int, tuple[int, int, int, int]]


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


def listed_calls(filters: list[str], groups: dict[str, list[str]]) -> tuple[bool, set[str]]:
    """Whether ``SystemCallFilter=`` lines make an allow list, and the calls it lists: the
    first line says which (``~``: a deny list); a later line of the other kind takes from it,
    one of the same kind adds to it. An allow list always holds ``@default``."""
    allow = not filters[0].startswith("~")
    listed = expand(["@default"], groups) if allow else set()
    for line in filters:
        names = expand(line.removeprefix("~").split(), groups)
        same_kind = line.startswith("~") != allow
        listed = listed | names if same_kind else listed - names
    return allow, listed


def load_rules(seccomp: ctypes.CDLL, rules: list[Rule], what: str) -> None:
    """One filter allowing everything but what ``rules`` say; a call this libseccomp does not
    know is left out."""
    context = ctypes.c_void_p(seccomp.seccomp_init(ALLOW))
    for call, action, (argument, comparison, datum_a, datum_b) in rules:
        number = seccomp.seccomp_syscall_resolve_name(call.encode())
        rule = ArgumentRule(argument, comparison, datum_a, datum_b)
        if number >= 0 and seccomp.seccomp_rule_add_array(context, action, number, 1,
                                                          ctypes.byref(rule)) != 0:
            raise OSError(f"libseccomp refused the {what} rule for {call}")
    if seccomp.seccomp_load(context) != 0:
        raise OSError(f"libseccomp could not load the {what} filter")


def namespace_rules(setting: str) -> list[Rule]:
    """systemd's rules for ``RestrictNamespaces=``: yes, no, the allowed types, or ``~`` the
    refused ones."""
    if setting in ("no", "false"):
        return []
    named = set(setting.removeprefix("~").split())
    if setting in ("yes", "true"):
        refused = set(NAMESPACE_FLAGS)
    else:
        refused = named if setting.startswith("~") else set(NAMESPACE_FLAGS) - named
    deny = refuse_with(errno.EPERM)
    rules = [("setns", deny, (1, EQ, 0, 0)), ("clone3", refuse_with(errno.ENOSYS), (0, GE, 0, 0))]
    for kind in sorted(refused):
        flag = NAMESPACE_FLAGS[kind]
        rules += [("unshare", deny, (0, MASKED_EQ, flag, flag)),
                  ("clone", deny, (0, MASKED_EQ, flag, flag)),
                  ("setns", deny, (1, MASKED_EQ, flag, flag))]
    return rules


def address_family_rules(setting: str) -> list[Rule]:
    """systemd's rules for an allow list in ``RestrictAddressFamilies=``."""
    if setting.startswith("~"):
        raise ValueError(f"only an allow list of address families is emulated, not {setting}")
    allowed = {ADDRESS_FAMILIES[name] for name in setting.split()}
    refuse = refuse_with(errno.EAFNOSUPPORT)
    return [("socket", refuse, (0, EQ, family, 0))
            for family in range(AF_MAX) if family not in allowed] + [
        ("socket", refuse, (0, GE, AF_MAX, 0))]


def memory_rules() -> list[Rule]:
    """systemd's rules for ``MemoryDenyWriteExecute=yes``."""
    deny = refuse_with(errno.EPERM)
    write_execute = PROT_WRITE | PROT_EXEC
    return [("mmap", deny, (2, MASKED_EQ, write_execute, write_execute)),
            ("mprotect", deny, (2, MASKED_EQ, PROT_EXEC, PROT_EXEC)),
            ("pkey_mprotect", deny, (2, MASKED_EQ, PROT_EXEC, PROT_EXEC)),
            ("shmat", deny, (2, MASKED_EQ, SHM_EXEC, SHM_EXEC))]


def load_call_list(seccomp: ctypes.CDLL, allow: bool, listed: set[str], refusal: int) -> None:
    """Allow the listed calls and refuse every other, or the other way round (calls this
    libseccomp does not know are left out)."""
    context = ctypes.c_void_p(seccomp.seccomp_init(refusal if allow else ALLOW))
    for call in sorted(listed):
        number = seccomp.seccomp_syscall_resolve_name(call.encode())
        if number >= 0 and seccomp.seccomp_rule_add(
                context, ALLOW if allow else refusal, number, 0) != 0:
            raise OSError(f"libseccomp refused the rule for {call}")
    if seccomp.seccomp_load(context) != 0:
        raise OSError("libseccomp could not load the system call list")


def confine(unit: Path) -> None:
    """Load the unit's filters into this process (and so into what it executes next)."""
    settings = service_settings(unit)
    seccomp = ctypes.CDLL("libseccomp.so.2", use_errno=True)
    seccomp.seccomp_init.restype = ctypes.c_void_p
    seccomp.seccomp_syscall_resolve_name.argtypes = (ctypes.c_char_p,)
    if settings.get("MemoryDenyWriteExecute", ["no"])[-1] == "yes":
        load_rules(seccomp, memory_rules(), "MemoryDenyWriteExecute")
    if "RestrictNamespaces" in settings:
        load_rules(seccomp, namespace_rules(settings["RestrictNamespaces"][-1]),
                   "RestrictNamespaces")
    if "RestrictAddressFamilies" in settings:
        load_rules(seccomp, address_family_rules(settings["RestrictAddressFamilies"][-1]),
                   "RestrictAddressFamilies")
    # the list last: an allow list refuses seccomp() itself, as it does to the service
    if "SystemCallFilter" in settings:
        named = settings.get("SystemCallErrorNumber")
        refusal = refuse_with(getattr(errno, named[-1])) if named else KILL_PROCESS
        allow, listed = listed_calls(settings["SystemCallFilter"], syscall_groups())
        load_call_list(seccomp, allow, listed, refusal)


if __name__ == "__main__":
    split = sys.argv.index("--")
    confine(Path(sys.argv[1]))
    os.execvp(sys.argv[split + 1], sys.argv[split + 1:])
