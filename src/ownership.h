/*
 * ownership.h
 *		Streams follow their owner role through DROP ROLE, REASSIGN OWNED and DROP OWNED.
 */
#ifndef TRIBUTARY_OWNERSHIP_H
#define TRIBUTARY_OWNERSHIP_H

#include "postgres.h"

extern void TribOwnershipInit(void);

#endif							/* TRIBUTARY_OWNERSHIP_H */
