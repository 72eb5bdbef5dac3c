/* busbar C suite, api_errors: API tests: every kind of bad input is an error, never a crash; every call after
 * close returns BUSBAR_CLOSED; the errors of durable streams.
 *
 *   tests/c/Makefile builds it; scripts/test-c.sh runs it plainly, under valgrind (the
 *   leak run), and against a private nats-server (its URL as the first argument).
 */
#define _POSIX_C_SOURCE 200809L
#include "support.h"

/* ---- bad input and use after close -------------------------------------------- */

static void test_bad_input_is_an_error_never_a_crash(void) {
    busbar_bus *bus = connect_bus();
    busbar_subscription *sub = NULL;
    busbar_message *msg = NULL;
    const uint8_t *data = NULL;
    size_t len = 0;
    const char *text = NULL;

    CHECK_STATUS(busbar_bus_publish(NULL, "a", NULL, 0, NULL, 0), BUSBAR_INVALID_ARGUMENT);
    CHECK_ERROR_MENTIONS("bus is NULL");
    CHECK_STATUS(busbar_bus_publish(bus, NULL, NULL, 0, NULL, 0), BUSBAR_INVALID_ARGUMENT);
    CHECK_STATUS(busbar_bus_publish(bus, "a.\xff.b", NULL, 0, NULL, 0), BUSBAR_INVALID_ARGUMENT);
    CHECK_ERROR_MENTIONS("UTF-8");
    CHECK_STATUS(busbar_bus_publish(bus, "orders..eu", NULL, 0, NULL, 0), BUSBAR_INVALID_SUBJECT);
    CHECK_ERROR_MENTIONS("orders..eu");
    CHECK_STATUS(busbar_bus_publish(bus, "orders.*", NULL, 0, NULL, 0), BUSBAR_INVALID_SUBJECT);
    CHECK_STATUS(busbar_bus_publish(bus, "a", NULL, 5, NULL, 0), BUSBAR_INVALID_ARGUMENT);
    CHECK_STATUS(busbar_bus_publish(bus, "a", (const uint8_t *)"x", SIZE_MAX, NULL, 0),
                 BUSBAR_INVALID_ARGUMENT);
    CHECK_ERROR_MENTIONS("does not fit");
    CHECK_STATUS(busbar_bus_publish(bus, "a", NULL, 0, NULL, 1), BUSBAR_INVALID_ARGUMENT);
    busbar_header reserved[] = {{"ce-id", "1"}};
    CHECK_STATUS(busbar_bus_publish(bus, "a", NULL, 0, reserved, 1), BUSBAR_INVALID_ARGUMENT);
    CHECK_ERROR_MENTIONS("reserved");
    busbar_header spaced[] = {{"bad name", "1"}};
    CHECK_STATUS(busbar_bus_publish(bus, "a", NULL, 0, spaced, 1), BUSBAR_INVALID_ARGUMENT);
    busbar_header injected[] = {{"x", "line\r\nInjected: 1"}};
    CHECK_STATUS(busbar_bus_publish(bus, "a", NULL, 0, injected, 1), BUSBAR_INVALID_ARGUMENT);
    busbar_header null_value[] = {{"x", NULL}};
    CHECK_STATUS(busbar_bus_publish(bus, "a", NULL, 0, null_value, 1), BUSBAR_INVALID_ARGUMENT);
    CHECK_ERROR_MENTIONS("headers[0].value");

    CHECK_STATUS(busbar_bus_subscribe(bus, "a.>.b", &sub), BUSBAR_INVALID_SUBJECT);
    CHECK(sub == NULL);
    CHECK_STATUS(busbar_bus_subscribe(bus, "a", NULL), BUSBAR_INVALID_ARGUMENT);
    CHECK_STATUS(busbar_bus_queue_subscribe(bus, "a", "two words", &sub), BUSBAR_INVALID_ARGUMENT);
    CHECK_STATUS(busbar_bus_queue_subscribe(bus, "a", NULL, &sub), BUSBAR_INVALID_ARGUMENT);
    CHECK_STATUS(busbar_bus_request(bus, "a.*", NULL, 0, 10, &msg), BUSBAR_INVALID_SUBJECT);
    CHECK_STATUS(busbar_bus_request(bus, "a", NULL, 0, 10, NULL), BUSBAR_INVALID_ARGUMENT);
    CHECK_STATUS(busbar_bus_flush(NULL), BUSBAR_INVALID_ARGUMENT);
    CHECK_STATUS(busbar_bus_close(NULL), BUSBAR_INVALID_ARGUMENT);
    CHECK_STATUS(busbar_bus_stats(bus, NULL), BUSBAR_INVALID_ARGUMENT);

    CHECK_STATUS(busbar_subscription_next(NULL, 0, &msg), BUSBAR_INVALID_ARGUMENT);
    CHECK_STATUS(busbar_subscription_unsubscribe(NULL), BUSBAR_INVALID_ARGUMENT);
    CHECK_STATUS(busbar_subscription_drain(NULL), BUSBAR_INVALID_ARGUMENT);
    CHECK_OK(busbar_bus_subscribe(bus, "a", &sub));
    CHECK_STATUS(busbar_subscription_next(sub, 0, NULL), BUSBAR_INVALID_ARGUMENT);
    CHECK_STATUS(busbar_subscription_set_callback(sub, NULL, NULL, NULL), BUSBAR_INVALID_ARGUMENT);
    CHECK_ERROR_MENTIONS("callback is NULL");

    CHECK_STATUS(busbar_message_subject(NULL, &text), BUSBAR_INVALID_ARGUMENT);
    CHECK_STATUS(busbar_message_data(NULL, &data, &len), BUSBAR_INVALID_ARGUMENT);
    CHECK_STATUS(busbar_message_header(NULL, "a", &text), BUSBAR_INVALID_ARGUMENT);
    CHECK_STATUS(busbar_message_respond(NULL, NULL, 0), BUSBAR_INVALID_ARGUMENT);
    CHECK_STATUS(busbar_message_clone(NULL, &msg), BUSBAR_INVALID_ARGUMENT);
    CHECK_OK(busbar_bus_publish(bus, "a", NULL, 0, NULL, 0));
    CHECK_OK(busbar_subscription_next(sub, WAIT_MS, &msg));
    CHECK_STATUS(busbar_message_subject(msg, NULL), BUSBAR_INVALID_ARGUMENT);
    CHECK_STATUS(busbar_message_data(msg, NULL, &len), BUSBAR_INVALID_ARGUMENT);
    CHECK_STATUS(busbar_message_header(msg, NULL, &text), BUSBAR_INVALID_ARGUMENT);
    CHECK_STATUS(busbar_message_header(msg, "\xff", &text), BUSBAR_INVALID_ARGUMENT);
    CHECK_STATUS(busbar_message_respond(msg, NULL, 3), BUSBAR_INVALID_ARGUMENT);
    busbar_message_free(msg);

    /* Every _free accepts NULL. */
    busbar_message_free(NULL);
    busbar_subscription_free(NULL);
    busbar_bus_free(NULL);
    busbar_config_free(NULL);
    busbar_subscription_free(sub);
    busbar_bus_free(bus);
}

