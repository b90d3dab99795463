/* C tests of otlpflow's ABI, run by ffi/tests/c_abi.rs against the shared
 * and the static library, under AddressSanitizer + UBSan and under valgrind.
 *
 * usage: test_abi ENDPOINT MODE SCALE
 *   MODE  basic | threads | bad_input | fork | signals | handles
 *   SCALE divides the span counts (valgrind is slow)
 * Prints "expect_received=N": the spans the receiver must have counted
 * (and, for signals, expect_logs=N and expect_points=N). */
#define _GNU_SOURCE
#include <inttypes.h>
#include <math.h>
#include <stddef.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "otlpflow.h"
#include "common.h"

/* Records span `i` of producer `seed` with every kind of value. */
static otlpflow_result record(const otlpflow_pipeline *p, const otlpflow_scope *scope,
                              uint64_t seed, uint64_t i) {
  otlpflow_value arr[2];
  memset(arr, 0, sizeof arr);
  arr[0].kind = OTLPFLOW_VALUE_KIND_I64;
  arr[0].i64 = 1;
  arr[1].kind = OTLPFLOW_VALUE_KIND_STR;
  arr[1].str = s("two");
  otlpflow_attribute attrs[6];
  memset(attrs, 0, sizeof attrs);
  attrs[0].key = s("http.request.method");
  attrs[0].value.kind = OTLPFLOW_VALUE_KIND_STR;
  attrs[0].value.str = s("GET");
  attrs[1].key = s("app.item_id");
  attrs[1].value.kind = OTLPFLOW_VALUE_KIND_I64;
  attrs[1].value.i64 = (int64_t)i;
  attrs[2].key = s("cache.hit");
  attrs[2].value.kind = OTLPFLOW_VALUE_KIND_BOOL;
  attrs[2].value.boolean = true;
  attrs[3].key = s("ratio");
  attrs[3].value.kind = OTLPFLOW_VALUE_KIND_F64;
  attrs[3].value.f64 = 0.5;
  attrs[4].key = s("blob");
  attrs[4].value.kind = OTLPFLOW_VALUE_KIND_BYTES;
  attrs[4].value.str.ptr = "\x01\xff\x00";
  attrs[4].value.str.len = 3;
  attrs[5].key = s("list");
  attrs[5].value.kind = OTLPFLOW_VALUE_KIND_ARRAY;
  attrs[5].value.array = arr;
  attrs[5].value.array_len = 2;

  otlpflow_attribute ev_attr;
  memset(&ev_attr, 0, sizeof ev_attr);
  ev_attr.key = s("cache.key");
  ev_attr.value.kind = OTLPFLOW_VALUE_KIND_I64;
  ev_attr.value.i64 = (int64_t)(i % 4096);
  otlpflow_event ev;
  memset(&ev, 0, sizeof ev);
  ev.time_unix_nano = 1700000000000000000ull + i;
  ev.name = s("cache.miss");
  ev.attributes = &ev_attr;
  ev.attributes_len = 1;
  otlpflow_link link;
  memset(&link, 0, sizeof link);
  memset(link.trace_id, 9, sizeof link.trace_id);
  memset(link.span_id, 8, sizeof link.span_id);

  otlpflow_span span;
  memset(&span, 0, sizeof span);
  memcpy(span.trace_id, &seed, sizeof seed);
  span.trace_id[15] = 1;
  memcpy(span.span_id, &i, sizeof i);
  span.span_id[7] ^= 0x80;
  span.name = s("GET /api/v1/items/{id}");
  span.kind = OTLPFLOW_SPAN_KIND_SERVER;
  span.start_time_unix_nano = 1700000000000000000ull;
  span.end_time_unix_nano = 1700000000000000000ull + 1000;
  span.attributes = attrs;
  span.attributes_len = 6;
  span.events = &ev;
  span.events_len = 1;
  span.links = &link;
  span.links_len = 1;
  span.status_code = OTLPFLOW_STATUS_CODE_OK;
  return otlpflow_pipeline_record_span(p, scope, &span);
}

