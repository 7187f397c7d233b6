/*
 * watcher: the /watcher routes (commit_changes, generate_diff, git_logs),
 * run with the image's git in the workspace. Without git they answer 500
 * {"detail":"git is not available in this sandbox"}. Owns the git runs in
 * progress.
 */
#ifndef SANDPOOL_WATCHER_H
#define SANDPOOL_WATCHER_H

#include <yajl/yajl_tree.h>

struct ahttp_req;

/* Most files generate_diff reports, and most commits git_logs reports. */
#define WATCHER_MAX_FILES 1000
#define WATCHER_MAX_COMMITS 1000

void watcher_route_commit(struct ahttp_req *, yajl_val body);
void watcher_route_diff(struct ahttp_req *, yajl_val body);
void watcher_route_logs(struct ahttp_req *, yajl_val body);

#endif
