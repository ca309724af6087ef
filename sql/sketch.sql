--
-- sketch: the quality building blocks (src/quality/): completeness, approx_distinct and
-- the hll sketch, approx_quantile and the ddsketch sketch, exact_avg and exact_stddev.
--
-- What is asserted: hand-computed answers on small inputs (nulls, empty, one row,
-- duplicates, negative values, zero, NaN, infinities, extremes); that the results depend
-- on the multiset of values only (other orders, parallel plans and merged per-group sketches
-- give the same bytes and the same float8 bits); that stored sketches survive text and
-- binary round trips and that bad ones are refused; the error bounds on 10^6 values
-- (<= 2 % for distinct counts, <= 1 % for p50, p90 and p99 against percentile_disc); and
-- exact_avg / exact_stddev against numeric arithmetic. Data is generated from setseed(), so
-- every run checks the same values; the bounds are printed as booleans.
--
SET extra_float_digits = 1;

-- float8 bits, to say "the same result" without relying on = (which calls -0 and 0 equal)
CREATE FUNCTION sk_bits(float8) RETURNS bytea LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$ SELECT float8send($1) $$;

--
-- completeness: non-null rows over rows; 0 when all are null, null without rows.
--
SELECT tributary.completeness(v) FROM (VALUES (1), (NULL), (3), (NULL)) t(v);
SELECT tributary.completeness(v) FROM (VALUES (NULL::int), (NULL)) t(v);
SELECT tributary.completeness(v) FROM (VALUES (1)) t(v) WHERE false;
SELECT tributary.completeness(v) FROM (VALUES ('x'::text)) t(v);
-- any type, also composite values (a row of nulls is not a null row value here)
SELECT tributary.completeness(t) FROM (VALUES (ROW(NULL::int)), (NULL)) t(t);
SELECT g, tributary.completeness(v) FROM (VALUES (1, 1), (1, NULL), (1, NULL), (2, 5)) t(g, v)
GROUP BY g ORDER BY g;

--
-- approx_distinct: exact up to 256 distinct values.
--
SELECT tributary.approx_distinct(v) FROM (VALUES (1), (2), (2), (NULL), (3), (3), (3)) t(v);
SELECT tributary.approx_distinct(v) FROM (VALUES (NULL::int), (NULL)) t(v);
SELECT tributary.approx_distinct(v) FROM (VALUES (1)) t(v) WHERE false;
SELECT tributary.approx_distinct(v) FROM (VALUES ('only one'::text)) t(v);
-- values the type calls equal count once: numeric scale, float8 zero's sign, text
SELECT tributary.approx_distinct(v) FROM (VALUES (1.0::numeric), (1.00), (1), (2.5)) t(v);
SELECT tributary.approx_distinct(v) FROM (VALUES ('0'::float8), ('-0'), ('NaN'), ('NaN'), ('Infinity'), ('-Infinity')) t(v);
SELECT tributary.approx_distinct(v) FROM (VALUES ('a'::text), ('b'), ('a'), (''), ('')) t(v);
-- types without a hash function (json, point) hash their text
SELECT tributary.approx_distinct(v) FROM (VALUES ('{"a": 1}'::json), ('{"a": 1}'), ('{"a":1}')) t(v);
SELECT tributary.approx_distinct(v) FROM (VALUES (point(1, 2)), (point(1, 2)), (point(2, 1))) t(v);
SELECT tributary.approx_distinct(v) FROM (VALUES (ARRAY['{}'::json]), (ARRAY['{}'::json]), (ARRAY['[]'::json])) t(v);
-- extremes of int8, dates, composite values
SELECT tributary.approx_distinct(v) FROM (VALUES (-9223372036854775808), (9223372036854775807), (0), (0)) t(v);
SELECT tributary.approx_distinct(v) FROM (VALUES ('2026-01-01'::date), ('infinity'), ('2026-01-01')) t(v);
SELECT tributary.approx_distinct(v) FROM (VALUES (ROW(1, 'a')), (ROW(1, 'a')), (ROW(1, 'b'))) t(v);
-- 256 distinct values are counted exactly; 257 switch to registers, stored sparse (mode
-- byte 3) while fewer than 5460 registers are set, as they are (mode byte 2) beyond
SELECT tributary.approx_distinct(i), substr(tributary.hll_agg(i)::text, 1, 6) AS version_and_mode
FROM generate_series(1, 256) i;
SELECT tributary.approx_distinct(i) BETWEEN 250 AND 265 AS close,
       substr(tributary.hll_agg(i)::text, 1, 6) AS version_and_mode,
       (length(tributary.hll_agg(i)::text) - 2) / 2 BETWEEN 8 + 2 * 250 AND 8 + 3 * 257 AS sparse_size
