"""The table of contents of a pg_dump custom-format archive, read as it is written: each
entry's type and name, and the SQL text it carries (its definition, its DROP and, for a
table's rows, the COPY statement that loads them).

``pg_restore --list`` prints an entry's type and name only, which are labels: the text is
what ``pg_restore`` runs, and only this file shows it. The format is pg_dump's own
(PostgreSQL's src/bin/pg_dump/pg_backup_archiver.c, ``WriteHead`` and ``WriteToc``): the
magic ``PGDMP``, the archive version, the sizes of an integer and an offset, the format, the
compression, the time it was made and three strings; then a count and each entry's fields.
An integer is a sign byte and ``intSize`` bytes, little-endian; a string its length (-1: none)
and its bytes. Versions 1.14 (pg_dump 12) to 1.16 (pg_dump 17) are read; the data blocks
after the table are not.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from appliance.backoffice.store_backup import BackupError

MAGIC = b"PGDMP"
FORMAT_CUSTOM = 1
READ_VERSIONS = ((1, 14), (1, 15), (1, 16))
MAX_ENTRIES = 100_000  # a store's archive holds about a hundred
MAX_TEXT = 16 * 1024 * 1024  # one entry's SQL; a store's longest is a few kB


@dataclass(frozen=True)
class ArchiveEntry:
    """One entry of an archive's table of contents."""

    dump_id: int
    desc: str  # its type: TABLE, INDEX, TABLE DATA, SEQUENCE SET...
    tag: str  # its name
    namespace: str
    defn: str
    drop_stmt: str
    copy_stmt: str

    @property
    def named(self) -> str:
        """As ``pg_restore --list`` names it: ``TYPE SCHEMA NAME``."""
        return f"{self.desc} {self.namespace or '-'} {self.tag}"


def archive_entries(path: Path) -> list[ArchiveEntry]:
    """The entries of the custom-format archive at ``path``; a BackupError naming it when it
    is none, or one of a version this appliance does not read."""
    with path.open("rb") as file:
        try:
            return _Reader(file, path).entries()
        except (EOFError, UnicodeDecodeError) as exc:
            raise BackupError(f"{path} is damaged or is no pg_dump archive (its table of "
                              f"contents cannot be read: {exc})") from exc


class _Reader:
    """Reads the header and the table of contents, field by field."""

    def __init__(self, file: BinaryIO, path: Path) -> None:
        self.file, self.path = file, path
        self.int_size, self.off_size = 4, 8  # as the header says

    def entries(self) -> list[ArchiveEntry]:
        version = self._header()
        count = self._int()
        if not 0 <= count <= MAX_ENTRIES:
            raise EOFError(f"{count} entries")
        return [self._entry(version) for _ in range(count)]

    def _header(self) -> tuple[int, int]:
        head = self._bytes(11)
        version = (head[5], head[6])
        if head[:5] != MAGIC or head[10] != FORMAT_CUSTOM:
            raise BackupError(f"{self.path} is no pg_dump archive of the custom format "
                              "(`store backup` writes pg_dump --format=custom)")
        if version not in READ_VERSIONS:
            raise BackupError(f"{self.path} is a pg_dump archive of version {version[0]}."
                              f"{version[1]}, which this appliance does not read (it reads "
                              "those of pg_dump 12 to 17): restore it with a newer appliance")
        self.int_size, self.off_size = head[8], head[9]
        if version >= (1, 15):
            self._bytes(1)  # the compression algorithm
        else:
            self._int()  # the compression level
        for _ in range(7):  # the time it was made
            self._int()
        for _ in range(3):  # the database's name, the server's and pg_dump's versions
            self._str()
        return version

    def _entry(self, version: tuple[int, int]) -> ArchiveEntry:
        dump_id, _had_dumper = self._int(), self._int()
        self._str(), self._str()  # the object's catalog and oid
        tag, desc = self._str(), self._str()
        self._int()  # its section
        defn, drop_stmt, copy_stmt = self._str(), self._str(), self._str()
        namespace = self._str()
        self._str(), self._str()  # its tablespace, its table access method
        if version >= (1, 16):
            self._int()  # its relkind
        self._str(), self._str()  # its owner, "false" (WITH OIDS)
        while self._optional_str() is not None:  # its dependencies
            pass
        self._bytes(1 + self.off_size)  # its data's offset
        return ArchiveEntry(dump_id, desc, tag, namespace, defn, drop_stmt, copy_stmt)

    def _bytes(self, count: int) -> bytes:
        read = self.file.read(count)
        if len(read) != count:
            raise EOFError("the file ends inside its table of contents")
        return read

    def _int(self) -> int:
        sign, *_ = self._bytes(1)
        value = int.from_bytes(self._bytes(self.int_size), "little")
        return -value if sign else value

    def _str(self) -> str:
        return self._optional_str() or ""

    def _optional_str(self) -> str | None:
        length = self._int()
        if length < 0:
            return None
        if length > MAX_TEXT:
            raise EOFError(f"a string of {length} bytes")
        return self._bytes(length).decode()
