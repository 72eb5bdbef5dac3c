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
    CHECK_OK(busbar_bus_subscribe(bus, "orders.>", &sub));
    busbar_header headers[] = {{"tenant", "st-marys"}, {"attempt", "1"}};
    const char *payload = "{\"qty\":1}";
    CHECK_OK(busbar_bus_publish(bus, "orders.eu.created", (const uint8_t *)payload, strlen(payload),
                            headers, 2));
    CHECK_OK(busbar_bus_publish(bus, "orders.us.created", NULL, 0, NULL, 0));
    CHECK_OK(busbar_bus_flush(bus));

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
        CHECK_OK(busbar_message_event_type(msg, &type));
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

/* busbar_bus_publish_with: every attribute core's PublishOptions takes; NULL fields keep the
 * defaults; bad ones are the builder's errors. */
static void test_publish_with_options(void) {
    busbar_bus *bus = connect_bus();
    busbar_subscription *sub = NULL;
    CHECK_OK(busbar_bus_subscribe(bus, "opts.>", &sub));
    busbar_header headers[] = {{"tenant", "st-marys"}};
    busbar_publish_options opts = {0};
    opts.id = "order-7";
    opts.event_type = "order.created";
    opts.content_type = "application/json";
    opts.correlation_id = "corr-1";
    opts.classification = "internal";
    opts.traceparent = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";
    opts.tracestate = "vendor=1";
    opts.headers = headers;
    opts.headers_len = 1;
    CHECK_OK(busbar_bus_publish_with(bus, "opts.a", (const uint8_t *)"{}", 2, &opts));
    CHECK_OK(busbar_bus_publish_with(bus, "opts.b", NULL, 0, NULL));
    busbar_message *msg = NULL;
    CHECK_OK(busbar_subscription_next(sub, WAIT_MS, &msg));
    if (msg != NULL) {
        const char *id = NULL, *type = NULL, *corr = NULL, *value = NULL;
        CHECK_OK(busbar_message_id(msg, &id));
        CHECK_STR(id, "order-7");
        CHECK_OK(busbar_message_event_type(msg, &type));
        CHECK_STR(type, "order.created");
        CHECK_OK(busbar_message_correlation_id(msg, &corr));
        CHECK_STR(corr, "corr-1");
        CHECK_OK(busbar_message_header(msg, "tenant", &value));
        CHECK_STR(value, "st-marys");
        /* Every attribute reads back (docs/design.md §9). */
        CHECK_OK(busbar_message_content_type(msg, &value));
        CHECK_STR(value, "application/json");
        CHECK_OK(busbar_message_classification(msg, &value));
        CHECK_STR(value, "internal");
        CHECK_OK(busbar_message_traceparent(msg, &value));
        CHECK_STR(value, "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01");
        CHECK_OK(busbar_message_tracestate(msg, &value));
        CHECK_STR(value, "vendor=1");
        CHECK_OK(busbar_message_keyid(msg, &value));
        CHECK_STR(value, NULL);
        int64_t time_ms = 0;
        CHECK_OK(busbar_message_time_ms(msg, &time_ms));
        int64_t now_ms = (int64_t)time(NULL) * 1000;
        CHECK(time_ms > now_ms - 60000 && time_ms < now_ms + 60000);
        CHECK_STATUS(busbar_message_time_ms(msg, NULL), BUSBAR_INVALID_ARGUMENT);
        CHECK_STATUS(busbar_message_time_ms(NULL, &time_ms), BUSBAR_INVALID_ARGUMENT);
        CHECK(time_ms == 0);
    }
    busbar_message_free(msg);
    CHECK_OK(busbar_subscription_next(sub, WAIT_MS, &msg));
    if (msg != NULL) {
        const char *type = NULL, *value = "unset";
        CHECK_STR(subject_of(msg), "opts.b");
        CHECK_OK(busbar_message_event_type(msg, &type));
        CHECK_STR(type, "busbar.event");
        /* Unset attributes read as NULL. */
        CHECK_OK(busbar_message_content_type(msg, &value));
        CHECK_STR(value, NULL);
        value = "unset";
        CHECK_OK(busbar_message_classification(msg, &value));
        CHECK_STR(value, NULL);
        value = "unset";
        CHECK_OK(busbar_message_tracestate(msg, &value));
        CHECK_STR(value, NULL);
    }
    busbar_message_free(msg);
    busbar_publish_options bad = {0};
    bad.id = "";
    CHECK_STATUS(busbar_bus_publish_with(bus, "opts.c", NULL, 0, &bad), BUSBAR_INVALID_ARGUMENT);
    busbar_header reserved[] = {{"busbar-x", "1"}};
    bad.id = NULL;
    bad.headers = reserved;
    bad.headers_len = 1;
    CHECK_STATUS(busbar_bus_publish_with(bus, "opts.c", NULL, 0, &bad), BUSBAR_INVALID_ARGUMENT);
    bad.headers = NULL; /* a length without headers */
    CHECK_STATUS(busbar_bus_publish_with(bus, "opts.c", NULL, 0, &bad), BUSBAR_INVALID_ARGUMENT);
    CHECK_ERROR_MENTIONS("headers");
    bad.headers_len = 0;
    bad.event_type = "\xff";
    CHECK_STATUS(busbar_bus_publish_with(bus, "opts.c", NULL, 0, &bad), BUSBAR_INVALID_ARGUMENT);
    CHECK_ERROR_MENTIONS("options.event_type");
    CHECK_STATUS(busbar_subscription_next(sub, 50, &msg), BUSBAR_TIMEOUT);
    busbar_subscription_free(sub);
    busbar_bus_free(bus);
}

