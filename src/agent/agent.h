/*
 * sandpool-agent: the runtime inside each sandbox container (spec section
 * 6). agent.c owns the process (PID 1 duties, signals, configuration), the
 * HTTP listeners, the bearer-token check, the route table and the requests
 * that wait for an asynchronous answer. The routes live in their modules:
 * shell.c (commands), python.c (run_ipython_cell), wspace.c (/workspace),
 * fstools.c and mcp.c (/mcp), watcher.c (/watcher); they answer through the
 * helpers below.
 */
#ifndef SANDPOOL_AGENT_H
#define SANDPOOL_AGENT_H

#include <stddef.h>
#include <yajl/yajl_tree.h>

struct ahttp_req;

/* Default TCP port, unix socket, workspace and per-stream output cap. */
#define AGENT_DEFAULT_PORT 80
#define AGENT_DEFAULT_SOCKET "/run/sandpool/agent.sock"
#define AGENT_DEFAULT_WORKDIR "/workspace"
#define AGENT_DEFAULT_MAX_OUTPUT (8 * 1024 * 1024)
/* Largest JSON request body. */
#define AGENT_MAX_BODY (16 * 1024 * 1024)
/* Longest accepted "timeout" of a command or cell, in seconds. */
#define AGENT_MAX_CMD_TIMEOUT (365.0 * 24 * 3600)

/* Answers a request; ctype NULL sends no Content-Type. */
void agent_reply(struct ahttp_req *, int code, const char *ctype,
    const char *body, size_t len);
/* Answers with JSON text, which this function frees. */
void agent_reply_json(struct ahttp_req *, int code, char *json, size_t len);
/* Answers {"detail": msg}. */
void agent_reply_detail(struct ahttp_req *, int code, const char *msg);
/* The decoded value of query parameter name (caller frees), or NULL. */
char *agent_query(struct ahttp_req *, const char *name);
/* Reads the optional "timeout" member: 0 (none), seconds, or -1 if bad. */
double agent_get_timeout(yajl_val body);
/* The workspace directory (SANDPOOL_AGENT_WORKDIR). */
const char *agent_workdir(void);
/* Bytes kept per captured output stream. */
size_t agent_max_output(void);

/*
 * A request waiting for an asynchronous operation. The operation holds
 * the pending record and answers through agent_pending_reply*() exactly
 * once; if the client goes away first, cancel(op) is called instead and
 * the record is freed: the operation must then forget it.
 */
struct agent_pending;
typedef void (*agent_cancel_fn)(void *op);

struct agent_pending *agent_pending_new(struct ahttp_req *);
/* Names the operation and how to cancel it. */
void agent_pending_set(struct agent_pending *, agent_cancel_fn, void *op);
/* Frees a record whose operation could not start (no answer sent). */
void agent_pending_drop(struct agent_pending *);
/* The request (for a streamed answer; the record is then dropped). */
struct ahttp_req *agent_pending_req(struct agent_pending *);
/* Answers and frees the record. */
void agent_pending_reply(struct agent_pending *, int code, const char *ctype,
    const char *body, size_t len);
void agent_pending_reply_json(
    struct agent_pending *, int code, char *json, size_t len);
void agent_pending_detail(struct agent_pending *, int code, const char *msg);

#endif
