# tools/listen.mk: build and install rules for tools/tributary-listen, the listener client
# of the fan-out (tools/tributary-listen.c and tools/listen/*.c, linked to libpq only).
#
# Included from the top-level Makefile after PGXS (it adds prerequisites to PGXS's install
# and uninstall targets; it does not change the default goal):
#   make tools        builds it (with the other tools)
#   make install      installs it into $(pg_config --bindir) with the extension
#   make uninstall    removes it from there

_listen_saved_goal := $(.DEFAULT_GOAL)

LISTEN := tools/tributary-listen
LISTEN_SRCS := tools/tributary-listen.c tools/listen/json.c tools/listen/keytable.c
LISTEN_HDRS := tools/listen/json.h tools/listen/keytable.h
LIBPQ_CFLAGS := $(or $(shell pkg-config --cflags libpq 2>/dev/null),-I$(shell $(PG_CONFIG) --includedir))
LIBPQ_LIBS := $(or $(shell pkg-config --libs libpq 2>/dev/null),-L$(shell $(PG_CONFIG) --libdir) -lpq)

# An explicit recipe, so PGXS's CFLAGS (meant for the server module) do not apply here.
$(LISTEN): $(LISTEN_SRCS) $(LISTEN_HDRS) tools/listen.mk
	$(CC) -std=gnu11 -O2 -g -Wall -Wextra -Werror -Itools $(LIBPQ_CFLAGS) \
		-o $@ $(LISTEN_SRCS) $(LIBPQ_LIBS)

.PHONY: tools install-listen uninstall-listen
tools: $(LISTEN)

install: install-listen
install-listen: $(LISTEN)
	$(MKDIR_P) '$(DESTDIR)$(bindir)'
	$(INSTALL_PROGRAM) $(LISTEN) '$(DESTDIR)$(bindir)/tributary-listen'

uninstall: uninstall-listen
uninstall-listen:
	rm -f '$(DESTDIR)$(bindir)/tributary-listen'

.DEFAULT_GOAL := $(_listen_saved_goal)
