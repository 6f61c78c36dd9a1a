/*
 * The core socket capture: what its kernel side (core/capture/capture.bpf.c)
 * and its user side (core/capture/capture.c) share.
 *
 * The kernel follows stream sockets (TCP, AF_UNIX SOCK_STREAM). Registered
 * protocols occupy slots; a connection is considered by the slots whose
 * ports it has (or that take any port), classified on its first bytes, and
 * followed (MINE, for one slot) or skipped. Two ways to see the bytes:
 *
 *   socket path   tp_btf sock_send_length / sock_recv_length (kernel >= 6.3):
 *                 they fire in sock_sendmsg/sock_recvmsg, in the calling task,
 *                 once per socket data syscall; the syscall's own arguments come
 *                 from the task's saved registers. Key: the socket cookie.
 *                 Connections end at inet_sock_set_state (our FIN, or CLOSE).
 *   syscall path  sys_exit_* of the data syscalls (older kernels): every syscall
 *                 of the host pays for the tracepoints. Key: tgid << 32 | fd;
 *                 accept, connect, close and dup2/dup3 mark the boundaries.
 *
 * Events of followed (MINE) connections, in syscall order (one ring buffer):
 *
 *   DATA   one per syscall that moved bytes: a header, the first `len` of
 *          `total` bytes (len <= the slot's capture bytes; 0 when the bytes
 *          could not be read: sendfile, splice, io_uring) and, when more moved
 *          than that, the last `tail` bytes: where messages usually end
 *   CLOSE  the connection ended (our side closed it, or the fd was closed)
 *   EXIT   a process that had followed connections exited
 *
 * With TLS wanted, a connection whose first bytes are TLS records is marked
 * `tls`: its syscalls never produce DATA (ciphertext), and the OpenSSL
 * uprobes send what SSL_read/SSL_write moved instead, as DATA with
 * PS_SC_F_TLS. Two more events tell user space where to look for libssl:
 *
 *   EXEC   a process called execve: it may map a libssl not seen yet
 *   TLS    a process's first TLS connection (once per process image)
 *
 * A protocol whose messages can be far larger than what a syscall's prefix
 * holds can have the kernel walk them (a walker, bpf/ps_walk_*.h): it follows
 * the connection's framing in both directions and sends, before the DATA of
 * the same syscall and with its timestamp, PIECES: the bytes at chosen
 * offsets past the prefix that the protocol's decoder needs (Kafka: a Fetch
 * response's structure and its record batch headers, not the records).
 */
#ifndef PS_SOCKCAP_H
#define PS_SOCKCAP_H

#ifndef __VMLINUX_H__
#include <linux/types.h>
#endif

#define PS_SC_COMM_LEN		  16
#define PS_SC_CAPTURE_MAX	  4096 /* a power of two: the kernel masks lengths with it */
#define PS_SC_CAPTURE_MIN	  64
#define PS_SC_CAPTURE_DEFAULT	  1024
#define PS_SC_DEFAULT_CONNECTIONS 65536
#define PS_SC_DEFAULT_SKIPPED_FDS 262144
#define PS_SC_DEFAULT_RINGBUF	  (2 << 20) /* 8 wake-up watermarks; every page of it ends up in RSS */
#define PS_SC_CLASSIFY_BYTES	  16 /* what a classifier gets to see */
#define PS_SC_SLOTS		  8  /* protocols registered at once: bits of a __u8 */
#define PS_SC_TAIL_MAX		  64 /* the end of a syscall's bytes, past the prefix */

/* What a classifier says about a connection; also its state in the conns map. */
enum ps_sc_verdict {
	PS_SC_UNKNOWN = 0,  /* not enough bytes yet: ask again on the next syscall */
	PS_SC_MINE = 1,	    /* follow it: data events from now on */
	PS_SC_NOT_MINE = 2, /* never look at it again */
};

/* How we came to know a connection. */
enum ps_sc_role {
	PS_SC_ROLE_UNKNOWN = 0, /* open before we started, inherited, or passed over */
	PS_SC_ROLE_SERVER = 1,	/* accept()ed by this process */
	PS_SC_ROLE_CLIENT = 2,	/* connect()ed by this process */
};

/* Same values as enum http_dir. */
enum ps_sc_dir {
	PS_SC_DIR_IN = 0,  /* the process read these bytes */
	PS_SC_DIR_OUT = 1, /* the process wrote these bytes */
};

enum ps_sc_event_type {
	PS_SC_EV_DATA = 1,
	PS_SC_EV_CLOSE = 2,
	PS_SC_EV_EXIT = 3,
	PS_SC_EV_EXEC = 4,
	PS_SC_EV_TLS = 5,
	PS_SC_EV_PIECES = 6,
};

/* ps_sc_event.flags */
enum ps_sc_event_flags {
	PS_SC_F_TLS = 1,  /* DATA: plaintext of a TLS connection, from the OpenSSL uprobes */
	PS_SC_F_CONN = 2, /* laddr, raddr and comm are filled: always but in DATA, where only
			     a connection's first event that got through has them */
};

#ifndef PS_SC_AF_UNIX
#define PS_SC_AF_UNIX 1
#endif

/* Slots of the ps_sc_stats per-CPU array. */
enum ps_sc_stat {
	PS_SC_STAT_TLS_UNBOUND = 0, /* SSL_read/SSL_write plaintext whose fd no syscall named: lost */
	PS_SC_STAT_UNCAPTURED,	    /* followed bytes with no user buffer to read (io_uring, kernel
				       senders, recvmmsg/sendmmsg of several messages): a gap */
	PS_SC_STAT_WALK_LOST,	    /* a walked connection whose framing the walker lost */
	PS_SC_STATS,
};