static int basic(const char *endpoint, uint64_t n) {
  otlpflow_pipeline *p = start(endpoint);
  otlpflow_scope scope;
  OK(otlpflow_pipeline_scope(p, s("c.test"), s("1.0"), &scope));
  for (uint64_t i = 0; i < n; i++) OK(record(p, &scope, 1, i));

  otlpflow_span batch[10];
  memset(batch, 0, sizeof batch);
  for (int i = 0; i < 10; i++) {
    memset(batch[i].trace_id, 3, 16);
    memset(batch[i].span_id, i + 1, 8);
    batch[i].name = s("batch");
  }
  batch[4].kind = 77; /* invalid: refused, the others go through */
  size_t accepted = 0, dropped = 0;
  OK(otlpflow_pipeline_record_batch(p, &scope, batch, 10, &accepted, &dropped));
  CHECK(accepted == 9 && dropped == 1);

  /* Waiting for delivery: the same spans with new ids; the invalid one is
     counted in the outcome, the others acknowledged by the receiver. */
  for (int i = 0; i < 10; i++) memset(batch[i].span_id, i + 21, 8);
  otlpflow_delivery d = {.size = sizeof(otlpflow_delivery)};
  CHECK(otlpflow_pipeline_record_batch_wait(p, &scope, batch, 10, 10000, NULL) == OTLPFLOW_RESULT_NULL_ARGUMENT);
  otlpflow_delivery small = {.size = sizeof(size_t)};
  CHECK(otlpflow_pipeline_record_batch_wait(p, &scope, batch, 10, 10000, &small) == OTLPFLOW_RESULT_INVALID_ARGUMENT);
  OK(otlpflow_pipeline_record_batch_wait(p, &scope, batch, 10, 10000, &d));
  CHECK(d.size == sizeof(otlpflow_delivery) && d.records == 10 && d.delivered == 9 && d.rejected == 0);
  CHECK(d.dropped[OTLPFLOW_DROP_REASON_INVALID] == 1 && d.message[0] == 0);

  otlpflow_stats st = {.size = sizeof(otlpflow_stats)};
  OK(otlpflow_pipeline_flush(p, 10000, &st));
  /* Per endpoint: one per signal here, the traces one took every span. */
  size_t count = 0, seen = 0;
  OK(otlpflow_pipeline_endpoint_stats(p, 0, NULL, &count));
  CHECK(count == 3);
  uint64_t traces_exported = 0;
  otlpflow_endpoint_stats es = {.size = sizeof(otlpflow_endpoint_stats)};
  for (size_t i = 0; otlpflow_pipeline_endpoint_stats(p, i, &es, &count) == OTLPFLOW_RESULT_OK; i++) {
    CHECK(es.size == sizeof es && es.endpoint[0] != 0 && strstr(endpoint, es.endpoint) != NULL);
    CHECK(es.breaker_open == 0 && es.failed == 0);
    if (es.signal == OTLPFLOW_SIGNAL_TRACES) {
      CHECK(es.requests >= 1);
      traces_exported += es.exported;
    }
    seen++;
  }
  CHECK(seen == count && traces_exported == st.exported);
  CHECK(otlpflow_pipeline_endpoint_stats(p, count, &es, NULL) == OTLPFLOW_RESULT_INVALID_ARGUMENT);
  otlpflow_endpoint_stats tiny = {.size = sizeof(size_t)};
  CHECK(otlpflow_pipeline_endpoint_stats(p, 0, &tiny, NULL) == OTLPFLOW_RESULT_INVALID_ARGUMENT);
  CHECK(otlpflow_pipeline_endpoint_stats(NULL, 0, &es, &count) == OTLPFLOW_RESULT_NULL_ARGUMENT);
  uint32_t health = 99;
  OK(otlpflow_pipeline_health(p, &health));
  CHECK(health == OTLPFLOW_HEALTH_HEALTHY);
  CHECK(otlpflow_pipeline_health(p, NULL) == OTLPFLOW_RESULT_NULL_ARGUMENT);
  CHECK(st.accepted == n + 18);
  CHECK(st.exported == n + 18);
  /* The spread of the export latency, and the rates. */
  CHECK(st.export_latency_min_ns > 0 && st.export_latency_min_ns <= st.export_latency_mean_ns &&
        st.export_latency_mean_ns <= st.export_latency_max_ns);
  CHECK(st.uptime_ms > 0 && st.exported_per_sec_since_start > 0 && st.rate_window_ms > 0);
  CHECK(st.dropped_per_sec[OTLPFLOW_DROP_REASON_FULL] == 0 && st.failed_per_sec[OTLPFLOW_FAIL_REASON_EXHAUSTED] == 0);
  CHECK(st.offered == st.accepted + st.dropped[OTLPFLOW_DROP_REASON_FULL] + st.dropped[OTLPFLOW_DROP_REASON_TOO_LARGE] +
                          st.dropped[OTLPFLOW_DROP_REASON_SHUTDOWN] + st.dropped[OTLPFLOW_DROP_REASON_INVALID]);

  /* UINT64_MAX: no limit (it used to wrap into the past and fail all). */
  OK(otlpflow_pipeline_shutdown(p, UINT64_MAX, &st));
  CHECK(st.in_flight == 0 && st.failed == 0);
  CHECK(otlpflow_pipeline_shutdown(p, 1000, NULL) == OTLPFLOW_RESULT_SHUTDOWN);
  CHECK(record(p, &scope, 1, 0) == OTLPFLOW_RESULT_SHUTDOWN);
  CHECK(otlpflow_pipeline_flush(p, 1000, NULL) == OTLPFLOW_RESULT_SHUTDOWN);
  OK(otlpflow_pipeline_stats(p, &st));
  CHECK(st.dropped[OTLPFLOW_DROP_REASON_SHUTDOWN] == 1);
  OK(otlpflow_pipeline_free(p));
  /* A second free is refused and frees nothing. */
  CHECK(otlpflow_pipeline_free(p) == OTLPFLOW_RESULT_INVALID_HANDLE);
  OK(otlpflow_pipeline_free(NULL));
  printf("expect_received=%" PRIu64 "\n", n + 18);
  return 0;
}

