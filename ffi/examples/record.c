/* A minimal otlpflow user in C: configure, start, record spans, shut down.
 *
 *   ffi/install.sh $HOME/.local
 *   PKG_CONFIG_PATH=$HOME/.local/lib/pkgconfig \
 *     cc ffi/examples/record.c $(pkg-config --cflags --libs otlpflow) -Wl,-rpath,$HOME/.local/lib -o record
 *   ./record http://127.0.0.1:4317
 * (or with CMake: ffi/examples/CMakeLists.txt) */
#define _POSIX_C_SOURCE 200809L
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "otlpflow.h"

static otlpflow_str str(const char *s) { return (otlpflow_str){s, strlen(s)}; }

static uint64_t now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

int main(int argc, char **argv) {
  const char *endpoint = argc > 1 ? argv[1] : "http://127.0.0.1:4317";
  otlpflow_config *cfg = NULL;
  otlpflow_pipeline *p = NULL;
  if (otlpflow_config_new(&cfg) != OTLPFLOW_RESULT_OK) return 1;
  /* The environment first (OTEL_EXPORTER_OTLP_*), then explicit settings. */
  if (otlpflow_config_apply_env(cfg) != OTLPFLOW_RESULT_OK ||
      otlpflow_config_set_endpoint(cfg, str(endpoint)) != OTLPFLOW_RESULT_OK ||
      otlpflow_config_set_service_name(cfg, str("c-example")) != OTLPFLOW_RESULT_OK) {
    fprintf(stderr, "configuration failed\n");
    return 1;
  }
  otlpflow_result r = otlpflow_pipeline_start(cfg, &p);
  if (r != OTLPFLOW_RESULT_OK) {
    char msg[256];
    size_t len = 0;
    if (otlpflow_config_error(cfg, msg, sizeof msg, &len) != OTLPFLOW_RESULT_OK) msg[0] = 0;
    fprintf(stderr, "start: %s: %s\n", otlpflow_result_message(r), msg);
    (void)otlpflow_config_free(cfg);
    return 1;
  }
  (void)otlpflow_config_free(cfg);

  otlpflow_scope scope;
  if (otlpflow_pipeline_scope(p, str("example"), str("1.0"), &scope) != OTLPFLOW_RESULT_OK) return 1;
  for (int i = 0; i < 1000; i++) {
    otlpflow_attribute attrs[2];
    memset(attrs, 0, sizeof attrs);
    attrs[0].key = str("http.request.method");
    attrs[0].value.kind = OTLPFLOW_VALUE_KIND_STR;
    attrs[0].value.str = str("GET");
    attrs[1].key = str("app.item_id");
    attrs[1].value.kind = OTLPFLOW_VALUE_KIND_I64;
    attrs[1].value.i64 = i;
    otlpflow_span span;
    memset(&span, 0, sizeof span);
    memset(span.trace_id, 0x4b, sizeof span.trace_id);
    memcpy(span.span_id, &i, sizeof i);
    span.span_id[7] = 1;
    span.name = str("GET /items");
    span.kind = OTLPFLOW_SPAN_KIND_SERVER;
    span.start_time_unix_nano = now_ns();
    span.end_time_unix_nano = span.start_time_unix_nano + 1000;
    span.attributes = attrs;
    span.attributes_len = 2;
    r = otlpflow_pipeline_record_span(p, &scope, &span);
    if (r != OTLPFLOW_RESULT_OK && r != OTLPFLOW_RESULT_FULL) {
      fprintf(stderr, "record: %s\n", otlpflow_result_message(r));
      break;
    }
  }
  otlpflow_stats st = {.size = sizeof(otlpflow_stats)};
  r = otlpflow_pipeline_shutdown(p, 5000, &st);
  printf("shutdown: %s; offered %llu exported %llu dropped %llu failed %llu\n", otlpflow_result_message(r),
         (unsigned long long)st.offered, (unsigned long long)st.exported,
         (unsigned long long)(st.offered - st.accepted),
         (unsigned long long)st.failed);
  (void)otlpflow_pipeline_free(p);
  return r == OTLPFLOW_RESULT_OK ? 0 : 1;
}