/* The kernel's first-bytes classifiers (enum ps_capture_classifier of periscope/capture.h). */
enum ps_sc_classifier {
	PS_SC_CLASSIFY_NONE = 0,  /* every considered connection */
	PS_SC_CLASSIFY_HTTP1 = 1, /* bpf/ps_classify_http.h */
	PS_SC_CLASSIFY_MYSQL = 2,   /* bpf/ps_classify_mysql.h */
	PS_SC_CLASSIFY_MONGODB = 3, /* bpf/ps_classify_mongodb.h */
};

/* The walkers the capture carries (enum ps_capture_walker of periscope/capture.h). */
enum ps_sc_walker {
	PS_SC_WALK_NONE = 0,
	PS_SC_WALK_KAFKA = 1, /* bpf/ps_walk_kafka.h */
};

#define PS_SC_PIECE_MAX	 64  /* bytes of one piece */
#define PS_SC_PIECES_MAX 128 /* pieces per PIECES event (a power of two) */

/* PIECES: after the header (`len` = the number of pieces), this many of these. */
struct ps_sc_piece {
	__u32 off; /* in the bytes the syscall moved */
	__u16 len; /* <= PS_SC_PIECE_MAX */
	__u16 pad;
	__u8 data[PS_SC_PIECE_MAX];
};

/* Upgrades to TLS the kernel watches for (enum ps_capture_starttls of periscope/capture.h). */
#define PS_SC_STARTTLS_MYSQL 1

/* A registered protocol, as the kernel sees it (user space writes these while running). */
struct ps_sc_slot {
	__u8 active;
	__u8 classifier;      /* enum ps_sc_classifier: TCP */
	__u8 unix_classifier; /* AF_UNIX */
	__u8 tls;	      /* wants OpenSSL plaintext: others never see it */
	__u32 capture_bytes;
	__u8 starttls; /* enum ps_capture_starttls: an upgrade the kernel recognises */
	__u8 walker;   /* enum ps_sc_walker */
	__u8 pad2[2];
};

/*
 * A stream socket worth a look. Socket path: in the socket's own storage, for
 * every stream socket seen (NOT_MINE included), and in the conns map (key: the
 * socket cookie) too for tls ones, which the OpenSSL uprobes find there.
 * Syscall path: in the conns map (key: tgid << 32 | fd), NOT_MINE in the skip map.
 */
struct ps_sc_conn {
	__u64 id;    /* unique per connection while periscoped runs */
	__u8 state;  /* enum ps_sc_verdict: UNKNOWN or MINE (NOT_MINE moves to the skip map) */
	__u8 role;   /* enum ps_sc_role */
	__u8 family; /* AF_INET, AF_INET6 (never IPv4-mapped) or AF_UNIX */
	__u8 tries;  /* classifications that came back UNKNOWN */
	__u16 lport; /* host order; 0 for AF_UNIX */
	__u16 rport;
	__u8 laddr[16], raddr[16]; /* network order; IPv4 in the first 4 bytes */
	__u8 tls; /* TLS records seen: state is about the plaintext, syscalls are silent */
	__u8 announced;	 /* a DATA event with its addresses and comm went out (PS_SC_F_CONN) */
	__u8 slot;	 /* MINE: the protocol that claimed it */
	__u8 candidates; /* slots that consider it (bit i: slot i) */
	__u8 on_socket;	 /* lives in the socket's storage (socket path), not in the conns map */
	__u8 starttls_half; /* the first half of an upgrade went by (a header read alone) */
	__u8 walk;	    /* its slot's walker follows it: an entry in ps_sc_walks */
	__u8 end_deferred;  /* socket path: reset inside its own data syscall, ended after it */
	__u32 orders_seen; /* socket path: ps_sc_orders_gen when it last looked for orders */
};

/* What user space orders a connection on the socket path (the ps_sc_orders map). */
enum ps_sc_order {
	PS_SC_ORDER_REJECT = 1,	  /* not the protocol's after all: follow it no more */
	PS_SC_ORDER_STARTTLS = 2, /* its bytes are TLS from now on */
	PS_SC_ORDER_ANNOUNCE = 3, /* send its addresses and comm again (user space lost them) */
};

/*
 * Every event starts with this. DATA is followed (at ev + 1) by `len` bytes,
 * the start of what moved, then `tail` bytes, the last `tail` of the `total`.
 */
struct ps_sc_event {
	__u32 type; /* enum ps_sc_event_type */
	__u32 tgid;
	__u32 tid;
	__u32 fd;      /* syscall path: the fd (the conns key is tgid << 32 | fd) */
	__u64 ts_ns;   /* bpf_ktime_get_ns() when the syscall moved the bytes */
	__u64 conn_id; /* socket path: the cookie, also the conns key; 0 for EXIT */
	__u64 total;   /* DATA: bytes the syscall moved */
	__u32 len;     /* DATA: payload bytes that follow (<= capture_bytes) */
	__u8 dir;      /* enum ps_sc_dir */
	__u8 role;     /* enum ps_sc_role */
	__u8 family;
	__u8 flags; /* enum ps_sc_event_flags */
	__u16 lport, rport;
	__u16 tail; /* DATA: bytes that follow the prefix: the last of the total */
	__u8 slot;  /* DATA, CLOSE: the protocol that claimed the connection */
	__u8 pad2;
	__u8 laddr[16], raddr[16];
	char comm[PS_SC_COMM_LEN];
};

#endif
