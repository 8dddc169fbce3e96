/**
 * Server-sent events over fetch (EventSource cannot send an Authorization
 * header), as an async iterator of parsed JSON `data` fields. Browser-safe.
 */
import { createParser, type EventSourceMessage } from "eventsource-parser";

export async function* readSse(body: ReadableStream<Uint8Array>, signal?: AbortSignal): AsyncGenerator<{ event: string | undefined; data: unknown }> {
  const queue: EventSourceMessage[] = [];
  const parser = createParser({ onEvent: (message) => queue.push(message) });
  const reader = body.getReader();
  const decoder = new TextDecoder();
  const cancel = () => void reader.cancel().catch(() => undefined);
  signal?.addEventListener("abort", cancel);
  try {
    while (!signal?.aborted) {
      const { value, done } = await reader.read();
      if (done) return;
      parser.feed(decoder.decode(value, { stream: true }));
      while (queue.length > 0) {
        const message = queue.shift()!;
        yield { event: message.event, data: JSON.parse(message.data) as unknown };
      }
    }
  } finally {
    signal?.removeEventListener("abort", cancel);
    cancel();
  }
}
