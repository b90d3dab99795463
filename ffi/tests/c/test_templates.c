/* C tests of span templates and attribute sets, run by ffi/tests/c_abi.rs
 * like test_abi.c (ASan + UBSan, valgrind, shared and static library).
 *
 * usage: test_templates ENDPOINT templates SCALE
 * Prints expect_received / expect_logs / expect_points for the receiver. */
#define _GNU_SOURCE
#include <inttypes.h>
#include <stdint.h>

#include "otlpflow.h"
#include "common.h"

static int templates(const char *endpoint, uint64_t n) {
  otlpflow_pipeline *p = start(endpoint);
  otlpflow_pipeline *other = start(endpoint);
  otlpflow_scope scope, other_scope;
  OK(otlpflow_pipeline_scope(p, s("c-templates"), s("1.0"), &scope));
  OK(otlpflow_pipeline_scope(other, s("c-templates"), s("1.0"), &other_scope));

  /* Static attributes of every kind of value, an array among them. */
  otlpflow_value tags[2];
  memset(tags, 0, sizeof tags);
  tags[0].kind = OTLPFLOW_VALUE_KIND_STR;
  tags[0].str = s("blue");
  tags[1].kind = OTLPFLOW_VALUE_KIND_I64;
  tags[1].i64 = 7;
  otlpflow_attribute statics[4];
  memset(statics, 0, sizeof statics);
  statics[0].key = s("http.request.method");
  statics[0].value.kind = OTLPFLOW_VALUE_KIND_STR;
  statics[0].value.str = s("GET");
  statics[1].key = s("http.response.status_code");
  statics[1].value.kind = OTLPFLOW_VALUE_KIND_I64;
  statics[1].value.i64 = 200;
  statics[2].key = s("sampled");
  statics[2].value.kind = OTLPFLOW_VALUE_KIND_BOOL;
  statics[2].value.boolean = true;
  statics[3].key = s("tags");
  statics[3].value.kind = OTLPFLOW_VALUE_KIND_ARRAY;
  statics[3].value.array = tags;
  statics[3].value.array_len = 2;

  otlpflow_span_template *tmpl = NULL;
  OK(otlpflow_pipeline_span_template(p, &scope, s("GET /items/{id}"), OTLPFLOW_SPAN_KIND_SERVER,
                                     statics, 4, &tmpl));
  otlpflow_attribute_set *set = NULL;
  OK(otlpflow_attribute_set_new(statics, 4, &set));

  otlpflow_attribute item;
  memset(&item, 0, sizeof item);
  item.key = s("app.item_id");
  item.value.kind = OTLPFLOW_VALUE_KIND_I64;
  otlpflow_event ev;
  memset(&ev, 0, sizeof ev);
  ev.name = s("cache.miss");
  for (uint64_t i = 0; i < n; i++) {
    otlpflow_span span;
    memset(&span, 0, sizeof span);
    span.trace_id[0] = 1;
    span.trace_id[15] = (uint8_t)(i / 100 + 1);
    memcpy(span.span_id, &i, sizeof i);
    span.span_id[7] = 0x80;
    span.start_time_unix_nano = 1700000000000000000ull + i;
    span.end_time_unix_nano = span.start_time_unix_nano + 1000;
    item.value.i64 = (int64_t)i;
    span.attributes = &item;
    span.attributes_len = 1;
    ev.time_unix_nano = span.start_time_unix_nano + 500;
    span.events = &ev;
    span.events_len = 1;
    span.status_code = OTLPFLOW_STATUS_CODE_OK;
    OK(otlpflow_pipeline_record_templated_span(p, tmpl, &span));
    /* The same span by name, kind and set. */
    span.name = s("GET /items/{id}");
    span.kind = OTLPFLOW_SPAN_KIND_SERVER;
    OK(otlpflow_pipeline_record_span_with_set(p, &scope, &span, set));

    otlpflow_log_record log;
    memset(&log, 0, sizeof log);
    log.time_unix_nano = span.end_time_unix_nano;
    log.severity_number = 9;
    log.attributes = &item;
    log.attributes_len = 1;
    OK(otlpflow_pipeline_record_log_with_set(p, &scope, &log, set));

    otlpflow_metric_point m;
    memset(&m, 0, sizeof m);
    m.name = s("c.items");
    m.type_ = OTLPFLOW_METRIC_TYPE_GAUGE;
    m.as_int = (int64_t)i;
    m.time_unix_nano = span.end_time_unix_nano;
    OK(otlpflow_pipeline_record_metric_with_set(p, &scope, &m, set));
  }

  /* Refusals: a span that names itself, wrong or missing handles, a
   * template used with another pipeline. */
  otlpflow_span named;
  memset(&named, 0, sizeof named);
  named.trace_id[0] = 1;
  named.span_id[0] = 1;
  named.name = s("not allowed");
  CHECK(otlpflow_pipeline_record_templated_span(p, tmpl, &named) ==
        OTLPFLOW_RESULT_INVALID_ARGUMENT);
  named.name = s("");
  named.kind = OTLPFLOW_SPAN_KIND_CLIENT;
  CHECK(otlpflow_pipeline_record_templated_span(p, tmpl, &named) ==
        OTLPFLOW_RESULT_INVALID_ARGUMENT);
  named.kind = OTLPFLOW_SPAN_KIND_UNSPECIFIED;
  CHECK(otlpflow_pipeline_record_templated_span(p, NULL, &named) == OTLPFLOW_RESULT_NULL_ARGUMENT);
  CHECK(otlpflow_pipeline_record_templated_span(p, (const otlpflow_span_template *)set, &named) ==
        OTLPFLOW_RESULT_INVALID_HANDLE);
  CHECK(otlpflow_pipeline_record_span_with_set(p, &scope, &named,
                                               (const otlpflow_attribute_set *)tmpl) ==
        OTLPFLOW_RESULT_INVALID_HANDLE);
  CHECK(otlpflow_pipeline_record_templated_span(other, tmpl, &named) ==
        OTLPFLOW_RESULT_INVALID_SCOPE);
  otlpflow_span_template *none = NULL;
  CHECK(otlpflow_pipeline_span_template(p, &scope, s("x"), 99, NULL, 0, &none) ==
        OTLPFLOW_RESULT_INVALID_ARGUMENT);
  CHECK(otlpflow_attribute_set_new(statics, 4, NULL) == OTLPFLOW_RESULT_NULL_ARGUMENT);

  OK(otlpflow_span_template_free(tmpl));
  CHECK(otlpflow_span_template_free(tmpl) == OTLPFLOW_RESULT_INVALID_HANDLE);
  CHECK(otlpflow_pipeline_record_templated_span(p, tmpl, &named) ==
        OTLPFLOW_RESULT_INVALID_HANDLE);
  OK(otlpflow_attribute_set_free(set));
  CHECK(otlpflow_attribute_set_free(set) == OTLPFLOW_RESULT_INVALID_HANDLE);

  otlpflow_stats st = {.size = sizeof(otlpflow_stats)};
  OK(otlpflow_pipeline_shutdown(p, 10000, &st));
  CHECK(st.in_flight == 0);
  CHECK(st.exported == 4 * n);
  OK(otlpflow_pipeline_shutdown(other, 10000, &st));
  CHECK(st.exported == 0);
  CHECK(st.dropped[OTLPFLOW_DROP_REASON_INVALID] == 1);
  OK(otlpflow_pipeline_free(p));
  OK(otlpflow_pipeline_free(other));
  printf("expect_received=%" PRIu64 "\nexpect_logs=%" PRIu64 "\nexpect_points=%" PRIu64 "\n",
         2 * n, n, n);
  return 0;
}

int main(int argc, char **argv) {
  if (argc != 4 || strcmp(argv[2], "templates") != 0) {
    fprintf(stderr, "usage: %s ENDPOINT templates SCALE\n", argv[0]);
    return 2;
  }
  uint64_t scale = strtoull(argv[3], NULL, 10);
  if (scale == 0) scale = 1;
  return templates(argv[1], 2000 / scale);
}
