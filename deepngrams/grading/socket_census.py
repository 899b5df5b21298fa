"""What a sandbox's sockets hold, read from the kernel (sock_diag): the watchdog adds it to the
sandbox's memory (grading/sandbox.py), since socket buffers are in no process's resident size."""
from __future__ import annotations

import errno
import os
import socket
import struct

# Socket buffers: what a socket holds (data sent and not yet read, data received, memory reserved
# for it) is kernel memory, in no process's resident size, and a notebook's sockets together could
# pin gigabytes of it. Each sandbox has a network namespace of its own, and every socket its processes
# create (Unix, TCP, UDP, netlink) belongs to that namespace, whatever process holds it, even once no
# process does (in flight in a message, or closing): the kernel's sock_diag interface lists them all,
# with the memory of each, in one dump per kind. It answers a socket of its own created inside that
# namespace, which the harness makes before any of the notebook's code runs and hands to the grader as
# its first message (then closes its copy): the one way in both modes, since without root the grader
# may not enter the sandbox's namespace.
# (Pipes, which no such interface lists, are charged by the descriptors that could hold them:
# sandbox.py's `_descriptor_slots`.)
NETLINK_SOCK_DIAG, SOCK_DIAG_BY_FAMILY, TCPDIAG_GETSOCK = 4, 20, 18
NLM_F_REQUEST, NLM_F_DUMP, NLMSG_ERROR, NLMSG_DONE = 0x1, 0x300, 2, 3
NLMSG_HEADER = struct.Struct("=IHHII")
UDIAG_SHOW_MEMINFO, UNIX_DIAG_MEMINFO = 0x20, 5  # linux/unix_diag.h
INET_DIAG_SKMEMINFO = 7  # linux/inet_diag.h
NDIAG_SHOW_MEMINFO, NETLINK_DIAG_MEMINFO, NDIAG_PROTO_ALL = 0x1, 0, 255  # linux/netlink_diag.h


def _inet_kind(family: int, protocol: int) -> tuple:
    return (SOCK_DIAG_BY_FAMILY, struct.pack("=BBBBI48x", family, protocol, 1 << (INET_DIAG_SKMEMINFO - 1), 0,
                                             0xFFFFFFFF), 72, INET_DIAG_SKMEMINFO)


# (message type, request after the netlink header, length of each answer's fixed part before its
# attributes, the attribute that holds its SK_MEMINFO_* array): Unix; TCP; UDP over IPv4 and IPv6;
# netlink. A TCP dump walks the machine's whole TCP table (its size set by the machine's memory, a
# few milliseconds here), once a family: the older request (struct inet_diag_req) lists both
# families in one walk; where a kernel refuses it, one request a family.
TCP_BOTH_FAMILIES = (TCPDIAG_GETSOCK, struct.pack("=BBBB48xII", 0, 0, 0, 1 << (INET_DIAG_SKMEMINFO - 1),
                                                  0xFFFFFFFF, 0), 72, INET_DIAG_SKMEMINFO)
SOCKET_KINDS = (
    (SOCK_DIAG_BY_FAMILY, struct.pack("=BBHIIIII", socket.AF_UNIX, 0, 0, 0xFFFFFFFF, 0, UDIAG_SHOW_MEMINFO, 0, 0), 16,
     UNIX_DIAG_MEMINFO),
    TCP_BOTH_FAMILIES,
    _inet_kind(socket.AF_INET, socket.IPPROTO_UDP), _inet_kind(socket.AF_INET6, socket.IPPROTO_UDP),
    (SOCK_DIAG_BY_FAMILY, struct.pack("=BBHIIII", socket.AF_NETLINK, NDIAG_PROTO_ALL, 0, 0, NDIAG_SHOW_MEMINFO, 0, 0),
     28, NETLINK_DIAG_MEMINFO),
)
INSTEAD = {TCP_BOTH_FAMILIES: [_inet_kind(socket.AF_INET, socket.IPPROTO_TCP), _inet_kind(socket.AF_INET6, socket.IPPROTO_TCP)]}
# SK_MEMINFO_* (linux/sock_diag.h): RMEM_ALLOC 0, RCVBUF 1, WMEM_ALLOC 2, SNDBUF 3, FWD_ALLOC 4, WMEM_QUEUED 5
SK_MEMINFO = struct.Struct("=IiIiiI")