struct worker_arg {
  const otlpflow_pipeline *p;
  otlpflow_scope scope;
  uint64_t seed, n;
};

static void *worker(void *arg) {
  struct worker_arg *w = arg;
  for (uint64_t i = 0; i < w->n; i++) {
    if (record(w->p, &w->scope, w->seed, i) != OTLPFLOW_RESULT_OK) return (void *)1;
  }
  return NULL;
}

static int threads(const char *endpoint, uint64_t n) {
  otlpflow_pipeline *p = start(endpoint);
  enum { T = 4 };
  pthread_t t[T];
  struct worker_arg args[T];
  for (int i = 0; i < T; i++) {
    args[i].p = p;
    OK(otlpflow_pipeline_scope(p, s("c.threads"), s("1"), &args[i].scope));
    args[i].seed = (uint64_t)i + 100;
    args[i].n = n;
    CHECK(pthread_create(&t[i], NULL, worker, &args[i]) == 0);
  }
  for (int i = 0; i < T; i++) {
    void *ret = NULL;
    CHECK(pthread_join(t[i], &ret) == 0);
    CHECK(ret == NULL);
  }
  otlpflow_stats st = {.size = sizeof(otlpflow_stats)};
  OK(otlpflow_pipeline_shutdown(p, 10000, &st));
  CHECK(st.exported == T * n && st.in_flight == 0);
  otlpflow_pipeline_free(p);
  printf("expect_received=%" PRIu64 "\n", (uint64_t)T * n);
  return 0;
}

