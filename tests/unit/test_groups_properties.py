"""Property tests: the group engine's loss, skip and rewind counts against a brute-force
reference on random histories of one partition.

The reference keeps the set of offsets the group has accounted for (read, lost or skipped) and
walks every offset: a direct transcription of the definitions in docs/groups.md, sharing no
code with the interval arithmetic of workers/engine/groups.py.
"""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from workers.engine.groups import (
    LOST,
    REWOUND,
    SKIPPED,
    GroupObservation,
    PartitionObservation,
    Policy,
    advance,
)

MEMBER = ("app@/10.0.0.1",)


class Reference:
    def __init__(self) -> None:
        self.accounted: set[int] = set()
        self.committed: int | None = None
        self.members: tuple[str, ...] | None = None
        self.counts = {LOST: 0, SKIPPED: 0, REWOUND: 0}

    def sample(self, c: int, s: int, e: int, members: tuple[str, ...], epoch: int | None) -> None:
        prev, prev_members = self.committed, self.members
        if prev is not None and c < prev:
            self.counts[REWOUND] += sum(1 for o in range(c, prev) if o >= s)
        if prev is not None and c > prev and not prev_members and not members and epoch is None:
            for o in range(prev, min(c, e)):
                if o not in self.accounted:
                    self.counts[LOST if o < s else SKIPPED] += 1
                    self.accounted.add(o)
        self.accounted.update(range(c))  # a commit at c says everything below was dealt with
        for o in range(c, s):
            if o not in self.accounted:
                self.counts[LOST] += 1
                self.accounted.add(o)
        self.committed, self.members = c, members


step = st.tuples(
    st.integers(0, 6),  # log start grows by
    st.integers(0, 8),  # log end grows by
    st.one_of(
        st.just(("stay", 0)),
        st.tuples(st.just("forward"), st.integers(0, 10)),
        st.tuples(st.just("back"), st.integers(1, 15)),
        st.tuples(st.just("to"), st.integers(0, 80)),
    ),
    st.booleans(),  # members present
    st.sampled_from([None, 0]),  # the commit's leader epoch
)


@settings(max_examples=400, deadline=None)
@given(st.integers(0, 10), st.lists(step, min_size=1, max_size=25))
def test_it_counts_each_offset_once_as_the_reference_does(first: int, steps: list) -> None:
    reference = Reference()
    state = None
    start, end, committed = 0, 10, first
    totals = {LOST: 0, SKIPPED: 0, REWOUND: 0}
    for i, (grow_start, grow_end, (move, n), has_members, epoch) in enumerate(steps):
        end += grow_end
        start = min(end, start + grow_start)
        if move == "forward":
            committed += n
        elif move == "back":
            committed = max(0, committed - n)
        elif move == "to":
            committed = n
        members = MEMBER if has_members else ()
        part = PartitionObservation("t", 0, committed, start, end, commit_epoch=epoch)
        sample = GroupObservation("g", float(i), "", members, (part,))
        state, events = advance(state, sample, Policy())
        for event in events:
            totals[event.kind] += event.count
            assert event.count == event.last - event.first > 0
        reference.sample(committed, start, end, members, epoch)
        assert totals == reference.counts
        p = state.partitions["t:0"]
        assert (p.lost, p.skipped, p.rewound) == (totals[LOST], totals[SKIPPED], totals[REWOUND])
