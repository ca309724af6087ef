-- tributary 0.2.0 -> 0.3.0: security and fault hardening.
--
-- Who may manage a stream and see its options, errors and dead letters; stream states
-- "failed" and "waiting"; alter_stream_owner; the librdkafka property policy and masking;
-- bounded memory per message.

\echo Use "ALTER EXTENSION tributary UPDATE TO '0.3.0'" to load this file. \quit

-- ---------------------------------------------------------------------------------------
-- Section: stream ownership, states and visibility (catalog, views, dead-letter policy).
-- ---------------------------------------------------------------------------------------

-- ---------------------------------------------------------------------------------------
-- Section: librdkafka property policy and masking.
-- ---------------------------------------------------------------------------------------

-- ---------------------------------------------------------------------------------------
-- Section: bounded memory per message (dead letters).
-- ---------------------------------------------------------------------------------------

-- Payloads are stored uncompressed and out of line: compressing a large rejected message
-- would need a buffer as large as the message; the dead letter must cost no more than
-- holding it. Rows already stored keep their form until rewritten.
ALTER TABLE @extschema@.dead_letters ALTER COLUMN payload SET STORAGE EXTERNAL;