/* busbar_bus_publish_batch: a burst in one call, in order; it stops at the first failure and
 * says how many went out; a bad argument anywhere publishes nothing. */
static void test_publish_batch(void) {
    busbar_bus *bus = connect_bus();
    busbar_subscription *sub = NULL;
    CHECK_OK(busbar_subscribe(bus, "batch.>", &sub));
    busbar_publish_options opts = {0};
    opts.event_type = "batch.item";
    busbar_publish_item items[] = {
        {"batch.a", (const uint8_t *)"one", 3, NULL},
        {"batch.b", (const uint8_t *)"two", 3, &opts},
        {"batch..bad", NULL, 0, NULL},
        {"batch.d", NULL, 0, NULL},
    };
    size_t published = 99;
    CHECK_OK(busbar_bus_publish_batch(bus, items, 2, &published));
    CHECK(published == 2);
    CHECK_OK(busbar_bus_publish_batch(bus, items, 0, NULL));
    CHECK_STATUS(busbar_bus_publish_batch(bus, items, 4, &published), BUSBAR_INVALID_SUBJECT);
    CHECK(published == 2); /* items[2] failed, items[3] was not tried */
    CHECK_OK(busbar_flush(bus));
    const char *expected[] = {"batch.a", "batch.b", "batch.a", "batch.b"};
    for (int i = 0; i < 4; i++) {
        busbar_message *msg = NULL;
        CHECK_OK(busbar_subscription_next(sub, WAIT_MS, &msg));
        if (msg != NULL) {
            CHECK_STR(subject_of(msg), expected[i]);
            const char *type = NULL;
            CHECK_OK(busbar_message_type(msg, &type));
            CHECK_STR(type, i % 2 ? "batch.item" : "busbar.event");
        }
        busbar_message_free(msg);
    }
    busbar_publish_item bad[] = {
        {"batch.a", NULL, 0, NULL},
        {"batch.b", NULL, 5, NULL}, /* a length without data */
    };
    CHECK_STATUS(busbar_bus_publish_batch(bus, bad, 2, &published), BUSBAR_INVALID_ARGUMENT);
    CHECK(published == 0);
    CHECK_ERROR_MENTIONS("items[1].data");
    CHECK_STATUS(busbar_bus_publish_batch(bus, NULL, 1, &published), BUSBAR_INVALID_ARGUMENT);
    busbar_message *none = NULL;
    CHECK_STATUS(busbar_subscription_next(sub, 50, &none), BUSBAR_TIMEOUT);
    busbar_subscription_free(sub);
    busbar_bus_free(bus);
}