static int bad_input(const char *endpoint) {
  /* Config errors: each names its problem. */
  otlpflow_config *cfg = NULL;
  CHECK(otlpflow_config_new(NULL) == OTLPFLOW_RESULT_NULL_ARGUMENT);
  OK(otlpflow_config_new(&cfg));
  CHECK(otlpflow_config_set_endpoint(NULL, s("x")) == OTLPFLOW_RESULT_NULL_ARGUMENT);
  otlpflow_str bad_utf8 = {"\xc3\x28", 2};
  CHECK(otlpflow_config_set_endpoint(cfg, bad_utf8) == OTLPFLOW_RESULT_INVALID_UTF8);
  otlpflow_str null_str = {NULL, 5};
  CHECK(otlpflow_config_set_service_name(cfg, null_str) == OTLPFLOW_RESULT_NULL_ARGUMENT);
  otlpflow_str huge = {"x", SIZE_MAX};
  CHECK(otlpflow_config_set_service_name(cfg, huge) == OTLPFLOW_RESULT_INVALID_ARGUMENT);
  CHECK(otlpflow_config_set_compression(cfg, 9) == OTLPFLOW_RESULT_INVALID_ARGUMENT);
  CHECK(otlpflow_config_set_policy(cfg, 5, 0) == OTLPFLOW_RESULT_INVALID_ARGUMENT);
  CHECK(otlpflow_config_set_protocol(cfg, 7) == OTLPFLOW_RESULT_INVALID_ARGUMENT);
  OK(otlpflow_config_set_protocol(cfg, OTLPFLOW_PROTOCOL_GRPC));
  otlpflow_value v;
  memset(&v, 0, sizeof v); /* kind 0 is no kind */
  CHECK(otlpflow_config_add_resource_attribute(cfg, s("k"), &v) == OTLPFLOW_RESULT_INVALID_ARGUMENT);
  CHECK(otlpflow_config_add_resource_attribute(cfg, s("k"), NULL) == OTLPFLOW_RESULT_NULL_ARGUMENT);
  OK(otlpflow_config_set_endpoint(cfg, s("ftp://nowhere")));
  otlpflow_pipeline *p = NULL;
  CHECK(otlpflow_pipeline_start(cfg, &p) == OTLPFLOW_RESULT_INVALID_CONFIG);
  CHECK(p == NULL);
  char small[4];
  size_t len = 0;
  CHECK(otlpflow_config_error(cfg, small, sizeof small, &len) == OTLPFLOW_RESULT_BUFFER_TOO_SMALL);
  char msg[256];
  OK(otlpflow_config_error(cfg, msg, sizeof msg, &len));
  CHECK(len == strlen(msg) && strstr(msg, "endpoint") != NULL);
  /* A setting by name: a bad value or an unknown name is refused, the
     message names the setting and never shows the value. */
  CHECK(otlpflow_config_set(cfg, s("memory_budget"), s("lots-s3cret")) == OTLPFLOW_RESULT_INVALID_CONFIG);
  OK(otlpflow_config_error(cfg, msg, sizeof msg, &len));
  CHECK(strstr(msg, "memory_budget") != NULL && strstr(msg, "s3cret") == NULL);
  CHECK(otlpflow_config_set(cfg, s("no_such_setting"), s("1")) == OTLPFLOW_RESULT_INVALID_CONFIG);
  OK(otlpflow_config_error(cfg, msg, sizeof msg, &len));
  CHECK(strstr(msg, "unknown setting") != NULL);
  CHECK(otlpflow_config_set(cfg, s("memory_budget"), bad_utf8) == OTLPFLOW_RESULT_INVALID_UTF8);
  OK(otlpflow_config_set_ring_bytes(cfg, 1000));
  OK(otlpflow_config_set_endpoint(cfg, s(endpoint)));
  CHECK(otlpflow_pipeline_start(cfg, &p) == OTLPFLOW_RESULT_INVALID_CONFIG);
  OK(otlpflow_config_error(cfg, msg, sizeof msg, &len));
  CHECK(strstr(msg, "ring_bytes") != NULL);
  OK(otlpflow_config_free(cfg));
  CHECK(otlpflow_config_free(cfg) == OTLPFLOW_RESULT_INVALID_HANDLE);

  /* Record errors. */
  p = start(endpoint);
  otlpflow_scope scope;
  OK(otlpflow_pipeline_scope(p, s("c.bad"), s("1"), &scope));
  otlpflow_span span;
  memset(&span, 0, sizeof span);
  memset(span.trace_id, 1, 16);
  memset(span.span_id, 1, 8);
  span.name = s("ok");
  CHECK(otlpflow_pipeline_record_span(NULL, &scope, &span) == OTLPFLOW_RESULT_NULL_ARGUMENT);
  CHECK(otlpflow_pipeline_record_span(p, NULL, &span) == OTLPFLOW_RESULT_NULL_ARGUMENT);
  CHECK(otlpflow_pipeline_record_span(p, &scope, NULL) == OTLPFLOW_RESULT_NULL_ARGUMENT);
  otlpflow_scope foreign = scope;
  foreign.pipeline ^= 0xdead;
  CHECK(otlpflow_pipeline_record_span(p, &foreign, &span) == OTLPFLOW_RESULT_INVALID_SCOPE);
  foreign = scope;
  foreign.id = 4000000;
  CHECK(otlpflow_pipeline_record_span(p, &foreign, &span) == OTLPFLOW_RESULT_INVALID_SCOPE);
  span.name = bad_utf8;
  CHECK(otlpflow_pipeline_record_span(p, &scope, &span) == OTLPFLOW_RESULT_INVALID_UTF8);
  span.name = s("ok");
  span.kind = 6;
  CHECK(otlpflow_pipeline_record_span(p, &scope, &span) == OTLPFLOW_RESULT_INVALID_ARGUMENT);
  span.kind = 0;
  span.status_code = 3;
  CHECK(otlpflow_pipeline_record_span(p, &scope, &span) == OTLPFLOW_RESULT_INVALID_ARGUMENT);
  span.status_code = 0;
  span.attributes = NULL;
  span.attributes_len = 3;
  CHECK(otlpflow_pipeline_record_span(p, &scope, &span) == OTLPFLOW_RESULT_NULL_ARGUMENT);
  static otlpflow_attribute many[OTLPFLOW_MAX_ATTRIBUTES + 1];
  for (int i = 0; i < OTLPFLOW_MAX_ATTRIBUTES + 1; i++) {
    many[i].key = s("k");
    many[i].value.kind = OTLPFLOW_VALUE_KIND_BOOL;
  }
  span.attributes = many;
  span.attributes_len = OTLPFLOW_MAX_ATTRIBUTES + 1;
  CHECK(otlpflow_pipeline_record_span(p, &scope, &span) == OTLPFLOW_RESULT_TOO_MANY_ATTRIBUTES);
  span.attributes_len = 1;
  many[0].value.kind = 42;
  CHECK(otlpflow_pipeline_record_span(p, &scope, &span) == OTLPFLOW_RESULT_INVALID_ARGUMENT);
  many[0].value.kind = OTLPFLOW_VALUE_KIND_ARRAY;
  many[0].value.array = NULL;
  many[0].value.array_len = 2;
  CHECK(otlpflow_pipeline_record_span(p, &scope, &span) == OTLPFLOW_RESULT_NULL_ARGUMENT);
  many[0].value.kind = OTLPFLOW_VALUE_KIND_BOOL;
  span.events_len = OTLPFLOW_MAX_EVENTS + 1;
  CHECK(otlpflow_pipeline_record_span(p, &scope, &span) == OTLPFLOW_RESULT_TOO_MANY_ATTRIBUTES);
  span.events_len = 0;
  /* A span too large for the ring. */
  static char big[3 << 20];
  memset(big, 'a', sizeof big);
  otlpflow_str big_name = {big, sizeof big};
  span.name = big_name;
  CHECK(otlpflow_pipeline_record_span(p, &scope, &span) == OTLPFLOW_RESULT_TOO_LARGE);
  span.name = s("ok");
  OK(otlpflow_pipeline_record_span(p, &scope, &span));
  size_t acc, drp;
  CHECK(otlpflow_pipeline_record_batch(p, &scope, NULL, 2, &acc, &drp) == OTLPFLOW_RESULT_NULL_ARGUMENT);
  CHECK(otlpflow_pipeline_record_batch(p, &scope, &span, 1, NULL, &drp) == OTLPFLOW_RESULT_NULL_ARGUMENT);
  CHECK(otlpflow_pipeline_stats(p, NULL) == OTLPFLOW_RESULT_NULL_ARGUMENT);
  CHECK(otlpflow_pipeline_scope(p, bad_utf8, s("1"), &scope) == OTLPFLOW_RESULT_INVALID_UTF8);
  CHECK(strcmp(otlpflow_result_message(123456), "unknown result code") == 0);
  CHECK(strcmp(otlpflow_version(), OTLPFLOW_VERSION) == 0);
  otlpflow_stats st = {.size = sizeof(otlpflow_stats)};
  OK(otlpflow_pipeline_shutdown(p, 10000, &st));
  CHECK(st.exported == 1 && st.dropped[OTLPFLOW_DROP_REASON_TOO_LARGE] == 1 && st.dropped[OTLPFLOW_DROP_REASON_INVALID] == 2);
  otlpflow_pipeline_free(p);
  printf("expect_received=1\n");
  return 0;
}