FROM generate_series(1, 257) i;
SELECT n, substr(tributary.hll_agg(i)::text, 1, 6) AS version_and_mode,
       (length(tributary.hll_agg(i)::text) - 2) / 2 AS bytes
FROM (VALUES (6000), (8000)) c(n), generate_series(1, n) i GROUP BY n ORDER BY n;
-- sparse, dense and exact sketches merge into the union's own sketch, byte for byte
SELECT tributary.hll_merge(h ORDER BY o)::text = (SELECT tributary.hll_agg(i)::text FROM generate_series(1, 40000) i)
         AS merged_is_union,
       tributary.hll_merge(h ORDER BY o DESC)::text
         = (SELECT tributary.hll_agg(i)::text FROM generate_series(1, 40000) i) AS either_order,
       array_agg(substr(h::text, 1, 6) ORDER BY o) AS modes
FROM (SELECT 1 AS o, tributary.hll_agg(i) AS h FROM generate_series(1, 100) i
      UNION ALL SELECT 2, tributary.hll_agg(i) FROM generate_series(50, 3000) i
      UNION ALL SELECT 3, tributary.hll_agg(i) FROM generate_series(2000, 40000) i) t;
-- duplicates do not move it past the cap
SELECT tributary.approx_distinct(i % 256) FROM generate_series(1, 100000) i;

--
-- hll_agg, hll_count, hll_merge: NULL without rows, an empty sketch for only nulls.
--
SELECT tributary.hll_agg(v) FROM (VALUES (1)) t(v) WHERE false;
SELECT tributary.hll_agg(v), tributary.hll_count(tributary.hll_agg(v))
FROM (VALUES (NULL::int)) t(v);
SELECT tributary.hll_agg(v), tributary.hll_count(tributary.hll_agg(v)) FROM (VALUES (7), (7)) t(v);
SELECT tributary.hll_merge(h) FROM (VALUES (NULL::tributary.hll)) t(h);
SELECT tributary.hll_count(tributary.hll_merge(h))
FROM (SELECT tributary.hll_agg(v) FROM (VALUES (1), (2)) a(v)
      UNION ALL SELECT NULL
      UNION ALL SELECT tributary.hll_agg(v) FROM (VALUES (2), (3)) b(v)) t(h);
SELECT tributary.hll_count(NULL);

--
-- approx_quantile: q = 0 and q = 1 are min and max exactly; others within 0.5 %.
--
SELECT tributary.approx_quantile(v, 0) AS p0, tributary.approx_quantile(v, 1) AS p100,
       round(tributary.approx_quantile(v, 0.5)::numeric, 1) AS p50
FROM (VALUES (1.0::float8), (2), (3), (4), (5), (6), (7), (8), (9)) t(v);
-- one row: every quantile is the value (clamped to min and max)
SELECT tributary.approx_quantile(v, 0.5), tributary.approx_quantile(v, ARRAY[0, 0.3, 1])
FROM (VALUES (123.456::float8)) t(v);
-- no rows, only nulls, only NaN: no quantile
SELECT tributary.approx_quantile(v, 0.5) FROM (VALUES (1::float8)) t(v) WHERE false;
SELECT tributary.approx_quantile(v, 0.5), tributary.approx_quantile(v, ARRAY[0.5])
FROM (VALUES (NULL::float8), (NULL)) t(v);
SELECT tributary.approx_quantile(v, 0.5) FROM (VALUES ('NaN'::float8), ('NaN')) t(v);
-- negative values, zero, infinities and a NaN (left out): five values in order
-- -inf, -5, 0, 3, +inf; rank q * 4
SELECT q, tributary.approx_quantile(v, q) AS exact_or_inf,
       round(tributary.approx_quantile(v, q)::numeric, 1) AS rounded
FROM (VALUES (-5::float8), (0), (3), ('NaN'), ('Infinity'), ('-Infinity')) t(v),
     (VALUES (0::float8), (0.2), (0.25), (0.5), (0.75), (0.8), (1)) qs(q)
