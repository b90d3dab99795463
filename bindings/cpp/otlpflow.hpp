// otlpflow.hpp: a header-only C++17 RAII wrapper over the otlpflow C ABI
// (include/otlpflow.h). Errors of setup and control calls are exceptions
// (otlpflow::Error, carrying the result code); recording returns the result
// code instead, because a refused record on a hot path is an outcome, not an
// exception.
//
//   otlpflow::Pipeline p = otlpflow::Config()
//       .endpoint("http://localhost:4317").service_name("checkout").start();
//   otlpflow::Scope scope = p.scope("checkout.http", "1.0");
//   otlpflow::SpanBuilder span("GET /items");
//   span.kind(otlpflow::Kind::Server).attr("http.request.method", "GET")
//       .attr("http.response.status_code", int64_t{200});
//   p.record(scope, span);
//   p.shutdown(5000);
#ifndef OTLPFLOW_HPP
#define OTLPFLOW_HPP

#include <chrono>
#include <cstdint>
#include <cstring>
#include <memory>
#include <random>
#include <stdexcept>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>
#include <vector>

#include "otlpflow.h"

namespace otlpflow {

/// A failed setup or control call: the C result code and its message (plus
/// the configuration's own message for invalid settings).
class Error : public std::runtime_error {
 public:
  Error(otlpflow_result code, const std::string &what) : std::runtime_error(what), code_(code) {}
  otlpflow_result code() const noexcept { return code_; }

 private:
  otlpflow_result code_;
};

inline otlpflow_str str(std::string_view s) noexcept { return otlpflow_str{s.data(), s.size()}; }

inline void check(otlpflow_result r, const char *what) {
  if (r != OTLPFLOW_RESULT_OK) throw Error(r, std::string(what) + ": " + otlpflow_result_message(r));
}

// The C enums as scoped C++ enums, with the C header's numbers.
enum class Kind : uint32_t {
  Unspecified = OTLPFLOW_SPAN_KIND_UNSPECIFIED,
  Internal = OTLPFLOW_SPAN_KIND_INTERNAL,
  Server = OTLPFLOW_SPAN_KIND_SERVER,
  Client = OTLPFLOW_SPAN_KIND_CLIENT,
  Producer = OTLPFLOW_SPAN_KIND_PRODUCER,
  Consumer = OTLPFLOW_SPAN_KIND_CONSUMER,
};
enum class Code : uint32_t {
  Unset = OTLPFLOW_STATUS_CODE_UNSET,
  Ok = OTLPFLOW_STATUS_CODE_OK,
  Error = OTLPFLOW_STATUS_CODE_ERROR,
};
enum class Compression : uint32_t {
  None = OTLPFLOW_COMPRESSION_NONE,
  Gzip = OTLPFLOW_COMPRESSION_GZIP,
  Zstd = OTLPFLOW_COMPRESSION_ZSTD,
};
enum class Protocol : uint32_t {
  Grpc = OTLPFLOW_PROTOCOL_GRPC,
  HttpProtobuf = OTLPFLOW_PROTOCOL_HTTP_PROTOBUF,
};
enum class Health : uint32_t {
  Healthy = OTLPFLOW_HEALTH_HEALTHY,
  Degraded = OTLPFLOW_HEALTH_DEGRADED,
  Down = OTLPFLOW_HEALTH_DOWN,
};

/// A stats struct with its version field set, ready to be filled.
inline otlpflow_stats new_stats() noexcept {
  otlpflow_stats s{};
  s.size = sizeof(otlpflow_stats);
  return s;
}

class Pipeline;

/// Settings for a pipeline. Not thread-safe; cheap to discard.
class Config {
 public:
  Config() {
    otlpflow_config *c = nullptr;
    check(otlpflow_config_new(&c), "otlpflow_config_new");
    raw_.reset(c);
  }
  /// Applies the OTEL_* environment; call before setters that should win.
  Config &from_env() { return apply(otlpflow_config_apply_env(raw_.get()), "apply_env"); }
  Config &endpoint(std::string_view v) { return apply(otlpflow_config_set_endpoint(raw_.get(), str(v)), "endpoint"); }
  Config &service_name(std::string_view v) { return apply(otlpflow_config_set_service_name(raw_.get(), str(v)), "service_name"); }
  Config &service_version(std::string_view v) { return apply(otlpflow_config_set_service_version(raw_.get(), str(v)), "service_version"); }
  Config &header(std::string_view k, std::string_view v) { return apply(otlpflow_config_add_header(raw_.get(), str(k), str(v)), "header"); }
  Config &compression(Compression c) {
    return apply(otlpflow_config_set_compression(raw_.get(), static_cast<uint32_t>(c)), "compression");
  }
  Config &protocol(Protocol p) {
    return apply(otlpflow_config_set_protocol(raw_.get(), static_cast<uint32_t>(p)), "protocol");
  }
  Config &block(std::chrono::milliseconds max_wait) {
    return apply(otlpflow_config_set_policy(raw_.get(), OTLPFLOW_POLICY_BLOCK, static_cast<uint64_t>(max_wait.count())), "policy");
  }
  Config &drop_newest() { return apply(otlpflow_config_set_policy(raw_.get(), OTLPFLOW_POLICY_DROP_NEWEST, 0), "policy"); }
  Config &shards(size_t n) { return apply(otlpflow_config_set_shards(raw_.get(), n), "shards"); }
  Config &workers(size_t n) { return apply(otlpflow_config_set_workers(raw_.get(), n), "workers"); }
  Config &linger(std::chrono::milliseconds d) {
    return apply(otlpflow_config_set_linger_ms(raw_.get(), static_cast<uint64_t>(d.count())), "linger");
  }
  Config &resource(std::string_view key, std::string_view value) {
    otlpflow_value v{};
    v.kind = OTLPFLOW_VALUE_KIND_STR;
    v.str = str(value);
    return apply(otlpflow_config_add_resource_attribute(raw_.get(), str(key), &v), "resource");
  }
  /// Any setting by name with a text value (see the README, "Every setting
  /// by name"): `set("memory_budget", "64M")`, `set("tls_ca_file", path)`,
  /// `set("traces.endpoint", url)`. Throws Error naming the setting.
  Config &set(std::string_view name, std::string_view value) {
    return apply(otlpflow_config_set(raw_.get(), str(name), str(value)), "set");
  }
  /// Validates and starts; throws Error with the setting's name if invalid.
  [[nodiscard]] Pipeline start();