static int fork_test(const char *endpoint, uint64_t n) {
  otlpflow_pipeline *p = start(endpoint);
  otlpflow_scope scope;
  OK(otlpflow_pipeline_scope(p, s("c.fork"), s("1"), &scope));
  for (uint64_t i = 0; i < n; i++) OK(record(p, &scope, 7, i));
  OK(otlpflow_pipeline_flush(p, 10000, NULL));
  fflush(stdout);
  pid_t pid = fork();
  CHECK(pid >= 0);
  if (pid == 0) {
    for (uint64_t i = 0; i < n; i++) OK(record(p, &scope, 8, i));
    otlpflow_stats st = {.size = sizeof(otlpflow_stats)};
    OK(otlpflow_pipeline_shutdown(p, 10000, &st));
    /* The parent's n were exported before the fork; the child adds n. */
    int ok = st.exported == 2 * n && st.in_flight == 0;
    otlpflow_pipeline_free(p);
    _exit(ok ? 0 : 3);
  }
  for (uint64_t i = 0; i < n; i++) OK(record(p, &scope, 9, i));
  int status = 0;
  CHECK(waitpid(pid, &status, 0) == pid);
  CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);
  otlpflow_stats st = {.size = sizeof(otlpflow_stats)};
  OK(otlpflow_pipeline_shutdown(p, 10000, &st));
  CHECK(st.exported == 2 * n);
  otlpflow_pipeline_free(p);
  printf("expect_received=%" PRIu64 "\n", 3 * n);
  return 0;
}