class SocketCensus:
    """The memory of the sockets of one network namespace, through a sock_diag socket made in it."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock, self.seq, self.unfinished = sock, 0, False
        self.kinds = list(SOCKET_KINDS)  # less those this kernel cannot list (its diag module absent)
        self.buffer = bytearray(65536)
        sock.settimeout(2.0)

    def bytes_held(self, budget: int) -> int:
        """rmem_alloc + wmem_alloc + wmem_queued + fwd_alloc of every socket, summed; once over
        `budget`, the rest unread (the sum so far, over it). Raises OSError if a dump fails."""
        if self.unfinished:  # the rest of a dump left over the budget: read to its end first
            self._read(self.seq, None, 0, -1)
        total = 0
        for kind in list(self.kinds):
            message, request, fixed, attribute = kind
            self.seq = (self.seq + 1) & 0xFFFFFFFF
            self.sock.send(NLMSG_HEADER.pack(NLMSG_HEADER.size + len(request), message,
                                             NLM_F_REQUEST | NLM_F_DUMP, self.seq, 0) + request)
            self.unfinished = True
            try:
                total = self._read(self.seq, (fixed, attribute), total, budget)
            except OSError as e:
                if e.errno not in (errno.ENOENT, errno.EOPNOTSUPP, errno.EINVAL):
                    raise
                # Not listed by this kernel: another way (counted from the next count on), or, no
                # such family or protocol here, nothing of it to count.
                at = self.kinds.index(kind)
                self.kinds[at:at + 1] = INSTEAD.get(kind, [])
            if total > budget:
                return total
        return total

    def _read(self, seq: int, parse, total: int, budget: int) -> int:
        """Read the answers to dump `seq` up to its end (or, with `parse`, until `total` passes `budget`)."""
        while True:
            n = self.sock.recv_into(self.buffer)
            view, at = memoryview(self.buffer)[:n], 0
            while at + NLMSG_HEADER.size <= n:
                length, kind, _, got_seq, _ = NLMSG_HEADER.unpack_from(view, at)
                if length < NLMSG_HEADER.size:
                    raise OSError("a malformed sock_diag answer")
                if got_seq == seq:
                    if kind == NLMSG_DONE:
                        self.unfinished = False
                        return total
                    if kind == NLMSG_ERROR:
                        self.unfinished = False
                        code = -struct.unpack_from("=i", view, at + NLMSG_HEADER.size)[0]
                        raise OSError(code, f"sock_diag: {os.strerror(code)}")
                    if parse is not None and total <= budget:
                        total += self._memory(view[at + NLMSG_HEADER.size:at + length], *parse)
                at += (length + 3) & ~3
            if parse is not None and total > budget:  # the dump unfinished: `bytes_held` ends it first next time
                return total

    @staticmethod
    def _memory(message, fixed: int, attribute: int) -> int:
        at = fixed
        while at + 4 <= len(message):
            length, kind = struct.unpack_from("=HH", message, at)
            if length < 4:
                break
            if kind == attribute and length >= 4 + SK_MEMINFO.size:
                rmem, _, wmem, _, forward, queued = SK_MEMINFO.unpack_from(message, at + 4)
                return rmem + wmem + queued + max(0, forward)
            at += (length + 3) & ~3
        return 0

    def close(self) -> None:
        self.sock.close()


def problem() -> str | None:
    """Why what sockets hold cannot be counted here, or None: without the census a notebook's sockets
    could pin memory past its limit, so the grader does not sandbox without it (sandbox.available)."""
    try:
        with socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, NETLINK_SOCK_DIAG) as sock:
            census = SocketCensus(sock)
            census.bytes_held(2**62)
            kinds = census.kinds
    except OSError as e:
        kinds, why = [], str(e)
    else:
        why = "the kernel lists no Unix or no TCP sockets"
    if SOCKET_KINDS[0] in kinds and (TCP_BOTH_FAMILIES in kinds or INSTEAD[TCP_BOTH_FAMILIES][0] in kinds):
        return None
    return (f"the kernel cannot say what sockets hold ({why}): the sandbox's memory limit counts its sockets' "
            "buffers through sock_diag (modules unix_diag and inet_diag, or CONFIG_UNIX_DIAG and CONFIG_INET_DIAG)")