 private:
  Config &apply(otlpflow_result r, const char *what) {
    if (r != OTLPFLOW_RESULT_OK) throw Error(r, std::string(what) + ": " + message(r));
    return *this;
  }
  std::string message(otlpflow_result r) const {
    char buf[512];
    size_t len = 0;
    if (otlpflow_config_error(raw_.get(), buf, sizeof buf, &len) == OTLPFLOW_RESULT_OK && len > 0) return buf;
    return otlpflow_result_message(r);
  }
  struct Free {
    void operator()(otlpflow_config *c) const noexcept { (void)otlpflow_config_free(c); }
  };
  std::unique_ptr<otlpflow_config, Free> raw_;
};

/// An instrumentation scope: a plain value.
struct Scope {
  otlpflow_scope raw;
};

/// Builds one span; owns copies of nothing, so the strings it is given must
/// outlive the `record` call. Reusable: `clear(name)` and fill again.
class SpanBuilder {
 public:
  explicit SpanBuilder(std::string_view name) { clear(name); }
  /// Starts a new span in this builder: new ids, both times now, no
  /// attributes, events or status (the vectors keep their capacity).
  SpanBuilder &clear(std::string_view name) {
    std::memset(&span_, 0, sizeof span_);
    span_.name = str(name);
    random_ids();
    auto now = now_ns();
    span_.start_time_unix_nano = now;
    span_.end_time_unix_nano = now;
    attrs_.clear();
    events_.clear();
    return *this;
  }
  SpanBuilder &kind(Kind k) noexcept { span_.kind = static_cast<uint32_t>(k); return *this; }
  SpanBuilder &trace_id(const uint8_t (&id)[16]) noexcept { std::memcpy(span_.trace_id, id, 16); return *this; }
  SpanBuilder &span_id(const uint8_t (&id)[8]) noexcept { std::memcpy(span_.span_id, id, 8); return *this; }
  SpanBuilder &parent(const uint8_t (&id)[8]) noexcept { std::memcpy(span_.parent_span_id, id, 8); return *this; }
  SpanBuilder &start(uint64_t unix_ns) noexcept { span_.start_time_unix_nano = unix_ns; return *this; }
  SpanBuilder &end(uint64_t unix_ns) noexcept { span_.end_time_unix_nano = unix_ns; return *this; }
  SpanBuilder &end_now() noexcept { span_.end_time_unix_nano = now_ns(); return *this; }
  SpanBuilder &status(Code c, std::string_view message = {}) noexcept {
    span_.status_code = static_cast<uint32_t>(c);
    span_.status_message = str(message);
    return *this;
  }
  SpanBuilder &attr(std::string_view key, std::string_view v) { return push(key, OTLPFLOW_VALUE_KIND_STR).str = str(v), *this; }
  SpanBuilder &attr(std::string_view key, const char *v) { return attr(key, std::string_view(v)); }
  /// Any integer type (`int`, `long long`, `size_t`...: separate
  /// overloads made most of them ambiguous); an unsigned value past
  /// INT64_MAX goes as a double, as OTLP's int_value is signed.
  template <typename T, std::enable_if_t<std::is_integral_v<T> && !std::is_same_v<T, bool>, int> = 0>
  SpanBuilder &attr(std::string_view key, T v) {
    if constexpr (std::is_unsigned_v<T>) {
      if (static_cast<uint64_t>(v) > static_cast<uint64_t>(INT64_MAX))
        return attr(key, static_cast<double>(v));
    }
    return push(key, OTLPFLOW_VALUE_KIND_I64).i64 = static_cast<int64_t>(v), *this;
  }
  SpanBuilder &attr(std::string_view key, double v) { return push(key, OTLPFLOW_VALUE_KIND_F64).f64 = v, *this; }
  SpanBuilder &attr(std::string_view key, bool v) { return push(key, OTLPFLOW_VALUE_KIND_BOOL).boolean = v, *this; }
  SpanBuilder &event(std::string_view name, uint64_t unix_ns = now_ns()) {
    otlpflow_event e{};
    e.time_unix_nano = unix_ns;
    e.name = str(name);
    events_.push_back(e);
    return *this;
  }
  /// The C struct, pointing into this builder.
  const otlpflow_span &raw() noexcept {
    span_.attributes = attrs_.data();
    span_.attributes_len = attrs_.size();
    span_.events = events_.data();
    span_.events_len = events_.size();
    return span_;
  }
  static uint64_t now_ns() noexcept {
    return static_cast<uint64_t>(std::chrono::duration_cast<std::chrono::nanoseconds>(
                                     std::chrono::system_clock::now().time_since_epoch())
                                     .count());
  }

