/* What the C tests share: result checks that exit on failure, a string
 * helper and a pipeline started against the test's receiver. */
#ifndef OTLPFLOW_TEST_COMMON_H
#define OTLPFLOW_TEST_COMMON_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "otlpflow.h"

#define CHECK(cond)                                                            \
  do {                                                                         \
    if (!(cond)) {                                                             \
      fprintf(stderr, "%s:%d: CHECK failed: %s\n", __FILE__, __LINE__, #cond); \
      exit(1);                                                                 \
    }                                                                          \
  } while (0)

#define OK(call)                                                               \
  do {                                                                         \
    otlpflow_result r_ = (call);                                               \
    if (r_ != OTLPFLOW_RESULT_OK) {                                            \
      fprintf(stderr, "%s:%d: %s -> %u (%s)\n", __FILE__, __LINE__, #call,     \
              (unsigned)r_, otlpflow_result_message(r_));                      \
      exit(1);                                                                 \
    }                                                                          \
  } while (0)

static inline otlpflow_str s(const char *text) {
  otlpflow_str out = {text, strlen(text)};
  return out;
}

static inline otlpflow_pipeline *start(const char *endpoint) {
  otlpflow_config *cfg = NULL;
  OK(otlpflow_config_new(&cfg));
  OK(otlpflow_config_set_endpoint(cfg, s(endpoint)));
  OK(otlpflow_config_set_service_name(cfg, s("c-test")));
  OK(otlpflow_config_set_policy(cfg, OTLPFLOW_POLICY_BLOCK, 10000));
  OK(otlpflow_config_set_shards(cfg, 2));
  OK(otlpflow_config_set_workers(cfg, 1));
  OK(otlpflow_config_set_linger_ms(cfg, 5));
  /* Any setting by name, with a text value. */
  OK(otlpflow_config_set(cfg, s("memory_budget"), s("32M")));
  OK(otlpflow_config_set(cfg, s("retry_max_elapsed"), s("20s")));
  OK(otlpflow_config_set(cfg, s("traces.timeout"), s("5s")));
  otlpflow_value v = {0};
  v.kind = OTLPFLOW_VALUE_KIND_STR;
  v.str = s("c-test-host");
  OK(otlpflow_config_add_resource_attribute(cfg, s("host.name"), &v));
  otlpflow_pipeline *p = NULL;
  OK(otlpflow_pipeline_start(cfg, &p));
  OK(otlpflow_config_free(cfg));
  return p;
}

#endif
