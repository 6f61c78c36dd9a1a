/*
 * periscope plugin API: process metadata.
 *
 * pid -> service_name, from (in order) a `services` rule, the systemd unit in
 * the process's cgroup path, the container, the executable's base name. The
 * answer is cached until the process exits.
 */
#ifndef PERISCOPE_PROC_H
#define PERISCOPE_PROC_H

#include <periscope/api.h>

#include <stdint.h>

/*
 * Never NULL. comm_hint (the kernel's task comm, may be NULL) names a process
 * that already exited. The string stays valid until the next flush.
 */
PS_API const char *ps_proc_service_name(uint32_t tgid, const char *comm_hint);
/* Tells the cache a process exited (plugins that see sched_process_exit). */
PS_API void ps_proc_forget(uint32_t tgid);

#endif
