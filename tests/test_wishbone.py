"""Tests of ``rtl/wishbone.py``: the Wishbone B4 classic signature of section 7."""

import pytest
from amaranth.hdl import Shape
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from models.params import MacroParams
from rtl import wishbone


def test_members_from_the_master_side():
    sig = wishbone.Signature(13)
    assert sig.members == wiring.SignatureMembers({
        "adr": Out(13), "dat_w": Out(32), "sel": Out(4), "cyc": Out(1), "stb": Out(1),
        "we": Out(1), "dat_r": In(32), "ack": In(1),
    })
    assert sig.addr_bits == 13


def test_slave_side_is_the_flip():
    slave = wiring.flipped(wishbone.Signature(7).create())
    assert slave.signature == wishbone.Signature(7).flip()


def test_equality_and_repr():
    assert wishbone.Signature(9) == wishbone.Signature(9)
    assert wishbone.Signature(9) != wishbone.Signature(10)
    assert hash(wishbone.Signature(9)) == hash(wishbone.Signature(9))
    assert repr(wishbone.Signature(9)) == "wishbone.Signature(9)"


def test_macro_address_width():
    p = MacroParams(rows=32, cols=96)
    assert Shape.cast(wishbone.Signature(p.addr_bits).members["adr"].shape).width == p.addr_bits


@pytest.mark.parametrize("bad, error", [(0, ValueError), (-3, ValueError), (2.0, TypeError),
                                        (True, TypeError), ("8", TypeError)])
def test_rejects_bad_address_widths(bad, error):
    with pytest.raises(error, match="addr_bits"):
        wishbone.Signature(bad)
