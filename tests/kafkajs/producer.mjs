// A KafkaJS idempotent producer, as a Node.js service writes to its topics. The end-to-end
// test (tests/it/kafkajs.rs) points it at `dlq-dashboard dev-cluster`: an idempotent
// producer goes to the cluster's controller first, which the mock cluster once named
// without it being a broker.
//
//   node producer.mjs BROKERS TOPIC COUNT
//
// Prints {"sent": COUNT} once every record is acknowledged, or {"failed": "..."} with exit
// code 2.
import { Kafka, logLevel } from "kafkajs";

const [brokers, topic, countText] = process.argv.slice(2);
const count = Number(countText);
if (!brokers || !topic || !Number.isInteger(count)) {
  console.error("usage: node producer.mjs BROKERS TOPIC COUNT");
  process.exit(64);
}

const kafka = new Kafka({
  clientId: "order-service-kafkajs",
  brokers: brokers.split(","),
  logLevel: logLevel.NOTHING,
  retry: { retries: 3 },
});
const producer = kafka.producer({ idempotent: true, maxInFlightRequests: 1 });
try {
  await producer.connect();
  const messages = Array.from({ length: count }, (_, i) => ({
    key: `order-${i}`,
    value: JSON.stringify({ order: i }),
  }));
  await producer.send({ topic, acks: -1, messages });
  console.log(JSON.stringify({ sent: count }));
  await producer.disconnect();
} catch (e) {
  console.log(JSON.stringify({ failed: `${e.name}: ${e.message}` }));
  process.exit(2);
}