/* Log records, metric points and instruments. */
static int signals(const char *endpoint, uint64_t n) {
  otlpflow_pipeline *p = start(endpoint);
  otlpflow_scope scope;
  OK(otlpflow_pipeline_scope(p, s("c-signals"), s("1.0"), &scope));
  otlpflow_attribute attr;
  memset(&attr, 0, sizeof attr);
  attr.key = s("route");
  attr.value.kind = OTLPFLOW_VALUE_KIND_STR;
  attr.value.str = s("/a");
  for (uint64_t i = 0; i < n; i++) {
    otlpflow_log_record log;
    memset(&log, 0, sizeof log);
    log.time_unix_nano = 1700000000000000000ull + i;
    log.severity_number = 9;
    log.severity_text = s("INFO");
    log.has_body = true;
    log.body.kind = OTLPFLOW_VALUE_KIND_STR;
    log.body.str = s("served from C");
    log.attributes = &attr;
    log.attributes_len = 1;
    log.trace_id[0] = 1;
    log.span_id[0] = 2;
    OK(otlpflow_pipeline_record_log(p, &scope, &log));

    otlpflow_metric_point m;
    memset(&m, 0, sizeof m);
    m.name = s("c.queue.depth");
    m.unit = s("{item}");
    m.type_ = OTLPFLOW_METRIC_TYPE_GAUGE;
    m.as_int = (int64_t)i;
    m.time_unix_nano = 1700000000000000000ull + i;
    m.attributes = &attr;
    m.attributes_len = 1;
    OK(otlpflow_pipeline_record_metric(p, &scope, &m));
  }
  /* A histogram point, and malformed input refused. */
  double bounds[2] = {1.0, 10.0};
  uint64_t counts[3] = {1, 2, 3};
  otlpflow_metric_point h;
  memset(&h, 0, sizeof h);
  h.name = s("c.latency");
  h.unit = s("ms");
  h.type_ = OTLPFLOW_METRIC_TYPE_HISTOGRAM;
  h.temporality = 1;
  h.count = 6;
  h.has_sum = true;
  h.sum = 30.5;
  h.bounds = bounds;
  h.bounds_len = 2;
  h.bucket_counts = counts;
  h.bucket_counts_len = 3;
  OK(otlpflow_pipeline_record_metric(p, &scope, &h));
  h.bucket_counts_len = 2;
  CHECK(otlpflow_pipeline_record_metric(p, &scope, &h) == OTLPFLOW_RESULT_INVALID_ARGUMENT);
  h.bucket_counts_len = 3;
  h.type_ = 99;
  CHECK(otlpflow_pipeline_record_metric(p, &scope, &h) == OTLPFLOW_RESULT_INVALID_ARGUMENT);
  otlpflow_log_record bad;
  memset(&bad, 0, sizeof bad);
  bad.severity_number = 30;
  CHECK(otlpflow_pipeline_record_log(p, &scope, &bad) == OTLPFLOW_RESULT_INVALID_ARGUMENT);
  CHECK(otlpflow_pipeline_record_log(p, &scope, NULL) == OTLPFLOW_RESULT_NULL_ARGUMENT);

  /* Instruments: a counter with two attribute sets and a histogram. */
  otlpflow_instrument *counter = NULL, *hist = NULL;
  OK(otlpflow_pipeline_instrument(p, &scope, OTLPFLOW_INSTRUMENT_KIND_COUNTER, s("c.requests"),
                                  s("{request}"), s("requests"), NULL, 0, &counter));
  OK(otlpflow_pipeline_instrument(p, &scope, OTLPFLOW_INSTRUMENT_KIND_HISTOGRAM, s("c.duration"),
                                  s("ms"), s(""), bounds, 2, &hist));
  for (int i = 0; i < 10; i++) OK(otlpflow_instrument_record(counter, 1.0, &attr, 1));
  attr.value.str = s("/b");
  for (int i = 0; i < 5; i++) OK(otlpflow_instrument_record(counter, 2.0, &attr, 1));
  for (int i = 0; i < 4; i++) OK(otlpflow_instrument_record(hist, 3.5, NULL, 0));
  CHECK(otlpflow_instrument_record(counter, -1.0, NULL, 0) == OTLPFLOW_RESULT_INVALID_ARGUMENT);
  CHECK(otlpflow_instrument_record(counter, 0.5, NULL, 0) == OTLPFLOW_RESULT_INVALID_ARGUMENT);
  /* NaN and the infinities: refused; the histogram also counts what it
   * drops (dropped_measurements, below). */
  CHECK(otlpflow_instrument_record(hist, NAN, NULL, 0) == OTLPFLOW_RESULT_INVALID_ARGUMENT);
  CHECK(otlpflow_instrument_record(hist, -INFINITY, NULL, 0) == OTLPFLOW_RESULT_INVALID_ARGUMENT);
  CHECK(otlpflow_instrument_record(counter, INFINITY, NULL, 0) == OTLPFLOW_RESULT_INVALID_ARGUMENT);
  CHECK(otlpflow_instrument_record(NULL, 1.0, NULL, 0) == OTLPFLOW_RESULT_NULL_ARGUMENT);
  otlpflow_instrument *none = NULL;
  CHECK(otlpflow_pipeline_instrument(p, &scope, 42, s("x"), s(""), s(""), NULL, 0, &none) ==
        OTLPFLOW_RESULT_INVALID_ARGUMENT);
  double unsorted[2] = {5.0, 1.0};
  CHECK(otlpflow_pipeline_instrument(p, &scope, OTLPFLOW_INSTRUMENT_KIND_HISTOGRAM, s("x"), s(""),
                                     s(""), unsorted, 2, &none) == OTLPFLOW_RESULT_INVALID_ARGUMENT);
  uint64_t points = 0;
  OK(otlpflow_pipeline_collect_metrics(p, &points));
  CHECK(points == 3);
  OK(otlpflow_instrument_free(counter));
  CHECK(otlpflow_instrument_free(counter) == OTLPFLOW_RESULT_INVALID_HANDLE);
  OK(otlpflow_instrument_free(hist));
  otlpflow_stats st = {.size = sizeof(otlpflow_stats)};
  /* Shutdown collects again (cumulative: the same three series). */
  OK(otlpflow_pipeline_shutdown(p, 10000, &st));
  CHECK(st.in_flight == 0);
  CHECK(st.dropped_measurements == 2);
  /* The mismatched histogram reached the engine and was counted there; the
   * unknown type and the bad severity were refused at the boundary. */
  CHECK(st.dropped[OTLPFLOW_DROP_REASON_INVALID] == 1);
  otlpflow_pipeline_free(p);
  printf("expect_received=0\nexpect_logs=%" PRIu64 "\nexpect_points=%" PRIu64 "\n", n,
         n + 1 + 3 + 3);
  return 0;
}

