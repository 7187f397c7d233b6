/*
 * port: host-port leases from PORT_RANGE for the memory store: a bitmap
 * with a next-fit cursor, and a bind probe that skips ports some other
 * process holds.
 */
#ifndef SANDPOOL_PORT_H
#define SANDPOOL_PORT_H

struct port_map;

/* A map of ports lo <= p < hi, all free. */
struct port_map *port_map_new(int lo, int hi);
void port_map_free(struct port_map *);
/*
 * Leases the next free port that can be bound on ip (next-fit from the
 * last lease); -1 when none is left.
 */
int port_map_lease(struct port_map *, const char *ip);
/* Marks a port leased (used when adopting state); 0, or -1 if outside. */
int port_map_take(struct port_map *, int port);
/* Returns a port to the map. */
void port_map_release(struct port_map *, int port);
/* 1 if the port is leased. */
int port_map_is_leased(const struct port_map *, int port);
/* Number of leased ports. */
int port_map_count(const struct port_map *);
/* 1 if a TCP socket can bind ip:port right now. */
int port_probe(const char *ip, int port);

#endif