 private:
  otlpflow_value &push(std::string_view key, otlpflow_value_kind kind) {
    otlpflow_attribute a{};
    a.key = str(key);
    a.value.kind = static_cast<uint32_t>(kind);
    attrs_.push_back(a);
    return attrs_.back().value;
  }
  void random_ids() {
    thread_local std::mt19937_64 rng{std::random_device{}()};
    uint64_t a = rng(), b = rng() | 1, c = rng() | 1;
    std::memcpy(span_.trace_id, &a, 8);
    std::memcpy(span_.trace_id + 8, &b, 8);
    std::memcpy(span_.span_id, &c, 8);
  }
  otlpflow_span span_;
  std::vector<otlpflow_attribute> attrs_;
  std::vector<otlpflow_event> events_;
};

/// A lock-free instrument (counter, up-down counter, gauge, histogram);
/// move-only, usable from any number of threads at once.
class Instrument {
 public:
  explicit Instrument(otlpflow_instrument *raw) noexcept : raw_(raw) {}
  /// Adds (counters), sets (gauge) or records (histogram) `v` for these
  /// attributes. OTLPFLOW_RESULT_OK, or why it was refused.
  [[nodiscard]] otlpflow_result record(double v, const std::vector<otlpflow_attribute> &attrs = {}) const noexcept {
    return otlpflow_instrument_record(raw_.get(), v, attrs.data(), attrs.size());
  }
  /// A string attribute for `record` (the views must outlive the call).
  static otlpflow_attribute attr(std::string_view key, std::string_view value) noexcept {
    otlpflow_attribute a{};
    a.key = str(key);
    a.value.kind = OTLPFLOW_VALUE_KIND_STR;
    a.value.str = str(value);
    return a;
  }

