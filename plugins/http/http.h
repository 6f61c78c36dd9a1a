/*
 * http: what the kernel side and the user side of the plugin share.
 *
 * The capture itself (events, conns map) is bpf/ps_sockcap.h; http.bpf.c only
 * adds its classifier. Fixed-width types: this header is read by both sides.
 */
#ifndef PS_HTTP_H
#define PS_HTTP_H

#ifndef __VMLINUX_H__
#include <linux/types.h>
#endif

/* A request starts with a method token of this many upper-case letters. */
#define HTTP_METHOD_TOKEN_MIN 3
#define HTTP_METHOD_TOKEN_MAX 10

/* User side: streams decoded at once; past it the least recently fed goes. */
#define HTTP_MAX_STREAMS 16384
/* User side: a stream nothing was fed to for this long is dropped at a flush. */
#define HTTP_STREAM_IDLE_NS (15ull * 60 * 1000000000)

#endif
