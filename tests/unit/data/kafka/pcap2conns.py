#!/usr/bin/python3
"""Splits a loopback pcap (tcpdump -i lo -w) into one file per TCP connection.

  pcap2conns.py CAPTURE.pcap PORT PREFIX

PREFIX-N.bin holds connection N's payload as the segments came: for each, one byte
of direction ('C': to PORT, the client's request side; 'S': from PORT), a 4-byte
big-endian length, then the bytes. Retransmitted or duplicate segments are dropped
by sequence number. The unit tests feed these to the decoder.
"""
import struct
import sys


def packets(path):
    with open(path, "rb") as f:
        magic = f.read(24)
        endian = "<" if magic[:4] == b"\xd4\xc3\xb2\xa1" else ">"
        linktype = struct.unpack(endian + "I", magic[20:24])[0]
        while True:
            h = f.read(16)
            if len(h) < 16:
                return
            incl = struct.unpack(endian + "IIII", h)[2]
            yield linktype, f.read(incl)


def tcp_segment(linktype, frame):
    if linktype == 1:  # Ethernet
        if struct.unpack(">H", frame[12:14])[0] != 0x0800:
            return None
        ip = frame[14:]
    elif linktype == 113:  # Linux cooked
        ip = frame[16:]
    else:
        raise SystemExit("link type %d" % linktype)
    if ip[0] >> 4 != 4 or ip[9] != 6:
        return None
    ihl = (ip[0] & 15) * 4
    total = struct.unpack(">H", ip[2:4])[0]
    tcp = ip[ihl:total]
    sport, dport, seq = struct.unpack(">HHI", tcp[:8])
    off = (tcp[12] >> 4) * 4
    flags = tcp[13]
    return sport, dport, seq, flags, tcp[off:]


def main():
    path, port, prefix = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    conns = {}  # client port -> [next seq per dir, records]
    order = []
    for lt, frame in packets(path):
        seg = tcp_segment(lt, frame)
        if not seg:
            continue
        sport, dport, seq, flags, data = seg
        if dport == port:
            cport, d = sport, "C"
        elif sport == port:
            cport, d = dport, "S"
        else:
            continue
        if flags & 0x02 and d == "C":  # SYN: a new connection on this client port
            conns[cport] = [{"C": (seq + 1) & 0xffffffff, "S": None}, []]
            order.append(cport)
            continue
        c = conns.get(cport)
        if c is None:
            continue
        if flags & 0x02:  # SYN-ACK
            c[0]["S"] = (seq + 1) & 0xffffffff
            continue
        if not data or c[0][d] is None or seq != c[0][d]:
            continue
        c[0][d] = (seq + len(data)) & 0xffffffff
        c[1].append((d, data))
    n = 0
    for cport in order:
        recs = conns[cport][1]
        if not recs:
            continue
        n += 1
        with open("%s-%d.bin" % (prefix, n), "wb") as f:
            for d, data in recs:
                f.write(d.encode() + struct.pack(">I", len(data)) + data)
    print("%d connections" % n)


if __name__ == "__main__":
    main()
