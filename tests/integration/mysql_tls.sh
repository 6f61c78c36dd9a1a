#!/usr/bin/env bash
# mysql.sh with every load a second time over TLS: the SSLRequest, then OpenSSL on the same
# connection (the mariadb client, sysbench --mysql-ssl=on, pymysql with ssl).
# The kernel itself sees the SSLRequest (the plugin's starttls: MYSQL) and takes the
# connection's bytes from OpenSSL from the next syscall on: told from user space, it would
# hear too late, after the HandshakeResponse and the first commands went by as ciphertext
# (sysbench's prepares and pymysql's database were lost that way).
MYSQL_TEST_VIA=tls exec bash "$(dirname "$0")/mysql.sh"
