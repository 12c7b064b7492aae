"""Tests of ``rtl/pipeline_timing.py`` (PipelineTiming): the timing decisions of each
readout pipeline L against the numbers of ``docs/ARCHITECTURE.md`` sections 6 and 7
(``tests/bus_contract.py``) and ``MacroParams.bus_latency``, and its rejection of bad
pipeline values with the project's one-line messages.
"""

import dataclasses

import pytest

from models.params import MacroParams
from rtl.pipeline_timing import PipelineTiming
from .bus_contract import ACTS_AFTER, BUS_LATENCY, ERROR_VISIBLE_AFTER, MEMORY_WRITE_DELAY, PIPELINES


@pytest.mark.parametrize("pipeline", PIPELINES)
def test_values_follow_the_contract(pipeline):
    t = PipelineTiming.of(pipeline)
    p = MacroParams(rows=4, cols=3, pipeline=pipeline)
    assert t.stages == pipeline
    assert t.pipelined == (pipeline > 0)
    assert t.bus_latency == p.bus_latency == BUS_LATENCY[pipeline]
    assert t.acts_after == ACTS_AFTER[pipeline]
    assert t.memory_write_delay == MEMORY_WRITE_DELAY[pipeline]
    assert t.registered_checks == (ERROR_VISIBLE_AFTER[pipeline] == 2)
    # Section 6: only the L = 4 build registers its decode twice and copies its lane
    # controls through trees; section 7: one, two or three lane read stages.
    deep = pipeline == 4
    assert (t.early_write_enables, t.copy_trees, t.reset_less_copies, t.registered_answer) \
        == (deep,) * 4
    assert t.lane_read_stages == {0: 1, 1: 2, 2: 2, 3: 2, 4: 3}[pipeline]


@pytest.mark.parametrize("pipeline", PIPELINES)
def test_a_read_answers_in_the_ack_cycle(pipeline):
    """The read path adds up to the ack latency: the address is presented in the acting
    cycle (a cycle before it, from the early record, when the access acts late), the
    read port answers a cycle later, each further lane read stage is a register, and a
    registered answer one more."""
    t = PipelineTiming.of(pipeline)
    address_cycle = t.acts_after - 1 if t.acts_after else 0
    assert (address_cycle + 1 + (t.lane_read_stages - 1) + t.registered_answer
            == t.bus_latency)


@pytest.mark.parametrize("pipeline", PIPELINES)
def test_a_write_lands_before_its_ack(pipeline):
    """A memory write lands by the clock edge before the ack, so that the next access
    (the cycle after the ack at the earliest) sees it."""
    t = PipelineTiming.of(pipeline)
    assert t.acts_after + t.memory_write_delay < t.bus_latency


def test_frozen():
    t = PipelineTiming.of(2)
    with pytest.raises(dataclasses.FrozenInstanceError):
        t.bus_latency = 1
    assert PipelineTiming.of(2) == t


@pytest.mark.parametrize("value, error, message", [
    (-1, ValueError, "pipeline must be in 0..4, not -1"),
    (5, ValueError, "pipeline must be in 0..4, not 5"),
    (True, TypeError, "pipeline must be an integer, not True"),
    (2.0, TypeError, "pipeline must be an integer, not 2.0"),
    ("2", TypeError, "pipeline must be an integer, not '2'"),
    (None, TypeError, "pipeline must be an integer, not None"),
])
def test_bad_pipeline_values_rejected(value, error, message):
    with pytest.raises(error) as info:
        PipelineTiming.of(value)
    assert str(info.value) == message
