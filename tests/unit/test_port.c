/*
 * Unit tests for pool/port.c: next-fit leasing, exhaustion, and skipping
 * ports another process holds.
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "port.h"
#include "tap.h"

/* Binds a listening socket on 127.0.0.1; returns its port and fd. */
static int
hold_port(int *fdp)
{
	struct sockaddr_in sin;
	socklen_t len = sizeof sin;
	int fd = socket(AF_INET, SOCK_STREAM, 0);

	memset(&sin, 0, sizeof sin);
	sin.sin_family = AF_INET;
	sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if (bind(fd, (struct sockaddr *)&sin, sizeof sin) != 0 ||
	    listen(fd, 1) != 0 ||
	    getsockname(fd, (struct sockaddr *)&sin, &len) != 0)
		return -1;
	*fdp = fd;
	return ntohs(sin.sin_port);
}

int
main(void)
{
	struct port_map *m;
	int held, fd, a, b, c, d;

	if ((held = hold_port(&fd)) < 0 || held > 65530)
		tap_skip_all("cannot hold a port");
	ok(!port_probe("127.0.0.1", held), "a held port does not probe free");

	/* Ports held, held+1, held+2: the first is taken by us. */
	m = port_map_new(held, held + 3);
	a = port_map_lease(m, "127.0.0.1");
	ok(a != held && a > held, "a port someone holds is skipped (%d)", a);
	b = port_map_lease(m, "127.0.0.1");
	ok(b != a && b > held, "second lease differs");
	c = port_map_lease(m, "127.0.0.1");
	is_int(c, -1, "the range is exhausted");
	is_int(port_map_count(m), 2, "two leased");
	port_map_release(m, a);
	ok(!port_map_is_leased(m, a), "released port is free");
	d = port_map_lease(m, "127.0.0.1");
	is_int(d, a, "a freed port comes back when nothing else is free");
	port_map_release(m, d);
	port_map_release(m, d);
	is_int(port_map_count(m), 1, "double release is harmless");
	is_int(port_map_take(m, held + 10), -1, "take outside the range fails");
	ok(port_map_take(m, held) == 0 && port_map_is_leased(m, held),
	    "take marks a port");
	port_map_free(m);
	close(fd);

	/* Next-fit: a just-freed port is not reused while others are free. */
	m = port_map_new(40000, 40010);
	a = port_map_lease(m, "127.0.0.1");
	port_map_release(m, a);
	b = port_map_lease(m, "127.0.0.1");
	ok(a > 0 && b > 0 && b != a, "next-fit moves on (%d then %d)", a, b);
	port_map_free(m);
	port_map_free(NULL);
	return tap_done();
}
