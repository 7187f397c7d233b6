/*
 * udiff: unified diffs of two texts (see udiff.h). The texts are split
 * into lines (each with its newline, so a last line without one differs
 * from the same line with one), the common head and tail are set aside,
 * and Myers' O(ND) greedy algorithm finds a shortest edit script for the
 * rest, keeping each step's frontier to walk back along.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "udiff.h"
#include "xmalloc.h"

struct udiff_line {
	const char *p;
	size_t len; /* with the newline, if there is one */
};

/* One edit: ' ' keep, '-' delete (old line), '+' insert (new line). */
struct udiff_op {
	char kind;
	size_t old, new; /* line indexes (the old line for ' ' and '-') */
};

struct udiff_script {
	struct udiff_op *ops;
	size_t n, cap;
};

/* Splits text into lines. */
static struct udiff_line *
udiff_split(const char *text, size_t len, size_t *n)
{
	struct udiff_line *lines = NULL;
	size_t count = 0, cap = 0, i, start = 0;

	for (i = 0; i <= len; i++) {
		if (i < len && text[i] != '\n')
			continue;
		if (i == len && start == len)
			break;
		if (count == cap) {
			cap = cap == 0 ? 64 : cap * 2;
			lines = xreallocarray(lines, cap, sizeof *lines);
		}
		lines[count].p = text + start;
		lines[count].len = (i < len ? i + 1 : i) - start;
		count++;
		start = i + 1;
	}
	*n = count;
	return lines;
}

/* Are two lines the same? */
static int
udiff_eq(const struct udiff_line *a, const struct udiff_line *b)
{
	return a->len == b->len && memcmp(a->p, b->p, a->len) == 0;
}

/* Appends an edit. */
static void
udiff_push(struct udiff_script *s, char kind, size_t old, size_t new)
{
	if (s->n == s->cap) {
		s->cap = s->cap == 0 ? 64 : s->cap * 2;
		s->ops = xreallocarray(s->ops, s->cap, sizeof *s->ops);
	}
	s->ops[s->n].kind = kind;
	s->ops[s->n].old = old;
	s->ops[s->n].new = new;
	s->n++;
}

/*
 * Myers' shortest edit script between A[ao..ao+n) and B[bo..bo+m),
 * appended to s. -1 (nothing appended) if it needs more than UDIFF_MAX_D
 * edits.
 */
static int
udiff_myers(const struct udiff_line *A, size_t ao, long n,
    const struct udiff_line *B, size_t bo, long m, struct udiff_script *s)
{
	long max = n + m, d, k, x, y,
	     dmax = max < UDIFF_MAX_D ? max : UDIFF_MAX_D;
	long *v, **trace, found = -1;
	struct udiff_script back = {NULL, 0, 0};
	size_t i;

	v = xcalloc((size_t)(2 * dmax + 3), sizeof *v);
	trace = xcalloc((size_t)dmax + 1, sizeof *trace);
#define V(kk) v[(kk) + dmax + 1]
	V(1) = 0;
	for (d = 0; d <= dmax && found < 0; d++) {
		for (k = -d; k <= d; k += 2) {
			if (k == -d || (k != d && V(k - 1) < V(k + 1)))
				x = V(k + 1);
			else
				x = V(k - 1) + 1;
			y = x - k;
			while (x < n && y < m &&
			    udiff_eq(&A[ao + (size_t)x], &B[bo + (size_t)y])) {
				x++;
				y++;
			}
			V(k) = x;
			if (x >= n && y >= m) {
				found = d;
				break;
			}
		}
		/* Keep this step's frontier, k in [-d, d]. */
		trace[d] = xmalloc((size_t)(2 * d + 1) * sizeof **trace);
		for (k = -d; k <= d; k++)
			trace[d][k + d] = V(k);
	}
#undef V
	if (found < 0) {
		for (d = 0; d <= dmax; d++)
			free(trace[d]);
		free(trace);
		free(v);
		return -1;
	}
	/* Walk back from (n, m), collecting edits in reverse. */
	x = n;
	y = m;
	for (d = found; d > 0; d--) {
		long pk, px, py, mx, my;

		k = x - y;
#define T(dd, kk) trace[dd][(kk) + (dd)]
		if (k == -d || (k != d && T(d - 1, k - 1) < T(d - 1, k + 1)))
			pk = k + 1; /* came down: an insertion */
		else
			pk = k - 1; /* came right: a deletion */
		px = T(d - 1, pk);
#undef T
		py = px - pk;
		mx = pk == k + 1 ? px : px + 1;
		my = pk == k + 1 ? py + 1 : py;
		while (x > mx && y > my) {
			x--;
			y--;
			udiff_push(&back, ' ', ao + (size_t)x, bo + (size_t)y);
		}
		if (pk == k + 1)
			udiff_push(
			    &back, '+', ao + (size_t)px, bo + (size_t)py);
		else
			udiff_push(
			    &back, '-', ao + (size_t)px, bo + (size_t)py);
		x = px;
		y = py;
	}
	while (x > 0 && y > 0) {
		x--;
		y--;
		udiff_push(&back, ' ', ao + (size_t)x, bo + (size_t)y);
	}
	for (i = back.n; i > 0; i--)
		udiff_push(s, back.ops[i - 1].kind, back.ops[i - 1].old,
		    back.ops[i - 1].new);
	free(back.ops);
	for (d = 0; d <= found; d++)
		free(trace[d]);
	free(trace);
	free(v);
	return 0;
}

