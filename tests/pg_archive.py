"""A pg_dump custom-format archive taken apart and put back together, so that a test can hand
``store restore`` what no pg_dump writes: an entry whose SQL text says more than its type and
name in the archive's list (an attacker's archive).

The format is pg_dump's own (PostgreSQL's src/bin/pg_dump/pg_backup_archiver.c, ``WriteHead``
and ``WriteToc``; pg_backup_custom.c, ``_WriteExtraToc``): a header, then the table of contents
(an integer count, then each entry's fields), then the data blocks, which are kept as they are.
An integer is a sign byte and ``intSize`` bytes, little-endian; a string its length (-1: none)
and its bytes. Each entry's data offset (an absolute position in the file) is moved by as much
as the table of contents grew. Written for archive versions 1.14 and 1.15 (pg_dump 15-17).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

# each entry's fields, in the order they are written: "i" an integer, "s" a string
ENTRY_FIELDS = (("dump_id", "i"), ("had_dumper", "i"), ("tableoid", "s"), ("oid", "s"),
                ("tag", "s"), ("desc", "s"), ("section", "i"), ("defn", "s"),
                ("drop_stmt", "s"), ("copy_stmt", "s"), ("namespace", "s"),
                ("tablespace", "s"), ("tableam", "s"), ("owner", "s"), ("with_oids", "s"))


@dataclass
class Entry:
    """One entry of the table of contents: its fields by name, its dependencies, its data's
    offset (a flag byte and the position)."""

    fields: dict[str, int | str | None]
    dependencies: list[str] = field(default_factory=list)
    offset_flag: int = 0
    offset: int = 0


class Archive:
    """A custom-format archive read from ``path``; ``write`` puts it back, changed."""

    def __init__(self, path: Path) -> None:
        self.data = path.read_bytes()
        self.pos = 0
        if self.data[:5] != b"PGDMP":
            raise ValueError(f"{path} is no custom-format archive")
        self.version = tuple(self.data[5:8])
        self.int_size, self.off_size = self.data[8], self.data[9]
        self.pos = 11
        if self.version >= (1, 15, 0):
            self.pos += 1  # the compression algorithm, a byte
        else:
            self._int()  # the compression level
        for _ in range(7):  # the time it was made
            self._int()
        for _ in range(3):  # the database's name, the server's and pg_dump's versions
            self._str()
        self.head = self.data[:self.pos]
        self.entries = [self._entry() for _ in range(self._int())]
        self.toc_length = self.pos - len(self.head)
        self.rest = self.data[self.pos:]

    def entry(self, desc: str, tag: str) -> Entry:
        """The entry of that type (``TABLE``, ``INDEX``...) and name."""
        (found,) = [entry for entry in self.entries
                    if entry.fields["desc"] == desc and entry.fields["tag"] == tag]
        return found

    def insert_in_rows(self, dump_id: int, text: bytes) -> None:
        """Put ``text`` before the rows of the entry ``dump_id`` (an archive written without
        compression, ``pg_dump --compress=0``: a data block is a byte 1, the entry's id, then
        chunks, each its length and its bytes, and a length 0). The offsets of the blocks
        after it move by as much."""
        position = 0
        while self.rest[position] == 1:  # BLK_DATA
            self.pos = len(self.head) + self.toc_length + position + 1
            self.data = self.head + bytes(self.toc_length) + self.rest
            block_id = self._int()
            chunk = self.pos - len(self.head) - self.toc_length
            if block_id == dump_id:
                start = len(self.head) + self.toc_length + position  # the block's, in the file
                length = int.from_bytes(self.rest[chunk + 1:chunk + 1 + self.int_size],
                                        "little")
                body = chunk + 1 + self.int_size
                self.rest = (self.rest[:chunk] + self._int_bytes(length + len(text)) + text
                             + self.rest[body:])
                for entry in self.entries:
                    if entry.offset_flag == 2 and entry.offset > start:
                        entry.offset += len(text)
                return
            while (length := self._int()) != 0:
                self.pos += length
            position = self.pos - len(self.head) - self.toc_length
        raise ValueError(f"no rows of entry {dump_id} (or the archive is compressed)")

    def write(self, path: Path) -> None:
        """The archive, its entries as they are now, to ``path``."""
        toc = bytearray(self._int_bytes(len(self.entries)))
        for entry in self.entries:
            toc += self._entry_bytes(entry, 0)
        grown = len(toc) - self.toc_length
        toc = bytearray(self._int_bytes(len(self.entries)))
        for entry in self.entries:
            toc += self._entry_bytes(entry, grown)
        path.write_bytes(self.head + bytes(toc) + self.rest)

    def _entry(self) -> Entry:
        fields: dict[str, int | str | None] = {}
        for name, kind in ENTRY_FIELDS:
            fields[name] = self._int() if kind == "i" else self._str()
        dependencies = []
        while (dependency := self._str()) is not None:
            dependencies.append(dependency)
        flag = self.data[self.pos]
        offset = int.from_bytes(self.data[self.pos + 1:self.pos + 1 + self.off_size], "little")
        self.pos += 1 + self.off_size
        return Entry(fields, dependencies, flag, offset)

    def _entry_bytes(self, entry: Entry, grown: int) -> bytes:
        out = bytearray()
        for name, kind in ENTRY_FIELDS:
            value = entry.fields[name]
            out += self._int_bytes(int(value or 0)) if kind == "i" else self._str_bytes(
                None if value is None else str(value))
        for dependency in entry.dependencies:
            out += self._str_bytes(dependency)
        out += self._str_bytes(None)
        offset = entry.offset + grown if entry.offset_flag == 2 else entry.offset  # 2: set
        return bytes(out) + bytes([entry.offset_flag]) + offset.to_bytes(self.off_size, "little")

    def _int(self) -> int:
        sign = self.data[self.pos]
        value = int.from_bytes(self.data[self.pos + 1:self.pos + 1 + self.int_size], "little")
        self.pos += 1 + self.int_size
        return -value if sign else value

    def _str(self) -> str | None:
        length = self._int()
        if length < 0:
            return None
        text = self.data[self.pos:self.pos + length].decode()
        self.pos += length
        return text

    def _int_bytes(self, value: int) -> bytes:
        return bytes([value < 0]) + abs(value).to_bytes(self.int_size, "little")

    def _str_bytes(self, text: str | None) -> bytes:
        if text is None:
            return self._int_bytes(-1)
        raw = text.encode()
        return self._int_bytes(len(raw)) + raw