static void test_every_call_after_close_returns_closed(void) {
    busbar_bus *bus = connect_bus();
    busbar_subscription *sub = NULL, *late = NULL;
    busbar_message *msg = NULL, *request = NULL;
    CHECK_OK(busbar_bus_subscribe(bus, "held", &sub));
    CHECK_OK(busbar_bus_publish(bus, "held", (const uint8_t *)"kept", 4, NULL, 0));
    /* A request received before close, answered after it. */
    busbar_subscription *responder = NULL;
    CHECK_OK(busbar_bus_subscribe(bus, "ask", &responder));
    CHECK_STATUS(busbar_bus_request(bus, "ask", NULL, 0, 1, &msg), BUSBAR_TIMEOUT);
    CHECK_OK(busbar_subscription_next(responder, WAIT_MS, &request));
    CHECK_OK(busbar_bus_flush(bus));

    CHECK_OK(busbar_bus_close(bus));
    CHECK_OK(busbar_bus_close(bus)); /* closing twice is fine */
    CHECK_STATUS(busbar_bus_publish(bus, "held", NULL, 0, NULL, 0), BUSBAR_CLOSED);
    CHECK_ERROR_MENTIONS("closed");
    CHECK_STATUS(busbar_bus_subscribe(bus, "held", &late), BUSBAR_CLOSED);
    CHECK(late == NULL);
    CHECK_STATUS(busbar_bus_queue_subscribe(bus, "held", "g", &late), BUSBAR_CLOSED);
    CHECK_STATUS(busbar_bus_request(bus, "ask", NULL, 0, 10, &msg), BUSBAR_CLOSED);
    CHECK_STATUS(busbar_bus_flush(bus), BUSBAR_CLOSED);
    if (request) CHECK_STATUS(busbar_message_respond(request, NULL, 0), BUSBAR_CLOSED);
    busbar_message_free(request);
    /* The subscription yields what it held, then reports closed. */
    CHECK_OK(busbar_subscription_next(sub, WAIT_MS, &msg));
    busbar_message_free(msg);
    CHECK_STATUS(busbar_subscription_next(sub, WAIT_MS, &msg), BUSBAR_CLOSED);
    CHECK_STATUS(busbar_subscription_next(responder, WAIT_MS, &msg), BUSBAR_CLOSED);
    busbar_stats stats;
    CHECK_OK(busbar_bus_stats(bus, &stats));
    busbar_subscription_free(sub);
    busbar_subscription_free(responder);
    busbar_bus_free(bus);
}

