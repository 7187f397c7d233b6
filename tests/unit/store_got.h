/*
 * store_got: the store tests' reply recorder. on_reply copies the last
 * reply of a store operation into got (error, record, the first
 * GOT_NAMES names, value, owner) and counts the replies; got_free
 * releases what it holds.
 */
#ifndef SANDPOOL_TEST_STORE_GOT_H
#define SANDPOOL_TEST_STORE_GOT_H

#include <stdio.h>
#include <stdlib.h>

#include "sandbox.h"
#include "store.h"
#include "xmalloc.h"

#define GOT_NAMES 16

static struct {
	int calls;
	enum store_err err;
	struct sbx *rec;
	char *names[GOT_NAMES];
	size_t nnames;
	long value;
	char owner[128];
} got;

/* Releases the record and names of the last reply. */
static inline void
got_free(void)
{
	size_t i;

	sbx_free(got.rec);
	got.rec = NULL;
	for (i = 0; i < got.nnames; i++)
		free(got.names[i]);
	got.nnames = 0;
}

/* Records a reply. */
static inline void
on_reply(const struct store_reply *r, void *arg)
{
	size_t i;

	(void)arg;
	got.calls++;
	got.err = r->err;
	got_free();
	got.rec = r->rec != NULL ? sbx_dup(r->rec) : NULL;
	got.nnames = r->nnames < GOT_NAMES ? r->nnames : GOT_NAMES;
	for (i = 0; i < got.nnames; i++)
		got.names[i] = xstrdup(r->names[i]);
	got.value = r->value;
	snprintf(got.owner, sizeof got.owner, "%s",
	    r->owner != NULL ? r->owner : "");
}

#endif
