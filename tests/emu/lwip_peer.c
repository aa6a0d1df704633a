/*
 * The server side of emu.lwip_smoke: the lwIP backend on a TAP that the
 * link emulator reaches through a packet socket (apps/slotnet-link/netns.sh
 * lwip). Serves peer.py's "GET N\n" (N bytes, then FIN), one connection at
 * a time, straight on the backend's ops table: the smoke is about the
 * topology, not the core.
 *
 *   lwip_peer TAP ADDR PORT     prints {"ready":true} once listening;
 *                               SIGTERM stops it (exit 0)
 */
#include <arpa/inet.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "slotnet/lwip.h"

static volatile sig_atomic_t stop;

static void on_term(int sig)
{
    (void)sig;
    stop = 1;
}

int main(int argc, char **argv)
{
    if (argc != 4) {
        fprintf(stderr, "usage: lwip_peer TAP ADDR PORT\n");
        return 2;
    }
    struct in_addr ia;
    if (inet_pton(AF_INET, argv[2], &ia) != 1)
        return 2;
    sn_lwip_config cfg;
    sn_lwip_config_default(&cfg);
    cfg.tap = argv[1];
    cfg.addr = ntohl(ia.s_addr);
    cfg.max_handles = 8;
    sn_lwip *lw;
    if (sn_lwip_create(&lw, &cfg) < 0) {
        fprintf(stderr, "lwip_peer: cannot open %s\n", argv[1]);
        return 1;
    }
    sn_backend b = sn_lwip_backend(lw);
    const sn_backend_ops *o = b.ops;
    void *lh, *ch = NULL;
    sn_endpoint local = { cfg.addr, (uint16_t)atoi(argv[3]) }, l, r;
    if (o->listen(b.ctx, &local, &lh) < 0) {
        fprintf(stderr, "lwip_peer: listen failed\n");
        return 1;
    }
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_term; /* no SA_RESTART: wait() returns */
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    printf("{\"ready\":true}\n");
    fflush(stdout);

    static char chunk[16384];
    memset(chunk, 'x', sizeof chunk);
    char cmd[64];
    size_t cmdlen = 0;
    long left = -1; /* -1: reading the command */
    while (!stop) {
        o->wait(b.ctx, 20);
        if (!ch) {
            if (o->accept(b.ctx, lh, &ch, &l, &r) != 0)
                continue;
            cmdlen = 0;
            left = -1;
        }
        sn_bconn_state st;
        o->conn_state(b.ctx, ch, &st);
        bool done = (st.flags & (SN_BF_RESET | SN_BF_ERROR)) != 0;
        while (!done && left < 0) {
            int n = o->recv(b.ctx, ch, cmd + cmdlen, sizeof cmd - 1 - cmdlen);
            if (n <= 0) {
                done = n < 0;
                break;
            }
            cmdlen += (size_t)n;
            cmd[cmdlen] = '\0';
            if (strchr(cmd, '\n'))
                left = strncmp(cmd, "GET ", 4) == 0 ? atol(cmd + 4) : 0;
            else if (cmdlen == sizeof cmd - 1)
                done = true;
        }
        while (!done && left > 0) {
            size_t want = left < (long)sizeof chunk ? (size_t)left : sizeof chunk;
            int n = o->send(b.ctx, ch, chunk, want, true);
            if (n <= 0)
                break; /* full: the next wait() brings acknowledgements */
            left -= n;
        }
        uint32_t unsent = 1, unacked = 1;
        if (!done && left == 0)
            o->tx_queued(b.ctx, ch, &unsent, &unacked);
        if (done || (left == 0 && unsent == 0 && unacked == 0)) {
            if (done)
                o->abort(b.ctx, ch);
            else
                o->close(b.ctx, ch); /* drained: FIN */
            o->release(b.ctx, ch);
            ch = NULL;
        }
    }
    if (ch) {
        o->abort(b.ctx, ch);
        o->release(b.ctx, ch);
    }
    o->unlisten(b.ctx, lh);
    sn_lwip_destroy(lw);
    return 0;
}
