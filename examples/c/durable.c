/* busbar durable streams in C: a stream, publishes the broker acknowledges (one of them
 * deduplicated by id), a durable consumer that naks, acks and terminates, and the
 * dead letter that termination leaves in DLQ_DLQ.
 *
 * Runs on the embedded in-memory bus by default; BUSBAR_BACKEND=nats BUSBAR_NATS_URL=...
 * puts it on a JetStream-enabled NATS server (a fresh one: streams and consumers persist).
 *
 *     cargo build -p busbar-ffi && make -C examples/c durable && target/c/durable
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "busbar.h"

/* Prints the failed call with busbar's message and leaves. */
static void check(busbar_status status, const char *what) {
    if (status != BUSBAR_OK) {
        fprintf(stderr, "%s failed: [%s] %s\n", what, busbar_status_code(status), busbar_last_error());
        exit(1);
    }
}

/* The next delivery of `sub` (waiting at most 5 s), with its payload printed. */
static busbar_message *next(busbar_durable_subscription *sub, const char *label) {
    busbar_message *msg;
    const uint8_t *data;
    size_t len;
    uint32_t attempt;
    uint64_t sequence;
    check(busbar_durable_subscription_next(sub, 5000, &msg), "durable_subscription_next");
    check(busbar_message_data(msg, &data, &len), "data");
    check(busbar_message_attempt(msg, &attempt), "attempt");
    check(busbar_message_sequence(msg, &sequence), "sequence");
    printf("   %-8s got %.*s (sequence %llu, attempt %u)\n", label, (int)len, (const char *)data,
           (unsigned long long)sequence, attempt);
    return msg;
}

int main(void) {
    busbar_bus *bus;
    check(busbar_connect(NULL, &bus), "connect");

    /* 1. A stream over orders.> (declaring again is harmless). */
    const char *subjects[] = {"orders.>"};
    check(busbar_bus_declare_stream(bus, "ORDERS", subjects, 1, NULL, NULL), "declare_stream");

    /* 2. Publishes wait for the broker's ack; the same id twice is stored once. */
    busbar_publish_ack ack;
    const char *order = "{\"total\":12}";
    for (int i = 0; i < 2; i++) {
        check(busbar_bus_publish_durable(bus, "orders.created", (const uint8_t *)order,
                                         strlen(order), NULL, 0, "order-42", &ack),
              "publish_durable");
        printf("1. stored in %s at sequence %llu%s\n", ack.stream, (unsigned long long)ack.sequence,
               ack.duplicate ? " (duplicate: stored once)" : "");
    }
    const char *broken = "{\"total\":";
    check(busbar_bus_publish_durable(bus, "orders.created", (const uint8_t *)broken,
                                     strlen(broken), NULL, 0, NULL, NULL),
          "publish_durable");

    /* 3. A durable consumer: nak redelivers after the backoff, ack settles, term
     *    dead-letters. */
    busbar_consumer_options opts = {0}; /* zeros: core's defaults */
    opts.backoff_base_ms = 100;
    busbar_durable_subscription *billing;
    check(busbar_bus_durable_subscribe(bus, "ORDERS", "billing", &opts, &billing), "durable_subscribe");
    printf("2. consumer billing:\n");
    for (int i = 0; i < 3; i++) { /* order-42 twice (nak, then ack), the broken one once */
        busbar_message *msg = next(billing, "billing");
        const uint8_t *data;
        size_t len;
        uint32_t attempt;
        check(busbar_message_data(msg, &data, &len), "data");
        check(busbar_message_attempt(msg, &attempt), "attempt");
        if (len == strlen(broken) && memcmp(data, broken, len) == 0) {
            check(busbar_message_term(msg, "unparsable order"), "term");
            printf("            terminated: to the dead-letter stream\n");
        } else if (attempt == 1) {
            check(busbar_message_nak(msg, -1), "nak"); /* -1: after the consumer's backoff */
            printf("            nacked: comes again after 100 ms\n");
        } else {
            check(busbar_message_ack(msg), "ack");
            busbar_status twice = busbar_message_ack(msg);
            printf("            acked; acking twice: [%s]\n", busbar_status_code(twice));
        }
        busbar_message_free(msg);
    }

    /* 4. The dead letter, read like any stream (dead letters of orders.> only). */
    busbar_consumer_options dlq = {0};
    dlq.filter = "dlq.orders.>";
    busbar_durable_subscription *dead;
    check(busbar_bus_durable_subscribe(bus, "DLQ_DLQ", "auditor", &dlq, &dead), "durable_subscribe");
    printf("3. dead letters:\n");
    busbar_message *msg = next(dead, "auditor");
    const char *subject, *reason;
    check(busbar_message_subject(msg, &subject), "subject");
    check(busbar_message_header(msg, "busbar-dlq-reason", &reason), "header");
    printf("   on %s, reason \"%s\"\n", subject, reason ? reason : "?");
    check(busbar_message_ack(msg), "ack");
    busbar_message_free(msg);

    busbar_stream_info info;
    check(busbar_bus_stream_info(bus, "ORDERS", &info), "stream_info");
    printf("4. %s holds %llu messages, sequences %llu to %llu\n", info.name,
           (unsigned long long)info.messages, (unsigned long long)info.first_sequence,
           (unsigned long long)info.last_sequence);

    busbar_durable_subscription_free(dead);
    busbar_durable_subscription_free(billing);
    busbar_bus_free(bus);
    return 0;
}
