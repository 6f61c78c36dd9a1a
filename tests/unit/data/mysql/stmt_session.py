#!/usr/bin/env python3
"""Drives the commands pymysql has no API for (server-side prepared statements,
COM_STMT_RESET, COM_STMT_FETCH, COM_INIT_DB, COM_PING) over pymysql's own
authenticated connection, for record_proxy.py.

    stmt_session.py PORT
"""
import struct
import sys

import pymysql

COM_INIT_DB, COM_QUERY, COM_PING = 0x02, 0x03, 0x0E
COM_STMT_PREPARE, COM_STMT_EXECUTE, COM_STMT_CLOSE, COM_STMT_RESET, COM_STMT_FETCH = (
    0x16, 0x17, 0x19, 0x1A, 0x1C)


def send(conn, command, payload=b""):
    conn._next_seq_id = 0
    conn._write_bytes(struct.pack("<I", 1 + len(payload))[:3] + b"\x00" + bytes([command]) + payload)
    conn._next_seq_id = 1


def read_until_end(conn):
    """Reads one response's packets until OK, ERR or an EOF that ends it."""
    eofs = 0
    while True:
        try:
            pkt = conn._read_packet()
        except pymysql.MySQLError:
            return b"\xff"
        data = pkt.get_all_data()
        if data[0] in (0x00, 0xFF) and eofs == 0:
            return data
        if data[0] == 0xFE and len(data) < 9:
            eofs += 1
            if eofs == 2:
                return data


def prepare(conn, sql):
    send(conn, COM_STMT_PREPARE, sql.encode())
    try:
        pkt = conn._read_packet().get_all_data()
    except pymysql.MySQLError:
        return None
    stmt_id, ncols, nparams = struct.unpack("<IHH", pkt[1:9])
    for _ in range(nparams):
        conn._read_packet()
    if nparams:
        conn._read_packet()  # EOF
    for _ in range(ncols):
        conn._read_packet()
    if ncols:
        conn._read_packet()  # EOF
    return stmt_id, nparams


def execute(conn, stmt_id, params, cursor=False):
    payload = struct.pack("<IBI", stmt_id, 1 if cursor else 0, 1)
    if params:
        payload += b"\x00" * ((len(params) + 7) // 8) + b"\x01"
        payload += b"".join(struct.pack("<BB", 8, 0) for _ in params)  # LONGLONG
        payload += b"".join(struct.pack("<q", p) for p in params)
    send(conn, COM_STMT_EXECUTE, payload)
    if cursor:
        # Column definitions and one EOF: the rows wait for COM_STMT_FETCH.
        pkt = conn._read_packet().get_all_data()
        for _ in range(pkt[0]):
            conn._read_packet()
        conn._read_packet()
        return
    read_until_end(conn)


def main():
    conn = pymysql.connect(host="127.0.0.1", port=int(sys.argv[1]), user="app", password="pw",
                           database="app", autocommit=True)
    with conn.cursor() as cur:
        cur.execute("CREATE TABLE IF NOT EXISTS items (id INT PRIMARY KEY, name VARCHAR(32), qty INT)")
        cur.execute("DELETE FROM items")
    ins, _ = prepare(conn, "INSERT INTO items (id, name, qty) VALUES (?, 'widget', ?)")
    for i in range(1, 4):
        execute(conn, ins, [i, 10 * i])
    sel, _ = prepare(conn, "SELECT name, qty FROM `app`.`items` WHERE id >= ?")
    execute(conn, sel, [1])
    execute(conn, sel, [100])          # no rows
    upd, _ = prepare(conn, "UPDATE items SET qty = qty + ? WHERE id = ?")
    execute(conn, upd, [1, 2])
    send(conn, COM_STMT_RESET, struct.pack("<I", upd))
    read_until_end(conn)
    execute(conn, sel, [2], cursor=True)
    send(conn, COM_STMT_FETCH, struct.pack("<II", sel, 10))
    while True:  # binary rows (0x00) until the EOF
        data = conn._read_packet().get_all_data()
        if data[0] == 0xFF or (data[0] == 0xFE and len(data) < 9):
            break
    bad = prepare(conn, "SELECT * FROM no_such_table WHERE id = ?")
    assert bad is None
    dele, _ = prepare(conn, "DELETE FROM items WHERE id = ?")
    execute(conn, dele, [3])
    for stmt in (ins, sel, upd, dele):
        send(conn, COM_STMT_CLOSE, struct.pack("<I", stmt))
    send(conn, COM_PING)
    read_until_end(conn)
    send(conn, COM_INIT_DB, b"mysql")
    read_until_end(conn)
    send(conn, COM_INIT_DB, b"no_such_db")
    read_until_end(conn)
    conn.close()


if __name__ == "__main__":
    main()
