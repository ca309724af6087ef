# tributary: PGXS build, tests and demo.
#
#   make            build the extension
#   make tools      build tools/tributary-kafka-mock (the local Kafka broker) and
#                   tools/tributary-listen (the fan-out's listener client)
#   make install    install the extension and tributary-listen into the PostgreSQL found by
#                   PG_CONFIG
#   make test       bootstrap, build, install, run every test (pg_regress, pgTAP, integration)
#   make demo       bootstrap, build, install, run the demo on a private cluster
#                   (SOURCE=redis: the same on a redis-server of its own)
#   make fuzz-sketch  fuzz the sketches' stored-form parsers (test/fuzz; not part of make test)
#   make fuzz-resp    fuzz the Redis source's reply scanner (test/fuzz; not part of make test)

MODULE_big = tributary
OBJS = \
	src/tributary.o \
	src/shmem.o \
	src/catalog.o \
	src/options.o \
	src/optvalue.o \
	src/varlena.o \
	src/api.o \
	src/ingest.o \
	src/batch.o \
	src/deadletter.o \
	src/position.o \
	src/stage.o \
	src/formats/format.o \
	src/formats/convert.o \
	src/formats/float8.o \
	src/formats/json.o \
	src/formats/csv.o \
	src/formats/text.o \
	src/formats/bytes.o \
	src/formats/registry.o \
	src/sources/registry.o \
	src/sources/local.o \
	src/sources/redis.o \
	src/sources/redis_options.o \
	src/sources/redis_conn.o \
	src/sources/redis_resp.o \
	src/sources/kafka.o \
	src/sources/kafka_options.o \
	src/sources/kafka_consumer.o \
	src/sources/kafka_reaper.o \
	src/sources/kafka_positions.o \
	src/sources/kafka_policy.o \
	src/launcher.o \
	src/worker.o \
	src/consume.o \
	src/ownership.o \
	src/quality/hll.o \
	src/quality/ddsketch.o \
	src/quality/xsum.o \
	src/quality/datumhash.o \
	src/quality/sqlutil.o \
	src/quality/hll_sql.o \
	src/quality/ddsketch_sql.o \
	src/quality/stats_sql.o \
	src/quality/window.o \
	src/quality/state_agg.o \
	src/quality/adhoc.o \
	src/quality/adhoc_scan.o \
	src/quality/continuous.o \
	src/quality/settings.o \
	src/quality/fold.o \
	src/quality/alerts.o \
	src/quality/stream_sql.o \
	src/fanout/snapshot.o \
	src/fanout/notify.o \
	src/fanout/snapshot_sql.o

# Control file and install scripts live in control/; without EXTENSION set, MODULEDIR
# sends DATA to share/extension as an extension's files.
MODULEDIR = extension
DATA = control/tributary.control $(wildcard control/tributary--*.sql)

REGRESS = setup api errors ingest insert formats json_fuzz dead_letters privileges poison kafka_policy sketch quality quality_stream snapshot redis upgrade
REGRESS_OPTS = --inputdir=. --outputdir=$(CURDIR)/test/results

PG_CONFIG ?= pg_config
PG_CPPFLAGS = -I$(srcdir)/src -Wall -Wextra -Werror -Wno-unused-parameter \
	-Wno-sign-compare -Wno-missing-field-initializers
SHLIB_LINK = -lrdkafka -lhiredis

PGXS := $(shell $(PG_CONFIG) --pgxs)
include $(PGXS)
include tools/kafka_mock.mk
include tools/listen.mk
include test/fuzz/fuzz.mk
EXTRA_CLEAN = tools/tributary-kafka-mock tools/tributary-listen test/fuzz/sketch_fuzz test/fuzz/dds_index_check test/fuzz/resp_fuzz test/fuzz/float_fuzz

# Rebuild an object when a header it includes changes (PGXS tracks none by default).
$(OBJS): $(wildcard src/*.h src/*/*.h)

.PHONY: test demo bootstrap format
bootstrap:
	@bash tools/bootstrap.sh

test:
	@bash test/run.sh

demo:
	@bash tools/demo.sh

format:
	clang-format -i src/*.c src/*.h src/*/*.c src/*/*.h