/* Handles are checked ids: a stale free after the slot was reused, a free
 * with the wrong type, use after free and numbers that were never handles
 * are refused with INVALID_HANDLE and touch nothing. */
static int handles(const char *endpoint) {
  otlpflow_config *a = NULL, *b = NULL;
  OK(otlpflow_config_new(&a));
  OK(otlpflow_config_free(a));
  /* B is made in the slot A had (the registry reuses it). */
  OK(otlpflow_config_new(&b));
  CHECK(otlpflow_config_free(a) == OTLPFLOW_RESULT_INVALID_HANDLE);
  CHECK(otlpflow_config_set_endpoint(a, s(endpoint)) == OTLPFLOW_RESULT_INVALID_HANDLE);
  /* B survived the stale free of A and works. */
  OK(otlpflow_config_set_endpoint(b, s(endpoint)));
  OK(otlpflow_config_set_service_name(b, s("c-handles")));
  otlpflow_pipeline *p = NULL;
  OK(otlpflow_pipeline_start(b, &p));
  /* A pipeline passed where a config goes, and the other way round. */
  CHECK(otlpflow_config_free((otlpflow_config *)p) == OTLPFLOW_RESULT_INVALID_HANDLE);
  CHECK(otlpflow_pipeline_free((otlpflow_pipeline *)b) == OTLPFLOW_RESULT_INVALID_HANDLE);
  CHECK(otlpflow_instrument_free((otlpflow_instrument *)p) == OTLPFLOW_RESULT_INVALID_HANDLE);
  otlpflow_stats st = {.size = sizeof(otlpflow_stats)};
  CHECK(otlpflow_pipeline_stats((const otlpflow_pipeline *)b, &st) ==
        OTLPFLOW_RESULT_INVALID_HANDLE);
  /* Numbers that were never handles: an aligned address, garbage. */
  int local = 0;
  CHECK(otlpflow_pipeline_free((otlpflow_pipeline *)&local) == OTLPFLOW_RESULT_INVALID_HANDLE);
  CHECK(otlpflow_pipeline_free((otlpflow_pipeline *)(uintptr_t)0xdeadbeefULL) ==
        OTLPFLOW_RESULT_INVALID_HANDLE);
  /* The pipeline survived all of that. */
  otlpflow_scope scope;
  OK(otlpflow_pipeline_scope(p, s("c.handles"), s("1"), &scope));
  OK(record(p, &scope, 3, 0));
  /* A versioned stats struct: too small a size is refused, an older
   * (shorter) one gets just its prefix. */
  otlpflow_stats small = {.size = 8};
  CHECK(otlpflow_pipeline_stats(p, &small) == OTLPFLOW_RESULT_INVALID_ARGUMENT);
  otlpflow_stats old;
  memset(&old, 0xAB, sizeof old);
  old.size = offsetof(otlpflow_stats, dropped);
  OK(otlpflow_pipeline_stats(p, &old));
  CHECK(old.size == offsetof(otlpflow_stats, dropped) && old.accepted == 1);
  CHECK(old.dropped[0] == 0xABABABABABABABABULL);
  OK(otlpflow_pipeline_shutdown(p, 10000, &st));
  CHECK(st.size == sizeof(otlpflow_stats) && st.exported == 1);
  CHECK(strcmp(otlpflow_drop_reason_name(OTLPFLOW_DROP_REASON_MEMORY), "memory") == 0);
  CHECK(strcmp(otlpflow_fail_reason_name(OTLPFLOW_FAIL_REASON_EXHAUSTED), "exhausted") == 0);
  CHECK(otlpflow_drop_reason_name(99) == NULL);
  OK(otlpflow_pipeline_free(p));
  CHECK(otlpflow_pipeline_free(p) == OTLPFLOW_RESULT_INVALID_HANDLE);
  OK(otlpflow_config_free(b));
  printf("expect_received=1\n");
  return 0;
}

int main(int argc, char **argv) {
  if (argc != 4) {
    fprintf(stderr, "usage: %s ENDPOINT MODE SCALE\n", argv[0]);
    return 2;
  }
  const char *endpoint = argv[1];
  const char *mode = argv[2];
  uint64_t scale = strtoull(argv[3], NULL, 10);
  if (scale == 0) scale = 1;
  if (strcmp(mode, "basic") == 0) return basic(endpoint, 5000 / scale);
  if (strcmp(mode, "threads") == 0) return threads(endpoint, 5000 / scale);
  if (strcmp(mode, "bad_input") == 0) return bad_input(endpoint);
  if (strcmp(mode, "fork") == 0) return fork_test(endpoint, 1000 / scale);
  if (strcmp(mode, "signals") == 0) return signals(endpoint, 2000 / scale);
  if (strcmp(mode, "handles") == 0) return handles(endpoint);
  fprintf(stderr, "unknown mode %s\n", mode);
  return 2;
}