GROUP BY q ORDER BY q;
-- heavy duplicates: -2 (x3), 0 (x2), 7 (x5); the array form keeps the order given
SELECT round(x::numeric, 3) AS quantile
FROM (SELECT unnest(tributary.approx_quantile(v, ARRAY[0.5, 0, 0.2, 0.3, 0.4, 0.55, 0.6, 1])) AS x
      FROM (VALUES (-2::float8), (-2), (-2), (0), (0), (7), (7), (7), (7), (7)) t(v)) s;
-- -0 is 0; subnormals count as zero; the extremes of float8 come back exactly
SELECT tributary.approx_quantile(v, 0) = 0 AS min_is_zero,
       sk_bits(tributary.approx_quantile(v, 0)) = sk_bits(0) AS not_minus_zero
FROM (VALUES ('-0'::float8), (0), ('-0')) t(v);
SELECT tributary.approx_quantile(v, 0.5) FROM (VALUES (5e-324::float8), (1e-310), (-1e-320)) t(v);
SELECT tributary.approx_quantile(v, ARRAY[0, 1]),
       tributary.approx_quantile(v, 0.5) / 1e307 BETWEEN 0.995 AND 1.005 AS middle_ok
FROM (VALUES ('-1.7976931348623157e308'::float8), (1e307), ('1.7976931348623157e308')) t(v);
-- empty quantile array: empty result
SELECT tributary.approx_quantile(v, '{}'::float8[]) FROM (VALUES (1::float8)) t(v);
-- a quantile per group, as long as it is the same within the group
SELECT q, round(tributary.approx_quantile(v, q)::numeric, 1)
FROM generate_series(1, 100) v, (VALUES (0.1::float8), (0.9)) qs(q)
GROUP BY q ORDER BY q;

--
-- ddsketch_agg, ddsketch_quantile, ddsketch_merge.
--
SELECT tributary.ddsketch_agg(v) FROM (VALUES (1::float8)) t(v) WHERE false;
SELECT tributary.ddsketch_agg(v), tributary.ddsketch_quantile(tributary.ddsketch_agg(v), 0.5)
FROM (VALUES (NULL::float8)) t(v);
SELECT tributary.ddsketch_agg(v) FROM (VALUES (1::float8), (-1), (0), ('NaN')) t(v);
SELECT tributary.ddsketch_quantile(tributary.ddsketch_agg(v), ARRAY[0, 0.5, 1])
FROM (VALUES (1::float8), (-1), (0), ('NaN')) t(v);
SELECT tributary.ddsketch_merge(s) FROM (VALUES (NULL::tributary.ddsketch)) t(s);
SELECT tributary.ddsketch_quantile(tributary.ddsketch_merge(s), ARRAY[0, 1])
FROM (SELECT tributary.ddsketch_agg(v) FROM (VALUES (1::float8), (2)) a(v)
      UNION ALL SELECT NULL
      UNION ALL SELECT tributary.ddsketch_agg(v) FROM (VALUES (-3::float8)) b(v)) t(s);

--
-- exact_avg, exact_stddev: NaN and infinities as float8 avg and stddev.
--
SELECT exact_avg, avg, exact_stddev, stddev
FROM (SELECT tributary.exact_avg(v), avg(v), tributary.exact_stddev(v), stddev(v)
      FROM (VALUES (1::float8), (2), (4), (NULL)) t(v)) s;
SELECT tributary.exact_avg(v), tributary.exact_stddev(v) FROM (VALUES (1::float8)) t(v) WHERE false;
SELECT tributary.exact_avg(v), tributary.exact_stddev(v) FROM (VALUES (NULL::float8)) t(v);
SELECT tributary.exact_avg(v), tributary.exact_stddev(v) FROM (VALUES (-2.5::float8)) t(v);
SELECT s.name, tributary.exact_avg(v), avg(v), tributary.exact_stddev(v), stddev(v)
FROM (VALUES ('nan', ARRAY[1, 'NaN']::float8[]),
             ('+inf', ARRAY[1, 'Infinity']::float8[]),
             ('-inf', ARRAY['-Infinity', 1, 2]::float8[]),
             ('both infs', ARRAY['Infinity', '-Infinity']::float8[]),
             ('inf and nan', ARRAY['Infinity', 'NaN']::float8[]),
             ('one inf', ARRAY['Infinity']::float8[])) s(name, vals),
     unnest(s.vals) v
