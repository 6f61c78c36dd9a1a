/*
 * The capture's TLS side: finds the libssl files processes map and attaches the OpenSSL
 * uprobes of the core capture (capture.bpf.c) to each of them.
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
#ifndef PS_CORE_CAPTURE_TLS_H
#define PS_CORE_CAPTURE_TLS_H

#include <stdint.h>

struct bpf_program;

/* The capture's uprobe programs, loaded. */
struct capture_tls_progs {
	struct bpf_program *read, *write, *read_ex, *write_ex; /* entries */
	struct bpf_program *ret;			       /* the return of all four */
};

struct capture_tls;

/* NULL with errno set. Attaches nothing yet. */
struct capture_tls *capture_tls_new(const struct capture_tls_progs *progs);
/* Detaches everything and frees t (NULL is fine). */
void capture_tls_free(struct capture_tls *t);

/* At start: the library directories and every running process. Returns the libssl count. */
int capture_tls_scan_all(struct capture_tls *t);
/* A process called execve (now_ns: CLOCK_MONOTONIC): look at it now and a little later. */
void capture_tls_on_exec(struct capture_tls *t, uint32_t tgid, uint64_t now_ns);
/* A process has a TLS connection: look at its maps now. */
void capture_tls_on_hint(struct capture_tls *t, uint32_t tgid);
/* Runs the later looks that are due; cheap when none is. */
void capture_tls_tick(struct capture_tls *t, uint64_t now_ns);

#endif
