/*
 * tools/listen/keytable.h: the state tributary-listen holds, one entry per key.
 *
 * An open-addressing hash table (FNV-1a, linear probing, at most half full) from key to
 * the key's seq and record. An entry whose record is NULL is a tombstone: the key is
 * deleted, and its seq still tells which older notifications to ignore. Entries are never
 * removed one by one; KeyTablePrune rebuilds the table without the tombstones that no
 * notification can undo any more.
 */
#ifndef TRIB_LISTEN_KEYTABLE_H
#define TRIB_LISTEN_KEYTABLE_H

#include <stddef.h>
#include <stdint.h>

typedef struct KeyEntry
{
	char *key;	  /* NULL: free slot */
	int64_t seq;  /* the seq of the change that made this state */
	char *record; /* raw JSON text; NULL: deleted */
} KeyEntry;

typedef struct KeyTable
{
	KeyEntry *slots;
	size_t cap; /* a power of two */
	size_t used;
	size_t live;
} KeyTable;

extern void KeyTableInit(KeyTable *t);
extern void KeyTableFree(KeyTable *t);
extern KeyEntry *KeyTableFind(const KeyTable *t, const char *key);
/* Set key's state; record (taken over, may be NULL for a tombstone) replaces the old one. */
extern void KeyTableSet(KeyTable *t, const char *key, int64_t seq, char *record);
/* Drop the tombstones whose seq is at most max_seq. */
extern void KeyTablePrune(KeyTable *t, int64_t max_seq);
/* The live entries sorted by key (bytewise), in a new array of *n pointers. */
extern KeyEntry **KeyTableSorted(const KeyTable *t, size_t *n);

#endif
