/* busbar C suite, int_durable: Integration tests of durable streams, on the in-memory bus or a NATS server:
 * acks and dedupe, ack/nak redelivery, term and the last nak dead-letter, replay.
 *
 *   tests/c/Makefile builds it; scripts/test-c.sh runs it plainly, under valgrind (the
 *   leak run), and against a private nats-server (its URL as the first argument).
 */
#define _POSIX_C_SOURCE 200809L
#include "support.h"

static void test_durable_publish_is_acked_and_deduplicated(void) {
    busbar_bus *bus = connect_bus();
    const char *subjects[] = {"c.orders.>", "c.refunds.*"};
    busbar_stream_info info;
    CHECK_OK(busbar_bus_declare_stream(bus, "C_ORDERS", subjects, 2, NULL, &info));
    CHECK_STR(info.name, "C_ORDERS");
    CHECK(info.messages == 0 && info.last_sequence == 0);
    busbar_stream_options limits = {0};
    limits.max_messages = 100;
    limits.duplicate_window_ms = 60000;
    /* Declaring again is harmless (and keeps the stream as it is). */
    CHECK_OK(busbar_bus_declare_stream(bus, "C_ORDERS", subjects, 2, &limits, NULL));

    busbar_header headers[] = {{"tenant", "st-marys"}};
    busbar_publish_ack ack;
    const char *one = "{\"total\":12}";
    CHECK_OK(busbar_bus_publish_durable(bus, "c.orders.created", (const uint8_t *)one, strlen(one),
                                        headers, 1, "order-1", &ack));
    CHECK_STR(ack.stream, "C_ORDERS");
    CHECK(ack.sequence == 1);
    CHECK(!ack.duplicate);
    CHECK_OK(busbar_bus_publish_durable(bus, "c.refunds.eu", NULL, 0, NULL, 0, NULL, &ack));
    CHECK(ack.sequence == 2 && !ack.duplicate);
    /* The same id again inside the window: stored once, reported as the first copy. */
    CHECK_OK(busbar_bus_publish_durable(bus, "c.orders.created", (const uint8_t *)one, strlen(one),
                                        headers, 1, "order-1", &ack));
    CHECK(ack.duplicate);
    CHECK(ack.sequence == 1);
    CHECK_STR(ack.stream, "C_ORDERS");

    CHECK_OK(busbar_bus_stream_info(bus, "C_ORDERS", &info));
    CHECK_STR(info.name, "C_ORDERS");
    CHECK(info.messages == 2);
    CHECK(info.first_sequence == 1 && info.last_sequence == 2);
    CHECK(info.bytes >= strlen(one));

    /* The stored message keeps its id, headers and payload. */
    busbar_durable_subscription *sub = NULL;
    busbar_message *msg = NULL;
    CHECK_OK(busbar_bus_durable_subscribe(bus, "C_ORDERS", "reader", NULL, &sub));
    CHECK_OK(busbar_durable_subscription_next(sub, WAIT_MS, &msg));
    if (msg) {
        const char *id = NULL;
        CHECK_OK(busbar_message_id(msg, &id));
        CHECK_STR(id, "order-1");
        CHECK_STR(header_of(msg, "tenant"), "st-marys");
        char *text = message_text(msg);
        CHECK_STR(text, one);
        free(text);
        CHECK_OK(busbar_message_ack(msg));
    }
    busbar_message_free(msg);
    busbar_durable_subscription_free(sub);
    busbar_bus_free(bus);
}

