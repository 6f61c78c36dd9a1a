#!/usr/bin/env bash
# mysql.sh with every load a second time over TLS: the SSLRequest, then OpenSSL on the same
# connection (the mariadb client, sysbench --mysql-ssl=on, pymysql with ssl).
# Not in INTEGRATION_TESTS yet: the plugin tells the capture of the SSLRequest from user
# space (ps_capture_starttls), and until the kernel hears, the HandshakeResponse and the first
# commands pass as ciphertext: sysbench's prepares (its executes are then unknown statements)
# and pymysql's database (db_namespace) are missed. The mariadb client, slower to start its
# first command, is counted exactly.
MYSQL_TEST_TLS=1 exec bash "$(dirname "$0")/mysql.sh"
