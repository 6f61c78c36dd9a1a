/*
 * http, TLS: finds the libssl files processes map and attaches the OpenSSL
 * uprobes of the capture (ps_sockcap.bpf.h, PS_SC_WITH_TLS) to each of them.
 *
 * Uprobes belong to a file (its inode), not to a process: one attachment per
 * distinct libssl covers every process that maps it, now and later. Where to
 * look: the libssl files in the usual library directories and every libssl
 * mapped by a running process (at start), the maps of each process that
 * calls execve (when the EXEC event arrives and once more a second later, for
 * late dlopen()s), and of a process whose TLS connection the kernel saw
 * before any uprobe of its libssl fired (TLS event).
 *
 * Not covered: OpenSSL linked statically into an executable, and TLS
 * libraries other than OpenSSL (GnuTLS, NSS, BoringSSL in Go or Chrome).
 */
#ifndef PS_HTTP_TLS_H
#define PS_HTTP_TLS_H

#include <stdint.h>

struct bpf_program;

/* The capture's uprobe programs, loaded. */
struct http_tls_progs {
	struct bpf_program *read, *write, *read_ex, *write_ex; /* entries */
	struct bpf_program *ret;			       /* the return of all four */
};

struct http_tls;

/* NULL with errno set. Attaches nothing yet. */
struct http_tls *http_tls_new(const struct http_tls_progs *progs);
/* Detaches everything and frees t (NULL is fine). */
void http_tls_free(struct http_tls *t);

/* At start: the library directories and every running process. Returns the libssl count. */
int http_tls_scan_all(struct http_tls *t);
/* A process called execve (now_ns: CLOCK_MONOTONIC): look at it now and a little later. */
void http_tls_on_exec(struct http_tls *t, uint32_t tgid, uint64_t now_ns);
/* A process has a TLS connection: look at its maps now. */
void http_tls_on_hint(struct http_tls *t, uint32_t tgid);
/* Runs the later looks that are due; cheap when none is. */
void http_tls_tick(struct http_tls *t, uint64_t now_ns);

#endif
