#!/usr/bin/env python3
"""A pymysql client with known counts, for tests/integration/mysql.sh.

    pymysql_load.py PORT DB TABLE MISSING INSERTS SELECTS UPDATES DELETES FAILS [CA]

Runs INSERTS inserts into TABLE, then SELECTS selects, UPDATES updates,
DELETES deletes, and FAILS selects from the table MISSING (error 1146), one
statement per COM_QUERY on one connection; over TLS when CA is given (no
verification: the certificate is the test's own). Exits non-zero unless every
statement did what it should.
"""
import sys

import pymysql


def main():
    port, db, table, missing = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4]
    inserts, selects, updates, deletes, fails = (int(a) for a in sys.argv[5:10])
    ssl = {"ca": sys.argv[10], "check_hostname": False} if len(sys.argv) > 10 else None
    conn = pymysql.connect(host="127.0.0.1", port=port, user="app", password="pw", database=db,
                           autocommit=True, ssl=ssl)
    with conn.cursor() as cur:
        cur.execute("SHOW STATUS LIKE 'Ssl_cipher'")
        cipher = cur.fetchone()[1]
        if bool(cipher) != bool(ssl):
            sys.exit(f"TLS {'expected' if ssl else 'unexpected'}: cipher {cipher!r}")
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
            except pymysql.err.ProgrammingError as e:
                if e.args[0] == 1146:
                    failed += 1
        assert failed == fails, failed
    conn.close()
    print("ok")


if __name__ == "__main__":
    main()
