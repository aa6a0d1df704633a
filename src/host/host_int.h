/* Inside libslotnet-host: the transports behind sn_host_open's targets. */
#ifndef SN_HOST_INT_H
#define SN_HOST_INT_H

#include <stdbool.h>
#include <sys/types.h>

/* Opens target ("unix:PATH", "PATH", "serial:DEV[,BAUD]", "exec:CMD") as a
 * non-blocking descriptor. *is_socket tells send() from write(); *child is
 * the exec: process (its own process group), else 0. 0 or SN_EINVAL (bad
 * target), SN_EIO (cannot open). */
int sn__host_tr_open(const char *target, int *fd, bool *is_socket, pid_t *child);

/* Closes fd; an exec: child, which sees end of file on its stdin, gets a
 * moment to exit, then SIGTERM, then SIGKILL, and is reaped. */
void sn__host_tr_close(int fd, pid_t child);

#endif
