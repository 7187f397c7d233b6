/*
 * port: host-port leases for the memory store: a bitmap over PORT_RANGE
 * with a next-fit cursor (a just-freed port is not reused while others
 * are free), and a bind probe so that ports other processes hold are
 * skipped.
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "port.h"
#include "xmalloc.h"

struct port_map {
	int lo, hi;		/* lo <= p < hi */
	int cursor;		/* next index to try */
	int count;		/* leased ports */
	uint64_t *bits;
};

/* Makes an empty map. */
struct port_map *
port_map_new(int lo, int hi)
{
	struct port_map *m = xcalloc(1, sizeof *m);
	size_t n = hi > lo ? (size_t)(hi - lo) : 0;

	m->lo = lo;
	m->hi = hi > lo ? hi : lo;
	m->bits = xcalloc(n / 64 + 1, sizeof *m->bits);
	return m;
}

/* Frees a map. */
void
port_map_free(struct port_map *m)
{
	if (m == NULL)
		return;
	free(m->bits);
	free(m);
}

/* Reads bit i. */
static int
port_bit(const struct port_map *m, int i)
{
	return (m->bits[i / 64] >> (i % 64)) & 1;
}

/* Sets bit i to v. */
static void
port_set(struct port_map *m, int i, int v)
{
	if (v)
		m->bits[i / 64] |= (uint64_t)1 << (i % 64);
	else
		m->bits[i / 64] &= ~((uint64_t)1 << (i % 64));
}

/* Probes whether ip:port can be bound now. */
int
port_probe(const char *ip, int port)
{
	struct sockaddr_in sin;
	int fd, ok, one = 1;

	memset(&sin, 0, sizeof sin);
	sin.sin_family = AF_INET;
	sin.sin_port = htons((uint16_t)port);
	if (ip == NULL || inet_pton(AF_INET, ip, &sin.sin_addr) != 1)
		sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if ((fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0)) < 0)
		return 0;
	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
	ok = bind(fd, (struct sockaddr *)&sin, sizeof sin) == 0;
	close(fd);
	return ok;
}

/* Leases the next free, bindable port. */
int
port_map_lease(struct port_map *m, const char *ip)
{
	int n = m->hi - m->lo, k, i;

	for (k = 0; k < n; k++) {
		i = (m->cursor + k) % n;
		if (port_bit(m, i))
			continue;
		if (!port_probe(ip, m->lo + i))
			continue;
		port_set(m, i, 1);
		m->count++;
		m->cursor = (i + 1) % n;
		return m->lo + i;
	}
	return -1;
}

/* Marks a port leased. */
int
port_map_take(struct port_map *m, int port)
{
	if (port < m->lo || port >= m->hi)
		return -1;
	if (!port_bit(m, port - m->lo)) {
		port_set(m, port - m->lo, 1);
		m->count++;
	}
	return 0;
}

/* Returns a port. */
void
port_map_release(struct port_map *m, int port)
{
	if (port < m->lo || port >= m->hi || !port_bit(m, port - m->lo))
		return;
	port_set(m, port - m->lo, 0);
	m->count--;
}

/* 1 if leased. */
int
port_map_is_leased(const struct port_map *m, int port)
{
	if (port < m->lo || port >= m->hi)
		return 0;
	return port_bit(m, port - m->lo);
}

/* Leased count. */
int
port_map_count(const struct port_map *m)
{
	return m->count;
}
