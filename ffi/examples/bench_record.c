/* Times otlpflow_pipeline_record_span from C for the benchmark span (5
 * attributes, 1 event), one thread, against a live pipeline whose worker
 * exports to ENDPOINT. Prints the median of 7 rounds in ns per span.
 * With "template", the same spans through a span template holding the
 * name, kind and the four static attributes
 * (otlpflow_pipeline_record_templated_span).
 *   bench_record ENDPOINT [SPANS_PER_ROUND [template]] */
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "otlpflow.h"

static otlpflow_str str(const char *s) { return (otlpflow_str){s, strlen(s)}; }

static double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static int cmp(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return (x > y) - (x < y);
}

int main(int argc, char **argv) {
  if (argc < 2) return 2;
  long n = argc > 2 ? atol(argv[2]) : 200000;
  int templated = argc > 3 && strcmp(argv[3], "template") == 0;
  otlpflow_config *cfg = NULL;
  otlpflow_pipeline *p = NULL;
  if (otlpflow_config_new(&cfg) || otlpflow_config_set_endpoint(cfg, str(argv[1])) ||
      otlpflow_config_set_policy(cfg, OTLPFLOW_POLICY_BLOCK, 30000) || otlpflow_pipeline_start(cfg, &p))
    return 1;
  (void)otlpflow_config_free(cfg);
  otlpflow_scope scope;
  if (otlpflow_pipeline_scope(p, str("bench"), str("1"), &scope)) return 1;
  otlpflow_attribute attrs[5];
  memset(attrs, 0, sizeof attrs);
  attrs[0].key = str("http.request.method");
  attrs[0].value.kind = OTLPFLOW_VALUE_KIND_STR;
  attrs[0].value.str = str("GET");
  attrs[1].key = str("url.path");
  attrs[1].value.kind = OTLPFLOW_VALUE_KIND_STR;
  attrs[1].value.str = str("/api/v1/items/42");
  attrs[2].key = str("server.address");
  attrs[2].value.kind = OTLPFLOW_VALUE_KIND_STR;
  attrs[2].value.str = str("api.example.internal");
  attrs[3].key = str("http.response.status_code");
  attrs[3].value.kind = OTLPFLOW_VALUE_KIND_I64;
  attrs[3].value.i64 = 200;
  attrs[4].key = str("app.item_id");
  attrs[4].value.kind = OTLPFLOW_VALUE_KIND_I64;
  otlpflow_attribute ev_attr;
  memset(&ev_attr, 0, sizeof ev_attr);
  ev_attr.key = str("cache.key");
  ev_attr.value.kind = OTLPFLOW_VALUE_KIND_I64;
  otlpflow_event ev;
  memset(&ev, 0, sizeof ev);
  ev.name = str("cache.miss");
  ev.attributes = &ev_attr;
  ev.attributes_len = 1;
  otlpflow_span span;
  memset(&span, 0, sizeof span);
  memset(span.trace_id, 0x11, 16);
  memset(span.parent_span_id, 0x22, 8);
  span.name = str("GET /api/v1/items/{id}");
  span.kind = OTLPFLOW_SPAN_KIND_SERVER;
  span.attributes = attrs;
  span.attributes_len = 5;
  span.events = &ev;
  span.events_len = 1;
  span.status_code = 1;
  span.flags = 0x101;
  otlpflow_span_template *tmpl = NULL;
  if (templated) {
    if (otlpflow_pipeline_span_template(p, &scope, span.name, span.kind, attrs, 4, &tmpl)) return 1;
    span.name = str("");
    span.kind = OTLPFLOW_SPAN_KIND_UNSPECIFIED;
    span.attributes = &attrs[4];
    span.attributes_len = 1;
  }
  double rounds[7];
  for (int r = 0; r < 7; r++) {
    double t0 = now_s();
    for (long i = 0; i < n; i++) {
      memcpy(span.span_id, &i, sizeof i);
      span.span_id[7] |= 1;
      span.start_time_unix_nano = 1700000000000000000ull + (uint64_t)i;
      span.end_time_unix_nano = span.start_time_unix_nano + 1000000;
      ev.time_unix_nano = span.start_time_unix_nano + 500000;
      attrs[4].value.i64 = i;
      ev_attr.value.i64 = i % 4096;
      otlpflow_result rc = templated ? otlpflow_pipeline_record_templated_span(p, tmpl, &span)
                                     : otlpflow_pipeline_record_span(p, &scope, &span);
      if (rc != OTLPFLOW_RESULT_OK) return 1;
    }
    rounds[r] = (now_s() - t0) * 1e9 / (double)n;
  }
  otlpflow_stats st = {.size = sizeof(otlpflow_stats)};
  if (otlpflow_pipeline_shutdown(p, 30000, &st)) return 1;
  (void)otlpflow_pipeline_free(p);
  (void)otlpflow_span_template_free(tmpl);
  qsort(rounds, 7, sizeof rounds[0], cmp);
  printf("%s from C: median %.0f ns/span (min %.0f, max %.0f) over 7 x %ld; exported %llu, dropped %llu\n",
         templated ? "record_templated_span" : "record_span", rounds[3], rounds[0], rounds[6], n, (unsigned long long)st.exported,
         (unsigned long long)(st.dropped[OTLPFLOW_DROP_REASON_FULL] + st.dropped[OTLPFLOW_DROP_REASON_INVALID]));
  return 0;
}
