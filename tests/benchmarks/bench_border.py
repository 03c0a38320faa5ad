"""Border routing benchmark: the gateway between a LAN host and an OpenThread child, in one run.

    OT_CLI_FTD=/path/to/ot-cli-ftd python tests/benchmarks/bench_border.py [--pings 50]
        [--datagrams 150] [--idle 10]

Runs as root with ``ip netns`` (tests/thread/netns.py: the gateway namespace holds the radio
and border router services, the emulated air on its loopback and the ``ot-cli-mtd`` child; the
LAN host is a second namespace on a veth pair).

1. Round trip, 56-byte echoes: LAN host -> OT child through the gateway (Linux ``ping`` in the
   LAN namespace, 0.2 s apart) and OT child -> LAN host (OpenThread ``ping``), against one hop
   between OpenThread nodes on their own air (``ot-cli-mtd`` child -> ``ot-cli-ftd`` leader);
   median and p90, and the share of the through-gateway round trip that the gateway adds
   (OpenThread prints whole milliseconds; Linux ``ping`` microseconds).
2. UDP throughput LAN host -> thing through the gateway, 1,200-byte datagrams, as a share of the
   one-hop air capacity. The ceiling: the frames the gateway's own 6LoWPAN encoder makes of the
   datagram (LAN source inline, OMR destination with its context, MAC security key id mode 1,
   short addresses) times each frame's airtime (``regs.airtime_us``) + turnaround + ACK; a
   second figure adds the mean CSMA back-off (3.5 x 320 us) and LIFS (640 us). Delivered:
   datagrams per second the thing received -- the OT MTD child with ``udp bind``, counting the
   ``1200 bytes from`` lines it prints -- between the first and the last, at two offered rates.
3. CPU of the border router (and the radio service, which runs the emulated chip) per
   forwarded packet: utime + stime from /proc/<pid>/stat over each phase divided by the packets
   it forwarded (``thread_prefixes`` packets: ``from_host_sent`` + ``tun_tx_packets``), raw and
   less the idle rate measured first (RAs, MLE advertisements, the child's keep-alives).

No timing is asserted. Without the OpenThread binaries everything is skipped, without root or
``ip netns`` everything but the one-hop figures; the reason is printed and the exit status is 0.
Port offsets: 1657 (the gateway's air, inside its namespace) and 1658 (the OpenThread pair).
"""

from __future__ import annotations

import argparse
import ipaddress
import os
import re
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from drivers.at86rf233 import regs  # noqa: E402
from gateway.thread.link import LinkSecurity, TagAllocator, encode_datagram, secure_tx_frame  # noqa: E402
from gateway.wire.ipv6 import Ipv6Packet  # noqa: E402
from gateway.wire.lowpan import LowpanContext  # noqa: E402
from gateway.wire.mac802154 import ExtAddress, ShortAddress  # noqa: E402
from tests.interop.otnode import OtNode, attach_child, form_leader, ot_cli_ftd, ot_cli_mtd  # noqa: E402
from tests.thread.netns import GW_IF, Net, median, netns_unavailable, pct  # noqa: E402
from tests.thread.stack import ThreadStack  # noqa: E402

GW_OFFSET, OT_OFFSET = 1657, 1658
CLK = os.sysconf("SC_CLK_TCK")
SIZE = 1200
OT_PORT = 7200
ACK_PSDU = 5  # frame control, sequence number, FCS
CSMA_MEAN_US = 3.5 * regs.BACKOFF_PERIOD_US  # macMinBE 3: 0..7 unit back-off periods
LIFS_US = 40 * regs.SYMBOL_US
UDP_LINE = re.compile(rf"^{SIZE} bytes from ")

# the LAN host's sender: COUNT datagrams of SIZE bytes, RATE a second; prints seconds, errors
LAN_SENDER = """
import socket, sys, time
dst, port, count, size, rate = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), float(sys.argv[5])
s = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
errors = 0
t0 = time.monotonic()
for i in range(count):
    wait = t0 + i / rate - time.monotonic()
    if wait > 0:
        time.sleep(wait)
    try:
        s.sendto(i.to_bytes(4, "big") + bytes(size - 4), (dst, port))
    except OSError:
        errors += 1
print(time.monotonic() - t0, errors)
"""


def cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK  # utime + stime