static void test_durable_ack_and_nak_redeliver(void) {
    busbar_bus *bus = connect_with_stream("C_BILLING", "c.billing.>");
    busbar_consumer_options opts = {0};
    opts.backoff_base_ms = 20;
    opts.backoff_cap_ms = 100;
    opts.max_deliver = 5;
    busbar_durable_subscription *sub = NULL;
    CHECK_OK(busbar_bus_durable_subscribe(bus, "C_BILLING", "billing", &opts, &sub));
    publish_durable_text(bus, "c.billing.invoice", "a");

    busbar_message *msg = NULL, *copy = NULL;
    CHECK_OK(busbar_durable_subscription_next(sub, WAIT_MS, &msg));
    if (msg) {
        CHECK(attempt_of(msg) == 1);
        CHECK(sequence_of(msg) == 1);
        const char *stream = NULL;
        CHECK_OK(busbar_message_stream(msg, &stream));
        CHECK_STR(stream, "C_BILLING");
        CHECK_STR(subject_of(msg), "c.billing.invoice");
        CHECK_OK(busbar_message_in_progress(msg)); /* unsettled: restarts the clock */
        CHECK_OK(busbar_message_nak(msg, -1));     /* after the backoff: 20 ms */
        CHECK_STATUS(busbar_message_ack(msg), BUSBAR_INVALID_ARGUMENT);
        CHECK_ERROR_MENTIONS("already");
        CHECK_STATUS(busbar_message_nak(msg, 0), BUSBAR_INVALID_ARGUMENT);
        CHECK_STATUS(busbar_message_in_progress(msg), BUSBAR_INVALID_ARGUMENT);
    }
    busbar_message_free(msg);

    CHECK_OK(busbar_durable_subscription_next(sub, WAIT_MS, &msg));
    if (msg) {
        CHECK(attempt_of(msg) == 2);
        CHECK(sequence_of(msg) == 1);
        char *text = message_text(msg);
        CHECK_STR(text, "a");
        free(text);
        CHECK_OK(busbar_message_nak(msg, 10)); /* an explicit delay */
    }
    busbar_message_free(msg);

    CHECK_OK(busbar_durable_subscription_next(sub, WAIT_MS, &msg));
    if (msg) {
        CHECK(attempt_of(msg) == 3);
        /* A clone shares the delivery: settled through one, settled for both. */
        CHECK_OK(busbar_message_clone(msg, &copy));
        CHECK_OK(busbar_message_ack(copy));
        CHECK_STATUS(busbar_message_ack(msg), BUSBAR_INVALID_ARGUMENT);
        CHECK_STATUS(busbar_message_term(msg, "late"), BUSBAR_INVALID_ARGUMENT);
    }
    busbar_message_free(copy);
    busbar_message_free(msg);
    /* Acked: not delivered again. */
    CHECK_STATUS(busbar_durable_subscription_next(sub, 300, &msg), BUSBAR_TIMEOUT);
    CHECK(msg == NULL);
    CHECK_ERROR_MENTIONS("C_BILLING/billing");
    busbar_durable_subscription_free(sub);
    busbar_bus_free(bus);
}

static void test_durable_term_and_last_nak_dead_letter(void) {
    busbar_bus *bus = connect_with_stream("C_JOBS", "c.jobs.>");
    busbar_consumer_options opts = {0};
    opts.max_deliver = 1;
    busbar_durable_subscription *sub = NULL;
    CHECK_OK(busbar_bus_durable_subscribe(bus, "C_JOBS", "worker", &opts, &sub));
    busbar_header headers[] = {{"tenant", "st-marys"}};
    CHECK_OK(busbar_bus_publish_durable(bus, "c.jobs.resize", (const uint8_t *)"img-1", 5, headers,
                                        1, NULL, NULL));
    publish_durable_text(bus, "c.jobs.resize", "img-2");

    busbar_message *msg = NULL;
    CHECK_OK(busbar_durable_subscription_next(sub, WAIT_MS, &msg));
    if (msg) {
        CHECK_OK(busbar_message_term(msg, "corrupt image"));
        CHECK_STATUS(busbar_message_term(msg, "again"), BUSBAR_INVALID_ARGUMENT);
    }
    busbar_message_free(msg);
    /* A nak on the last allowed attempt (max_deliver 1) dead-letters too. */
    CHECK_OK(busbar_durable_subscription_next(sub, WAIT_MS, &msg));
    if (msg) CHECK_OK(busbar_message_nak(msg, -1));
    busbar_message_free(msg);
    CHECK_STATUS(busbar_durable_subscription_next(sub, 200, &msg), BUSBAR_TIMEOUT);

    /* Dead letters are stored in DLQ_DLQ under dlq.<subject>, read like any stream. */
    busbar_stream_info info;
    CHECK_OK(busbar_bus_stream_info(bus, "DLQ_DLQ", &info));
    CHECK(info.messages >= 2);
    busbar_consumer_options dlq_opts = {0};
    dlq_opts.filter = "dlq.c.jobs.>";
    busbar_durable_subscription *dead = NULL;
    CHECK_OK(busbar_bus_durable_subscribe(bus, "DLQ_DLQ", "dlq-reader", &dlq_opts, &dead));
    CHECK_OK(busbar_durable_subscription_next(dead, WAIT_MS, &msg));
    if (msg) {
        CHECK_STR(subject_of(msg), "dlq.c.jobs.resize");
        const char *reason = header_of(msg, "busbar-dlq-reason");
        CHECK(reason != NULL && strstr(reason, "corrupt image") != NULL);
        CHECK_STR(header_of(msg, "busbar-dlq-stream"), "C_JOBS");
        CHECK_STR(header_of(msg, "busbar-dlq-consumer"), "worker");
        CHECK_STR(header_of(msg, "busbar-dlq-sequence"), "1");
        CHECK_STR(header_of(msg, "tenant"), "st-marys"); /* the original headers stay */
        char *text = message_text(msg);
        CHECK_STR(text, "img-1");
        free(text);
        const char *stream = NULL;
        CHECK_OK(busbar_message_stream(msg, &stream));
        CHECK_STR(stream, "DLQ_DLQ");
        CHECK_OK(busbar_message_ack(msg));
    }
    busbar_message_free(msg);
    CHECK_OK(busbar_durable_subscription_next(dead, WAIT_MS, &msg));
    if (msg) {
        const char *reason = header_of(msg, "busbar-dlq-reason");
        CHECK(reason != NULL && strstr(reason, "nacked on attempt 1 of 1") != NULL);
        CHECK_STR(header_of(msg, "busbar-dlq-attempts"), "1");
        char *text = message_text(msg);
        CHECK_STR(text, "img-2");
        free(text);
        CHECK_OK(busbar_message_ack(msg));
    }
    busbar_message_free(msg);
    busbar_durable_subscription_free(dead);
    busbar_durable_subscription_free(sub);
    busbar_bus_free(bus);
}