static void test_wildcards_and_queue_groups(void) {
    busbar_bus *bus = connect_bus();
    busbar_subscription *every = NULL, *eu = NULL, *a = NULL, *b = NULL;
    CHECK_OK(busbar_bus_subscribe(bus, "orders.>", &every));
    CHECK_OK(busbar_bus_subscribe(bus, "orders.eu.*", &eu));
    CHECK_OK(busbar_bus_queue_subscribe(bus, "jobs.resize", "workers", &a));
    CHECK_OK(busbar_bus_queue_subscribe(bus, "jobs.resize", "workers", &b));
    const char *subjects[] = {"orders.eu.created", "orders.us.created", "orders.eu.paid.late"};
    for (int i = 0; i < 3; i++) CHECK_OK(busbar_bus_publish(bus, subjects[i], NULL, 0, NULL, 0));
    for (int i = 0; i < 4; i++) {
        char job[16];
        snprintf(job, sizeof job, "image-%d", i);
        CHECK_OK(busbar_bus_publish(bus, "jobs.resize", (const uint8_t *)job, strlen(job), NULL, 0));
    }
    CHECK_OK(busbar_bus_flush(bus));

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
    CHECK_OK(busbar_bus_subscribe(bus, "time.now", &r.sub));
    pthread_t thread;
    pthread_create(&thread, NULL, answer_one, &r);
    busbar_message *reply = NULL;
    const char *q = "what time is it?";
    CHECK_OK(busbar_bus_request(bus, "time.now", (const uint8_t *)q, strlen(q), WAIT_MS, &reply));
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
    CHECK_STATUS(busbar_bus_request(bus, "time.later", NULL, 0, WAIT_MS, &reply), BUSBAR_NO_RESPONDERS);
    CHECK(reply == NULL);
    CHECK_ERROR_MENTIONS("time.later");
    /* Somebody listens but never answers: times out. */
    CHECK_STATUS(busbar_bus_request(bus, "time.now", NULL, 0, 50, &reply), BUSBAR_TIMEOUT);
    CHECK_ERROR_MENTIONS("time.now");
    busbar_subscription_free(r.sub);
    busbar_bus_free(bus);
}

/* A responder that answers with headers and a content type (busbar_message_respond_with)
 * and records the request's header. */
static void *answer_with_headers(void *arg) {
    struct responder *r = arg;
    busbar_message *req = NULL;
    if (busbar_subscription_next(r->sub, WAIT_MS, &req) == BUSBAR_OK) {
        const char *tenant = NULL;
        busbar_message_header(req, "tenant", &tenant);
        snprintf(r->request_id, sizeof r->request_id, "%s", tenant ? tenant : "");
        busbar_header headers[] = {{"served-by", "c"}};
        busbar_publish_options opts = {0};
        opts.content_type = "text/plain";
        opts.headers = headers;
        opts.headers_len = 1;
        if (busbar_message_respond_with(req, (const uint8_t *)"ok", 2, &opts) == BUSBAR_OK) r->answered++;
    }
    busbar_message_free(req);
    return NULL;
}

/* busbar_bus_request_with: headers and an id on the request; the reply's headers. */
static void test_request_with_options(void) {
    busbar_bus *bus = connect_bus();
    struct responder r = {0};
    CHECK_OK(busbar_bus_subscribe(bus, "rpc.opts", &r.sub));
    pthread_t thread;
    pthread_create(&thread, NULL, answer_with_headers, &r);
    busbar_header headers[] = {{"tenant", "st-marys"}};
    busbar_publish_options opts = {0};
    opts.id = "req-42";
    opts.headers = headers;
    opts.headers_len = 1;
    busbar_message *reply = NULL;
    CHECK_OK(busbar_bus_request_with(bus, "rpc.opts", NULL, 0, &opts, WAIT_MS, &reply));
    pthread_join(thread, NULL);
    CHECK(r.answered == 1);
    CHECK_STR(r.request_id, "st-marys");
    if (reply != NULL) {
        const char *value = NULL;
        CHECK_OK(busbar_message_correlation_id(reply, &value));
        CHECK_STR(value, "req-42");
        CHECK_OK(busbar_message_header(reply, "served-by", &value));
        CHECK_STR(value, "c");
        CHECK_OK(busbar_message_content_type(reply, &value));
        CHECK_STR(value, "text/plain");
    }
    busbar_message_free(reply);
    /* NULL options are none; bad ones fail before anything is sent. */
    CHECK_STATUS(busbar_bus_request_with(bus, "rpc.nobody", NULL, 0, NULL, WAIT_MS, &reply), BUSBAR_NO_RESPONDERS);
    busbar_publish_options bad = {0};
    bad.id = "";
    CHECK_STATUS(busbar_bus_request_with(bus, "rpc.opts", NULL, 0, &bad, WAIT_MS, &reply), BUSBAR_INVALID_ARGUMENT);
    CHECK(reply == NULL);
    /* A plain message is no request: respond_with refuses it. */
    busbar_subscription *sub = NULL;
    CHECK_OK(busbar_bus_subscribe(bus, "rpc.plain", &sub));
    CHECK_OK(busbar_bus_publish(bus, "rpc.plain", NULL, 0, NULL, 0));
    busbar_message *plain = NULL;
    CHECK_OK(busbar_subscription_next(sub, WAIT_MS, &plain));
    CHECK_STATUS(busbar_message_respond_with(plain, NULL, 0, NULL), BUSBAR_INVALID_ARGUMENT);
    busbar_message_free(plain);
    /* drain: what was published reaches the bus, then it is closed. */
    CHECK_OK(busbar_bus_publish(bus, "rpc.plain", (const uint8_t *)"last", 4, NULL, 0));
    CHECK_OK(busbar_bus_drain(bus));
    CHECK_OK(busbar_subscription_next(sub, WAIT_MS, &plain));
    char *last = plain ? message_text(plain) : NULL;
    CHECK_STR(last, "last");
    free(last);
    busbar_message_free(plain);
    CHECK_STATUS(busbar_bus_publish(bus, "rpc.plain", NULL, 0, NULL, 0), BUSBAR_CLOSED);
    busbar_subscription_free(sub);
    busbar_subscription_free(r.sub);
    busbar_bus_free(bus);
}