def wait(pred: Callable[[], Any], timeout: float, what: str, step: float = 0.2) -> Any:
    end = time.monotonic() + timeout
    while True:
        v = pred()
        if v:
            return v
        if time.monotonic() > end:
            raise TimeoutError(f"{what}: not within {timeout:.0f} s")
        time.sleep(step)


def line(label: str, values: list[float], unit: str = "ms") -> str:
    if not values:
        return f"{label:<48} no values"
    return (f"{label:<48} median {median(values):7.2f} {unit}, p90 {pct(values, 0.9):7.2f} "
            f"{unit}  (min {min(values):.2f}, max {max(values):.2f}, n={len(values)})")  # fmt: skip


# -- the air's ceiling -----------------------------------------------------------------------


def frame_sizes(src: str, dst: str, omr: ipaddress.IPv6Network, gw16: int, child16: int,
                pan_id: int) -> list[int]:  # fmt: skip
    """PSDU octets (FCS included) of each frame the gateway sends for one SIZE-byte datagram."""
    pkt = Ipv6Packet.udp(src, dst, 40000, OT_PORT, bytes(SIZE), hop_limit=63)
    frames = encode_datagram(
        pkt, src=ShortAddress(gw16), dst=ShortAddress(child16), dst_pan=pan_id,
        security=LinkSecurity.MAC, tags=TagAllocator(1), contexts={1: LowpanContext(omr)},
    )  # fmt: skip
    ext = ExtAddress.from_hex("0123456789abcdef")
    key = bytes(16)
    secured = [
        secure_tx_frame(f, key=key, frame_counter=0, ext_src=ext, key_index=1) for f in frames
    ]
    return [len(m.to_bytes(fcs=True)) for m in secured]


def ceiling(sizes: list[int]) -> tuple[float, float]:
    """(datagrams/s with frames + turnaround + ACK only, and with mean CSMA back-off + LIFS)."""
    ack = regs.TURNAROUND_US + regs.airtime_us(ACK_PSDU)
    bare = sum(regs.airtime_us(n) + ack for n in sizes)
    full = bare + len(sizes) * (CSMA_MEAN_US + LIFS_US)
    return 1e6 / bare, 1e6 / full


# -- the gateway between the LAN and an OpenThread child -------------------------------------


class Gateway:
    def __init__(self, net: Net, root: Path, mtd: str) -> None:
        self.net = net
        self.stack = ThreadStack(root, GW_OFFSET, border_extra=f'infra_interface = "{GW_IF}"\n',
                                 cmd_prefix=net.exec_prefix())  # fmt: skip
        self.mtd = mtd
        self.child: OtNode | None = None

    def start(self) -> None:
        self.stack.start_all()
        wait(self.net.lan_ready, 90, "the gateway's RA on the LAN host")
        self.lan_addr = str(self.net.lan_address())
        self.omr = ipaddress.IPv6Network(self.stack.result("thread_prefixes")["omr"]["local"])
        self.child = child = OtNode(self.mtd, 2, GW_OFFSET, prefix=self.net.exec_prefix())
        attach_child(child, self.stack.dataset().to_hex(), timeout=90)
        self.child_omr = wait(self._child_omr, 90, "the OT child's OMR address")
        ext = child.value("extaddr")
        wait(lambda: self._entry(ext) is not None, 60, "the gateway to list the OMR address")
        entry = self._entry(ext)
        assert entry is not None
        self.child16 = int(entry["rloc16"], 16)
        st = self.stack.result("thread_status")
        self.gw16 = int(st["rloc16"], 16)
        pan_id = self.stack.dataset().pan_id
        assert pan_id is not None
        self.pan_id = pan_id
        self.pids = {n: self.stack.procs[n].proc.pid for n in ("border-router", "radio")}

    def _child_omr(self) -> str | None:
        assert self.child is not None
        for text in self.child.cmd("ipaddr"):
            try:
                a = ipaddress.IPv6Address(text.strip())
            except ValueError:
                continue
            if a in self.omr:
                return str(a)
        return None

    def _entry(self, ext: str) -> dict[str, Any] | None:
        for c in self.stack.result("thread_children")["children"]:
            if c["ext_addr"] == ext and c["state"] == "valid" and self.child_omr in c["addresses"]:
                return dict(c)
        return None

    def forwarded(self) -> int:
        p = self.stack.result("thread_prefixes")["packets"]
        return int(p.get("from_host_sent", 0)) + int(p.get("tun_tx_packets", 0))

    def sample(self) -> tuple[float, dict[str, float], int]:
        return time.monotonic(), {n: cpu_s(p) for n, p in self.pids.items()}, self.forwarded()

    def close(self) -> None:
        if self.child is not None:
            self.child.close()
        try:
            self.stack.stop()
        finally:
            self.stack.cleanup()


