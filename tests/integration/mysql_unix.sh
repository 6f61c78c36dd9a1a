#!/usr/bin/env bash
# mysql.sh with every load a second time over the server's Unix socket: the mariadb client
# (-S), sysbench (--mysql-socket) and pymysql (unix_socket). No ports there: the capture's
# MySQL first-bytes classifier claims the connections; the client view has no server address.
MYSQL_TEST_VIA=unix exec bash "$(dirname "$0")/mysql.sh"
