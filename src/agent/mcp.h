/*
 * mcp: the /mcp routes. list_tools and call_tool serve the filesystem
 * tool set natively (fstools.c) when the agent is told to, and the tools
 * of MCP servers added with add_servers: stdio servers started from the
 * image's commands, spoken to with JSON-RPC 2.0 (newline-delimited) on
 * their standard input and output. Owns the servers and their calls.
 */
#ifndef SANDPOOL_MCP_H
#define SANDPOOL_MCP_H

#include <yajl/yajl_tree.h>

struct event_base;
struct ahttp_req;

/* Seconds a server has to initialise and list its tools. */
#define MCP_INIT_TIMEOUT 60
/* Largest JSON-RPC message read from a server. */
#define MCP_MAX_MESSAGE (16 * 1024 * 1024)

/* Sets up the module; filesystem 1 serves the native filesystem group. */
void mcp_init(struct event_base *base, const char *workdir, int filesystem);
void mcp_route_list_tools(struct ahttp_req *, yajl_val body);
void mcp_route_call_tool(struct ahttp_req *, yajl_val body);
void mcp_route_add_servers(struct ahttp_req *, yajl_val body);
/* Stops every server and frees everything without answering. */
void mcp_shutdown(void);

#endif