/* Writes one hunk line, with the no-newline marker when due. */
static void
udiff_line_out(FILE *f, char kind, const struct udiff_line *l)
{
	int nl = l->len > 0 && l->p[l->len - 1] == '\n';

	fputc(kind, f);
	fwrite(l->p, 1, nl ? l->len - 1 : l->len, f);
	fputc('\n', f);
	if (!nl)
		fputs("\\ No newline at end of file\n", f);
}

/* The patch; see udiff.h. */
char *
udiff_patch(
    const char *name, const char *a, size_t alen, const char *b, size_t blen)
{
	struct udiff_line *A, *B;
	struct udiff_script s = {NULL, 0, 0};
	size_t n, m, pre = 0, suf = 0, i, j, h, end, last, oc, nc, o0, n0;
	char *out;
	size_t outlen;
	FILE *f;

	A = udiff_split(a, alen, &n);
	B = udiff_split(b, blen, &m);
	while (pre < n && pre < m && udiff_eq(&A[pre], &B[pre]))
		pre++;
	while (suf < n - pre && suf < m - pre &&
	    udiff_eq(&A[n - 1 - suf], &B[m - 1 - suf]))
		suf++;
	for (i = 0; i < pre; i++)
		udiff_push(&s, ' ', i, i);
	if (udiff_myers(A, pre, (long)(n - pre - suf), B, pre,
		(long)(m - pre - suf), &s) == -1) {
		for (i = pre; i < n - suf; i++)
			udiff_push(&s, '-', i, pre);
		for (j = pre; j < m - suf; j++)
			udiff_push(&s, '+', n - suf, j);
	}
	for (i = 0; i < suf; i++)
		udiff_push(&s, ' ', n - suf + i, m - suf + i);

	f = open_memstream(&out, &outlen);
	fprintf(f, "Index: %s\n", name);
	fputs("==================================================="
	      "================\n",
	    f);
	fprintf(f, "--- %s\toriginal\n+++ %s\tmodified\n", name, name);
	for (i = 0; i < s.n;) {
		if (s.ops[i].kind == ' ') {
			i++;
			continue;
		}
		/* A hunk: context before, then changes while the gaps of
		 * kept lines are at most twice the context. */
		h = i > UDIFF_CONTEXT ? i - UDIFF_CONTEXT : 0;
		last = i;
		for (j = i; j < s.n; j++) {
			if (s.ops[j].kind != ' ')
				last = j;
			else if (j - last > 2 * UDIFF_CONTEXT)
				break;
		}
		end = last + UDIFF_CONTEXT + 1 < s.n ? last + UDIFF_CONTEXT + 1
						     : s.n;
		oc = nc = 0;
		for (j = h; j < end; j++) {
			if (s.ops[j].kind != '+')
				oc++;
			if (s.ops[j].kind != '-')
				nc++;
		}
		/* Line numbers of the hunk's first old and new lines. */
		o0 = s.ops[h].old + 1;
		n0 = s.ops[h].new + 1;
		if (oc == 0)
			o0--;
		if (nc == 0)
			n0--;
		fprintf(f, "@@ -%zu,%zu +%zu,%zu @@\n", o0, oc, n0, nc);
		for (j = h; j < end; j++) {
			if (s.ops[j].kind == '+')
				udiff_line_out(f, '+', &B[s.ops[j].new]);
			else
				udiff_line_out(
				    f, s.ops[j].kind, &A[s.ops[j].old]);
		}
		i = end;
	}
	fclose(f);
	free(s.ops);
	free(A);
	free(B);
	return out;
}
