/*
 * free_port: a TCP port on 127.0.0.1 that nobody listens on (bound,
 * then closed), for the unit tests that start servers or need a refused
 * connection.
 */
#ifndef SANDPOOL_TEST_FREE_PORT_H
#define SANDPOOL_TEST_FREE_PORT_H

#include <sys/socket.h>

#include <netinet/in.h>
#include <arpa/inet.h>

#include <string.h>
#include <unistd.h>

static inline int
free_port(void)
{
	struct sockaddr_in sin;
	socklen_t len = sizeof sin;
	int fd = socket(AF_INET, SOCK_STREAM, 0), port;

	memset(&sin, 0, sizeof sin);
	sin.sin_family = AF_INET;
	sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	bind(fd, (struct sockaddr *)&sin, sizeof sin);
	getsockname(fd, (struct sockaddr *)&sin, &len);
	port = ntohs(sin.sin_port);
	close(fd);
	return port;
}

#endif
