"""Tests of the Python bindings against a real OTLP receiver.

Run by ffi/tests/python.rs (part of `cargo test --workspace`), which starts
the embedded receiver, passes its endpoint in OTLPFLOW_TEST_ENDPOINT, and
checks that the receiver counted the spans these tests report delivering
(one number per line in OTLPFLOW_TEST_REPORT).
"""

import asyncio
import os
import socket
import subprocess
import sys
import threading
import time
import unittest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

import otlpflow  # noqa: E402
from otlpflow import propagation  # noqa: E402

ENDPOINT = os.environ.get("OTLPFLOW_TEST_ENDPOINT", "")
REPORT = os.environ.get("OTLPFLOW_TEST_REPORT", "")
HTTP_ENDPOINT = os.environ.get("OTLPFLOW_TEST_HTTP_ENDPOINT", "")


def delivered(n, kind="spans"):
    """Tells the harness how many spans (or logs, or points) must have
    reached the receiver."""
    if REPORT:
        with open(REPORT, "a") as f:
            f.write("%s %d\n" % (kind, n))


def logger_to(p, name, level):
    """A logger sending only to `p` (through a LoggingHandler the caller
    removes), and the handler."""
    import logging
    logger = logging.getLogger(name)
    logger.propagate = False
    logger.setLevel(level)
    handler = otlpflow.LoggingHandler(p)
    logger.addHandler(handler)
    return logger, handler


def pipeline(**kw):
    kw.setdefault("policy", "block")
    kw.setdefault("max_wait", 10.0)
    return otlpflow.Pipeline(endpoint=ENDPOINT, service_name="py-test", shards=2, workers=1,
                             linger=0.005, from_env=False, **kw)


