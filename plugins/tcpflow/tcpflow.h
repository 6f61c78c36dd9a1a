/*
 * tcpflow: what the kernel side and the user side of the plugin share.
 *
 * The kernel keeps one struct tcpflow_conn per TCP connection in the flows map
 * (keyed by the socket pointer) and sends one OPEN event when the connection
 * is established and its owner known, then one CLOSE event carrying the
 * totals -- or, for a handshake that never completed, one FAILED event only.
 * A RESET event reports an RST sent after that (rare: closes of orphans).
 * Bytes come from the tcp_sock itself: at close for the totals, and from the
 * refresh program (run by user space at each flush) for open connections.
 */
#ifndef PS_TCPFLOW_H
#define PS_TCPFLOW_H

#ifndef __VMLINUX_H__
#include <linux/types.h>
#endif

#define TCPFLOW_COMM_LEN		16
#define TCPFLOW_DEFAULT_MAX_CONNECTIONS 65536
/* Connections one run of the refresh program reads: bounds its time with preemption off. */
#define TCPFLOW_REFRESH_BATCH 512

enum tcpflow_event_type {
	TCPFLOW_EV_OPEN = 1,
	TCPFLOW_EV_CLOSE = 2,
	TCPFLOW_EV_FAILED = 3,
	TCPFLOW_EV_RESET = 4, /* an RST sent after CLOSE or FAILED went out */
};

/* Same values as enum ps_direction. */
enum tcpflow_direction {
	TCPFLOW_DIR_INBOUND = 0,
	TCPFLOW_DIR_OUTBOUND = 1,
};

/* Value of the flows map. Flags are separate bytes so that contexts never clobber each other. */
struct tcpflow_conn {
	__u64 start_ns;	      /* bpf_ktime_get_ns() at SYN_SENT / SYN_RECV */
	__u64 end_ns;	      /* when TCP reached CLOSE; 0 before */
	__u64 bytes_sent;     /* payload the application wrote: set at CLOSE */
	__u64 bytes_received; /* payload the application read, peeks excluded: set at CLOSE */
	__u32 tgid;	      /* owner; 0 while unknown (inbound, listener predates us) */
	__u32 retransmits;
	__u32 resets; /* RSTs sent or received */
	__u32 netns;  /* inbound: network namespace of the listener */
	__u32 snd_k;  /* snd_una - bytes_acked at ESTABLISHED (mod 2^32): fixed for life */
	__u32 rcv_k;  /* rcv_nxt - bytes_received, likewise */
	__u32 pad;
	__u16 family;	    /* AF_INET or AF_INET6; IPv4-mapped IPv6 reads as AF_INET */
	__u8 direction;	    /* enum tcpflow_direction */
	__u8 established;   /* the handshake completed */
	__u8 open_sent;	    /* the OPEN event went out */
	__u8 refused;	    /* an RST arrived before the handshake completed */
	__u8 closed;	    /* CLOSE/FAILED went out; the entry stays until tcp_destroy_sock */
	__u8 fin_out;	    /* our FIN is queued (FIN_WAIT1 or LAST_ACK seen) */
	__u16 lport, rport; /* host order */
	__u8 laddr[16], raddr[16]; /* network order; IPv4 in the first 4 bytes */
	char comm[TCPFLOW_COMM_LEN];
};

struct tcpflow_event {
	__u64 sk;	     /* socket pointer: with conn.start_ns, identifies the connection */
	__u64 ts_ns;	     /* bpf_ktime_get_ns() when the event was sent */
	__u32 type;	     /* enum tcpflow_event_type */
	__u32 srtt_us;	     /* CLOSE: smoothed RTT */
	__u32 total_retrans; /* CLOSE: tcp_sock's own count, a cross-check of retransmits */
	__u32 pad;
	struct tcpflow_conn conn;
};

/* One open connection's bytes so far, asked for by user space (refresh_batch). */
struct tcpflow_refresh {
	__u64 sk, start_ns;   /* in: the connection */
	__u64 sent, received; /* out: payload moved so far */
	__u64 ino;   /* out: its socket inode while the owner is unknown (0 before accept()) */
	__u32 valid; /* out: 0 if the connection is gone or could not be read consistently */
	__u32 pad;
};

/* Listening sockets by (network namespace, port): who owns inbound connections. */
struct tcpflow_listener_key {
	__u32 netns; /* inode number of the network namespace */
	__u16 port;  /* host order */
	__u16 pad;
};

struct tcpflow_listener {
	__u32 tgid;
	__u32 sockets; /* listening sockets on this key (SO_REUSEPORT, dual stack) */
	char comm[TCPFLOW_COMM_LEN];
};

#endif
