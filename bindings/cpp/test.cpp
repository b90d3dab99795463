// Test of the C++ wrapper, run by ffi/tests/c_abi.rs under ASan/UBSan.
// usage: test ENDPOINT; prints expect_received=N.
#include <cstdint>
#include <cstdio>
#include <thread>
#include <vector>

#include "otlpflow.hpp"

#define CHECK(c)                                                          \
  do {                                                                    \
    if (!(c)) {                                                           \
      std::fprintf(stderr, "%s:%d: CHECK failed: %s\n", __FILE__, __LINE__, #c); \
      return 1;                                                           \
    }                                                                     \
  } while (0)

int main(int argc, char **argv) {
  if (argc != 2) return 2;
  // Invalid settings throw with the setting's name.
  try {
    otlpflow::Pipeline never = otlpflow::Config().endpoint("nope://x").start();
    (void)never;
    CHECK(false);
  } catch (const otlpflow::Error &e) {
    CHECK(e.code() == OTLPFLOW_RESULT_INVALID_CONFIG);
    CHECK(std::string(e.what()).find("endpoint") != std::string::npos);
  }
  try {
    otlpflow::Config().compression(static_cast<otlpflow::Compression>(7));
    CHECK(false);
  } catch (const otlpflow::Error &e) {
    CHECK(e.code() == OTLPFLOW_RESULT_INVALID_ARGUMENT);
  }

  try {
    otlpflow::Config().set("memory_budget", "lots");
    CHECK(false);
  } catch (const otlpflow::Error &e) {
    CHECK(e.code() == OTLPFLOW_RESULT_INVALID_CONFIG);
    CHECK(std::string(e.what()).find("memory_budget") != std::string::npos);
  }

  otlpflow::Pipeline p = otlpflow::Config()
                             .endpoint(argv[1])
                             .set("memory_budget", "32M")
                             .set("retry_max_elapsed", "20s")
                             .service_name("cpp-test")
                             .resource("deployment.environment", "test")
                             .block(std::chrono::milliseconds(10000))
                             .shards(2)
                             .workers(1)
                             .linger(std::chrono::milliseconds(5))
                             .start();
  otlpflow::Scope scope = p.scope("cpp.test", "1.0");
  const int threads = 3, per = 1000;
  std::vector<std::thread> ts;
  for (int t = 0; t < threads; t++) {
    ts.emplace_back([&, t] {
      // One builder per thread, cleared for each span (what it held before
      // is gone: 1,000 spans' attributes would pass the 128 allowed).
      otlpflow::SpanBuilder span("unused");
      for (int i = 0; i < per; i++) {
        span.clear("GET /items")
            .kind(otlpflow::Kind::Server)
            .attr("http.request.method", "GET")
            .attr("app.item_id", i)
            .attr("thread", t)
            .attr("ratio", 0.25)
            .attr("size", std::size_t{3})
            .attr("long long", 5LL)
            .attr("unsigned", 7u)
            .attr("past int64", UINT64_MAX)
            .attr("short", static_cast<short>(-2))
            .attr("ok", true)
            .event("cache.miss")
            .status(otlpflow::Code::Ok)
            .end_now();
        if (p.record(scope, span) != OTLPFLOW_RESULT_OK) std::abort();
      }
    });
  }
  for (auto &t : ts) t.join();
  otlpflow_stats s = p.flush(10000);
  CHECK(s.exported == threads * per);
  // Waiting for delivery: 100 spans, all acknowledged by the receiver.
  std::vector<otlpflow::SpanBuilder> waited;
  for (int i = 0; i < 100; i++) waited.emplace_back("waited");
  otlpflow::Pipeline::Waited w = p.record_wait(scope, waited, 10000);
  CHECK(w.all_delivered() && w.delivery.records == 100 && w.delivery.message[0] == 0);
  // Logs and a counter from several threads.
  otlpflow::Instrument hits = p.instrument(scope, OTLPFLOW_INSTRUMENT_KIND_COUNTER, "cpp.hits", "{hit}");
  std::vector<std::thread> ls;
  for (int t = 0; t < threads; t++) {
    ls.emplace_back([&] {
      std::vector<otlpflow_attribute> attrs{otlpflow::Instrument::attr("lang", "c++")};
      for (int i = 0; i < per; i++) {
        if (p.log(scope, 9, "hello from C++", attrs) != OTLPFLOW_RESULT_OK) std::abort();
        if (hits.record(1.0, attrs) != OTLPFLOW_RESULT_OK) std::abort();
      }
    });
  }
  for (auto &t : ls) t.join();
  CHECK(hits.record(-1.0) == OTLPFLOW_RESULT_INVALID_ARGUMENT);
  CHECK(p.health() == otlpflow::Health::Healthy);
  s = p.shutdown(10000);
  CHECK(s.in_flight == 0 && s.failed == 0);
  otlpflow::SpanBuilder late("late");
  CHECK(p.record(scope, late) == OTLPFLOW_RESULT_SHUTDOWN);
  try {
    p.shutdown(1000);
    CHECK(false);
  } catch (const otlpflow::Error &e) {
    CHECK(e.code() == OTLPFLOW_RESULT_SHUTDOWN);
  }
  // Shutdown collected the counter once: one point.
  std::printf("expect_received=%d\nexpect_logs=%d\nexpect_points=1\n", threads * per + 100, threads * per);
  return 0;
}
