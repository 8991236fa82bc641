"""Slide names, patient ids and labels in one Unicode form, so that what reads the same is
the same.

An accented letter has two encodings: one code point (NFC, as Linux and Windows tools and
most spreadsheets write ``é``) or a letter followed by a combining accent (NFD, as macOS
file systems long wrote file names, and files copied from them keep). Compared as written,
``café.jpg`` from a Mac missed the ``café`` row of labels.csv, and two files that look alike
were two slides. Every name is compared and stored in NFC (Unicode Standard Annex #15); a
file is looked up as written, then under both spellings, and two files whose names are one
name in NFC are refused as one slide named twice.
"""

from __future__ import annotations

import unicodedata


def one_form(text: str) -> str:
    """``text`` in Unicode normalisation form C (composed), the form names are kept in."""
    return unicodedata.normalize("NFC", text)


def spellings(name: str) -> tuple[str, ...]:
    """The spellings a file of this name may have on disk: as written first, then NFC and
    NFD where they differ. NFC is not always the name as typed: it replaces a few characters
    by others that read the same (Å U+212B by U+00C5, CJK compatibility ideographs), and a
    file named with those keeps them."""
    return tuple(dict.fromkeys((name, one_form(name), unicodedata.normalize("NFD", name))))


def differ_only_in_form(first: str, second: str) -> bool:
    """Whether two names differ as written but are one name in NFC."""
    return first != second and one_form(first) == one_form(second)
