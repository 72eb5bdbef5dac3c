/* busbar C suite, int_pubsub: Integration tests, on the in-memory bus or a NATS server: publish/subscribe with
 * headers, wildcards and queue groups, request/reply.
 *
 *   tests/c/Makefile builds it; scripts/test-c.sh runs it plainly, under valgrind (the
 *   leak run), and against a private nats-server (its URL as the first argument).
 */
#define _POSIX_C_SOURCE 200809L
#include "support.h"

/* ---- publish / subscribe ----------------------------------------------------- */

static void test_publish_subscribe_with_headers(void) {
    busbar_bus *bus = connect_bus();
    busbar_subscription *sub = NULL;
    CHECK_OK(busbar_subscribe(bus, "orders.>", &sub));
    busbar_header headers[] = {{"tenant", "st-marys"}, {"attempt", "1"}};
    const char *payload = "{\"qty\":1}";
    CHECK_OK(busbar_publish(bus, "orders.eu.created", (const uint8_t *)payload, strlen(payload),
                            headers, 2));
    CHECK_OK(busbar_publish(bus, "orders.us.created", NULL, 0, NULL, 0));
    CHECK_OK(busbar_flush(bus));

    busbar_message *msg = NULL;
    CHECK_OK(busbar_subscription_next(sub, WAIT_MS, &msg));
    CHECK(msg != NULL);
    if (msg != NULL) {
        CHECK_STR(subject_of(msg), "orders.eu.created");
        char *text = message_text(msg);
        CHECK_STR(text, payload);
        free(text);
        const char *value = NULL, *name = NULL, *id = NULL, *source = NULL, *type = NULL;
        CHECK_OK(busbar_message_header(msg, "tenant", &value));
        CHECK_STR(value, "st-marys");
        CHECK_OK(busbar_message_header(msg, "Tenant", &value)); /* case-sensitive: absent */
        CHECK(value == NULL);
        size_t count = 0;
        CHECK_OK(busbar_message_header_count(msg, &count));
        CHECK(count == 2);
        CHECK_OK(busbar_message_header_at(msg, 0, &name, &value)); /* sorted by name */
        CHECK_STR(name, "attempt");
        CHECK_STR(value, "1");
        CHECK_STATUS(busbar_message_header_at(msg, 2, &name, &value), BUSBAR_INVALID_ARGUMENT);
        CHECK(name == NULL && value == NULL);
        CHECK_OK(busbar_message_id(msg, &id));
        CHECK(id != NULL && strlen(id) == 36 && id[14] == '7'); /* a UUIDv7 */
        CHECK_OK(busbar_message_source(msg, &source));
        CHECK_STR(source, "busbar");
        CHECK_OK(busbar_message_type(msg, &type));
        CHECK_STR(type, "busbar.event");
        const char *corr = "x", *reply_to = "x";
        CHECK_OK(busbar_message_correlation_id(msg, &corr));
        CHECK(corr == NULL);
        CHECK_OK(busbar_message_reply_to(msg, &reply_to));
        CHECK(reply_to == NULL);
        CHECK_STATUS(busbar_message_respond(msg, NULL, 0), BUSBAR_INVALID_ARGUMENT);
        CHECK_ERROR_MENTIONS("not a request");
    }
    busbar_message_free(msg);

    CHECK_OK(busbar_subscription_next(sub, WAIT_MS, &msg));
    if (msg != NULL) {
        CHECK_STR(subject_of(msg), "orders.us.created");
        const uint8_t *data = (const uint8_t *)"x";
        size_t len = 99;
        CHECK_OK(busbar_message_data(msg, &data, &len));
        CHECK(len == 0);
    }
    busbar_message_free(msg);
    CHECK_STATUS(busbar_subscription_next(sub, 0, &msg), BUSBAR_TIMEOUT);
    CHECK(msg == NULL);
    CHECK_STATUS(busbar_subscription_next(sub, 20, &msg), BUSBAR_TIMEOUT);
    CHECK_ERROR_MENTIONS("orders.>");

    busbar_subscription_free(sub);
    busbar_bus_free(bus);
}

/* busbar_publish_with: every attribute core's PublishOptions takes; NULL fields keep the
 * defaults; bad ones are the builder's errors. */
