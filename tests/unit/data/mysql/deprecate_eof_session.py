#!/usr/bin/env python3
"""A session with CLIENT_DEPRECATE_EOF (result sets end with an OK packet, no EOF
after the column definitions), for record_proxy.py. pymysql authenticates; the
commands are sent and read raw, since pymysql itself expects EOF packets.

    deprecate_eof_session.py PORT
"""
import struct
import sys

import pymysql

CLIENT_DEPRECATE_EOF = 1 << 24
COM_QUERY, COM_STMT_PREPARE, COM_STMT_EXECUTE = 0x03, 0x16, 0x17


def send(conn, command, payload=b""):
    conn._write_bytes(struct.pack("<I", 1 + len(payload))[:3] + b"\x00" + bytes([command]) + payload)


def read_packet(conn):
    head = conn._read_bytes(4)
    return conn._read_bytes(int.from_bytes(head[:3], "little"))


def read_result(conn):
    """OK, ERR, or a result set: column count, definitions, rows, OK (0xFE)."""
    first = read_packet(conn)
    if first[0] in (0x00, 0xFF):
        return
    for _ in range(first[0]):
        read_packet(conn)
    while True:
        pkt = read_packet(conn)
        if pkt[0] == 0xFF or (pkt[0] == 0xFE and len(pkt) < 0xFFFFFF):
            return


def main():
    conn = pymysql.connect(host="127.0.0.1", port=int(sys.argv[1]), user="app", password="pw",
                           database="app", autocommit=True, client_flag=CLIENT_DEPRECATE_EOF)
    for sql in ("SELECT id, name FROM items ORDER BY id", "SELECT id FROM items WHERE id < 0",
                "SELECT * FROM missing_table", "UPDATE items SET qty = 0 WHERE id = 1"):
        send(conn, COM_QUERY, sql.encode())
        read_result(conn)
    send(conn, COM_STMT_PREPARE, b"SELECT qty FROM items WHERE id = ?")
    ok = read_packet(conn)
    stmt_id, ncols, nparams = struct.unpack("<IHH", ok[1:9])
    for _ in range(ncols + nparams):  # no EOF after the definitions
        read_packet(conn)
    send(conn, COM_STMT_EXECUTE, struct.pack("<IBI", stmt_id, 0, 1) + b"\x00\x01"
         + struct.pack("<BBq", 8, 0, 1))
    read_result(conn)
    conn.close()


if __name__ == "__main__":
    main()
