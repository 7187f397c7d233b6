/*
 * udiff: line-based unified diffs in the format of jsdiff's
 * createTwoFilesPatch() (what the upstream filesystem MCP server's
 * edit_file returns): an "Index:" header, "---"/"+++" lines with the
 * "original"/"modified" labels, hunks with 4 lines of context, and
 * "\ No newline at end of file" markers. Myers' algorithm on the part that
 * differs; past UDIFF_MAX_D edits the middle is shown as one replacement.
 */
#ifndef SANDPOOL_UDIFF_H
#define SANDPOOL_UDIFF_H

#include <stddef.h>

/* Lines of context around each change. */
#define UDIFF_CONTEXT 4
/* Most edits searched for before falling back to a whole replacement. */
#define UDIFF_MAX_D 2000

/* The patch from a to b, both named name (caller frees). */
char *udiff_patch(
    const char *name, const char *a, size_t alen, const char *b, size_t blen);

#endif
