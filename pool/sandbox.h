/*
 * sandbox: the sandbox record (spec 4.1, "ContainerModel") and its JSON
 * form, plus the random ids and tokens sandboxes are named and guarded by.
 */
#ifndef SANDPOOL_SANDBOX_H
#define SANDPOOL_SANDBOX_H

#include <stddef.h>
#include <yajl/yajl_gen.h>

enum sbx_state {
	SBX_WARM = 0, /* started, healthy, no session (pool or session-less) */
	SBX_RUNNING,  /* bound to a session */
	SBX_RECYCLED, /* reaped; container gone */
	SBX_REPLACED, /* redirect stub */
	SBX_RELEASED, /* terminal */
	SBX_ERROR
};

#define SBX_ID_LEN 25	     /* session_id: [0-9a-z]{25} */
#define SBX_TOKEN_LEN 32     /* runtime_token: 32 lowercase hex */
#define SBX_IDENTITY_MAX 128 /* longest identity a client may name */

struct sbx {
	char *session_id;
	char *container_id;
	char *container_name; /* the identity: prefix + session_id */
	char *url;	      /* "http://localhost:<port>" or "" */
	int port;	      /* host port, 0 if none */
	char *mount_dir;      /* host workspace dir, or NULL */
	char *storage_path;
	char *runtime_token;
	char *version; /* image URI */
	char *meta;    /* JSON object text, never NULL ("{}") */
	int timeout;   /* seconds for runtime calls */
	char *sandbox_type;
	enum sbx_state state;
	char *session_ctx_id;
	double last_active_at; /* unix seconds; 0 = null */
	double recycled_at;
	double released_at;
	double updated_at;
	char *recycle_reason;
	char *redirect_to;

	/* sandpool's own, not part of get_info. */
	char *sock_path; /* runtime's unix socket on this host, or NULL */
	char *run_dir;	 /* per-sandbox host directory, or NULL */
	char *instance;	 /* owner instance id */
	int stopped;	 /* stopped through the API: a die is planned */
};

struct sbx *sbx_new(void);
void sbx_free(struct sbx *);
struct sbx *sbx_dup(const struct sbx *);

/* The state's wire name ("warm", "running", ...). */
const char *sbx_state_name(enum sbx_state);
/* Parses a wire name; -1 if unknown. */
int sbx_state_parse(const char *);

/*
 * Emits the record as spec 4.1 JSON. With internal, sandpool's own fields
 * are added under "_sandpool" (for the shared store; never on the wire).
 */
void sbx_gen(yajl_gen, const struct sbx *, int internal);
/* The record as a JSON string (caller frees). */
char *sbx_to_json(const struct sbx *, int internal, size_t *len);
/* Parses a record (as sbx_to_json made it); NULL with *cause on error. */
struct sbx *sbx_from_json(const char *, size_t, char **cause);

/*
 * What a claim changes in a warm record, as the text pieces that the Redis
 * store's claim script splices into the record sbx_gen wrote (see
 * SRL_CLAIM): meta ("{...}"), the state group
 * (',"state":...,"session_ctx_id":...,"last_active_at":...,') and
 * updated_at (',"updated_at":...,'). Made by sbx_gen's own emitters, so
 * the spliced text is what sbx_gen writes for the bound record.
 */
struct sbx_claim_patch {
	char *meta, *state, *updated;
};
void sbx_claim_patch(struct sbx_claim_patch *, const char *meta,
    const char *session, double now);
void sbx_claim_patch_free(struct sbx_claim_patch *);

/* Sets meta to a copy of a JSON object text and mirrors session_ctx_id. */
void sbx_set_meta(struct sbx *, const char *meta_json);

/* Drops session_ctx_id from the record and from its meta. */
void sbx_clear_session(struct sbx *);

/*
 * Leaves a "claimed" marker file in the sandbox's run dir (if it has one):
 * the durable record, outside the store, that it was handed out once, so
 * that a sandbox rebuilt after a store loss never goes back to a pool.
 */
void sbx_mark_claimed(const struct sbx *);
/* 1 if the sandbox of run_dir was ever claimed (marker present). */
int sbx_was_claimed(const char *run_dir);

/* Fills out with SBX_ID_LEN random [0-9a-z] characters and a NUL. */
void sbx_random_id(char out[SBX_ID_LEN + 1]);
/* Fills out with SBX_TOKEN_LEN random lowercase hex characters and a NUL. */
void sbx_random_token(char out[SBX_TOKEN_LEN + 1]);
/* Current time as unix seconds with sub-second precision. */
double sbx_now(void);
/*
 * 1 if id is an identity a client may name: 1 to SBX_IDENTITY_MAX of
 * [A-Za-z0-9_.-], starting with a letter or digit.
 */
int sbx_identity_ok(const char *id);

#endif
