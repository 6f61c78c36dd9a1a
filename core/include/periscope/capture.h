/*
 * periscope plugin API: the socket capture.
 *
 * One capture in the core serves every L7 plugin: one set of BPF programs,
 * maps and one ring buffer, loaded when the first protocol registers and
 * unloaded with the last, whatever number of L7 plugins is loaded. It follows
 * stream connections (TCP, AF_UNIX SOCK_STREAM) of every process; a
 * connection a protocol claims is handed to that protocol's callbacks as the
 * ordered chunks each syscall moved, both directions interleaved in the order
 * the syscalls completed.
 *
 * How a protocol recognises its connections:
 *   ports            TCP: with ports, only connections with one of them at either
 *                    end are considered; without, connections on any port are;
 *   classifier       among those, the first bytes decide, in the kernel, with one
 *                    of the classifiers the capture carries; PS_CAPTURE_CLASSIFY_NONE
 *                    claims every considered connection (ports are then required);
 *   unix_classifier  AF_UNIX stream connections, which have no ports, are
 *                    considered when this is set, and it decides (NONE: never).
 * The first protocol (in registration order) that claims a connection gets it.
 * A protocol that upgrades to TLS in band (MySQL's SSLRequest) calls
 * ps_capture_starttls: from then on its chunks are the OpenSSL plaintext.
 *
 * With tls, the plaintext of connections whose ciphertext goes through
 * OpenSSL (SSL_read/SSL_write) is captured through uprobes and recognised
 * the same way; the ciphertext itself is never sent.
 *
 * Everything here runs on the loop thread. A registration is released when
 * its plugin stops (conn_close is called for each of its open connections).
 */
#ifndef PERISCOPE_CAPTURE_H
#define PERISCOPE_CAPTURE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <periscope/api.h>
#include <periscope/events.h>

struct ps_plugin;

#define PS_CAPTURE_BYTES_MIN	 64
#define PS_CAPTURE_BYTES_MAX	 4096
#define PS_CAPTURE_BYTES_DEFAULT 1024
#define PS_CAPTURE_PORTS_MAX	 64
#define PS_CAPTURE_PROTOCOLS_MAX 8 /* registered at once */

enum ps_capture_dir {
	PS_CAPTURE_IN = 0,  /* the observed process read these bytes */
	PS_CAPTURE_OUT = 1, /* the observed process wrote these bytes */
};

/* The first-bytes classifiers the capture's kernel side carries. */
enum ps_capture_classifier {
	PS_CAPTURE_CLASSIFY_NONE = 0, /* every connection on the protocol's ports */
	PS_CAPTURE_CLASSIFY_HTTP1 = 1,	/* an HTTP/1.x request or response line */
	PS_CAPTURE_CLASSIFY_MYSQL = 2,	/* a MySQL greeting, or a client's query, prepare, ping */
	PS_CAPTURE_CLASSIFY_MONGODB = 3, /* a MongoDB message header: OP_MSG, OP_QUERY, ... */
};

/* In-band upgrades to TLS the kernel recognises itself, before user space could. */
enum ps_capture_starttls {
	PS_CAPTURE_STARTTLS_NONE = 0,
	PS_CAPTURE_STARTTLS_MYSQL = 1, /* the client's SSLRequest packet */
};

/*
 * Walkers the capture's kernel side carries: for protocols whose messages are
 * often far larger than the bytes copied per syscall, the kernel follows the
 * framing and also sends the bytes past the prefix the decoder needs, as more
 * chunks of the same syscall (bytes at their true offsets, gaps between).
 */
enum ps_capture_walker {
	PS_CAPTURE_WALK_NONE = 0,
	PS_CAPTURE_WALK_KAFKA = 1, /* Fetch responses: their structure and record batch headers */
};

/* A followed connection; the same pointer for its whole life. */
struct ps_capture_conn {
	uint64_t id;	    /* unique while periscoped runs */
	uint32_t pid;	    /* the process that moved its first bytes */
	bool tls;	    /* chunks are the plaintext of OpenSSL */
	struct ps_endpoint local, remote; /* family AF_UNIX: no addresses, port 0 */
	char comm[16];	    /* of pid, as the kernel knew it */
};

/*
 * What one syscall moved, or a stretch of it: the first len bytes of total
 * are at data, the rest was not copied (total - len bytes nobody saw: framing
 * must skip them). One syscall can come as several chunks in a row (its start,
 * pieces a walker sent, its last bytes), each starting where the last ended.
 */
struct ps_capture_chunk {
	enum ps_capture_dir dir;
	const uint8_t *data;
	size_t len;
	uint64_t total;
	uint64_t ts_ns; /* CLOCK_MONOTONIC when the syscall moved them */
	uint32_t pid, tid;
};

struct ps_capture_protocol {
	uint32_t struct_size; /* sizeof(struct ps_capture_protocol) */
	const char *name;     /* for logs */
	enum ps_capture_classifier classifier;
	const uint16_t *ports; /* host order; n_ports <= PS_CAPTURE_PORTS_MAX */
	size_t n_ports;
	uint32_t capture_bytes; /* per syscall, PS_CAPTURE_BYTES_MIN..MAX; 0: the default */
	bool tls;		/* also OpenSSL plaintext */
	enum ps_capture_classifier unix_classifier; /* AF_UNIX streams: NONE = not considered */
	/*
	 * With tls: the upgrade the kernel watches for; the connection's bytes are
	 * OpenSSL plaintext from the syscall after it (the TLS handshake follows at
	 * once, before a ps_capture_starttls from user space could).
	 */
	enum ps_capture_starttls starttls;
	enum ps_capture_walker walker; /* plaintext TCP and AF_UNIX, from a connection's start */
	void *ctx;		/* first argument of every callback */

	/* A connection is now this protocol's: its state, or NULL to leave it alone. */
	void *(*conn_open)(void *ctx, const struct ps_capture_conn *conn);
	/*
	 * The next chunk. -EPROTO: not this protocol after all; the kernel stops
	 * following the connection and conn_close comes next.
	 */
	int (*conn_data)(void *ctx, void *state, const struct ps_capture_conn *conn,
			 const struct ps_capture_chunk *chunk);
	/* Over (closed, its process exited, idle, evicted or rejected): free state. */
	void (*conn_close)(void *ctx, void *state, const struct ps_capture_conn *conn,
			   uint64_t ts_ns);
};

struct ps_capture_reg;

/* NULL with errno set (EINVAL, ENOSPC, or why the capture could not load). */
PS_API struct ps_capture_reg *ps_capture_register(struct ps_plugin *p,
						  const struct ps_capture_protocol *proto);
/* Closes the protocol's connections and forgets it (also done when its plugin stops). */
PS_API void ps_capture_unregister(struct ps_capture_reg *r);
/*
 * The connection's bytes are TLS from now on (the protocol saw the upgrade):
 * its ciphertext is no longer sent, its OpenSSL plaintext is, flagged tls.
 * Bytes the kernel moved before it heard may still arrive. 0 or -errno.
 */
PS_API int ps_capture_starttls(const struct ps_capture_conn *conn);

#endif
