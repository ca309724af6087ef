/*
 * fuzz_random.h
 *		The fuzz harnesses' random numbers: xorshift64, reproducible from the seed on every
 *		platform. Each harness seeds fuzz_state its own way before its first draw.
 */
#ifndef TRIBUTARY_FUZZ_RANDOM_H
#define TRIBUTARY_FUZZ_RANDOM_H

static uint64 fuzz_state = UINT64CONST(88172645463325252);

static inline uint64
FuzzRandom(void)
{
	fuzz_state ^= fuzz_state << 13;
	fuzz_state ^= fuzz_state >> 7;
	fuzz_state ^= fuzz_state << 17;
	return fuzz_state;
}

/* Uniform in [0, 1). */
static inline double
FuzzUniform(void)
{
	return (FuzzRandom() >> 11) * (1.0 / 9007199254740992.0);
}

#endif							/* TRIBUTARY_FUZZ_RANDOM_H */
