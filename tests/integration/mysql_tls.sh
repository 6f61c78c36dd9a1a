#!/usr/bin/env bash
# mysql.sh with every load a second time over TLS: the SSLRequest, then OpenSSL on the same
# connection (the mariadb client, sysbench --mysql-ssl=on, pymysql with ssl).
MYSQL_TEST_TLS=1 exec bash "$(dirname "$0")/mysql.sh"
