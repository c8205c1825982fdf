// A consumer service written with KafkaJS, as a Node.js team would write one: a consumer
// group on its retry topic that processes each record, then commits its offset (at least
// once). The end-to-end test (tests/it/kafkajs.rs) replays records from the dashboard to
// the topic and checks that this service processed every one.
//
//   node consumer.mjs BROKERS TOPIC GROUP EXPECTED
//
// Prints one JSON line per processed record ({"processed": {...}}), then {"done": N} once
// EXPECTED distinct replay ids were processed and their offsets committed. A record the
// client cannot read (a codec it lacks) crashes the consumer group: that is printed as
// {"crashed": "..."} with exit code 2, the failure the test guards against.
import { Kafka, logLevel } from "kafkajs";

const [brokers, topic, groupId, expectedText] = process.argv.slice(2);
const expected = Number(expectedText);
if (!brokers || !topic || !groupId || !Number.isInteger(expected)) {
  console.error("usage: node consumer.mjs BROKERS TOPIC GROUP EXPECTED");
  process.exit(64);
}

const kafka = new Kafka({
  clientId: "order-service-kafkajs",
  brokers: brokers.split(","),
  logLevel: logLevel.ERROR,
  retry: { retries: 8 },
});
const consumer = kafka.consumer({ groupId, retry: { retries: 0 } });
const seen = new Set();
let finished = false;

const text = (buffer) => (buffer == null ? null : buffer.toString("utf8"));

// Leaves the group once the handler that called this has returned (disconnect waits for
// running handlers, so awaiting it inside one would never end), then exits.
function stop(code, line) {
  if (finished) return;
  finished = true;
  console.log(JSON.stringify(line));
  // A group that cannot be left cleanly (a broker gone) must not keep the test waiting.
  setTimeout(() => process.exit(code), 10000).unref();
  setImmediate(() => {
    consumer
      .disconnect()
      .catch(() => {})
      .finally(() => process.exit(code));
  });
}

consumer.on(consumer.events.CRASH, (event) => {
  stop(2, { crashed: `${event.payload.error.name}: ${event.payload.error.message}` });
});

await consumer.connect();
await consumer.subscribe({ topic, fromBeginning: true });
await consumer.run({
  autoCommit: false,
  eachMessage: async ({ topic, partition, message }) => {
    const replayId = text(message.headers["dlq-replay-id"]);
    // Processing: this service only needs the payload to be JSON it can read.
    JSON.parse(text(message.value));
    seen.add(replayId);
    await consumer.commitOffsets([
      { topic, partition, offset: (BigInt(message.offset) + 1n).toString() },
    ]);
    console.log(
      JSON.stringify({
        processed: {
          partition,
          offset: Number(message.offset),
          key: text(message.key),
          replay_id: replayId,
          replay_action: text(message.headers["dlq-replay-action"]),
          source: text(message.headers["dlq-source"]),
        },
      }),
    );
    if (seen.size >= expected) stop(0, { done: seen.size });
  },
});