static void test_publish_with_options(void) {
    busbar_bus *bus = connect_bus();
    busbar_subscription *sub = NULL;
    CHECK_OK(busbar_subscribe(bus, "opts.>", &sub));
    busbar_header headers[] = {{"tenant", "st-marys"}};
    busbar_publish_options opts = {0};
    opts.id = "order-7";
    opts.event_type = "order.created";
    opts.content_type = "application/json";
    opts.correlation_id = "corr-1";
    opts.classification = "internal";
    opts.traceparent = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";
    opts.headers = headers;
    opts.headers_len = 1;
    CHECK_OK(busbar_publish_with(bus, "opts.a", (const uint8_t *)"{}", 2, &opts));
    CHECK_OK(busbar_publish_with(bus, "opts.b", NULL, 0, NULL));
    busbar_message *msg = NULL;
    CHECK_OK(busbar_subscription_next(sub, WAIT_MS, &msg));
    if (msg != NULL) {
        const char *id = NULL, *type = NULL, *corr = NULL, *value = NULL;
        CHECK_OK(busbar_message_id(msg, &id));
        CHECK_STR(id, "order-7");
        CHECK_OK(busbar_message_type(msg, &type));
        CHECK_STR(type, "order.created");
        CHECK_OK(busbar_message_correlation_id(msg, &corr));
        CHECK_STR(corr, "corr-1");
        CHECK_OK(busbar_message_header(msg, "tenant", &value));
        CHECK_STR(value, "st-marys");
    }
    busbar_message_free(msg);
    CHECK_OK(busbar_subscription_next(sub, WAIT_MS, &msg));
    if (msg != NULL) {
        const char *type = NULL;
        CHECK_STR(subject_of(msg), "opts.b");
        CHECK_OK(busbar_message_type(msg, &type));
        CHECK_STR(type, "busbar.event");
    }
    busbar_message_free(msg);
    busbar_publish_options bad = {0};
    bad.id = "";
    CHECK_STATUS(busbar_publish_with(bus, "opts.c", NULL, 0, &bad), BUSBAR_INVALID_ARGUMENT);
    busbar_header reserved[] = {{"busbar-x", "1"}};
    bad.id = NULL;
    bad.headers = reserved;
    bad.headers_len = 1;
    CHECK_STATUS(busbar_publish_with(bus, "opts.c", NULL, 0, &bad), BUSBAR_INVALID_ARGUMENT);
    bad.headers = NULL; /* a length without headers */
    CHECK_STATUS(busbar_publish_with(bus, "opts.c", NULL, 0, &bad), BUSBAR_INVALID_ARGUMENT);
    CHECK_ERROR_MENTIONS("headers");
    bad.headers_len = 0;
    bad.event_type = "\xff";
    CHECK_STATUS(busbar_publish_with(bus, "opts.c", NULL, 0, &bad), BUSBAR_INVALID_ARGUMENT);
    CHECK_ERROR_MENTIONS("options.event_type");
    CHECK_STATUS(busbar_subscription_next(sub, 50, &msg), BUSBAR_TIMEOUT);
    busbar_subscription_free(sub);
    busbar_bus_free(bus);
}

