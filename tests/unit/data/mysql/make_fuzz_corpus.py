#!/usr/bin/env python3
"""Seeds for tests/fuzz/fuzz_mysql (the recorded conversations in its script
format) and tests/fuzz/fuzz_mysql_sql (statements).

    make_fuzz_corpus.py DATA_DIR CORPUS_DIR SQL_CORPUS_DIR
"""
import os
import struct
import sys

MAX_FEED = 31 * 16 + 15


def records(path):
    data = open(path, "rb").read()
    off = 0
    while off + 5 <= len(data):
        tag = data[off:off + 1]
        n = struct.unpack(">I", data[off + 1:off + 5])[0]
        yield tag, data[off + 5:off + 5 + n]
        off += 5 + n


def feed(direction, chunk, gap=0):
    kind = 2 if gap else 0
    n = len(chunk)
    ctl = direction | kind << 1 | (n >> 4) << 3
    refine = (n & 15) | (gap // 64) << 4
    return bytes([ctl, refine]) + chunk


def script(path, server_view, cut=None):
    out = b""
    for tag, chunk in records(path):
        if tag == b"T":
            out += bytes([3 << 1, 0])  # a new stream: the TLS plaintext
            continue
        direction = 0 if (tag == b"C") == server_view else 1
        if cut and len(chunk) > cut:
            out += feed(direction, chunk[:cut], min(len(chunk) - cut, 15 * 64))
            continue
        for i in range(0, len(chunk), MAX_FEED):
            out += feed(direction, chunk[i:i + MAX_FEED])
    return out


def main():
    data_dir, corpus, sql_corpus = sys.argv[1:4]
    os.makedirs(corpus, exist_ok=True)
    os.makedirs(sql_corpus, exist_ok=True)
    for name in sorted(os.listdir(data_dir)):
        if not name.endswith(".rec"):
            continue
        path = os.path.join(data_dir, name)
        stem = name[:-4]
        open(os.path.join(corpus, stem + "-server.bin"), "wb").write(script(path, True))
        open(os.path.join(corpus, stem + "-client.bin"), "wb").write(script(path, False))
        open(os.path.join(corpus, stem + "-cut.bin"), "wb").write(script(path, True, cut=40))
        for tag, chunk in records(path):
            # Each query's text, as the summariser gets it.
            if tag == b"C" and len(chunk) > 5 and chunk[3] == 0 and chunk[4] in (0x03, 0x16):
                text = chunk[5:]
                key = "%08x" % (hash(text) & 0xffffffff)
                open(os.path.join(sql_corpus, stem + "-" + key + ".sql"), "wb").write(b"\0" + text)


if __name__ == "__main__":
    main()