GROUP BY s.name ORDER BY s.name;
-- constant data has stddev 0 exactly; 0.1, 0.2, 0.3 as the exact binary values give
SELECT tributary.exact_stddev(v) FROM (VALUES (0.1::float8), (0.1), (0.1)) t(v);
SELECT tributary.exact_avg(v), tributary.exact_stddev(v) FROM (VALUES (0.1::float8), (0.2), (0.3)) t(v);
-- sums beyond float8's range stay exact (float8 avg overflows here)
SELECT tributary.exact_avg(v), tributary.exact_stddev(v)
FROM (VALUES (1e308::float8), (1e308), (-1e308)) t(v);
SELECT tributary.exact_avg(v), tributary.exact_stddev(v)
FROM (VALUES ('1.7976931348623157e308'::float8), ('1.7976931348623157e308')) t(v);
-- a stddev beyond float8's range is +inf, not an error
SELECT tributary.exact_stddev(v)
FROM (VALUES ('-1.7976931348623157e308'::float8), ('1.7976931348623157e308')) t(v);
-- and so are the smallest subnormals
SELECT tributary.exact_avg(v), tributary.exact_stddev(v) FROM (VALUES (5e-324::float8), (1e-323)) t(v);
-- cancellation: 1e16 + 1 - 1e16 is 1 (float8 sum loses it)
SELECT tributary.exact_avg(v) * 3 AS exact_sum, avg(v) * 3 AS float8_sum
FROM (VALUES (1e16::float8), (1), (-1e16)) t(v);

--
-- Bad arguments.
--
SELECT tributary.approx_quantile(v, 1.5) FROM (VALUES (1::float8)) t(v);
SELECT tributary.approx_quantile(v, -0.1) FROM (VALUES (1::float8)) t(v);
SELECT tributary.approx_quantile(v, 'NaN'::float8) FROM (VALUES (1::float8)) t(v);
SELECT tributary.approx_quantile(v, NULL::float8) FROM (VALUES (1::float8)) t(v);
SELECT tributary.approx_quantile(v, ARRAY[0.5, NULL]) FROM (VALUES (1::float8)) t(v);
SELECT tributary.approx_quantile(v, NULL::float8[]) FROM (VALUES (1::float8)) t(v);
SELECT tributary.approx_quantile(v, ARRAY[0.5, 2]) FROM (VALUES (1::float8)) t(v);
SELECT tributary.approx_quantile(v, ARRAY[[0.5], [0.9]]) FROM (VALUES (1::float8)) t(v);
SELECT tributary.approx_quantile(v, array_fill(0.5::float8, ARRAY[1001])) FROM (VALUES (1::float8)) t(v);
-- the quantile must be the same in every row of a group
SELECT tributary.approx_quantile(v, CASE WHEN v < 3 THEN 0.5 ELSE 0.9 END)
FROM generate_series(1, 5) v;
SELECT tributary.approx_quantile(v, ARRAY[0.5, CASE WHEN v < 3 THEN 0.9 ELSE 0.99 END])
FROM generate_series(1, 5) v;
-- equal quantiles written differently are the same quantiles
SELECT tributary.approx_quantile(v, CASE WHEN v < 3 THEN 0.5 ELSE 0.50::float8 END)
FROM generate_series(1, 5) v;
SELECT tributary.ddsketch_quantile(tributary.ddsketch_agg(1), 1.01);
SELECT tributary.ddsketch_quantile(tributary.ddsketch_agg(1), ARRAY[NULL::float8]);

--
-- Stored form: text round trips, binary round trips (COPY BINARY: send and receive), and
-- input that is not a sketch.
--
CREATE TABLE sk_stored (name text, h tributary.hll, d tributary.ddsketch);
INSERT INTO sk_stored
SELECT 'exact', tributary.hll_agg(i), tributary.ddsketch_agg(i * 1.5 - 40) FROM generate_series(1, 100) i;
INSERT INTO sk_stored
SELECT 'registers', tributary.hll_agg(i), tributary.ddsketch_agg(exp(i / 1000.0)) FROM generate_series(1, 5000) i;
INSERT INTO sk_stored
SELECT 'registers, dense', tributary.hll_agg(i), tributary.ddsketch_agg(i) FROM generate_series(1, 100000) i;
INSERT INTO sk_stored
SELECT 'empty', tributary.hll_agg(v), tributary.ddsketch_agg(v) FROM (VALUES (NULL::float8)) t(v);
SELECT name, h::text::tributary.hll::text = h::text AS hll_text_round_trip,
       d::text::tributary.ddsketch::text = d::text AS ddsketch_text_round_trip,
       length(h::text) AS hll_text_length, length(d::text) AS ddsketch_text_length
