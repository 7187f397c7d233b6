/*
 * wspace: the /workspace routes of spec 6.3 (file GET and PUT, files:batch,
 * list, exists, entry DELETE, move, mkdir) and the path rules every file
 * operation of the agent follows. A path is taken relative to the
 * workspace (an absolute one must lie under it) and resolved beneath the
 * workspace directory with openat2(RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS),
 * so that neither ".." nor a symbolic link can reach outside; without
 * openat2 a component walk with O_NOFOLLOW refuses every symbolic link.
 * Uploads are streamed to a temporary file beside the target and renamed
 * into place when complete. Owns the uploads in progress.
 */
#ifndef SANDPOOL_WSPACE_H
#define SANDPOOL_WSPACE_H

#include <sys/types.h>
#include <yajl/yajl_tree.h>

struct ahttp_req;

/* The answer to a path outside the workspace (spec 6.3). */
#define WS_FORBIDDEN                                                           \
	"Permission error. Access restricted to /workspace directory."

/* A path of the workspace. */
struct ws_path {
	char *abs; /* as shown to clients: "<workdir>/a/b", or "<workdir>" */
	char *rel; /* relative to the workspace: "a/b", or "." */
};

/* Sets the workspace directory; force_walk 1 never uses openat2. */
void ws_init(const char *workdir, int force_walk);
/*
 * Normalises path (relative to the workspace, or absolute under it).
 * 0, or -1 if it lies outside (nothing is allocated then).
 */
int ws_resolve(const char *path, struct ws_path *out);
void ws_path_free(struct ws_path *);
/* Opens the workspace directory (O_PATH); -1 with errno. */
int ws_root(void);
/*
 * Opens rel beneath the directory root with flags/mode, following
 * symbolic links only while they stay beneath it. -1 with errno (EXDEV
 * for an escape, ELOOP for a refused link).
 */
int ws_open(int root, const char *rel, int flags, mode_t mode);
/*
 * Opens the directory that holds rel's last component (O_PATH) and points
 * *name at that component (inside rel). -1 with errno.
 */
int ws_open_parent(int root, const char *rel, const char **name);
/* mkdir -p of rel beneath root; 0 or -1 with errno. */
int ws_mkdirs(int root, const char *rel);
/* Removes name in dirfd, recursively for a directory. 0 or -1. */
int ws_remove(int dirfd, const char *name);

/* Routes; body is the parsed JSON body of the JSON routes, else NULL. */
void ws_route_file_get(struct ahttp_req *, yajl_val body);
void ws_route_file_put(struct ahttp_req *, yajl_val body);
void ws_route_batch(struct ahttp_req *, yajl_val body);
void ws_route_list(struct ahttp_req *, yajl_val body);
void ws_route_exists(struct ahttp_req *, yajl_val body);
void ws_route_delete(struct ahttp_req *, yajl_val body);
void ws_route_move(struct ahttp_req *, yajl_val body);
void ws_route_mkdir(struct ahttp_req *, yajl_val body);
/* Removes the temporary files of uploads in progress. */
void ws_shutdown(void);

#endif
