"""The keys of the items a checkpoint did, kept as runs of consecutive keys.

A batch's report lists what the batch did, whatever its operation's `items()` matches afterwards
(an operation that marks invoices paid takes them out of its own `paid=False`). So each checkpoint
records the keys it did, in its own transaction. Items are walked in key order, and keys made
together are mostly consecutive: a page of 2,000 such items is one run, two integers. Keys spread
among other rows' (another event's tickets in between) cost a run each, a few bytes.

The encoding: for each run, the gap since the previous run's end and the run's length less one,
as unsigned LEB128 varints, the first run counted from the checkpoint's first key.
"""

from __future__ import annotations

from collections.abc import Container, Iterator, Sequence


class DoneKeys:
    """The keys done so far in one checkpoint, in ascending order, as [start, end] runs."""

    __slots__ = ("count", "runs")

    def __init__(self) -> None:
        self.runs: list[list[int]] = []
        self.count = 0

    def add(self, keys: Sequence[int], failed: Container[int] = ()) -> None:
        """Add a page of handled keys (ascending, beyond every key added before), less the failed ones."""
        if not keys:
            return
        if not failed and keys[-1] - keys[0] == len(keys) - 1:
            self._extend(keys[0], keys[-1])  # the usual page: one run, whatever its length
            self.count += len(keys)
            return
        runs, added = self.runs, 0
        for key in keys:
            if key in failed:
                continue
            if runs and runs[-1][1] + 1 == key:
                runs[-1][1] = key
            else:
                runs.append([key, key])
            added += 1
        self.count += added

    def _extend(self, start: int, end: int) -> None:
        runs = self.runs
        if runs and runs[-1][1] + 1 == start:
            runs[-1][1] = end
        else:
            runs.append([start, end])

    @property
    def first(self) -> int:
        return self.runs[0][0]

    @property
    def last(self) -> int:
        return self.runs[-1][1]

    def encode(self) -> bytes:
        numbers: list[int] = []
        previous_end = self.first - 1
        for start, end in self.runs:
            numbers += (start - previous_end - 1, end - start)
            previous_end = end
        if max(numbers) < 0x80:
            return bytes(numbers)  # every number fits a byte: its varint is itself
        out = bytearray()
        for number in numbers:
            _varint(out, number)
        return bytes(out)


def decode(first: int, data: bytes) -> Iterator[tuple[int, int]]:
    """The [start, end] runs of keys recorded from `first` (DoneKeys.encode), in ascending order."""
    numbers = _varints(data)
    previous_end = first - 1
    for gap in numbers:
        start = previous_end + 1 + gap
        previous_end = start + next(numbers)
        yield start, previous_end


def _varint(out: bytearray, value: int) -> None:
    while value > 0x7F:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)


def _varints(data: bytes) -> Iterator[int]:
    value = shift = 0
    for byte in data:
        value |= (byte & 0x7F) << shift
        if byte & 0x80:
            shift += 7
        else:
            yield value
            value = shift = 0