FROM sk_stored ORDER BY name;
-- (\copy: the file is written and read by psql, in pg_regress's output directory)
\getenv abs_builddir PG_ABS_BUILDDIR
\cd :abs_builddir
\copy sk_stored TO 'results/sketch.bin' WITH (FORMAT binary)
CREATE TABLE sk_stored_again (LIKE sk_stored);
\copy sk_stored_again FROM 'results/sketch.bin' WITH (FORMAT binary)
SELECT a.name, a.h::text = b.h::text AS hll_binary_round_trip,
       a.d::text = b.d::text AS ddsketch_binary_round_trip,
       tributary.hll_count(b.h) AS count, tributary.ddsketch_quantile(b.d, 1) AS max
FROM sk_stored a JOIN sk_stored_again b USING (name) ORDER BY name;
-- not hex; odd length; empty; wrong version, mode, precision; bad length; not sorted;
-- duplicates; more hashes than the cap (byte 3: log2 of the exact cap, 8 = 256); a register
-- out of range; registers too short
SELECT 'zz'::tributary.hll;
SELECT '\x010'::tributary.hll;
SELECT ''::tributary.hll;
SELECT '\x02010e0000000000'::tributary.hll;
SELECT '\x01040e0000000000'::tributary.hll;
SELECT '\x01010c0000000000'::tributary.hll;
SELECT '\x01010e080100000001'::tributary.hll;
SELECT '\x01010e0801000000010000000000000000'::tributary.hll;
SELECT '\x01010e080200000002000000000000000100000000000000'::tributary.hll;
SELECT '\x01010e080200000001000000000000000100000000000000'::tributary.hll;
SELECT ('\x01010e0801010000' || repeat('00', 8 * 257))::tributary.hll;
SELECT '\x01010e11'::tributary.hll;
SELECT ('\x01020e00' || repeat('00', 16383) || '34')::tributary.hll;
SELECT ('\x01020e00' || repeat('00', 16383))::tributary.hll;
-- sparse registers: none; more than the sparse bound; truncated; a register past the last;
-- a register of 0 or past 51; bytes after the last; a gap that is not a shortest varint
SELECT '\x01030e0800000000'::tributary.hll;
SELECT ('\x01030e0854150000' || repeat('0001', 5460))::tributary.hll;
SELECT '\x01030e08020000000001'::tributary.hll;
SELECT '\x01030e0802000000fe7f01ff7f01'::tributary.hll;
SELECT '\x01030e08010000000000'::tributary.hll;
SELECT '\x01030e08010000000534'::tributary.hll;
SELECT '\x01030e0801000000050100'::tributary.hll;
SELECT '\x01030e0801000000850001'::tributary.hll;
-- valid values written by hand: one exact hash; registers at their largest
SELECT tributary.hll_count('\x01010e0801000000ffffffffffffffff');
SELECT tributary.hll_count(('\x01020e00' || repeat('33', 16384))::tributary.hll) > 1e18 AS huge;
-- sparse: registers 0 and 16383 at 1, stored again as they came; written densely, the
-- same registers are not the stored form of their set
SELECT tributary.hll_count(tributary.hll_merge(h)) BETWEEN 1 AND 3 AS count, tributary.hll_merge(h)::text
FROM (VALUES ('\x01030e08020000000001fe7f01'::tributary.hll)) t(h);
SELECT ('\x01020e08' || '01' || repeat('00', 16382) || '01')::tributary.hll;
SELECT ('\x01020e08' || repeat('00', 16384))::tributary.hll;
-- the same for ddsketch: wrong version, wrong accuracy, truncated header, trailing bytes,
-- truncated store, an empty edge bin, min and max that do not fit the counts
SELECT 'zz'::tributary.ddsketch;
SELECT '\x0200'::tributary.ddsketch;
SELECT '\x01007b14ae47e17a843f000000000000'::tributary.ddsketch;
SELECT '\x01007b14ae47e17a743f000000'::tributary.ddsketch;
SELECT '\x01007b14ae47e17a743f00000000000000'::tributary.ddsketch;
SELECT '\x01007b14ae47e17a743f00000000000200'::tributary.ddsketch;
SELECT '\x01007b14ae47e17a743f000000000200010000'::tributary.ddsketch;
SELECT '\x01007b14ae47e17a743f00000000000100010000000000000000000000000000f03f'::tributary.ddsketch;
SELECT '\x01007b14ae47e17a743f0000000000010001000000000000f0bf000000000000f03f'::tributary.ddsketch;
-- valid values written by hand: empty; the value 1 (bin 0) once
SELECT tributary.ddsketch_quantile('\x01007b14ae47e17a743f000000000000', 0.5);
SELECT tributary.ddsketch_quantile('\x01007b14ae47e17a743f0000000000010001000000000000f03f000000000000f03f', 0.5);

--
-- Order independence: other orders give the same bytes and bits.
--
SELECT setseed(0.17);
CREATE TABLE sk_mid AS
SELECT i, (i % 7) AS g,
       CASE WHEN i % 97 = 0 THEN NULL ELSE floor(random() * 3000)::int END AS k,
       CASE WHEN i % 89 = 0 THEN NULL ELSE (random() - 0.3) * exp(random() * 8) END AS x
FROM generate_series(1, 20000) i;
SELECT tributary.hll_agg(k ORDER BY i)::text
         = tributary.hll_agg(k ORDER BY i DESC)::text AS hll_order,
       tributary.hll_agg(k ORDER BY k)::text
         = tributary.hll_agg(k ORDER BY random())::text AS hll_order_2,
       tributary.ddsketch_agg(x ORDER BY i)::text
         = tributary.ddsketch_agg(x ORDER BY i DESC)::text AS dds_order,
       tributary.ddsketch_agg(x ORDER BY x)::text
         = tributary.ddsketch_agg(x ORDER BY random())::text AS dds_order_2,
       sk_bits(tributary.exact_avg(x ORDER BY x))
         = sk_bits(tributary.exact_avg(x ORDER BY x DESC)) AS avg_order,
       sk_bits(tributary.exact_avg(x ORDER BY random()))
         = sk_bits(tributary.exact_avg(x ORDER BY i)) AS avg_order_2,
       sk_bits(tributary.exact_stddev(x ORDER BY x))
         = sk_bits(tributary.exact_stddev(x ORDER BY x DESC)) AS stddev_order,
       sk_bits(tributary.exact_stddev(x ORDER BY random()))
         = sk_bits(tributary.exact_stddev(x ORDER BY i)) AS stddev_order_2
FROM sk_mid;
-- merging per-group sketches gives the sketch of all rows (and merging in another
-- grouping gives it too)
WITH per_group AS (
    SELECT g, tributary.hll_agg(k) AS h, tributary.ddsketch_agg(x) AS d
    FROM sk_mid GROUP BY g
), per_other AS (
    SELECT i % 11 AS g, tributary.hll_agg(k) AS h, tributary.ddsketch_agg(x) AS d
    FROM sk_mid GROUP BY i % 11
), whole AS (
    SELECT tributary.hll_agg(k)::text AS h, tributary.ddsketch_agg(x)::text AS d FROM sk_mid
)
SELECT (SELECT tributary.hll_merge(h)::text FROM per_group) = whole.h AS hll_merge_equal,
       (SELECT tributary.hll_merge(h)::text FROM per_other) = whole.h AS hll_merge_equal_2,
       (SELECT tributary.ddsketch_merge(d)::text FROM per_group) = whole.d AS dds_merge_equal,
       (SELECT tributary.ddsketch_merge(d)::text FROM per_other) = whole.d AS dds_merge_equal_2
FROM whole;
-- small groups stay exact, and merging exact sketches past the cap converts as adding would
SELECT (SELECT tributary.hll_merge(h)::text
        FROM (SELECT tributary.hll_agg(i) AS h FROM generate_series(1, 1500) i GROUP BY i % 3) s)
     = (SELECT tributary.hll_agg(i)::text FROM generate_series(1, 1500) i) AS exact_parts_merge;
-- a store wider than 4096 bins collapses its smallest magnitudes the same way in any order
CREATE TEMP VIEW sk_wide AS
SELECT i, power(10, i / 10.0)::float8 AS v FROM generate_series(-300, 300) i;
SELECT tributary.ddsketch_agg(v ORDER BY v)::text
         = tributary.ddsketch_agg(v ORDER BY v DESC)::text AS collapse_order,
       (SELECT tributary.ddsketch_merge(d)::text
        FROM (SELECT tributary.ddsketch_agg(v) AS d FROM sk_wide GROUP BY i % 5) s)
         = tributary.ddsketch_agg(v)::text AS collapse_merge,
       tributary.approx_quantile(v, 1) = max(v) AS max_exact,
       tributary.approx_quantile(v, 0) = min(v) AS min_exact,
       round(tributary.approx_quantile(v, 0.9)::numeric / 1e24, 2) AS p90_over_1e24
FROM sk_wide;

--
-- Parallel aggregation: partial states from workers, combined, give the serial results.
--
CREATE TABLE sk_par AS SELECT * FROM sk_mid;
INSERT INTO sk_par SELECT i + 20000, g, k, x * 1.5 FROM sk_mid;
INSERT INTO sk_par SELECT i + 40000, g, k + 3000, -x FROM sk_mid;
ANALYZE sk_par;
CREATE VIEW sk_par_results AS
SELECT tributary.completeness(x) AS completeness,
       tributary.approx_distinct(k) AS distinct_k,
       tributary.hll_agg(k)::text AS hll,
       tributary.hll_agg(x)::text AS hll_x,
       tributary.ddsketch_agg(x)::text AS dds,
       tributary.approx_quantile(x, 0.5) AS p50,
       tributary.approx_quantile(x, ARRAY[0.01, 0.9, 0.99]) AS ps,
       sk_bits(tributary.exact_avg(x)) AS avg_bits,
       sk_bits(tributary.exact_stddev(x)) AS stddev_bits
FROM sk_par;
CREATE VIEW sk_par_grouped AS
SELECT g, tributary.completeness(k) AS completeness, tributary.hll_agg(k)::text AS hll,
       tributary.ddsketch_agg(x)::text AS dds, sk_bits(tributary.exact_avg(x)) AS avg_bits,
       sk_bits(tributary.exact_stddev(x)) AS stddev_bits,
       tributary.approx_quantile(x, ARRAY[0.5, 0.99]) AS ps
FROM sk_par GROUP BY g;
SET max_parallel_workers_per_gather = 0;
CREATE TEMP TABLE sk_serial AS SELECT * FROM sk_par_results;
CREATE TEMP TABLE sk_serial_grouped AS SELECT * FROM sk_par_grouped;
RESET max_parallel_workers_per_gather;
SET force_parallel_mode = on;
SET parallel_setup_cost = 0;
SET parallel_tuple_cost = 0;
SET min_parallel_table_scan_size = 0;
SET max_parallel_workers_per_gather = 2;
SET parallel_leader_participation = off;
EXPLAIN (COSTS OFF) SELECT * FROM sk_par_results;
SELECT (SELECT row(s.*)::text FROM sk_serial s)
     = (SELECT row(p.*)::text FROM sk_par_results p) AS parallel_equals_serial;
SET enable_hashagg = off;
EXPLAIN (COSTS OFF) SELECT * FROM sk_par_grouped;
SELECT count(*) AS groups,
       count(*) FILTER (WHERE row(s.*)::text = row(p.*)::text) AS equal_groups
FROM sk_serial_grouped s JOIN sk_par_grouped p USING (g);
RESET enable_hashagg;
SET parallel_leader_participation = on;
SELECT (SELECT row(s.*)::text FROM sk_serial s)
     = (SELECT row(p.*)::text FROM sk_par_results p) AS with_leader_equals_serial;
RESET force_parallel_mode;
RESET parallel_setup_cost;
RESET parallel_tuple_cost;
RESET min_parallel_table_scan_size;
RESET max_parallel_workers_per_gather;
RESET parallel_leader_participation;

--
-- Error bounds on 10^6 values: distinct counts within 2 %, quantiles within 1 % of
-- percentile_disc; exact_avg and exact_stddev against numeric arithmetic on the values'
-- exact decimal text.
--
SELECT setseed(0.5);
CREATE TEMP TABLE sk_big AS
SELECT i,
       random() AS uniform,
       sqrt(-2 * ln(1 - random())) * cos(2 * pi() * random()) AS normal,
       exp(sqrt(-2 * ln(1 - random())) * cos(2 * pi() * random())) AS lognormal,
       -ln(1 - random()) AS exponential,
       floor(random() * 20) - 5 AS duplicates,
       1.7e9 + sqrt(-2 * ln(1 - random())) * cos(2 * pi() * random()) AS epoch
FROM generate_series(1, 1000000) i;
SELECT count(*) FROM sk_big;

SELECT abs(tributary.approx_distinct(i) - 1000000) / 1e6 <= 0.02 AS int_ok,
       abs(tributary.approx_distinct(i::text) - 1000000) / 1e6 <= 0.02 AS text_ok,
       abs(tributary.approx_distinct(i::bigint * 7919 % 1000003) - 1000000) / 1e6 <= 0.02 AS permuted_ok,
       tributary.approx_distinct(duplicates) AS duplicates_exact
FROM sk_big;
SELECT abs(a - e)::float8 / e <= 0.02 AS uniform_distinct_ok
FROM (SELECT tributary.approx_distinct(uniform) AS a, count(DISTINCT uniform) AS e FROM sk_big) s;

CREATE FUNCTION sk_quantiles_ok(approx float8[], exact float8[]) RETURNS boolean
LANGUAGE sql IMMUTABLE AS $$
    SELECT bool_and(abs(a - e) <= 0.01 * abs(e)) FROM unnest(approx, exact) q(a, e)
$$;
SELECT sk_quantiles_ok(tributary.approx_quantile(uniform, ARRAY[0.5, 0.9, 0.99]),
                       percentile_disc(ARRAY[0.5, 0.9, 0.99]) WITHIN GROUP (ORDER BY uniform)) AS uniform_ok,
       sk_quantiles_ok(tributary.approx_quantile(normal, ARRAY[0.5, 0.9, 0.99]),
                       percentile_disc(ARRAY[0.5, 0.9, 0.99]) WITHIN GROUP (ORDER BY normal)) AS normal_ok,
       sk_quantiles_ok(tributary.approx_quantile(lognormal, ARRAY[0.5, 0.9, 0.99]),
                       percentile_disc(ARRAY[0.5, 0.9, 0.99]) WITHIN GROUP (ORDER BY lognormal)) AS lognormal_ok,
       sk_quantiles_ok(tributary.approx_quantile(exponential, ARRAY[0.5, 0.9, 0.99]),
                       percentile_disc(ARRAY[0.5, 0.9, 0.99]) WITHIN GROUP (ORDER BY exponential)) AS exponential_ok,
       sk_quantiles_ok(tributary.approx_quantile(duplicates, ARRAY[0.5, 0.9, 0.99]),
                       percentile_disc(ARRAY[0.5, 0.9, 0.99]) WITHIN GROUP (ORDER BY duplicates)) AS duplicates_ok,
       sk_quantiles_ok(tributary.approx_quantile(epoch, ARRAY[0.5, 0.9, 0.99]),
                       percentile_disc(ARRAY[0.5, 0.9, 0.99]) WITHIN GROUP (ORDER BY epoch)) AS epoch_ok,
       sk_quantiles_ok(tributary.approx_quantile(-lognormal, ARRAY[0.01, 0.1, 0.5]),
                       percentile_disc(ARRAY[0.01, 0.1, 0.5]) WITHIN GROUP (ORDER BY -lognormal)) AS negative_ok
FROM sk_big;

-- numeric of the shortest exact text of each value: within half an ulp of it
SELECT abs(exact_avg - numeric_avg) <= 1e-15 * mean_abs AS normal_avg_ok,
       abs(exact_stddev - numeric_stddev) <= 1e-13 * numeric_stddev AS normal_stddev_ok
FROM (SELECT tributary.exact_avg(normal), avg(normal::text::numeric)::float8 AS numeric_avg,
             avg(abs(normal)) AS mean_abs,
             tributary.exact_stddev(normal), stddev(normal::text::numeric)::float8 AS numeric_stddev
      FROM sk_big) s;
SELECT abs(exact_avg - numeric_avg) <= 1e-15 * numeric_avg AS epoch_avg_ok,
       abs(exact_stddev - numeric_stddev) <= 1e-9 * numeric_stddev AS epoch_stddev_ok,
       abs(exact_stddev - 1) < 0.01 AS epoch_stddev_near_1
FROM (SELECT tributary.exact_avg(epoch), avg(epoch::text::numeric)::float8 AS numeric_avg,
             tributary.exact_stddev(epoch), stddev(epoch::text::numeric)::float8 AS numeric_stddev
      FROM sk_big) s;
-- and other orders give the same bits
SELECT count(DISTINCT (sk_bits(a), sk_bits(s))) AS distinct_results
FROM (SELECT tributary.exact_avg(epoch) AS a, tributary.exact_stddev(epoch) AS s FROM sk_big
      UNION ALL
      SELECT tributary.exact_avg(epoch ORDER BY epoch DESC), tributary.exact_stddev(epoch ORDER BY epoch)
      FROM sk_big) r;

DROP TABLE sk_big;
DROP FUNCTION sk_quantiles_ok(float8[], float8[]);
DROP VIEW sk_par_grouped;
DROP VIEW sk_par_results;
DROP VIEW sk_wide;
DROP TABLE sk_par, sk_mid, sk_stored, sk_stored_again, sk_serial, sk_serial_grouped;
DROP FUNCTION sk_bits(float8);
