# tools/kafka_mock.mk: build rule for tools/tributary-kafka-mock, the local Kafka broker
# (librdkafka's mock cluster) used by the integration tests, the benchmark and the demo.
#
# Included from the top-level Makefile (anywhere: it does not change the default goal);
# usable alone too:
#   make -f tools/kafka_mock.mk tools/tributary-kafka-mock
#
#   tools/tributary-kafka-mock   the program (tools/kafka_mock.c, linked to librdkafka)
#   tools                        phony: everything under tools/ that needs building

_kafka_mock_saved_goal := $(.DEFAULT_GOAL)

KAFKA_MOCK := tools/tributary-kafka-mock
RDKAFKA_CFLAGS := $(shell pkg-config --cflags rdkafka 2>/dev/null)
RDKAFKA_LIBS := $(or $(shell pkg-config --libs rdkafka 2>/dev/null),-lrdkafka)

# An explicit recipe, so PGXS's CFLAGS (meant for the server module) do not apply here.
$(KAFKA_MOCK): tools/kafka_mock.c tools/kafka_mock.mk
	$(CC) -std=gnu11 -O2 -Wall -Wextra -Werror $(RDKAFKA_CFLAGS) \
		-o $@ tools/kafka_mock.c $(RDKAFKA_LIBS)

.PHONY: tools
tools: $(KAFKA_MOCK)

.DEFAULT_GOAL := $(_kafka_mock_saved_goal)
