# test/fuzz/fuzz.mk: the fuzz harnesses, kept out of make test.
#
#   make fuzz-sketch [FUZZ_ROUNDS=2000] [FUZZ_SEED=1]
#   make fuzz-resp [FUZZ_RESP_ROUNDS=20000] [FUZZ_SEED=1]
#   make fuzz-float [FUZZ_FLOAT_ROUNDS=1000000] [FUZZ_SEED=1]
#
# Builds test/fuzz/sketch_fuzz with AddressSanitizer, UndefinedBehaviorSanitizer and
# assertions, from src/quality's hll.c, ddsketch.c and xsum.c and a shim for the few backend
# functions they call (fe_shim.c), linked to PostgreSQL's frontend libpgcommon and libpgport,
# and runs it (see sketch_fuzz.c). Then test/fuzz/dds_index_check, built with the server's
# CFLAGS as the extension is, checks DDSketch's fast bin index against its definition on
# about 60 million magnitudes (see dds_index_check.c). Included from the top-level Makefile;
# it does not change the default goal.

_fuzz_saved_goal := $(.DEFAULT_GOAL)

# The harnesses' compiler: sanitizers and assertions on, the server's headers, and
# PostgreSQL's frontend libpgcommon and libpgport for palloc, StringInfo and the bit utilities.
FUZZ_CC = $(CC) -std=gnu11 -O1 -g -Wall -Wextra -Werror -Wno-unused-parameter \
	-fsanitize=address,undefined -fno-sanitize-recover=all -DUSE_ASSERT_CHECKING \
	-I$(srcdir)/src -I$(shell $(PG_CONFIG) --includedir-server)
FUZZ_LIBS = -L$(shell $(PG_CONFIG) --libdir) -L$(shell $(PG_CONFIG) --pkglibdir) -lpgcommon -lpgport -lm

FUZZ_SKETCH := test/fuzz/sketch_fuzz
FUZZ_ROUNDS ?= 2000
FUZZ_SEED ?= 1
FUZZ_SKETCH_SRCS := test/fuzz/sketch_fuzz.c test/fuzz/fe_shim.c \
	src/quality/hll.c src/quality/ddsketch.c src/quality/xsum.c

$(FUZZ_SKETCH): $(FUZZ_SKETCH_SRCS) $(wildcard src/quality/*.h) test/fuzz/fuzz_random.h test/fuzz/fuzz.mk
	$(FUZZ_CC) -o $@ $(FUZZ_SKETCH_SRCS) $(FUZZ_LIBS)

DDS_INDEX_CHECK := test/fuzz/dds_index_check

$(DDS_INDEX_CHECK): test/fuzz/dds_index_check.c test/fuzz/fe_shim.c src/quality/ddsketch.c \
		$(wildcard src/quality/*.h) test/fuzz/fuzz_random.h test/fuzz/fuzz.mk
	$(CC) $(CFLAGS) -Werror -I$(srcdir)/src -I$(shell $(PG_CONFIG) --includedir-server) \
		-o $@ test/fuzz/dds_index_check.c test/fuzz/fe_shim.c $(FUZZ_LIBS)

.PHONY: fuzz-sketch
fuzz-sketch: $(FUZZ_SKETCH) $(DDS_INDEX_CHECK)
	ASAN_OPTIONS=detect_leaks=0 $(FUZZ_SKETCH) $(FUZZ_ROUNDS) $(FUZZ_SEED)
	$(DDS_INDEX_CHECK) 20 $(FUZZ_SEED)

# The Redis source's reply scanner and walker (src/sources/redis_resp.c), with the same
# sanitizers: random replies scanned whole and in pieces, walked, and mutated (resp_fuzz.c).
FUZZ_RESP := test/fuzz/resp_fuzz
FUZZ_RESP_ROUNDS ?= 20000
FUZZ_RESP_SRCS := test/fuzz/resp_fuzz.c test/fuzz/fe_shim.c src/sources/redis_resp.c

$(FUZZ_RESP): $(FUZZ_RESP_SRCS) src/sources/redis_internal.h test/fuzz/fuzz_random.h test/fuzz/fuzz.mk
	$(FUZZ_CC) -o $@ $(FUZZ_RESP_SRCS) $(FUZZ_LIBS)

.PHONY: fuzz-resp
fuzz-resp: $(FUZZ_RESP)
	ASAN_OPTIONS=detect_leaks=0 $(FUZZ_RESP) $(FUZZ_RESP_ROUNDS) $(FUZZ_SEED)

# double precision's parser (src/formats/float8.c) against strtod, bit for bit, with the
# same sanitizers (float_fuzz.c): millions of random decimals and the hard cases.
FUZZ_FLOAT := test/fuzz/float_fuzz
FUZZ_FLOAT_ROUNDS ?= 1000000
FUZZ_FLOAT_SRCS := test/fuzz/float_fuzz.c src/formats/float8.c

$(FUZZ_FLOAT): $(FUZZ_FLOAT_SRCS) src/formats/convert.h src/formats/pow10.h test/fuzz/fuzz_random.h test/fuzz/fuzz.mk
	$(FUZZ_CC) -o $@ $(FUZZ_FLOAT_SRCS) $(FUZZ_LIBS)

.PHONY: fuzz-float
fuzz-float: $(FUZZ_FLOAT)
	ASAN_OPTIONS=detect_leaks=0 $(FUZZ_FLOAT) $(FUZZ_FLOAT_ROUNDS) $(FUZZ_SEED)

.DEFAULT_GOAL := $(_fuzz_saved_goal)
