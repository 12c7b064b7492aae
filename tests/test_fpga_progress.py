"""``fpga build``'s progress: the stages parsed from the tools' logs as they grow
(fpga.build.FlowMonitor), on log lines of real YoWASP builds (iCE40 with router1, ECP5
with router2 and timing-driven ripup, which ends with a router1 legality check)."""

from fpga.build import FlowMonitor

YOSYS = """\
1. Executing RTLIL frontend.
2.1. Executing PROC_CLEAN pass (remove empty switches from decision trees).
3. Executing SYNTH_ICE40 pass.
3.45. Executing ABC9 pass.
3.46.1. Executing ABC9.
"""

NEXTPNR_ICE40 = """\
Info: Packing constants..
Info: Running main analytical placer, max placement attempts per cell = 269011.
Info: Running simulated annealing placer for refinement.
Info: Routing..
Info: Setting up routing queue.
Info:            |   (re-)routed arcs  |   delta    | remaining|       time spent     |
Info:    IterCnt |  w/ripup   wo/ripup |  w/r  wo/r |      arcs| batch(sec) total(sec)|
Info:       1000 |       84        864 |   84   864 |      3608|       0.26       0.26|
Info:       5902 |     1082       4611 |  189   687 |         0|       0.33       1.46|
Info: Routing complete.
Info: Program finished normally.
"""

NEXTPNR_ECP5 = """\
Info: Packing IOs..
Info: Running main analytical placer, max placement attempts per cell = 1093720.
Info: Routing globals...
Info: Running router2...
Info:     iter=1 wires=28019 overused=1482 overuse=1806 tmgfail=3 archfail=NA
Info:     iter=21 wires=28947 overused=0 overuse=0 tmgfail=0 archfail=0
Info: Router2 time 10.19s
Info: Running router1 to check that route is legal...
Info: Routing..
Info:          0 |        0          0 |    0     0 |         0|       0.21       0.21|
Info: Routing complete.
Info: Program finished normally.
"""


class Recorder:
    def __init__(self):
        self.events = []

    def begin(self, stage, detail=""):
        self.events.append(("begin", stage, detail))

    def update(self, detail=None):
        if detail is not None:
            self.events.append(("update", detail))

    def end(self, detail=None):
        self.events.append(("end", detail))

    def abort(self):
        self.events.append(("abort",))


def feed(monitor, yosys, nextpnr):
    for line in yosys.splitlines():
        monitor.feed("top.rpt", line)
    for line in nextpnr.splitlines():
        monitor.feed("top.tim", line)


def test_ice40_stages_and_router1_iterations():
    rec = Recorder()
    monitor = FlowMonitor(".", rec, "router1")
    feed(monitor, YOSYS, NEXTPNR_ICE40)
    monitor.finish()
    begins = [e[1] for e in rec.events if e[0] == "begin"]
    assert begins == ["synthesis (Yosys)", "placement (nextpnr)", "routing (nextpnr router1)",
                      "timing report (nextpnr)", "bitstream"]
    updates = [e[1] for e in rec.events if e[0] == "update"]
    assert updates[:5] == ["pass RTLIL", "pass PROC_CLEAN", "pass SYNTH_ICE40", "pass ABC9",
                           "pass ABC9"]
    assert "analytic placer" in updates and "annealing placer" in updates
    assert "iteration 1000, 3608 arcs left" in updates
    # The routing stage ends with its last iteration; the others end without a detail.
    ends = [e[1] for e in rec.events if e[0] == "end"]
    assert ends == ["", "", "iteration 5902, 0 arcs left", "", ""]
    assert monitor.iterations == 5902


def test_ecp5_router2_with_ripup_ignores_the_legality_check():
    rec = Recorder()
    monitor = FlowMonitor(".", rec, "router2")
    feed(monitor, YOSYS, NEXTPNR_ECP5)
    updates = [e[1] for e in rec.events if e[0] == "update"]
    assert "iteration 1, 1482 overused wires, 3 failing arcs" in updates
    assert updates[-1] == "iteration 21, 0 overused wires, 0 failing arcs"
    ends = [e[1] for e in rec.events if e[0] == "end"]
    assert ends[2] == "iteration 21, 0 overused wires, 0 failing arcs"
    assert monitor.iterations == 21 and monitor.stage == "bitstream"


def test_poll_reads_growing_logs_line_by_line(tmp_path):
    rec = Recorder()
    monitor = FlowMonitor(tmp_path, rec, "router2")
    monitor.poll()                                 # nothing yet: no stage
    assert rec.events == []
    (tmp_path / "top.rpt").write_text("3.45. Executing ABC9 pa")
    monitor.poll()                                 # an unfinished line waits
    assert [e for e in rec.events if e[0] == "update"] == []
    with open(tmp_path / "top.rpt", "a") as f:
        f.write("ss.\n")
    monitor.poll()
    assert ("update", "pass ABC9") in rec.events
    (tmp_path / "top.tim").write_text("Info: Running router2...\nInfo:     iter=4 wires=1 overused=2 "
                                      "overuse=2 archfail=NA\n")
    monitor.poll()
    assert ("update", "iteration 4, 2 overused wires") in rec.events
    monitor.stop()
    assert rec.events[-1] == ("abort",)