static void test_durable_errors(void) {
    busbar_bus *bus = connect_bus();
    busbar_durable_subscription *sub = NULL;
    busbar_message *msg = NULL;
    busbar_stream_info info;
    busbar_publish_ack ack;
    const char *subjects[] = {"c.errors.>", NULL};

    /* Unknown stream: invalid_argument. */
    CHECK_STATUS(busbar_bus_durable_subscribe(bus, "C_MISSING", "c", NULL, &sub),
                 BUSBAR_INVALID_ARGUMENT);
    CHECK(sub == NULL);
    CHECK_ERROR_MENTIONS("C_MISSING");
    CHECK_STATUS(busbar_bus_stream_info(bus, "C_MISSING", &info), BUSBAR_INVALID_ARGUMENT);
    CHECK(info.messages == 0 && info.name[0] == '\0');
    CHECK_STATUS(busbar_bus_publish_durable(bus, "c.nowhere.x", NULL, 0, NULL, 0, NULL, &ack),
                 BUSBAR_INVALID_ARGUMENT);
    CHECK_ERROR_MENTIONS("c.nowhere.x");

    /* Bad declarations. */
    CHECK_STATUS(busbar_bus_declare_stream(bus, "bad.name", subjects, 1, NULL, NULL),
                 BUSBAR_INVALID_ARGUMENT);
    CHECK_ERROR_MENTIONS("bad.name");
    CHECK_STATUS(busbar_bus_declare_stream(bus, "C_ERRORS", subjects, 0, NULL, NULL),
                 BUSBAR_INVALID_ARGUMENT);
    CHECK_STATUS(busbar_bus_declare_stream(bus, "C_ERRORS", subjects, 2, NULL, NULL),
                 BUSBAR_INVALID_ARGUMENT);
    CHECK_ERROR_MENTIONS("subjects[1] is NULL");
    CHECK_STATUS(busbar_bus_declare_stream(bus, "C_ERRORS", NULL, 1, NULL, NULL),
                 BUSBAR_INVALID_ARGUMENT);
    const char *bad_subjects[] = {"c..x"};
    CHECK_STATUS(busbar_bus_declare_stream(bus, "C_ERRORS", bad_subjects, 1, NULL, NULL),
                 BUSBAR_INVALID_SUBJECT);
    CHECK_STATUS(busbar_bus_declare_stream(NULL, "C_ERRORS", subjects, 1, NULL, NULL),
                 BUSBAR_INVALID_ARGUMENT);
    CHECK_STATUS(busbar_bus_declare_stream(bus, NULL, subjects, 1, NULL, NULL),
                 BUSBAR_INVALID_ARGUMENT);
    CHECK_OK(busbar_bus_declare_stream(bus, "C_ERRORS", subjects, 1, NULL, NULL));

    /* Bad publishes and consumer settings. */
    CHECK_STATUS(busbar_bus_publish_durable(bus, "c.errors.x", NULL, 0, NULL, 0, "\xff", NULL),
                 BUSBAR_INVALID_ARGUMENT);
    CHECK_ERROR_MENTIONS("id is not valid UTF-8");
    CHECK_STATUS(busbar_bus_publish_durable(bus, "c.errors.*", NULL, 0, NULL, 0, NULL, NULL),
                 BUSBAR_INVALID_SUBJECT);
    CHECK_STATUS(busbar_bus_publish_durable(bus, "c.errors.x", NULL, 3, NULL, 0, NULL, NULL),
                 BUSBAR_INVALID_ARGUMENT);
    busbar_consumer_options opts = {0};
    opts.start = 7;
    CHECK_STATUS(busbar_bus_durable_subscribe(bus, "C_ERRORS", "c", &opts, &sub),
                 BUSBAR_INVALID_ARGUMENT);
    CHECK_ERROR_MENTIONS("options.start 7");
    opts.start = BUSBAR_START_BEGINNING;
    opts.backoff_factor = 0.5;
    CHECK_STATUS(busbar_bus_durable_subscribe(bus, "C_ERRORS", "c", &opts, &sub),
                 BUSBAR_INVALID_ARGUMENT);
    CHECK_ERROR_MENTIONS("factor");
    opts.backoff_factor = 0;
    opts.filter = "c.errors.>.x";
    CHECK_STATUS(busbar_bus_durable_subscribe(bus, "C_ERRORS", "c", &opts, &sub),
                 BUSBAR_INVALID_SUBJECT);
    opts.filter = NULL;
    opts.dlq_prefix = "\xc3";
    CHECK_STATUS(busbar_bus_durable_subscribe(bus, "C_ERRORS", "c", &opts, &sub),
                 BUSBAR_INVALID_ARGUMENT);
    CHECK_ERROR_MENTIONS("options.dlq_prefix");
    CHECK_STATUS(busbar_bus_durable_subscribe(bus, "C_ERRORS", "two words", NULL, &sub),
                 BUSBAR_INVALID_ARGUMENT);
    CHECK_STATUS(busbar_bus_durable_subscribe(bus, "C_ERRORS", "c", NULL, NULL),
                 BUSBAR_INVALID_ARGUMENT);
    CHECK_STATUS(busbar_bus_stream_info(bus, "C_ERRORS", NULL), BUSBAR_INVALID_ARGUMENT);
    CHECK_STATUS(busbar_durable_subscription_next(NULL, 0, &msg), BUSBAR_INVALID_ARGUMENT);

    /* Settling calls refuse a plain message, and NULL. */
    busbar_subscription *plain = NULL;
    CHECK_OK(busbar_bus_subscribe(bus, "c.plain", &plain));
    CHECK_OK(busbar_bus_publish(bus, "c.plain", NULL, 0, NULL, 0));
    CHECK_OK(busbar_subscription_next(plain, WAIT_MS, &msg));
    uint32_t attempt = 9;
    uint64_t sequence = 9;
    const char *stream = "x";
    if (msg) {
        CHECK_STATUS(busbar_message_ack(msg), BUSBAR_INVALID_ARGUMENT);
        CHECK_ERROR_MENTIONS("busbar_message_ack needs a message from a durable subscription");
        CHECK_STATUS(busbar_message_nak(msg, -1), BUSBAR_INVALID_ARGUMENT);
        CHECK_ERROR_MENTIONS("busbar_message_nak");
        CHECK_STATUS(busbar_message_term(msg, "x"), BUSBAR_INVALID_ARGUMENT);
        CHECK_STATUS(busbar_message_in_progress(msg), BUSBAR_INVALID_ARGUMENT);
        CHECK_STATUS(busbar_message_attempt(msg, &attempt), BUSBAR_INVALID_ARGUMENT);
        CHECK(attempt == 0);
        CHECK_STATUS(busbar_message_sequence(msg, &sequence), BUSBAR_INVALID_ARGUMENT);
        CHECK(sequence == 0);
        CHECK_OK(busbar_message_stream(msg, &stream));
        CHECK(stream == NULL);
    }
    busbar_message_free(msg);
    busbar_subscription_free(plain);
    CHECK_STATUS(busbar_message_ack(NULL), BUSBAR_INVALID_ARGUMENT);
    CHECK_STATUS(busbar_message_nak(NULL, 0), BUSBAR_INVALID_ARGUMENT);
    CHECK_STATUS(busbar_message_in_progress(NULL), BUSBAR_INVALID_ARGUMENT);
    CHECK_STATUS(busbar_message_attempt(NULL, &attempt), BUSBAR_INVALID_ARGUMENT);

    /* term needs a reason. */
    CHECK_OK(busbar_bus_durable_subscribe(bus, "C_ERRORS", "c", NULL, &sub));
    publish_durable_text(bus, "c.errors.x", "e");
    CHECK_OK(busbar_durable_subscription_next(sub, WAIT_MS, &msg));
    if (msg) {
        CHECK_STATUS(busbar_message_term(msg, NULL), BUSBAR_INVALID_ARGUMENT);
        CHECK_ERROR_MENTIONS("reason is NULL");
        CHECK_STATUS(busbar_message_sequence(msg, NULL), BUSBAR_INVALID_ARGUMENT);
        CHECK_OK(busbar_message_ack(msg)); /* the refused term did not settle it */
    }
    busbar_message_free(msg);

    /* After close: calls return closed, the subscription ends. */
    CHECK_OK(busbar_bus_close(bus));
    CHECK_STATUS(busbar_bus_publish_durable(bus, "c.errors.x", NULL, 0, NULL, 0, NULL, NULL),
                 BUSBAR_CLOSED);
    CHECK_STATUS(busbar_bus_declare_stream(bus, "C_ERRORS", subjects, 1, NULL, NULL), BUSBAR_CLOSED);
    CHECK_STATUS(busbar_durable_subscription_next(sub, WAIT_MS, &msg), BUSBAR_CLOSED);
    busbar_durable_subscription_free(sub);
    busbar_durable_subscription_free(NULL);
    busbar_bus_free(bus);
}

/* Issue 12: a 10,000-token pattern overflowed the subject trie's recursion (SIGSEGV inside
 * busbar_bus_subscribe); a subject over a NATS server's 4096-byte control line made the server
 * drop the connection. Both are invalid_subject now, with a short message; subjects at the
 * limits (2000 bytes, 256 tokens) work; numeric options out of range are invalid_argument. */

int main(int argc, char **argv) {
    suite_start(argc, argv, "api_errors");
    RUN(test_bad_input_is_an_error_never_a_crash);
    RUN(test_every_call_after_close_returns_closed);
    RUN(test_durable_errors);
    return suite_end();
}