static void test_wildcards_and_queue_groups(void) {
    busbar_bus *bus = connect_bus();
    busbar_subscription *every = NULL, *eu = NULL, *a = NULL, *b = NULL;
    CHECK_OK(busbar_subscribe(bus, "orders.>", &every));
    CHECK_OK(busbar_subscribe(bus, "orders.eu.*", &eu));
    CHECK_OK(busbar_queue_subscribe(bus, "jobs.resize", "workers", &a));
    CHECK_OK(busbar_queue_subscribe(bus, "jobs.resize", "workers", &b));
    const char *subjects[] = {"orders.eu.created", "orders.us.created", "orders.eu.paid.late"};
    for (int i = 0; i < 3; i++) CHECK_OK(busbar_publish(bus, subjects[i], NULL, 0, NULL, 0));
    for (int i = 0; i < 4; i++) {
        char job[16];
        snprintf(job, sizeof job, "image-%d", i);
        CHECK_OK(busbar_publish(bus, "jobs.resize", (const uint8_t *)job, strlen(job), NULL, 0));
    }
    CHECK_OK(busbar_flush(bus));

    busbar_message *msg = NULL;
    for (int i = 0; i < 3; i++) {
        CHECK_OK(busbar_subscription_next(every, WAIT_MS, &msg));
        if (msg) CHECK_STR(subject_of(msg), subjects[i]);
        busbar_message_free(msg);
    }
    CHECK_OK(busbar_subscription_next(eu, WAIT_MS, &msg));
    if (msg) CHECK_STR(subject_of(msg), "orders.eu.created");
    busbar_message_free(msg);
    CHECK_STATUS(busbar_subscription_next(eu, 50, &msg), BUSBAR_TIMEOUT);

    int seen[4] = {0}, total = 0;
    for (int round = 0; total < 4 && round < 400; round++) {
        busbar_subscription *member = round % 2 ? a : b;
        if (busbar_subscription_next(member, 10, &msg) == BUSBAR_OK) {
            char *text = message_text(msg);
            int n = -1;
            if (sscanf(text, "image-%d", &n) == 1 && n >= 0 && n < 4) seen[n]++;
            free(text);
            busbar_message_free(msg);
            total++;
        }
    }
    CHECK(total == 4);
    CHECK(seen[0] == 1 && seen[1] == 1 && seen[2] == 1 && seen[3] == 1);
    CHECK_STATUS(busbar_subscription_next(a, 20, &msg), BUSBAR_TIMEOUT);
    CHECK_STATUS(busbar_subscription_next(b, 20, &msg), BUSBAR_TIMEOUT);

    busbar_stats stats;
    CHECK_OK(busbar_bus_stats(bus, &stats));
    if (nats_url == NULL) {
        CHECK(stats.published == 7);
        CHECK(stats.delivered == 3 + 1 + 4);
        CHECK(stats.subscriptions == 4);
        CHECK(stats.rejected_replies == 0 && stats.undecodable == 0 && stats.disconnects == 0);
    }
    busbar_subscription_free(every);
    busbar_subscription_free(eu);
    busbar_subscription_free(a);
    busbar_subscription_free(b);
    busbar_bus_free(bus);
}

/* ---- request / reply --------------------------------------------------------- */

struct responder {
    busbar_subscription *sub;
    char request_id[64];
    int answered;
};

/* A responder on its own C thread, pulling with busbar_subscription_next. */
static void *answer_one(void *arg) {
    struct responder *r = arg;
    busbar_message *req = NULL;
    if (busbar_subscription_next(r->sub, WAIT_MS, &req) == BUSBAR_OK) {
        const char *id = NULL;
        busbar_message_id(req, &id);
        snprintf(r->request_id, sizeof r->request_id, "%s", id ? id : "");
        char *asked = message_text(req);
        char answer[128];
        snprintf(answer, sizeof answer, "it is tea time (you asked \"%s\")", asked);
        free(asked);
        if (busbar_message_respond(req, (const uint8_t *)answer, strlen(answer)) == BUSBAR_OK)
            r->answered++;
    }
    busbar_message_free(req);
    return NULL;
}

static void test_request_reply(void) {
    busbar_bus *bus = connect_bus();
    struct responder r = {0};
    CHECK_OK(busbar_subscribe(bus, "time.now", &r.sub));
    pthread_t thread;
    pthread_create(&thread, NULL, answer_one, &r);
    busbar_message *reply = NULL;
    const char *q = "what time is it?";
    CHECK_OK(busbar_request(bus, "time.now", (const uint8_t *)q, strlen(q), WAIT_MS, &reply));
    pthread_join(thread, NULL);
    CHECK(r.answered == 1);
    if (reply != NULL) {
        char *text = message_text(reply);
        CHECK_STR(text, "it is tea time (you asked \"what time is it?\")");
        free(text);
        const char *corr = NULL;
        CHECK_OK(busbar_message_correlation_id(reply, &corr));
        CHECK_STR(corr, r.request_id); /* the reply echoes the request's id */
    }
    busbar_message_free(reply);

    /* Nobody listens: fails at once. */
    CHECK_STATUS(busbar_request(bus, "time.later", NULL, 0, WAIT_MS, &reply), BUSBAR_NO_RESPONDERS);
    CHECK(reply == NULL);
    CHECK_ERROR_MENTIONS("time.later");
    /* Somebody listens but never answers: times out. */
    CHECK_STATUS(busbar_request(bus, "time.now", NULL, 0, 50, &reply), BUSBAR_TIMEOUT);
    CHECK_ERROR_MENTIONS("time.now");
    busbar_subscription_free(r.sub);
    busbar_bus_free(bus);
}

int main(int argc, char **argv) {
    suite_start(argc, argv, "int_pubsub");
    RUN(test_publish_subscribe_with_headers);
    RUN(test_publish_with_options);
    RUN(test_wildcards_and_queue_groups);
    RUN(test_request_reply);
    return suite_end();
}