static void test_durable_replay_from_a_sequence(void) {
    busbar_bus *bus = connect_with_stream("C_REPLAY", "c.replay.>");
    for (int i = 1; i <= 5; i++) {
        char text[8];
        snprintf(text, sizeof text, "m%d", i);
        publish_durable_text(bus, "c.replay.tick", text);
    }
    busbar_consumer_options opts = {0};
    opts.start = BUSBAR_START_SEQUENCE;
    opts.start_sequence = 3;
    busbar_durable_subscription *sub = NULL, *fresh = NULL;
    CHECK_OK(busbar_bus_durable_subscribe(bus, "C_REPLAY", "from-3", &opts, &sub));
    busbar_message *msg = NULL;
    for (uint64_t want = 3; want <= 5; want++) {
        CHECK_OK(busbar_durable_subscription_next(sub, WAIT_MS, &msg));
        if (msg) {
            char expected[8];
            snprintf(expected, sizeof expected, "m%d", (int)want);
            CHECK(sequence_of(msg) == want);
            CHECK(attempt_of(msg) == 1);
            char *text = message_text(msg);
            CHECK_STR(text, expected);
            free(text);
            CHECK_OK(busbar_message_ack(msg));
        }
        busbar_message_free(msg);
    }
    CHECK_STATUS(busbar_durable_subscription_next(sub, 100, &msg), BUSBAR_TIMEOUT);

    /* BUSBAR_START_NEW skips what is stored; the rate limit only paces. */
    busbar_consumer_options new_opts = {0};
    new_opts.start = BUSBAR_START_NEW;
    new_opts.rate_limit = 1000.0;
    CHECK_OK(busbar_bus_durable_subscribe(bus, "C_REPLAY", "only-new", &new_opts, &fresh));
    publish_durable_text(bus, "c.replay.tick", "m6");
    CHECK_OK(busbar_durable_subscription_next(fresh, WAIT_MS, &msg));
    if (msg) {
        CHECK(sequence_of(msg) == 6);
        CHECK_OK(busbar_message_ack(msg));
    }
    busbar_message_free(msg);
    /* The first consumer sees the new one too. */
    CHECK_OK(busbar_durable_subscription_next(sub, WAIT_MS, &msg));
    if (msg) CHECK(sequence_of(msg) == 6);
    busbar_message_free(msg); /* freed unsettled: it would come again after ack_wait */
    busbar_durable_subscription_free(fresh);

    /* BUSBAR_START_TIME: from the first message stored at or after a wall-clock time. */
    struct timespec now;
    clock_gettime(CLOCK_REALTIME, &now);
    uint64_t now_ms = (uint64_t)now.tv_sec * 1000u + (uint64_t)now.tv_nsec / 1000000u;
    busbar_consumer_options time_opts = {0};
    time_opts.start = BUSBAR_START_TIME;
    time_opts.start_time_ms = now_ms - 3600u * 1000u; /* an hour ago: everything */
    CHECK_OK(busbar_bus_durable_subscribe(bus, "C_REPLAY", "since-an-hour", &time_opts, &fresh));
    CHECK_OK(busbar_durable_subscription_next(fresh, WAIT_MS, &msg));
    if (msg) CHECK(sequence_of(msg) == 1);
    busbar_message_free(msg);
    busbar_durable_subscription_free(fresh);
    time_opts.start_time_ms = now_ms + 3600u * 1000u; /* in an hour: nothing stored yet */
    CHECK_OK(busbar_bus_durable_subscribe(bus, "C_REPLAY", "in-an-hour", &time_opts, &fresh));
    CHECK_STATUS(busbar_durable_subscription_next(fresh, 100, &msg), BUSBAR_TIMEOUT);
    busbar_durable_subscription_free(fresh);
    busbar_durable_subscription_free(sub);
    busbar_bus_free(bus);
}

