#!/usr/bin/env bash
# mysql.sh with every load a second time over the compressed protocol (CLIENT_COMPRESS,
# zlib): mariadb --compress, sysbench --mysql-compression=on, and MySQLdb (python3-mysqldb,
# libmariadb) with compress=True, pymysql having no compression.
MYSQL_TEST_VIA=compress exec bash "$(dirname "$0")/mysql.sh"
