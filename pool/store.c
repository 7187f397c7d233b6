/*
 * store: the backend-independent front of the state store.
 */
#include <stddef.h>

#include "store.h"

/* Runs one operation on the store's backend. */
void
store_run(struct store *st, const struct store_req *req, store_cb cb, void *arg)
{
	st->ops->run(st, req, cb, arg);
}

/* Frees the store; pending callbacks are dropped. */
void
store_free(struct store *st)
{
	if (st != NULL)
		st->ops->free(st);
}

/* 1 if the backend can take operations now. */
int
store_ready(const struct store *st)
{
	return st->ops->ready == NULL || st->ops->ready(st);
}

/* Short text for an error code. */
const char *
store_strerror(enum store_err e)
{
	switch (e) {
	case STORE_OK:
		return "ok";
	case STORE_ENOENT:
		return "not found";
	case STORE_EFULL:
		return "no free port left in PORT_RANGE";
	case STORE_EUNAVAIL:
		return "state store unavailable";
	case STORE_ELIMIT:
		return "MAX_SANDBOX_INSTANCES reached";
	case STORE_EFENCED:
		return "the create was taken over (its lease expired)";
	case STORE_ECONFLICT:
		return "the record changed meanwhile";
	}
	return "unknown store error";
}