/* ---- policy calls ---------------------------------------------------------------- */

static const char *SCOPED_POLICY =
    "{\"classes\": [\"phi\", \"pii\"], \"redaction\": \"***\","
    " \"fields\": [{\"path\": \"/ssn\", \"class\": \"pii\", \"action\": \"partial\", \"keep\": 4, \"subjects\": [\"hr.>\"]}],"
    " \"restricted\": [{\"subjects\": [\"hr.salary\"], \"roles\": [\"hr\"]}],"
    " \"grants\": {\"hr\": [\"phi\", \"pii\"], \"manager\": [\"pii\"]}}";

/* Subscribing and requesting as a principal, with a class filter; the policy's counters. */
static void test_policy_calls(void) {
    char path[] = "/tmp/busbar-c-policy-XXXXXX";
    int fd = mkstemp(path);
    CHECK(fd >= 0);
    if (fd < 0) return;
    CHECK(write(fd, SCOPED_POLICY, strlen(SCOPED_POLICY)) == (ssize_t)strlen(SCOPED_POLICY));
    close(fd);
    char json[512];
    if (nats_url != NULL)
        snprintf(json, sizeof json, "{\"backend\":\"nats\",\"nats_url\":\"%s\",\"policy\":\"%s\"}", nats_url, path);
    else
        snprintf(json, sizeof json, "{\"policy\":\"%s\"}", path);
    busbar_bus *bus = NULL;
    CHECK_OK(busbar_connect_json(json, &bus));

    const char *manager_roles[] = {"manager"};
    busbar_principal manager = {"ann", manager_roles, 1};
    busbar_principal nobody = {"eve", NULL, 0};
    busbar_subscription *sub = NULL;
    /* A restricted subject needs a role allowed there. */
    CHECK_STATUS(busbar_bus_subscribe_as(bus, &nobody, "hr.salary", NULL, &sub), BUSBAR_FORBIDDEN);
    CHECK(sub == NULL);
    /* Only messages classified pii reach this subscription, masked for the manager. */
    const char *classes[] = {"pii"};
    busbar_subscribe_as_options filter = {0};
    filter.classes = classes;
    filter.classes_len = 1;
    CHECK_OK(busbar_bus_subscribe_as(bus, &manager, "hr.people.*", &filter, &sub));
    CHECK_OK(busbar_bus_publish(bus, "hr.people.plain", (const uint8_t *)"{\"x\":1}", 7, NULL, 0));
    const char *ssn = "{\"ssn\":\"123-45-6789\"}";
    busbar_publish_options opts = {0};
    opts.classification = "pii";
    CHECK_OK(busbar_bus_publish_with(bus, "hr.people.joined", (const uint8_t *)ssn, strlen(ssn), &opts));
    busbar_message *msg = NULL;
    CHECK_OK(busbar_subscription_next(sub, WAIT_MS, &msg));
    if (msg) {
        CHECK_STR(subject_of(msg), "hr.people.joined"); /* the unclassified one was filtered */
        char *text = message_text(msg);
        CHECK_STR(text, "{\"ssn\":\"123-45-6789\"}"); /* pii is granted to a manager */
        free(text);
    }
    busbar_message_free(msg);
    busbar_policy_stats stats;
    CHECK_OK(busbar_bus_policy_stats(bus, &stats));
    CHECK(stats.filtered >= 1 && stats.denied == 1);
    /* No audit log configured: verify says so. */
    busbar_audit_report report;
    CHECK_STATUS(busbar_bus_verify_audit(bus, &report), BUSBAR_INVALID_ARGUMENT);
    CHECK_ERROR_MENTIONS("audit_log");
    /* A request as a principal may not go where it could not read. */
    CHECK_STATUS(busbar_bus_request_as(bus, &nobody, "hr.salary", NULL, 0, NULL, WAIT_MS, &msg), BUSBAR_FORBIDDEN);

    /* A durable consumer as a principal: the stream keeps the message as published, each
     * delivery is masked for the principal; a filter over a restricted subject is refused. */
    const char *hr[] = {"hr.>"};
    busbar_stream_info info;
    CHECK_OK(busbar_bus_declare_stream(bus, "C_POLICY_HR", hr, 1, NULL, &info));
    CHECK_OK(busbar_bus_publish_durable(bus, "hr.people.hired", (const uint8_t *)ssn, strlen(ssn), NULL, 0, NULL, NULL));
    busbar_consumer_options salary = {0};
    salary.filter = "hr.salary";
    busbar_durable_subscription *durable = NULL;
    CHECK_STATUS(busbar_bus_durable_subscribe_as(bus, &nobody, "C_POLICY_HR", "eve", &salary, &durable), BUSBAR_FORBIDDEN);
    CHECK(durable == NULL);
    busbar_consumer_options people = {0};
    people.filter = "hr.people.>";
    CHECK_OK(busbar_bus_durable_subscribe_as(bus, &nobody, "C_POLICY_HR", "eve", &people, &durable));
    CHECK_OK(busbar_durable_subscription_next(durable, WAIT_MS, &msg));
    if (msg) {
        char *text = message_text(msg);
        CHECK(strstr(text, "6789") != NULL && strstr(text, "123-45") == NULL); /* partial: last 4 */
        free(text);
        CHECK_OK(busbar_message_ack(msg));
    }
    busbar_message_free(msg);
    busbar_durable_subscription_free(durable);
    CHECK_STATUS(busbar_bus_durable_subscribe_as(bus, NULL, "C_POLICY_HR", "eve", NULL, &durable), BUSBAR_INVALID_ARGUMENT);
    CHECK_STATUS(busbar_bus_durable_subscribe_as(bus, &nobody, "C_POLICY_HR", "eve", NULL, NULL), BUSBAR_INVALID_ARGUMENT);
    busbar_subscription_free(sub);
    busbar_bus_free(bus);
    unlink(path);

    /* A bus without a policy layer refuses the policy calls, naming how to get one. */
    bus = connect_bus();
    CHECK_STATUS(busbar_bus_subscribe_as(bus, &manager, "a", NULL, &sub), BUSBAR_INVALID_ARGUMENT);
    CHECK_ERROR_MENTIONS("policy");
    CHECK_STATUS(busbar_bus_policy_stats(bus, &stats), BUSBAR_INVALID_ARGUMENT);
    busbar_durable_subscription *none = NULL;
    CHECK_STATUS(busbar_bus_durable_subscribe_as(bus, &manager, "S", "c", NULL, &none), BUSBAR_INVALID_ARGUMENT);
    CHECK_ERROR_MENTIONS("policy");
    busbar_bus_free(bus);
}

int main(int argc, char **argv) {
    suite_start(argc, argv, "int_pubsub");
    RUN(test_publish_subscribe_with_headers);
    RUN(test_publish_with_options);
    RUN(test_publish_batch);
    RUN(test_wildcards_and_queue_groups);
    RUN(test_request_reply);
    RUN(test_request_with_options);
    RUN(test_policy_calls);
    return suite_end();
}