def cpu_line(label: str, a: tuple[float, dict[str, float], int],
             b: tuple[float, dict[str, float], int], idle: dict[str, float]) -> str:  # fmt: skip
    dt, n = b[0] - a[0], b[2] - a[2]
    if n <= 0:
        return f"   {label}: no packet forwarded"
    parts = []
    for name in ("border-router", "radio"):
        used = b[1][name] - a[1][name]
        net = max(0.0, used - idle[name] * dt)
        parts.append(f"{name} {used / n * 1e3:6.2f} ms raw, {net / n * 1e3:6.2f} ms less idle")
    return f"   {label} ({n} packets, {dt:.1f} s): " + "; ".join(parts)


def udp_run(gw: Gateway, rate: float, count: int) -> tuple[int, float, float, int]:
    """(received, delivered datagrams/s between the first and the last, sender's seconds,
    send errors) for ``count`` datagrams offered at ``rate`` a second."""
    child = gw.child
    assert child is not None
    mark = child.mark()
    r = gw.net.run_in(gw.net.lan, sys.executable, "-c", LAN_SENDER, gw.child_omr, str(OT_PORT),
                      str(count), str(SIZE), f"{rate:.3f}", timeout=count / rate + 120)  # fmt: skip
    took, errors = r.stdout.split()

    def arrivals() -> list[float]:
        return [t for t, text in child.lines[mark:] if UDP_LINE.match(text)]

    # the queue drains after the sender stops: wait until nothing more arrives for 5 s
    last_n, last_change = -1, time.monotonic()
    while time.monotonic() - last_change < 5:
        n = len(arrivals())
        if n != last_n:
            last_n, last_change = n, time.monotonic()
        time.sleep(0.25)
    ts = arrivals()
    rate_rx = (len(ts) - 1) / (ts[-1] - ts[0]) if len(ts) > 1 and ts[-1] > ts[0] else 0.0
    return len(ts), rate_rx, float(took), int(errors)


def bench_gateway(net: Net, root: Path, mtd: str, pings: int, datagrams: int,
                  idle_s: float) -> tuple[list[float], list[float], list[str]]:  # fmt: skip
    """(LAN -> child round trips, child -> LAN round trips, the lines of parts 2 and 3)."""
    out: list[str] = []
    gw = Gateway(net, root, mtd)
    try:
        gw.start()
        child = gw.child
        assert child is not None
        s0 = gw.sample()
        time.sleep(idle_s)  # the idle window itself
        s1 = gw.sample()
        idle = {n: (s1[1][n] - s0[1][n]) / (s1[0] - s0[0]) for n in gw.pids}
        got, lan_rtts = net.ping(gw.child_omr, count=pings, size=56, interval=0.2)
        ot = child.ping(gw.lan_addr, size=56, count=pings, interval=0.2, timeout=5)
        s2 = gw.sample()
        ot_rtts = [float(x) for x in ot.rtts_ms]
        if got < pings or ot.received < pings:
            out.append(f"   (replies: LAN -> child {got}/{pings}, child -> LAN "
                       f"{ot.received}/{ot.transmitted})")  # fmt: skip

        sizes = frame_sizes(gw.lan_addr, gw.child_omr, gw.omr, gw.gw16, gw.child16, gw.pan_id)
        bare, full = ceiling(sizes)
        child.cmd("udp open")
        child.cmd(f"udp bind :: {OT_PORT}")
        runs = []
        for factor in (0.5, 1.5):
            a = gw.sample()
            runs.append((factor, udp_run(gw, bare * factor, datagrams), a, gw.sample()))
        child.cmd("udp close")
        out.append(f"2. UDP LAN host -> OT child through the gateway, {SIZE}-byte datagrams "
                   f"({SIZE + 48} bytes of IPv6)")  # fmt: skip
        ack_us = regs.TURNAROUND_US + regs.airtime_us(ACK_PSDU)
        out.append(f"   frames per datagram: {len(sizes)} (PSDU {', '.join(map(str, sizes))} "
                   f"octets with FCS); airtime {sum(regs.airtime_us(n) for n in sizes) / 1e3:.2f}"
                   f" ms + {len(sizes)} x {ack_us} us turnaround and ACK")  # fmt: skip
        out.append(
            f"   one-hop ceiling: {bare:.1f} datagrams/s = {bare * SIZE * 8 / 1e3:.1f} "
            f"kbit/s of UDP payload (with mean CSMA back-off and LIFS: {full:.1f}/s)"
        )
        for factor, (rx, rate_rx, took, errors), _a, _b in runs:
            out.append(
                f"   offered {bare * factor:5.1f}/s ({factor:.1f} x ceiling, {datagrams} in "
                f"{took:.1f} s{f', {errors} send errors' if errors else ''}): received "
                f"{rx}/{datagrams}, {rate_rx:5.1f} datagrams/s = {rate_rx / bare:5.1%} of the "
                f"ceiling ({rate_rx / full:5.1%} of the CSMA one)"
            )
        if any(r[1][1] > bare for r in runs):
            out.append("   (more than the ceiling: the emulated chip did not hold its frames to their "
                       "airtime)")  # fmt: skip
        out.append(
            "3. CPU per forwarded packet (utime + stime; idle: "
            + ", ".join(f"{n} {v * 1e3:.1f} ms/s" for n, v in idle.items())
            + ")"
        )
        out.append(cpu_line("pings, 56 bytes, both ways", s1, s2, idle))
        for factor, _r, a, b in runs:
            out.append(cpu_line(f"UDP {SIZE} bytes at {factor:.1f} x ceiling", a, b, idle))
        return lan_rtts, ot_rtts, out
    finally:
        gw.close()


