"""Calls the tests hand to preparation worker processes (appliance/pathology/workerpool.py) to
end a worker at a chosen moment of a call, as the kernel's out-of-memory killer may: as it
takes the call, while it runs it, or while it sends the answer back. They run inside the
worker, which imports this module to unpickle them."""

from __future__ import annotations

import os
import signal
import tempfile
import time
from multiprocessing.connection import Connection
from typing import Any

from appliance.pathology.slideworker import PreparedTiles, prepare_for_model


def answer(value: Any) -> Any:
    """The value itself, from the worker."""
    return value


def fail(text: str) -> None:
    """An error raised inside the worker."""
    raise ValueError(text)


def die_now() -> None:
    """SIGKILL this process at once."""
    os.kill(os.getpid(), signal.SIGKILL)


class DiesWhenTaken:
    """An argument whose unpickling kills the worker: it dies as it takes its call."""

    def __reduce__(self) -> tuple[Any, tuple[()]]:
        return die_now, ()


def die_while_answering(size_bytes: int) -> bytes:
    """An answer of size_bytes, of which the worker dies after sending the first kilobyte."""
    _die_after_the_first_kilobyte_of_a_large_message()
    return bytes(size_bytes)


def prepare_then_die_while_answering(job_id: str, slide_index: int, *args: Any,
                                     **kwargs: Any) -> PreparedTiles:
    """``prepare_for_model``; slide 0's worker dies after sending the first kilobyte of it."""
    if slide_index == 0:
        _die_after_the_first_kilobyte_of_a_large_message()
    return prepare_for_model(job_id, slide_index, *args, **kwargs)


def prepare_or_die(job_id: str, slide_index: int, *args: Any, **kwargs: Any) -> PreparedTiles:
    """``prepare_for_model``; slide 0's worker dies as it starts preparing it."""
    if slide_index == 0:
        die_now()
    return prepare_for_model(job_id, slide_index, *args, **kwargs)


def die_the_first_time(marker: str) -> int:
    """SIGKILL this process if the file ``marker`` is not there yet (it is made first); else
    this process's id: a call that kills its first worker only."""
    try:
        with open(marker, "x"):
            pass
    except FileExistsError:
        return os.getpid()
    die_now()
    return 0


def prepare_slowly(job_id: str, slide_index: int, *args: Any, **kwargs: Any) -> PreparedTiles:
    """``prepare_for_model``; slide 0 takes 120 s first, as a codec's own loop may."""
    if slide_index == 0:
        time.sleep(120)
    return prepare_for_model(job_id, slide_index, *args, **kwargs)


def prepare_or_die_once(job_id: str, slide_index: int, *args: Any,
                        **kwargs: Any) -> PreparedTiles:
    """``prepare_for_model``; slide 0's first worker dies as it starts preparing it (the
    marker file beside the system's temporary files is named for the job)."""
    if slide_index == 0:
        die_the_first_time(os.path.join(tempfile.gettempdir(),
                                        "pathology-hook-" + job_id.replace("/", "-")))
    return prepare_for_model(job_id, slide_index, *args, **kwargs)


def prepare_or_name_an_undecodable_file(job_id: str, slide_index: int, *args: Any,
                                        **kwargs: Any) -> PreparedTiles:
    """``prepare_for_model``; slide 0 fails with an error naming a file whose name is not
    UTF-8 as Python reads it (a surrogate), as a decoder's error may name the file it read."""
    if slide_index == 0:
        return PreparedTiles(job_id, 0, error=os.fsdecode(b"/slides/\xff.jpg: corrupt"))
    return prepare_for_model(job_id, slide_index, *args, **kwargs)


def _die_after_the_first_kilobyte_of_a_large_message() -> None:
    """From now on this process dies in the middle of writing any message over 16 KiB to a
    multiprocessing pipe (Connection._send_bytes writes such a message's 4-byte length, then
    the message, through _send)."""
    send = Connection._send  # type: ignore[attr-defined]  # noqa: SLF001 - where a pipe is written

    def send_then_die(connection: Connection, buf: bytes, write: Any = os.write) -> None:
        if len(buf) > 16384:
            send(connection, memoryview(buf)[:1024], write)
            die_now()
        send(connection, buf, write)

    Connection._send = send_then_die  # type: ignore[attr-defined]  # noqa: SLF001 - this worker only