 private:
  struct Free {
    void operator()(otlpflow_instrument *i) const noexcept { (void)otlpflow_instrument_free(i); }
  };
  std::unique_ptr<otlpflow_instrument, Free> raw_;
};

/// A running pipeline; move-only. Its destructor shuts it down (up to 5 s)
/// if `shutdown` was not called. `record`, `stats` and `flush` may be called
/// from any number of threads at once.
class Pipeline {
 public:
  explicit Pipeline(otlpflow_pipeline *raw) noexcept : raw_(raw) {}
  [[nodiscard]] Scope scope(std::string_view name, std::string_view version = {}) const {
    Scope s{};
    check(otlpflow_pipeline_scope(raw_.get(), str(name), str(version), &s.raw), "otlpflow_pipeline_scope");
    return s;
  }
  /// Records a span: OTLPFLOW_RESULT_OK, or why it was refused (counted).
  [[nodiscard]] otlpflow_result record(const Scope &scope, SpanBuilder &span) const noexcept {
    return otlpflow_pipeline_record_span(raw_.get(), &scope.raw, &span.raw());
  }
  /// Records `spans` under one receipt and waits until the receiver has
  /// answered for each of them, or `timeout_ms` passes (then `code` is
  /// OTLPFLOW_RESULT_TIMEOUT and `delivery` says what is known so far).
  struct Waited {
    otlpflow_result code;
    otlpflow_delivery delivery;
    [[nodiscard]] bool all_delivered() const noexcept {
      return code == OTLPFLOW_RESULT_OK && delivery.delivered == delivery.records;
    }
  };
  [[nodiscard]] Waited record_wait(const Scope &scope, std::vector<SpanBuilder> &spans,
                                   uint64_t timeout_ms) const {
    std::vector<otlpflow_span> raw;
    raw.reserve(spans.size());
    for (auto &s : spans) raw.push_back(s.raw());
    Waited w{};
    w.delivery.size = sizeof(otlpflow_delivery);
    w.code = otlpflow_pipeline_record_batch_wait(raw_.get(), &scope.raw, raw.data(), raw.size(), timeout_ms,
                                                 &w.delivery);
    if (w.code != OTLPFLOW_RESULT_OK && w.code != OTLPFLOW_RESULT_TIMEOUT) check(w.code, "otlpflow_pipeline_record_batch_wait");
    return w;
  }
  /// Records a log record with a string body and a severity number
  /// (9 INFO, 13 WARN, 17 ERROR), stamped now.
  [[nodiscard]] otlpflow_result log(const Scope &scope, uint32_t severity, std::string_view body,
                      const std::vector<otlpflow_attribute> &attrs = {}) const noexcept {
    otlpflow_log_record l{};
    l.time_unix_nano = SpanBuilder::now_ns();
    l.observed_time_unix_nano = l.time_unix_nano;
    l.severity_number = severity;
    l.has_body = true;
    l.body.kind = OTLPFLOW_VALUE_KIND_STR;
    l.body.str = str(body);
    l.attributes = attrs.data();
    l.attributes_len = attrs.size();
    return otlpflow_pipeline_record_log(raw_.get(), &scope.raw, &l);
  }
  /// Makes an instrument; `bounds` for histograms only (empty: defaults).
  [[nodiscard]] Instrument instrument(const Scope &scope, otlpflow_instrument_kind kind, std::string_view name,
                        std::string_view unit = {}, std::string_view description = {},
                        const std::vector<double> &bounds = {}) const {
    otlpflow_instrument *i = nullptr;
    check(otlpflow_pipeline_instrument(raw_.get(), &scope.raw, static_cast<uint32_t>(kind), str(name),
                                       str(unit), str(description), bounds.data(), bounds.size(), &i),
          "otlpflow_pipeline_instrument");
    return Instrument(i);
  }
  [[nodiscard]] otlpflow_stats stats() const {
    otlpflow_stats s = new_stats();
    check(otlpflow_pipeline_stats(raw_.get(), &s), "otlpflow_pipeline_stats");
    return s;
  }
  [[nodiscard]] Health health() const {
    uint32_t h = 0;
    check(otlpflow_pipeline_health(raw_.get(), &h), "otlpflow_pipeline_health");
    return static_cast<Health>(h);
  }
  otlpflow_stats flush(uint64_t timeout_ms) const {
    otlpflow_stats s = new_stats();
    check(otlpflow_pipeline_flush(raw_.get(), timeout_ms, &s), "otlpflow_pipeline_flush");
    return s;
  }
  otlpflow_stats shutdown(uint64_t timeout_ms) const {
    otlpflow_stats s = new_stats();
    check(otlpflow_pipeline_shutdown(raw_.get(), timeout_ms, &s), "otlpflow_pipeline_shutdown");
    return s;
  }

 private:
  struct Free {
    void operator()(otlpflow_pipeline *p) const noexcept { (void)otlpflow_pipeline_free(p); }
  };
  std::unique_ptr<otlpflow_pipeline, Free> raw_;
};

inline Pipeline Config::start() {
  otlpflow_pipeline *p = nullptr;
  otlpflow_result r = otlpflow_pipeline_start(raw_.get(), &p);
  if (r != OTLPFLOW_RESULT_OK) throw Error(r, "start: " + message(r));
  return Pipeline(p);
}

}  // namespace otlpflow

#endif  // OTLPFLOW_HPP