/* Durable subscriptions end with the verbs of plain ones (docs/design.md §9): counters,
 * drain once what was handed out is settled, unsubscribe from another thread. */
struct durable_waiter {
    busbar_durable_subscription *sub;
    busbar_status status;
};

static void *wait_for_delivery(void *arg) {
    struct durable_waiter *w = arg;
    busbar_message *msg = NULL;
    w->status = busbar_durable_subscription_next(w->sub, WAIT_MS, &msg);
    busbar_message_free(msg);
    return NULL;
}

static void test_durable_stats_drain_and_unsubscribe(void) {
    busbar_bus *bus = connect_with_stream("C_ENDING", "c.ending.>");
    publish_durable_text(bus, "c.ending.a", "one");
    publish_durable_text(bus, "c.ending.b", "two");
    busbar_durable_subscription *sub = NULL;
    /* A short ack wait: what the first reader fetched but did not hand out comes again soon. */
    busbar_consumer_options opts = {0};
    opts.ack_wait_ms = 1000;
    CHECK_OK(busbar_bus_durable_subscribe(bus, "C_ENDING", "ender", &opts, &sub));
    busbar_durable_subscription_counters stats;
    CHECK_OK(busbar_durable_subscription_stats(sub, &stats));
    CHECK(stats.delivered == 0 && stats.unsettled == 0);
    busbar_message *msg = NULL;
    CHECK_OK(busbar_durable_subscription_next(sub, WAIT_MS, &msg));
    CHECK_OK(busbar_durable_subscription_stats(sub, &stats));
    CHECK(stats.delivered == 1 && stats.unsettled == 1 && stats.undecodable == 0);
    CHECK_OK(busbar_message_ack(msg));
    CHECK_OK(busbar_durable_subscription_stats(sub, &stats));
    CHECK(stats.unsettled == 0);
    busbar_message_free(msg);
    /* Everything handed out is settled: drain returns at once, and the subscription ends
     * (the second message stays in the stream for the consumer's next reader). */
    CHECK_OK(busbar_durable_subscription_drain(sub));
    CHECK_STATUS(busbar_durable_subscription_next(sub, WAIT_MS, &msg), BUSBAR_CLOSED);
    CHECK(msg == NULL);
    CHECK_OK(busbar_durable_subscription_drain(sub)); /* twice is fine */
    busbar_durable_subscription_free(sub);

    /* The next reader of the consumer gets the second message; unsubscribing from another
     * thread ends a wait in next. */
    CHECK_OK(busbar_bus_durable_subscribe(bus, "C_ENDING", "ender", &opts, &sub));
    CHECK_OK(busbar_durable_subscription_next(sub, WAIT_MS, &msg));
    char *text = msg ? message_text(msg) : NULL;
    CHECK_STR(text, "two");
    free(text);
    CHECK_OK(busbar_message_ack(msg));
    busbar_message_free(msg);
    struct durable_waiter w = {sub, BUSBAR_OK};
    pthread_t thread;
    pthread_create(&thread, NULL, wait_for_delivery, &w);
    sleep_ms(50);
    CHECK_OK(busbar_durable_subscription_unsubscribe(sub));
    pthread_join(thread, NULL);
    CHECK_STATUS(w.status, BUSBAR_CLOSED);
    CHECK_STATUS(busbar_durable_subscription_stats(NULL, &stats), BUSBAR_INVALID_ARGUMENT);
    CHECK_STATUS(busbar_durable_subscription_drain(NULL), BUSBAR_INVALID_ARGUMENT);
    busbar_durable_subscription_free(sub);
    busbar_bus_free(bus);
}

