/* Inside libslotnet-host: the transports behind sn_host_open's targets. */
#ifndef SN_HOST_INT_H
#define SN_HOST_INT_H

#include <stdbool.h>
#include <sys/types.h>

/* Opens target ("unix:PATH", "PATH", "serial:DEV[,BAUD]", "exec:CMD") as a
 * non-blocking descriptor. *is_socket tells send() from write(); *child is
 * the exec: process (its own process group), else 0; *baud the serial
 * line's rate, else 0. A UNIX socket that does not exist yet or refuses is
 * tried again for up to patience_ms. 0 or SN_EINVAL (bad target), SN_EIO
 * (cannot open; errno says why). */
int sn__host_tr_open(const char *target, unsigned patience_ms, int *fd, bool *is_socket,
                     pid_t *child, unsigned long *baud);

/* Closes fd; an exec: child, which sees end of file on its stdin, gets a
 * moment to exit, then SIGTERM, then SIGKILL, and is reaped. */
void sn__host_tr_close(int fd, pid_t child);

#endif
