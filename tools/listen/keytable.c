/*
 * tools/listen/keytable.c: the per-key state of tributary-listen (see keytable.h).
 */
#include "keytable.h"

#include "json.h"

#include <stdlib.h>
#include <string.h>

#define KEYTABLE_INITIAL_CAP 64

static uint64_t
KeyHash(const char *key)
{
	uint64_t h = 14695981039346656037ULL;

	for (const unsigned char *p = (const unsigned char *) key; *p; p++)
	{
		h ^= *p;
		h *= 1099511628211ULL;
	}
	return h;
}

/* The slot holding key, or the free slot where it would go. */
static KeyEntry *
KeySlot(const KeyTable *t, const char *key)
{
	size_t mask = t->cap - 1;
	size_t i = (size_t) KeyHash(key) & mask;

	while (t->slots[i].key != NULL && strcmp(t->slots[i].key, key) != 0)
		i = (i + 1) & mask;
	return &t->slots[i];
}

void
KeyTableInit(KeyTable *t)
{
	t->cap = KEYTABLE_INITIAL_CAP;
	t->slots = xcalloc(t->cap, sizeof(KeyEntry));
	t->used = t->live = 0;
}

void
KeyTableFree(KeyTable *t)
{
	for (size_t i = 0; i < t->cap; i++)
	{
		free(t->slots[i].key);
		free(t->slots[i].record);
	}
	free(t->slots);
	t->slots = NULL;
	t->cap = t->used = t->live = 0;
}

KeyEntry *
KeyTableFind(const KeyTable *t, const char *key)
{
	KeyEntry *e = KeySlot(t, key);

	return e->key != NULL ? e : NULL;
}

/* Move the entries into a table of cap slots, leaving out tombstones up to a seq. */
static void
KeyTableRebuild(KeyTable *t, size_t cap, int64_t drop_tombstones_upto)
{
	KeyTable n;

	n.cap = cap;
	n.slots = xcalloc(cap, sizeof(KeyEntry));
	n.used = n.live = 0;
	for (size_t i = 0; i < t->cap; i++)
	{
		KeyEntry *old = &t->slots[i];

		if (old->key == NULL)
			continue;
		if (old->record == NULL && old->seq <= drop_tombstones_upto)
		{
			free(old->key);
			continue;
		}
		*KeySlot(&n, old->key) = *old;
		n.used++;
		if (old->record != NULL)
			n.live++;
	}
	free(t->slots);
	*t = n;
}

void
KeyTableSet(KeyTable *t, const char *key, int64_t seq, char *record)
{
	KeyEntry *e;

	if ((t->used + 1) * 2 > t->cap)
		KeyTableRebuild(t, t->cap * 2, INT64_MIN);
	e = KeySlot(t, key);
	if (e->key == NULL)
	{
		e->key = xstrdup(key);
		t->used++;
	}
	else if (e->record != NULL)
		t->live--;
	free(e->record);
	e->seq = seq;
	e->record = record;
	if (record != NULL)
		t->live++;
}

void
KeyTablePrune(KeyTable *t, int64_t max_seq)
{
	if (t->used > t->live)
		KeyTableRebuild(t, t->cap, max_seq);
}

static int
KeyEntryCompare(const void *a, const void *b)
{
	const KeyEntry *x = *(KeyEntry *const *) a;
	const KeyEntry *y = *(KeyEntry *const *) b;

	return strcmp(x->key, y->key);
}

KeyEntry **
KeyTableSorted(const KeyTable *t, size_t *n)
{
	KeyEntry **out = xmalloc(t->live * sizeof(KeyEntry *));
	size_t k = 0;

	for (size_t i = 0; i < t->cap; i++)
		if (t->slots[i].key != NULL && t->slots[i].record != NULL)
			out[k++] = &t->slots[i];
	qsort(out, k, sizeof(KeyEntry *), KeyEntryCompare);
	*n = k;
	return out;
}