static void test_durable_streams_and_consumers_are_listed_and_deleted(void) {
    busbar_bus *bus = connect_bus();
    const char *subjects[] = {"c.admin.>"};
    CHECK_OK(busbar_bus_declare_stream(bus, "C_ADMIN", subjects, 1, NULL, NULL));
    CHECK_OK(busbar_bus_publish_durable(bus, "c.admin.a", NULL, 0, NULL, 0, NULL, NULL));
    CHECK_OK(busbar_bus_publish_durable(bus, "c.admin.b", NULL, 0, NULL, 0, NULL, NULL));

    /* Ask for the count first, then for the streams themselves. */
    size_t count = 0;
    CHECK_OK(busbar_bus_list_streams(bus, NULL, 0, &count));
    CHECK(count >= 1);
    busbar_stream_info *infos = calloc(count, sizeof *infos);
    size_t again = 0;
    CHECK_OK(busbar_bus_list_streams(bus, infos, count, &again));
    bool found = false;
    for (size_t i = 0; i < count && i < again; i++) {
        if (strcmp(infos[i].name, "C_ADMIN") == 0) {
            found = true;
            CHECK(infos[i].messages == 2);
        }
    }
    CHECK(found);
    free(infos);
    CHECK_STATUS(busbar_bus_list_streams(bus, NULL, 1, &count), BUSBAR_INVALID_ARGUMENT);
    CHECK_STATUS(busbar_bus_list_streams(bus, NULL, 0, NULL), BUSBAR_INVALID_ARGUMENT);

    busbar_consumer_options opts = {0};
    opts.filter = "c.admin.>";
    busbar_durable_subscription *sub = NULL;
    busbar_message *msg = NULL;
    CHECK_OK(busbar_bus_durable_subscribe(bus, "C_ADMIN", "c_reader", &opts, &sub));
    CHECK_OK(busbar_durable_subscription_next(sub, WAIT_MS, &msg));
    if (msg) CHECK_OK(busbar_message_ack(msg));
    busbar_message_free(msg);
    busbar_durable_subscription_free(sub);

    busbar_consumer_info consumers[4];
    CHECK_OK(busbar_bus_list_consumers(bus, "C_ADMIN", consumers, 4, &count));
    CHECK(count == 1);
    CHECK_STR(consumers[0].name, "c_reader");
    CHECK_STR(consumers[0].stream, "C_ADMIN");
    CHECK(consumers[0].filtered);
    busbar_consumer_info info;
    CHECK_OK(busbar_bus_consumer_info(bus, "C_ADMIN", "c_reader", &info));
    /* NATS pulls ahead of the handler: delivered and pending always add up. */
    CHECK(info.delivered_sequence >= 1 && info.pending + info.delivered_sequence == 2);

    CHECK_OK(busbar_bus_delete_consumer(bus, "C_ADMIN", "c_reader"));
    CHECK_STATUS(busbar_bus_consumer_info(bus, "C_ADMIN", "c_reader", &info), BUSBAR_INVALID_ARGUMENT);
    CHECK_OK(busbar_bus_list_consumers(bus, "C_ADMIN", consumers, 4, &count));
    CHECK(count == 0);
    CHECK_STATUS(busbar_bus_delete_consumer(bus, "C_ADMIN", "c_reader"), BUSBAR_INVALID_ARGUMENT);
    CHECK_OK(busbar_bus_delete_stream(bus, "C_ADMIN"));
    busbar_stream_info gone;
    CHECK_STATUS(busbar_bus_stream_info(bus, "C_ADMIN", &gone), BUSBAR_INVALID_ARGUMENT);
    CHECK_STATUS(busbar_bus_delete_stream(bus, "C_ADMIN"), BUSBAR_INVALID_ARGUMENT);
    CHECK_STATUS(busbar_bus_delete_stream(bus, NULL), BUSBAR_INVALID_ARGUMENT);
    busbar_bus_free(bus);
}

int main(int argc, char **argv) {
    suite_start(argc, argv, "int_durable");
    RUN(test_durable_publish_is_acked_and_deduplicated);
    RUN(test_durable_ack_and_nak_redeliver);
    RUN(test_durable_term_and_last_nak_dead_letter);
    RUN(test_durable_replay_from_a_sequence);
    RUN(test_durable_stats_drain_and_unsubscribe);
    RUN(test_durable_streams_and_consumers_are_listed_and_deleted);
    return suite_end();
}