@unittest.skipUnless(ENDPOINT, "needs OTLPFLOW_TEST_ENDPOINT (run through cargo test)")
class PipelineTest(unittest.TestCase):
    def test_record_every_kind_of_value(self):
        with pipeline(compression="gzip", resource={"deployment.environment": "test"}) as p:
            for i in range(1000):
                ok = p.record_span(
                    "GET /api/v1/items/{id}", kind="server",
                    attributes={"http.request.method": "GET", "app.item_id": i, "ok": True,
                                "ratio": 0.5, "blob": b"\x00\xff", "list": [1, "two", 3.0]},
                    events=[(1, "cache.miss", {"cache.key": i % 4096})],
                    links=[(b"\x01" * 16, b"\x02" * 8, {"rel": "follows"})],
                    status=("ok", ""))
                self.assertTrue(ok)
            stats = p.flush()
            self.assertEqual(stats["exported"], 1000)
            self.assertEqual(p.health(), "healthy")
            self.assertEqual(stats["offered"], stats["accepted"])
        delivered(1000)

    def test_record_batch_waits_for_delivery(self):
        with pipeline() as p:
            spans = [{"name": "waited", "attributes": {"i": i}} for i in range(200)]
            spans.append({"name": "bad", "kind": "server", "attributes": {"x": 1},
                          "status": ("error", "boom")})
            out = p.record_batch(spans, wait=True, timeout=20.0)
            self.assertTrue(out["complete"], out)
            self.assertEqual((out["records"], out["delivered"], out["rejected"]), (201, 201, 0))
            self.assertEqual(out["dropped_invalid"] + out["failed_permanent"], 0)
            self.assertIsNone(out["message"])
            # Without wait: counts only.
            self.assertEqual(p.record_batch([{"name": "plain"}] * 10), {"accepted": 10, "dropped": 0})
            # asyncio: the wait runs off the event loop, which keeps ticking.
            ticks = []

            async def main():
                async def tick():
                    for _ in range(5):
                        ticks.append(1)
                        await asyncio.sleep(0)
                t = asyncio.ensure_future(tick())
                r = await p.send([{"name": "async"} for _ in range(50)], timeout=20.0)
                await t
                return r
            out = asyncio.run(main())
            self.assertTrue(out["complete"], out)
            self.assertEqual(out["delivered"], 50)
            self.assertEqual(len(ticks), 5)
        delivered(261)

    def test_record_batch_wait_reports_a_dead_endpoint(self):
        port = socket.socket()
        port.bind(("127.0.0.1", 0))
        addr = "http://127.0.0.1:%d" % port.getsockname()[1]
        port.close()
        with otlpflow.Pipeline(endpoint=addr, from_env=False, retry_max_elapsed="500ms") as p:
            out = p.record_batch([{"name": "lost"}] * 3, wait=True, timeout=20.0)
            self.assertTrue(out["complete"], out)
            self.assertEqual((out["delivered"], out["failed_exhausted"]), (0, 3))
            self.assertTrue(out["message"])
            p.shutdown(timeout=0.2)

    def test_span_context_manager_times_and_marks_errors(self):
        with pipeline() as p:
            with p.span("work", attributes={"a": 1}) as s:
                s.set_attribute("b", "two")
                s.add_event("step", {"n": 1})
            with self.assertRaises(RuntimeError):
                with p.span("failing"):
                    raise RuntimeError("boom")
            stats = p.shutdown()
            self.assertEqual(stats["exported"], 2)
            self.assertEqual(stats["in_flight"], 0)
        delivered(2)

    def test_nested_spans_continue_the_trace_in_threads_and_tasks(self):
        with pipeline() as p:
            seen = {}

            def work(t):
                with p.span("outer-%d" % t) as outer:
                    with p.span("inner") as inner:
                        seen[t] = (outer.trace_id, outer.span_id, inner.trace_id, inner.parent_span_id,
                                   otlpflow.current_span() is inner)
                    seen[t] += (otlpflow.current_span() is outer,)
            threads = [threading.Thread(target=work, args=(t,)) for t in range(3)]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            for t, (otid, osid, itid, iparent, inner_current, outer_current) in seen.items():
                self.assertEqual(itid, otid)
                self.assertEqual(iparent, osid)
                self.assertTrue(inner_current and outer_current)
            self.assertEqual(len({v[0] for v in seen.values()}), 3, "each thread its own trace")

            async def task(n):
                with p.span("task-%d" % n) as s:
                    await asyncio.sleep(0.01)
                    with p.span("step") as c:
                        await asyncio.sleep(0.01)
                        return s.trace_id, s.span_id, c.trace_id, c.parent_span_id

            async def main():
                return await asyncio.gather(*(task(n) for n in range(4)))
            for tid, sid, ctid, cparent in asyncio.run(main()):
                self.assertEqual((ctid, cparent), (tid, sid))
            self.assertIsNone(otlpflow.current_span())
            stats = p.shutdown()
            self.assertEqual(stats["exported"], 6 + 8)
            self.assertEqual(stats["python_buffered"], 0)
            self.assertEqual(stats["python_handed_over"], 14)
        delivered(14)

    def test_traceparent_inject_and_extract(self):
        with pipeline() as p:
            headers = {}
            with p.span("client", kind="client") as s:
                propagation.inject(headers)
                tid, sid = s.trace_id, s.span_id
            self.assertEqual(headers["traceparent"], "00-%032x-%016x-01" % (tid, sid))
            headers["tracestate"] = "vendor=abc"
            ctx = propagation.extract(headers)
            self.assertEqual((ctx.trace_id, ctx.span_id, ctx.trace_state), (tid, sid, "vendor=abc"))
            with p.span("server", kind="server", parent=ctx) as child:
                self.assertEqual((child.trace_id, child.parent_span_id), (tid, sid))
                self.assertEqual(child.trace_state, "vendor=abc")
                out = {}
                propagation.inject(out)
                self.assertEqual(out["tracestate"], "vendor=abc")
            # tracestate: members kept (spaces round them dropped); one not
            # valid by the grammar, a key twice, or a CR LF (it went into the
            # span and out again in inject's headers) discards it all.
            tp = headers["traceparent"]
            for state, kept in (("a=1 , b@sys=x y,", "a=1,b@sys=x y"), ("a=1\r\nInjected: yes", ""),
                                ("Upper=1", ""), ("a=1,a=2", ""), ("a=", ""), ("a=1,b=2=3", ""),
                                (",".join("k%d=v" % i for i in range(33)), ""), ("k=" + "v" * 257, "")):
                ctx = propagation.extract({"traceparent": tp, "tracestate": state})
                self.assertEqual(ctx.trace_state, kept, repr(state))
            for bad in ("", "00-%s-%s-01" % ("0" * 32, "1" * 16), "00-xyz-1-01",
                        "ff-%s-%s-01" % ("1" * 32, "1" * 16), "00-%s-%s-01-extra" % ("1" * 32, "1" * 16)):
                self.assertIsNone(propagation.extract({"traceparent": bad}), bad)
            # The direct path takes ids as the spans give them (ints).
            self.assertTrue(p.record_span("direct child", trace_id=tid, parent_span_id=sid))
            with self.assertRaises(ValueError):
                p.record_span("x", trace_id=1 << 130)
            self.assertEqual(p.shutdown()["exported"], 3)
        delivered(3)

    def test_a_span_ends_once_and_takes_no_changes_after(self):
        # A second end recorded the span again (two spans with one span id),
        # and changes after the end went out with the record still waiting
        # in the buffer; the OpenTelemetry API has both ignored.
        with pipeline() as p:
            s = p.span("ended twice")
            s.end()
            s.end()
            with p.span("exited twice") as t:
                pass
            t.__exit__(None, None, None)
            u = p.span("changed after")
            u.end()
            u.set_attribute("late", 1)
            u.set_attributes({"later": 2})
            u.add_event("late")
            u.set_status("error", "late")
            u.record_exception(ValueError("late"))
            self.assertEqual((u.attributes, u.events, u.status), ({}, [], (0, "")))
            stats = p.flush()
            self.assertEqual((stats["offered"], stats["exported"]), (3, 3), stats)
        delivered(3)

    def test_exceptions_and_status_on_spans(self):
        with pipeline() as p:
            with self.assertRaises(KeyError):
                with p.span("fails") as s:
                    raise KeyError("missing")
            self.assertEqual(s.status[0], 2)
            self.assertIn("KeyError", s.status[1])
            ev = s.events[-1]
            self.assertEqual(ev[1], "exception")
            self.assertEqual(ev[2]["exception.type"], "KeyError")
            self.assertIn("raise KeyError", ev[2]["exception.stacktrace"])
            with p.span("ok") as s:
                s.set_status("ok", "ignored with ok")
                s.record_exception(ValueError("handled"), {"handled": True})
                s.set_attributes({"a": 1, "b": [1, 2]})
            self.assertEqual(s.status, (1, ""))
            # A span with a value neither marshal nor OTLP takes is refused
            # and counted; the others in its batch still go.
            with p.span("bad", attributes={"k": object()}):
                pass
            with p.span("set", attributes={"k": {1, 2}}):
                pass
            with p.span("lone surrogate", attributes={"k": "\ud800"}):
                pass
            with p.span("fine"):
                pass
            stats = p.shutdown()
            self.assertEqual(stats["exported"], 3)
            self.assertEqual(stats["dropped_invalid"], 3)
        delivered(3)

    def test_objects_and_marshal_hand_overs_take_and_refuse_the_same_spans(self):
        # On CPython span records go over as the objects themselves; the
        # marshal hand-over is the fallback. Both take the same spans and
        # refuse the same hostile ones, each counted, the rest delivered.
        if sys.implementation.name == "cpython":
            self.assertIsNotNone(otlpflow._native._object_handover())

        class Text(str):
            pass
        looped = []
        looped.append(looped)
        wide = [looped] * 8
        for _ in range(3):
            wide = [wide] * 8
        shared = [1] * 64
        for _ in range(4):
            shared = [shared] * 64

        def record(p):
            for i in range(40):
                with p.span("fine", attributes={"i": i, "s": "x" * i, "f": 0.5, "b": b"\x01", "t": True,
                                                "list": [1, "two", 3.0], "tuple": (4, 5), "none": None},
                            links=[((1 << 127) + i, 2 ** 63 + 1, {"rel": "follows"}, "k=v", 1)]) as s:
                    s.add_event("e", {"n": -2 ** 63})
                with p.span("child of a 128-bit trace id", trace_id=(1 << 128) - 1 - i, parent_span_id=(1 << 64) - 1):
                    pass
            for bad in ({"k": Text("subclass")}, {"k": looped}, {"k": wide}, {"k": 1 << 64},
                        {1: "key not a string"}, {"\udc80": "lone surrogate key"}, {"k": -(1 << 70)}):
                with p.span("hostile", attributes=bad):
                    pass
            with self.assertRaises(ValueError):
                p.span("id past 128 bits", trace_id=1 << 130)
            with p.span("after", kind="client"):
                pass
            p.flush()
            # One object shared so often that walking it would stage
            # millions of items (marshal writes it once): the batch goes
            # through marshal instead, where the span is refused.
            with p.span("shared", attributes={"k": shared}):
                pass
            with p.span("beside it"):
                pass
            return p.shutdown()

        outcomes = []
        for objects in (True, False):
            with pipeline(batch_spans=1000) as p:
                buf = p._span_buffer(None)
                walked = []
                if objects and buf._send_objects is not None:
                    send = buf._send_objects

                    def counted(batch):
                        out = send(batch)
                        walked.append(out is not None)
                        return out
                    buf._send_objects = counted
                else:
                    buf._send_objects = None
                stats = record(p)
                outcomes.append((stats["exported"], stats["dropped_invalid"], stats["python_handed_over"]))
                if objects and sys.implementation.name == "cpython":
                    self.assertEqual(walked, [True, False])
        self.assertEqual(outcomes[0], outcomes[1])
        self.assertEqual(outcomes[0], (82, 8, 90))
        delivered(2 * 82)

    def test_span_buffer_is_bounded_and_handed_over_on_time(self):
        with pipeline(batch_spans=64, batch_interval=0.05) as p:
            for i in range(1000):
                with p.span("bounded", attributes={"i": i}):
                    pass
                self.assertLess(p.stats()["python_buffered"], 64)
            with p.span("alone"):
                pass
            # The flush thread hands it over within batch_interval.
            deadline = time.monotonic() + 5
            while p.stats()["python_buffered"] and time.monotonic() < deadline:
                time.sleep(0.01)
            self.assertEqual(p.stats()["python_buffered"], 0)
            self.assertEqual(p.shutdown()["exported"], 1001)
        delivered(1001)

    def test_a_script_that_never_shuts_down_still_delivers_at_exit(self):
        script = (
            "import sys; sys.path.insert(0, sys.argv[1]); import otlpflow\n"
            "p = otlpflow.Pipeline(endpoint=sys.argv[2], service_name='py-exit', from_env=False,\n"
            "                      batch_interval=60.0)\n"
            "for i in range(300):\n"
            "    with p.span('before exit', attributes={'i': i}):\n"
            "        pass\n"
            "p.record_span('direct')\n")
        root = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
        out = subprocess.run([sys.executable, "-c", script, root, ENDPOINT], capture_output=True, text=True,
                             timeout=60)
        self.assertEqual(out.returncode, 0, out.stderr)
        delivered(301)

    def test_settings_by_name(self):
        with pipeline(memory_budget="16M", retry_max_elapsed="20s", concurrency="adaptive:1:8",
                      self_metrics=False, **{"traces.timeout": "5s"}) as p:
            self.assertTrue(p.record_span("named settings"))
            self.assertEqual(p.shutdown()["exported"], 1)
        delivered(1)
        # A list setting: routed across both (the same receiver twice).
        with pipeline(endpoints=[ENDPOINT, ENDPOINT], **{"traces.routing": "round_robin"}) as p:
            for i in range(10):
                self.assertTrue(p.record_span("fleet", attributes={"i": i}))
            self.assertEqual(p.shutdown()["exported"], 10)
        delivered(10)
        with self.assertRaises(otlpflow.ConfigError) as cm:
            pipeline(memory_budget="lots-s3cret")
        self.assertIn("memory_budget", str(cm.exception))
        self.assertNotIn("s3cret", str(cm.exception))
        with self.assertRaises(otlpflow.ConfigError) as cm:
            pipeline(no_such_setting=1)
        self.assertIn("unknown setting", str(cm.exception))

    def test_otlpflow_variables_reach_a_pipeline_made_with_defaults(self):
        # OTLPFLOW_<NAME> for a setting no OTEL_ variable covers: a pipeline
        # made from the environment (the zero-code exporters' way) takes
        # them, and its own default arguments do not override them.
        import socket
        import urllib.request
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        env = {"OTLPFLOW_PROMETHEUS": "127.0.0.1:%d" % port, "OTLPFLOW_SHARDS": "3"}
        old = {k: os.environ.get(k) for k in env}
        os.environ.update(env)
        try:
            p = otlpflow.Pipeline(endpoint=ENDPOINT)
        finally:
            for k, v in old.items():
                if v is None:
                    del os.environ[k]
                else:
                    os.environ[k] = v
        with p:
            text = urllib.request.urlopen("http://127.0.0.1:%d/metrics" % port, timeout=10).read().decode()
            self.assertEqual(text.count("otlpflow_ring_fill_ratio{shard="), 3, text)

    def test_otlpflow_policy_from_the_environment_is_not_overridden_by_the_default(self):
        # OTLPFLOW_POLICY=block:60000 and no policy argument: a full memory
        # budget makes the recording thread wait (the default argument used
        # to set drop over it, and the records were dropped at once).
        import threading
        old = os.environ.get("OTLPFLOW_POLICY")
        os.environ["OTLPFLOW_POLICY"] = "block:60000"
        try:
            # Nothing listens on port 9: the ring fills and stays full.
            p = otlpflow.Pipeline(endpoint="http://127.0.0.1:9", shards=1, workers=1, ring_bytes="4096",
                                  memory_budget="64K", batch_spans=1)
        finally:
            if old is None:
                del os.environ["OTLPFLOW_POLICY"]
            else:
                os.environ["OTLPFLOW_POLICY"] = old

        def fill():
            try:
                for i in range(50000):
                    p.record_span("fill", attributes={"i": i})
            except otlpflow.ShutdownError:
                pass  # woken by the shutdown below
        t = threading.Thread(target=fill)
        t.start()
        t.join(2.0)
        waiting = t.is_alive()
        p.shutdown(timeout=1.0)
        t.join(30)
        p.close()
        self.assertTrue(waiting, "the recording thread should wait under block, not drop at once")

    def test_four_threads_record_at_once(self):
        with pipeline() as p:
            errors = []

            def work(t):
                try:
                    for i in range(500):
                        if not p.record_span("t%d" % t, attributes={"i": i}):
                            errors.append("refused")
                except Exception as e:  # reported below
                    errors.append(repr(e))

            threads = [threading.Thread(target=work, args=(t,)) for t in range(4)]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            self.assertEqual(errors, [])
            self.assertEqual(p.shutdown()["exported"], 2000)
        delivered(2000)

    @unittest.skipUnless(HTTP_ENDPOINT, "needs OTLPFLOW_TEST_HTTP_ENDPOINT")
    def test_otlp_http_protocol(self):
        # OTLP/HTTP with protobuf bodies, chosen from Python.
        with otlpflow.Pipeline(endpoint=HTTP_ENDPOINT, protocol="http/protobuf", service_name="py-http",
                               shards=1, workers=1, linger=0.005, from_env=False) as p:
            for i in range(150):
                self.assertTrue(p.record_span("over http", attributes={"i": i}))
            self.assertEqual(p.shutdown()["exported"], 150)
        delivered(150)
        with self.assertRaises(otlpflow.ConfigError):
            otlpflow.Pipeline(endpoint=HTTP_ENDPOINT, protocol="http/json", from_env=False)

    def test_close_while_other_threads_record_is_safe(self):
        # close() takes the handle from new calls and waits for the calls in
        # flight: the recording threads end with ShutdownError, never a
        # crash on a freed pipeline.
        # A dead endpoint: nothing of this reaches the test receiver.
        p = otlpflow.Pipeline(endpoint="http://127.0.0.1:9", service_name="py-close", shards=1,
                              workers=1, from_env=False)
        started = threading.Event()
        outcomes = []

        def work():
            n = 0
            try:
                while n < 200000:
                    p.record_span("racing", attributes={"i": n})
                    p.stats()
                    n += 1
                    started.set()
                outcomes.append("finished")
            except otlpflow.ShutdownError:
                outcomes.append("shutdown")

        threads = [threading.Thread(target=work) for _ in range(3)]
        for t in threads:
            t.start()
        started.wait(10)
        p.close()
        for t in threads:
            t.join(30)
        self.assertEqual(outcomes, ["shutdown"] * 3)
        with self.assertRaises(otlpflow.ShutdownError):
            p.stats()
        p.close()  # a second close is harmless

    @unittest.skipUnless(hasattr(os, "fork"), "needs os.fork")
    def test_parent_and_child_both_deliver_after_fork(self):
        p = pipeline()
        for i in range(100):
            p.record_span("before-fork", attributes={"i": i})
        p.flush()
        pid = os.fork()
        if pid == 0:
            code = 1
            try:
                for i in range(50):
                    p.record_span("child", attributes={"i": i})
                stats = p.shutdown()
                code = 0 if stats["exported"] == 150 and stats["in_flight"] == 0 else 2
            finally:
                os._exit(code)
        for i in range(70):
            p.record_span("parent", attributes={"i": i})
        _, status = os.waitpid(pid, 0)
        self.assertTrue(os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0, "child failed: %r" % status)
        self.assertEqual(p.shutdown()["exported"], 170)
        p.close()
        delivered(220)

    @unittest.skipUnless(hasattr(os, "fork"), "needs os.fork")
    def test_spans_waiting_in_python_at_a_fork_are_sent_once(self):
        p = pipeline(batch_interval=60.0)
        for i in range(10):
            with p.span("waiting", attributes={"i": i}):
                pass
        self.assertEqual(p.stats()["python_buffered"], 10)
        pid = os.fork()
        if pid == 0:
            code = 1
            try:
                # The parent handed the spans over before the fork: the
                # child starts with nothing waiting and sends nothing twice.
                st = p.stats()
                code = 0 if st["python_buffered"] == 0 else 2
                with p.span("child"):
                    pass
                st = p.shutdown()
                # Counters carry over the fork, as the native ones do: the
                # 10 handed over before it, and the child's own one.
                code = code or (0 if st["python_handed_over"] == 11 else 3)
            finally:
                os._exit(code)
        _, status = os.waitpid(pid, 0)
        self.assertTrue(os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0, "child failed: %r" % status)
        stats = p.shutdown()
        self.assertEqual(stats["exported"], 10)
        traces = [e for e in p.endpoint_stats() if e["signal"] == "traces"]
        self.assertEqual([e["exported"] for e in traces], [10])
        self.assertIn(traces[0]["endpoint"], ENDPOINT)
        p.close()
        delivered(11)

    def test_errors_are_exceptions_with_codes(self):
        with self.assertRaises(otlpflow.ConfigError) as cm:
            otlpflow.Pipeline(endpoint="ftp://x", from_env=False)
        self.assertIn("endpoint", str(cm.exception))
        self.assertEqual(cm.exception.code, otlpflow.INVALID_CONFIG)
        with self.assertRaises(otlpflow.ConfigError):
            otlpflow.Pipeline(endpoint=ENDPOINT, compression="brotli", from_env=False)
        p = pipeline()
        with self.assertRaises(ValueError):
            p.record_span("x", kind="sideways")
        with self.assertRaises(TypeError):
            p.record_span("x", attributes={"k": object()})
        with self.assertRaises(ValueError):
            p.record_span("x", trace_id=b"short")
        p.shutdown()
        with self.assertRaises(otlpflow.ShutdownError):
            p.record_span("late")
        with self.assertRaises(otlpflow.ShutdownError):
            p.shutdown()
        self.assertEqual(p.stats()["dropped_shutdown"], 1)
        p.close()
        p.close()  # a second close is harmless

    def test_ints_past_their_fields_range_raise_instead_of_wrapping(self):
        # ctypes keeps the low bits of an int that does not fit its field:
        # 2**70 was sent as 0, 2**63 as -2**63, a time of -1 as the year 2554.
        with pipeline() as p:
            for kw in ({"attributes": {"n": 1 << 63}}, {"attributes": {"n": -(1 << 63) - 1}},
                       {"attributes": {"l": [1, 1 << 70]}}, {"end_time_unix_nano": -1},
                       {"start_time_unix_nano": 1 << 64}, {"events": [(-5, "e", None)]}):
                with self.assertRaises(OverflowError, msg=kw):
                    p.record_span("big", **kw)
            for kw in ({"severity": (1 << 32) + 9}, {"flags": -1}, {"time_unix_nano": 1 << 64},
                       {"attributes": {"n": 1 << 70}}):
                with self.assertRaises(OverflowError, msg=kw):
                    p.record_log("big", **kw)
            with self.assertRaises(OverflowError):
                p.record_metric_point("big", 1 << 63)
            with self.assertRaises(OverflowError):
                p.record_metric_point("big", kind="histogram", histogram=(1, 1.0, [1.0], [1, -1], None, None))
            # The ends of each range fit.
            self.assertTrue(p.record_span("edge", attributes={"max": (1 << 63) - 1, "min": -(1 << 63)},
                                          start_time_unix_nano=0, end_time_unix_nano=(1 << 64) - 1))
            stats = p.flush()
            self.assertEqual((stats["offered"], stats["exported"]), (1, 1), stats)
        delivered(1)

    def test_a_string_argument_that_is_not_a_string_raises(self):
        # bytes(5) is five NUL bytes: an int attribute key or span name was
        # sent as NULs, and a key of 10**12 tried to allocate a terabyte.
        with pipeline() as p:
            calls = {
                "int name": lambda: p.record_span(4),
                "int key": lambda: p.record_span("k", attributes={3: "x"}),
                "huge int key": lambda: p.record_span("k", attributes={10 ** 12: "x"}),
                "float key": lambda: p.record_span("k", attributes={2.5: "x"}),
                "int event name": lambda: p.record_span("k", events=[(1, 2, None)]),
                "int status message": lambda: p.record_span("k", status=("error", 6)),
                "log key": lambda: p.record_log("k", attributes={7: "x"}),
                "batch name": lambda: p.record_batch([{"name": 8}]),
                "scope name": lambda: p.scope(9, "1"),
                "metric unit": lambda: p.record_metric_point("m", 1.0, unit=10),
            }
            for what, call in calls.items():
                with self.assertRaises(TypeError, msg=what):
                    call()
            # A header's value never shows in the error: it is a credential.
            with self.assertRaises(TypeError) as e:
                otlpflow.Pipeline(endpoint=ENDPOINT, from_env=False, headers={"x-token": 31415926})
            self.assertNotIn("31415926", str(e.exception))
            # UTF-8 in bytes stays accepted; other bytes are refused by the library.
            self.assertTrue(p.record_span(b"utf-8 name", attributes={b"key": "v"}))
            with self.assertRaises(ValueError):
                p.record_span(b"\xff\xfe")
            stats = p.flush()
            self.assertEqual((stats["offered"], stats["exported"]), (1, 1), stats)
        delivered(1)

    def test_durations_and_timeouts_that_are_negative_or_not_finite_are_refused(self):
        # ctypes keeps the low bits of a negative int: linger=-1 was a linger
        # of 2**64 - 1000 ms (batches left only when full or flushed), and
        # flush(-1) a wait without end; NaN or infinity raised ValueError or
        # OverflowError from int().
        for kw in ({"linger": -1}, {"linger": float("nan")}, {"linger": float("inf")},
                   {"max_wait": -0.5}, {"max_wait": float("nan")}, {"linger": "1"}):
            with self.assertRaises(otlpflow.ConfigError, msg=kw) as e:
                otlpflow.Pipeline(endpoint=ENDPOINT, from_env=False, **kw).close()
            self.assertIn(next(iter(kw)), str(e.exception))
        with otlpflow.Pipeline(endpoint=ENDPOINT, from_env=False, linger=0.002, max_wait=0) as p:
            self.assertTrue(p.record_span("after the refusals"))
            for timeout in (-1, float("nan"), float("inf")):
                with self.assertRaises(ValueError, msg=timeout):
                    p.flush(timeout)
            stats = p.flush()
            self.assertEqual(stats["exported"], 1, stats)
        delivered(1)

    def test_an_exception_whose_str_fails_leaves_the_span_unchanged(self):
        # The span's exit read str(exc) for the event and the status: an
        # exception whose __str__ raised had the caller's exception replaced
        # by that one (an `except Unprintable:` around the span missed it).
        class Unprintable(Exception):
            def __str__(self):
                raise RuntimeError("str() failed")
        with pipeline() as p:
            with self.assertRaises(Unprintable):
                with p.span("fails"):
                    raise Unprintable()
            span = p.span("recorded by hand")
            span.record_exception(Unprintable())
            span.end()
            stats = p.flush()
            self.assertEqual(stats["exported"], 2, stats)
        delivered(2)

    def test_a_dead_endpoint_with_a_spool_writes_to_disk(self):
        import tempfile
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
        s.close()
        with tempfile.TemporaryDirectory() as d:
            p = otlpflow.Pipeline(endpoint="http://127.0.0.1:%d" % port, from_env=False, spool_dir=d,
                                  spool_max_bytes="16M", max_batch_items=100, linger=0.005)
            for i in range(1000):
                p.record_span("to disk", attributes={"i": i})
            deadline = time.time() + 30
            while p.stats()["spooled"] < 1000 and time.time() < deadline:
                time.sleep(0.02)
            stats = p.stats()
            self.assertEqual(stats["spooled"], 1000, stats)
            self.assertGreater(stats["spool_bytes"], 0)
            self.assertEqual(stats["spool_errors"], 0)
            self.assertTrue(any(f.endswith(".seg") for f in os.listdir(d)))
            # Per endpoint: the dead one failing, its breaker open, nothing
            # acknowledged.
            traces = [e for e in p.endpoint_stats() if e["signal"] == "traces"]
            self.assertEqual(len(traces), 1, traces)
            self.assertEqual(traces[0]["endpoint"], "127.0.0.1:%d" % port)
            self.assertGreater(traces[0]["request_errors"], 0)
            self.assertTrue(traces[0]["breaker_open"])
            self.assertEqual(traces[0]["exported"], 0)
            p.shutdown(timeout=0.3)
            p.close()

    def test_flush_times_out_against_a_dead_endpoint(self):
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
        s.close()
        p = otlpflow.Pipeline(endpoint="http://127.0.0.1:%d" % port, from_env=False)
        p.record_span("nowhere")
        with self.assertRaises(otlpflow.FlushTimeout) as cm:
            p.flush(timeout=0.3)
        self.assertEqual(cm.exception.stats["accepted"], 1)
        self.assertIn(p.health(), ("degraded", "down"))
        self.assertIsNotNone(p.last_error())
        stats = p.shutdown(timeout=0.3)
        self.assertEqual(stats["failed"], 1)
        self.assertEqual(stats["in_flight"], 0)
        p.close()

    def test_logging_handler_sends_python_log_records(self):
        import logging
        with pipeline() as p:
            logger, handler = logger_to(p, "otlpflow.test", logging.DEBUG)
            try:
                for i in range(200):
                    logger.info("order %d placed", i, extra={"order.id": i, "tenant": "acme"})
                logger.warning("disk at %d%%", 91)
                try:
                    raise KeyError("missing")
                except KeyError:
                    logger.exception("lookup failed")
            finally:
                logger.removeHandler(handler)
            stats = p.flush()
            self.assertEqual(stats["exported"], 202)
            self.assertEqual(stats["dropped_invalid"], 0)
        delivered(202, "logs")

    def test_logging_handler_takes_records_without_thread_or_function_names(self):
        # threadName is None under `logging.logThreads = False` (an
        # optimization the logging docs suggest), funcName in a record made
        # by makeLogRecord: each None made record_log raise, and the record
        # was lost to handleError ("--- Logging error ---" on stderr).
        import logging

        class Unprintable(Exception):
            def __str__(self):
                raise RuntimeError("str() failed")

        with pipeline() as p:
            logger, handler = logger_to(p, "otlpflow.test.bare", logging.INFO)
            threads = logging.logThreads
            logging.logThreads = False
            try:
                logger.info("without a thread name")
                logger.handle(logging.makeLogRecord(
                    {"name": "otlpflow.test.bare", "msg": "made by hand", "levelno": logging.INFO,
                     "levelname": "INFO"}))
                try:
                    raise Unprintable()
                except Unprintable:
                    logger.exception("an exception str() cannot print")
            finally:
                logging.logThreads = threads
                logger.removeHandler(handler)
            stats = p.flush()
            self.assertEqual((stats["exported"], stats["dropped_invalid"]), (3, 0), stats)
        delivered(3, "logs")

    def test_instruments_from_threads(self):
        with pipeline() as p:
            requests = p.counter("py.requests", "{request}", "requests served")
            latency = p.histogram("py.latency", "ms", bounds=[1, 10, 100])
            queue = p.gauge("py.queue")

            def work(t):
                for i in range(500):
                    requests.add(1, {"route": "/r/%d" % (t % 2)})
                    latency.record(i % 150, {"route": "/r/%d" % (t % 2)})
                queue.set(float(t))

            threads = [threading.Thread(target=work, args=(t,)) for t in range(4)]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            with self.assertRaises(ValueError):
                requests.add(-1)
            # One explicit collection: 2 counter series, 2 histogram series,
            # 1 gauge series; shutdown collects the cumulative sums again
            # (4 points; the gauge was not set since).
            self.assertEqual(p.collect_metrics(), 5)
        delivered(9, "points")

    def test_stats_and_version(self):
        with pipeline() as p:
            for i in range(100):
                p.record_span("stats", attributes={"i": i})
            stats = p.flush()
            for key in ("offered", "accepted", "exported", "dropped_full", "failed", "in_flight",
                        "export_latency_p99_ns", "exported_per_sec", "dropped_full_per_sec",
                        "failed_exhausted_per_sec", "rate_window_ms"):
                self.assertIn(key, stats)
            self.assertGreater(stats["uptime_ms"], 0)
            self.assertGreater(stats["exported_per_sec_since_start"], 0)
            self.assertLessEqual(stats["export_latency_min_ns"], stats["export_latency_mean_ns"])
            self.assertLessEqual(stats["export_latency_mean_ns"], stats["export_latency_max_ns"])
            self.assertGreater(stats["export_latency_min_ns"], 0)
        delivered(100)
        self.assertEqual(otlpflow.version(), otlpflow.__version__)


if __name__ == "__main__":
    unittest.main()
