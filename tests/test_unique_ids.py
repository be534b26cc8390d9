"""Ids unique without a system call each: a prefix per process, a counter; a forked worker draws its own."""

from __future__ import annotations

import os

from asgi_aigw.kernel.unique_ids import IdSource


def test_numbers_count_up_under_one_prefix() -> None:
    ids = IdSource(6)
    assert len(ids.prefix) == 12
    assert [ids.next_number() for _ in range(3)] == [1, 2, 3]
    assert IdSource(6).prefix != ids.prefix


def test_a_forked_child_draws_a_prefix_of_its_own() -> None:
    ids = IdSource(8)
    ids.next_number()
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: report its prefix and first number, and leave at once
        os.write(write, f"{ids.prefix} {ids.next_number()}".encode())
        os._exit(0)
    os.close(write)
    child_prefix, child_number = os.read(read, 100).decode().split()
    os.waitpid(pid, 0)
    os.close(read)
    assert child_prefix != ids.prefix
    assert child_number == "1"
    assert ids.next_number() == 2
