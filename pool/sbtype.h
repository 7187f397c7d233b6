/*
 * sbtype: the sandbox type registry. Built-in types (spec section 3.1) are
 * registered with their image URIs computed from the registry, namespace
 * and tag; extension files add declarative ones (JSON, see
 * runtime-sandbox-server(8)).
 */
#ifndef SANDPOOL_SBTYPE_H
#define SANDPOOL_SBTYPE_H

#include <stddef.h>
#include <stdint.h>
#include <sys/queue.h>

struct sbtype {
	char *name;  /* "base", "base_async", ... */
	char *image; /* full image reference */
	char *description;
	int runtime_port;   /* runtime's TCP port in the container (80) */
	char **env;	    /* NULL-terminated "K=V" added to the container */
	char **cmd;	    /* NULL-terminated command (Docker Cmd), or NULL
			       for the image's own */
	int timeout;	    /* seconds for each runtime call */
	int inject_agent;   /* 1: sandpool-agent is mounted and is PID 1 */
	int supported;	    /* 0: known name, but no image can serve it */
	char *network;	    /* "bridge" or "none" */
	int64_t memory;	    /* bytes, 0 = unlimited */
	int64_t nano_cpus;  /* 0 = unlimited */
	int64_t pids_limit; /* 0 = unlimited */
	int64_t shm_size;   /* bytes, 0 = engine default */
	int privileged;
	char *runtime;	       /* OCI runtime, or NULL */
	char **cap_drop;       /* NULL-terminated capability names */
	char **cap_add;	       /* NULL-terminated capability names */
	int no_new_privileges; /* SecurityOpt no-new-privileges */
	int read_only;	       /* read-only root filesystem */
	char **tmpfs;	       /* NULL-terminated path, options, ... */
	char *user;	       /* "uid" or "uid:gid", or NULL (the image's) */
	int init;	       /* the engine's init as PID 1 */
	TAILQ_ENTRY(sbtype) entry;
};
TAILQ_HEAD(sbtype_list, sbtype);

struct sbtypes {
	struct sbtype_list list;
	char *registry;
	char *ns;
	char *tag;
	int timeout;
};

/*
 * Makes the registry with the built-in types. registry may be "" (none),
 * ns and tag as RUNTIME_SANDBOX_IMAGE_NAMESPACE/_TAG; timeout is
 * RUNTIME_SANDBOX_TIMEOUT.
 */
struct sbtypes *sbtypes_new(
    const char *registry, const char *ns, const char *tag, int timeout);
void sbtypes_free(struct sbtypes *);
/*
 * The container defaults every type starts from (runtime-sandbox-server(8),
 * "Container defaults"); an extension entry overrides any of them.
 */
#define SBTYPE_DEF_MEMORY ((int64_t)1 << 30)	   /* 1 GiB, swap the same */
#define SBTYPE_DEF_NANO_CPUS ((int64_t)1000000000) /* one CPU */
#define SBTYPE_DEF_PIDS 256
#define SBTYPE_DEF_TMPFS_PATH "/tmp"
#define SBTYPE_DEF_TMPFS_OPTS "rw,exec,nosuid,nodev,size=64m,mode=1777"

/*
 * Loads an extension file: a JSON object or array of objects with keys
 * name (required), image (required), runtime_port, environment (object),
 * resource_limits {memory ("512m", bytes), cpu (float), pids}, timeout,
 * description, inject_agent (bool), network, privileged, shm_size, runtime,
 * cap_drop and cap_add (arrays of capability names), no_new_privileges,
 * read_only, tmpfs (object path -> options), user ("uid[:gid]"), init,
 * cmd (array of strings; only without the agent).
 * An entry may redefine a built-in type. Returns 0, or -1 with *cause
 * ("file: message", caller frees) and the registry unchanged.
 */
int sbtypes_load_file(struct sbtypes *, const char *path, char **cause);
/* Finds a type by exact name, or NULL. */
const struct sbtype *sbtypes_find(const struct sbtypes *, const char *name);
/* The image URI rule: [registry/]ns/name:tag. Caller frees. */
char *sbtypes_image_uri(const struct sbtypes *, const char *image_name);

#endif
