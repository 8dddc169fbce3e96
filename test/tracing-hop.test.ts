/**
 * A hop in one process, before, while and after an SDK is registered: none
 * made without one (nothing would record it), a caller's passed on as it
 * came, and an SDK registered after start-up used from the next hop on.
 */
import t from "tap";
import { trace } from "@opentelemetry/api";
import { TracerProvider } from "@opentelemetry/sdk-trace";
import { hop, SpanKind } from "../src/platform/tracing.js";

const given = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";
const traceparentOf = (incoming: string | undefined) => {
  const h = hop("test", SpanKind.SERVER, incoming);
  h.end();
  return { traceparent: h.traceparent, recorded: h.span !== undefined };
};

t.test("without an SDK, a hop passes on what came and makes none", async (t) => {
  t.same(traceparentOf(undefined), { traceparent: undefined, recorded: false });
  t.same(traceparentOf(given), { traceparent: given, recorded: false });
  t.same(traceparentOf("00-junk"), { traceparent: undefined, recorded: false });
});

t.test("an SDK registered later is used from the next hop, and one removed stops being used", async (t) => {
  t.equal(traceparentOf(undefined).traceparent, undefined, "before it");
  trace.setGlobalTracerProvider(new TracerProvider());
  t.teardown(() => trace.disable());
  const started = traceparentOf(undefined);
  t.ok(started.recorded, "a span");
  t.match(started.traceparent, /^00-[0-9a-f]{32}-[0-9a-f]{16}-01$/, "a trace started where none came");
  const joined = traceparentOf(given);
  t.match(joined.traceparent, /^00-0af7651916cd43dd8448eb211c80319c-[0-9a-f]{16}-01$/, "the caller's trace joined");
  t.not(joined.traceparent, given, "with this hop's span");
  trace.disable();
  t.same(traceparentOf(undefined), { traceparent: undefined, recorded: false }, "after it");
});