def bench_one_hop(ftd: str, mtd: str, pings: int) -> list[float]:
    leader = OtNode(ftd, 1, OT_OFFSET)
    try:
        form_leader(leader)
        ds = "".join(leader.cmd("dataset active -x"))
        child = OtNode(mtd, 2, OT_OFFSET)
        try:
            attach_child(child, ds, timeout=90)
            res = child.ping(leader.value("ipaddr mleid"), 56, pings, 0.2, 5)
            return [float(x) for x in res.rtts_ms]
        finally:
            child.close()
    finally:
        leader.close()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--pings", type=int, default=50, help="echoes per direction")
    ap.add_argument("--datagrams", type=int, default=150, help="UDP datagrams per offered rate")
    ap.add_argument("--idle", type=float, default=10.0, help="idle CPU window, s")
    args = ap.parse_args()
    print("Border routing: a LAN host and an OpenThread child through the gateway")
    ftd, why_ftd = ot_cli_ftd()
    mtd, why_mtd = ot_cli_mtd()
    if ftd is None or mtd is None:
        print(f"(skipped: {why_ftd or why_mtd})")
        return 0
    one_hop = bench_one_hop(ftd, mtd, args.pings)
    why_ns = netns_unavailable()
    if why_ns is not None:
        print(f"(the gateway parts skipped: {why_ns})")
        print(line("1. OT child -> OT leader, one hop", one_hop))
        return 0
    net = Net(str(os.getpid()), kind="bb")
    with tempfile.TemporaryDirectory(prefix="bench-border-") as tmp:
        try:
            net.up()
            lan, ot, rest = bench_gateway(net, Path(tmp), mtd, args.pings, args.datagrams,
                                          args.idle)  # fmt: skip
        finally:
            net.down()
    print(f"1. round trip, 56-byte echoes, {args.pings} each, 0.2 s apart")
    print(line("   LAN host -> OT child via the gateway", lan))
    print(line("   OT child -> LAN host via the gateway", ot))
    print(line("   OT child -> OT leader, one hop", one_hop))
    for label, via in (("LAN host -> OT child", lan), ("OT child -> LAN host", ot)):
        if via and one_hop:
            m, h = median(via), median(one_hop)
            print(f"   the gateway's share of {label} (median): {max(0.0, m - h):.2f} ms of "
                  f"{m:.2f} ms = {max(0.0, m - h) / m:.0%}")  # fmt: skip
    for text in rest:
        print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
