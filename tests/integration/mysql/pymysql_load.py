#!/usr/bin/env python3
"""A Python MySQL client with known counts, for tests/integration/mysql.sh.

    pymysql_load.py [--ssl CA | --unix SOCKET | --compress] PORT DB TABLE MISSING
                    INSERTS SELECTS UPDATES DELETES FAILS

Runs INSERTS inserts into TABLE, then SELECTS selects, UPDATES updates,
DELETES deletes, and FAILS selects from the table MISSING (error 1146), one
statement per COM_QUERY on one connection, with pymysql (pure Python): over
TCP, over TLS with --ssl (no verification: the certificate is the test's own),
or over the Unix socket with --unix. pymysql has no compressed protocol: with
--compress the client is MySQLdb (Debian's python3-mysqldb, libmariadb), which
asks for it. Exits non-zero unless every statement did what it should.
"""
import argparse
import sys


def connect(args):
    if args.compress:
        import MySQLdb

        conn = MySQLdb.connect(host="127.0.0.1", port=args.port, user="app", password="pw",
                               database=args.db, autocommit=True, compress=True)
        return conn, MySQLdb.ProgrammingError
    import pymysql

    where = {"unix_socket": args.unix} if args.unix else {"host": "127.0.0.1", "port": args.port}
    ssl = {"ca": args.ssl, "check_hostname": False} if args.ssl else None
    conn = pymysql.connect(user="app", password="pw", database=args.db, autocommit=True, ssl=ssl,
                           **where)
    return conn, pymysql.err.ProgrammingError


def main():
    ap = argparse.ArgumentParser()
    how = ap.add_mutually_exclusive_group()
    how.add_argument("--ssl", metavar="CA")
    how.add_argument("--unix", metavar="SOCKET")
    how.add_argument("--compress", action="store_true")
    ap.add_argument("port", type=int)
    ap.add_argument("db")
    ap.add_argument("table")
    ap.add_argument("missing")
    ap.add_argument("counts", type=int, nargs=5)
    args = ap.parse_args()
    inserts, selects, updates, deletes, fails = args.counts
    table, missing = args.table, args.missing

    conn, programming_error = connect(args)
    cur = conn.cursor()
    cur.execute("SHOW SESSION STATUS WHERE Variable_name IN ('Ssl_cipher', 'Compression')")
    status = dict(cur.fetchall())
    if bool(status.get("Ssl_cipher")) != bool(args.ssl):
        sys.exit(f"TLS {'expected' if args.ssl else 'unexpected'}: {status}")
    if (status.get("Compression") == "ON") != args.compress:
        sys.exit(f"compression {'expected' if args.compress else 'unexpected'}: {status}")
    for i in range(1, inserts + 1):
        assert cur.execute(f"INSERT INTO {table} (id, name, qty) VALUES (%s, %s, %s)",
                           (i, f"name-{i}", i)) == 1
    for i in range(1, selects + 1):
        cur.execute(f"SELECT name, qty FROM {table} WHERE id = %s", (i,))
        assert len(cur.fetchall()) == 1
    for i in range(1, updates + 1):
        assert cur.execute(f"UPDATE {table} SET qty = qty + 1 WHERE id = %s", (i,)) == 1
    for i in range(1, deletes + 1):
        assert cur.execute(f"DELETE FROM {table} WHERE id = %s", (i,)) == 1
    failed = 0
    for i in range(fails):
        try:
            cur.execute(f"SELECT * FROM {missing} WHERE id = %s", (i,))
        except programming_error as e:
            if e.args[0] == 1146:
                failed += 1
    assert failed == fails, failed
    cur.close()
    conn.close()
    print("ok")


if __name__ == "__main__":
    main()
