/*
 * MySQL/MariaDB client/server protocol stream decoder: pure C, no BPF, no
 * libuv (unit tests and fuzzing).
 *
 * One struct mysql_stream per connection. The capture feeds it what each
 * syscall moved, in order, both directions interleaved: the first `len`
 * bytes that were captured of `total` bytes moved. The decoder frames
 * packets (4-byte header, continuation of 16 MiB packets), skips the
 * connection phase, pairs every command with its response and reports each
 * completed exchange through the callback. The stream may start anywhere: at
 * the server's greeting, at the client's HandshakeResponse (the plaintext of a
 * connection that switched to TLS), or between commands.
 */
#ifndef PS_MYSQL_PROTO_H
#define PS_MYSQL_PROTO_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "mysql_sql.h"

enum mysql_dir {
	MYSQL_DIR_IN = 0,  /* the observed process read these bytes */
	MYSQL_DIR_OUT = 1, /* the observed process wrote these bytes */
};

enum mysql_role {
	MYSQL_ROLE_UNKNOWN = 0,
	MYSQL_ROLE_SERVER, /* commands come in */
	MYSQL_ROLE_CLIENT, /* commands go out */
};

/* Command bytes (the first payload byte of a command packet). */
enum mysql_command {
	MYSQL_COM_QUIT = 0x01,
	MYSQL_COM_INIT_DB = 0x02,
	MYSQL_COM_QUERY = 0x03,
	MYSQL_COM_FIELD_LIST = 0x04,
	MYSQL_COM_STATISTICS = 0x09,
	MYSQL_COM_PING = 0x0e,
	MYSQL_COM_CHANGE_USER = 0x11,
	MYSQL_COM_STMT_PREPARE = 0x16,
	MYSQL_COM_STMT_EXECUTE = 0x17,
	MYSQL_COM_STMT_SEND_LONG_DATA = 0x18,
	MYSQL_COM_STMT_CLOSE = 0x19,
	MYSQL_COM_STMT_RESET = 0x1a,
	MYSQL_COM_SET_OPTION = 0x1b,
	MYSQL_COM_STMT_FETCH = 0x1c,
	MYSQL_COM_RESET_CONNECTION = 0x1f,
	MYSQL_COM_STMT_BULK_EXECUTE = 0xfa, /* MariaDB */
};

/*
 * One command and its response. Reported for COM_QUERY, COM_STMT_PREPARE
 * (operation "PREPARE", the statement's table), COM_STMT_EXECUTE (the
 * prepared statement's operation and table), COM_STMT_RESET ("RESET"),
 * COM_INIT_DB ("USE") and COM_PING ("PING"). A query of several statements
 * (CLIENT_MULTI_STATEMENTS) gives one exchange per statement, each timed from
 * the end of the result before it; multi_statement is set only on the rare
 * one that could not be taken apart. Other commands are framed and
 * counted (stats.other_commands), never reported.
 */
struct mysql_exchange {
	enum mysql_role role;
	uint8_t command;
	char operation[MYSQL_OP_MAX];
	char collection[MYSQL_NAME_MAX];
	char db_namespace[MYSQL_DB_MAX]; /* current database, "" if unknown */
	uint16_t error_code;		 /* ERR packet's code (e.g. 1146), 0 for success */
	bool multi_statement;		 /* a query of several statements: names are the first's */
	uint32_t results;		 /* OK packets and result sets in the response */
	uint64_t affected_rows;		 /* of the last OK */
	uint64_t rows;			 /* rows of the result sets */
	uint64_t start_ns;		 /* the feed holding the command's first byte */
	uint64_t end_ns;		 /* the feed holding the response's last byte */
};

typedef void (*mysql_exchange_fn)(const struct mysql_exchange *ex, void *ctx);

struct mysql_stream;

struct mysql_stream *mysql_stream_new(void);
void mysql_stream_free(struct mysql_stream *s);

/*
 * Feeds one syscall's worth of bytes: data holds the first len captured bytes
 * of total bytes moved (total >= len; the rest is known by its length only).
 * ts_ns is when the syscall completed. Feeds must come in the order their
 * syscalls completed. Returns 0, or -EPROTO once the stream proved not to be
 * MySQL (every later call returns -EPROTO at once).
 */
int mysql_stream_feed(struct mysql_stream *s, enum mysql_dir dir, const uint8_t *data, size_t len,
		      uint64_t total, uint64_t ts_ns, mysql_exchange_fn fn, void *ctx);

/*
 * From now on the feeds are the plaintext inside TLS (the capture's OpenSSL
 * probes), on the stream that carried the SSLRequest: the decoder skipped the
 * ciphertext since, and picks up at the client's HandshakeResponse. A no-op
 * unless an SSLRequest was seen (a stream that starts inside TLS needs no call).
 */
void mysql_stream_tls_plaintext(struct mysql_stream *s);

/* The connection ended: commands still waiting for a response count as unanswered. */
void mysql_stream_close(struct mysql_stream *s);

/* Counters of one stream, for periscope_decode_errors_total and the plugin's own counters. */
struct mysql_stream_stats {
	enum mysql_role role;
	uint64_t exchanges;	     /* reported through the callback */
	uint64_t unanswered;	     /* commands the connection ended on */
	uint64_t lost;		     /* commands or responses that could not be paired */
	uint64_t parse_errors;	     /* malformed or unexpected packets */
	uint64_t desyncs;	     /* times packet framing was lost (bytes not captured) */
	uint64_t multi_statements;   /* queries of several statements (one exchange each) */
	uint64_t multi_undecoded;    /* ... of them, reported as one, flagged multi_statement */
	uint64_t unknown_statements; /* executes of a statement whose prepare was not seen */
	uint64_t unsummarized;	     /* queries whose text could not be summarised */
	uint64_t other_commands; /* framed, not reported (COM_STMT_FETCH, COM_STATISTICS, ...) */
	uint64_t compressed_packets; /* compressed packets inflated (CLIENT_COMPRESS, zlib) */
	uint64_t compressed_skipped; /* bytes they announced that were not inflated */
	bool compressed;	     /* the compressed protocol */
	bool compressed_zstd;	     /* ... with zstd: nothing after the handshake is decoded */
	bool tls_switch;  /* SSLRequest seen: TLS follows */
	bool tls_waiting; /* ... and its plaintext has not come (yet) */
	bool not_mysql;	  /* feed returns -EPROTO */
};

void mysql_stream_get_stats(const struct mysql_stream *s, struct mysql_stream_stats *st);

#endif
