/* The busbar C suite: the shared subject vectors, pub/sub, queue groups, request/reply,
 * callbacks from runtime threads, every kind of bad input, use after close, and durable
 * streams (dedupe, ack/nak/term, dead letters, replay).
 *
 *   tests/c/Makefile builds it; scripts/test-c.sh runs it plainly, under valgrind,
 *   and against a private nats-server (its URL as the first argument).
 */
#define _POSIX_C_SOURCE 200809L
#include <arpa/inet.h>
#include <netinet/in.h>
#include <pthread.h>
#include <sys/socket.h>
#include <unistd.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "harness.h"
#include "subject_vectors.h"

/* Generous: valgrind runs this suite many times slower. */
#define WAIT_MS 10000

/* The bus every test connects to: in-memory, or the NATS server the script started. */
static const char *nats_url = NULL;

static void sleep_ms(long ms) {
    struct timespec t = {ms / 1000, (ms % 1000) * 1000000L};
    nanosleep(&t, NULL);
}

static busbar_bus *connect_bus(void) {
    busbar_config *config = NULL;
    busbar_bus *bus = NULL;
    CHECK_OK(busbar_config_new(&config));
    if (nats_url != NULL) {
        CHECK_OK(busbar_config_set(config, "backend", "nats"));
        CHECK_OK(busbar_config_set(config, "nats_url", nats_url));
    }
    CHECK_OK(busbar_connect(config, &bus));
    busbar_config_free(config);
    return bus;
}

static char *message_text(const busbar_message *msg) {
    const uint8_t *data = NULL;
    size_t len = 0;
    CHECK_OK(busbar_message_data(msg, &data, &len));
    char *text = calloc(len + 1, 1);
    if (len > 0) memcpy(text, data, len);
    return text;
}

static const char *subject_of(const busbar_message *msg) {
    const char *subject = NULL;
    CHECK_OK(busbar_message_subject(msg, &subject));
    return subject;
}

/* ---- the shared vectors ------------------------------------------------------ */

static int skipped_nul_cases = 0;

static void test_subject_vectors(void) {
    size_t n = sizeof validate_subject_cases / sizeof validate_subject_cases[0];
    int checked = 0;
    for (size_t i = 0; i < n; i++) {
        const validity_case *c = &validate_subject_cases[i];
        if (strlen(c->text) != c->len) { skipped_nul_cases++; continue; }
        busbar_status st = busbar_validate_subject(c->text);
        if (st != (c->valid ? BUSBAR_OK : BUSBAR_INVALID_SUBJECT)) {
            fprintf(stderr, "validate_subject case %zu: got %s, want valid=%d (%s)\n", i,
                    busbar_status_code(st), c->valid, busbar_last_error());
            harness_failures++;
        }
        checked++;
    }
    n = sizeof validate_pattern_cases / sizeof validate_pattern_cases[0];
    for (size_t i = 0; i < n; i++) {
        const validity_case *c = &validate_pattern_cases[i];
        if (strlen(c->text) != c->len) { skipped_nul_cases++; continue; }
        busbar_status st = busbar_validate_pattern(c->text);
        if (st != (c->valid ? BUSBAR_OK : BUSBAR_INVALID_SUBJECT)) {
            fprintf(stderr, "validate_pattern case %zu: got %s, want valid=%d\n", i,
                    busbar_status_code(st), c->valid);
            harness_failures++;
        }
        checked++;
    }
    n = sizeof matches_cases / sizeof matches_cases[0];
    for (size_t i = 0; i < n; i++) {
        const match_case *c = &matches_cases[i];
        if (strlen(c->pattern) != c->pattern_len || strlen(c->subject) != c->subject_len) {
            skipped_nul_cases++;
            continue;
        }
        if (busbar_subject_matches(c->pattern, c->subject) != c->matches) {
            fprintf(stderr, "matches case %zu: want %d\n", i, c->matches);
            harness_failures++;
        }
        checked++;
    }
    harness_checks += checked;
    /* A C string ends at its first NUL, so the few cases with an embedded NUL cannot be
     * passed through a const char * API at all; they are counted, not silently dropped. */
    printf("     %d vector cases checked, %d with an embedded NUL not expressible in C\n",
           checked, skipped_nul_cases);
    CHECK(checked > 1400);
    CHECK(skipped_nul_cases < 10);
}

static void test_subject_functions_refuse_bad_input(void) {
    CHECK(!busbar_subject_matches(NULL, "a"));
    CHECK(!busbar_subject_matches("a", NULL));
    CHECK(!busbar_subject_matches("a.\xff", "a.\xff"));
    CHECK(busbar_subject_matches("a.*", "a.b"));
    CHECK_STATUS(busbar_validate_subject(NULL), BUSBAR_INVALID_ARGUMENT);
    CHECK_ERROR_MENTIONS("subject is NULL");
    CHECK_STATUS(busbar_validate_subject("orders.\xc3"), BUSBAR_INVALID_ARGUMENT);
    CHECK_ERROR_MENTIONS("not valid UTF-8");
    CHECK_STATUS(busbar_validate_pattern("a.>.b"), BUSBAR_INVALID_SUBJECT);
    CHECK_ERROR_MENTIONS("a.>.b");
    CHECK_OK(busbar_validate_pattern("a.>"));
    CHECK_STR(busbar_last_error(), ""); /* a success clears the message */
}

static void test_status_codes(void) {
    /* The numbers are part of the ABI; the texts are core's Error::code strings. */
    static const struct { busbar_status status; int number; const char *code; } table[] = {
        {BUSBAR_OK, 0, "ok"},
        {BUSBAR_INVALID_SUBJECT, 1, "invalid_subject"},
        {BUSBAR_INVALID_ARGUMENT, 2, "invalid_argument"},
        {BUSBAR_PAYLOAD_TOO_LARGE, 3, "payload_too_large"},
        {BUSBAR_TIMEOUT, 4, "timeout"},
        {BUSBAR_NO_RESPONDERS, 5, "no_responders"},
        {BUSBAR_FORBIDDEN, 6, "forbidden"},
        {BUSBAR_CLOSED, 7, "closed"},
        {BUSBAR_DECODE, 8, "decode"},
        {BUSBAR_CRYPTO, 9, "crypto"},
        {BUSBAR_BACKEND, 10, "backend"},
        {BUSBAR_LAGGED, 11, "lagged"},
        {BUSBAR_UNSUPPORTED, 12, "unsupported"},
        {BUSBAR_PANIC, 99, "panic"},
    };
    for (size_t i = 0; i < sizeof table / sizeof table[0]; i++) {
        CHECK((int)table[i].status == table[i].number);
        CHECK_STR(busbar_status_code(table[i].status), table[i].code);
    }
    CHECK_STR(busbar_status_code(13), "unknown");
    CHECK_STR(busbar_status_code(-1), "unknown");
}

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

/* ---- callbacks ---------------------------------------------------------------- */

struct counter {
    atomic_int calls;
    atomic_int lagged;
    atomic_int drops;
    atomic_int off_main_thread;
    pthread_t main_thread;
    busbar_message *kept;
    atomic_int answered;
};

static void count_message(void *userdata, const busbar_message *msg, busbar_status status) {
    struct counter *c = userdata;
    if (status == BUSBAR_LAGGED) {
        atomic_fetch_add(&c->lagged, 1);
        return;
    }
    if (!pthread_equal(pthread_self(), c->main_thread)) atomic_fetch_add(&c->off_main_thread, 1);
    if (atomic_fetch_add(&c->calls, 1) == 0) busbar_message_clone(msg, &c->kept);
    const char *reply_to = NULL;
    if (busbar_message_reply_to(msg, &reply_to) == BUSBAR_OK && reply_to != NULL) {
        /* Answering from a runtime thread calls back into busbar. */
        const char *answer = "pong";
        if (busbar_message_respond(msg, (const uint8_t *)answer, 4) == BUSBAR_OK)
            atomic_fetch_add(&c->answered, 1);
    }
}

static void count_drop(void *userdata) {
    struct counter *c = userdata;
    atomic_fetch_add(&c->drops, 1);
}

static void wait_for(atomic_int *value, int want) {
    for (int i = 0; i < WAIT_MS && atomic_load(value) < want; i++) sleep_ms(1);
}

static void test_callbacks_run_on_runtime_threads(void) {
    busbar_bus *bus = connect_bus();
    struct counter c = {0};
    c.main_thread = pthread_self();
    busbar_subscription *sub = NULL;
    CHECK_OK(busbar_subscribe(bus, "events.*", &sub));
    CHECK_OK(busbar_publish(bus, "events.first", (const uint8_t *)"1", 1, NULL, 0));
    CHECK_OK(busbar_flush(bus));
    /* The message buffered before the callback was set goes to the callback too. */
    CHECK_OK(busbar_subscription_set_callback(sub, count_message, &c, count_drop));
    CHECK_STATUS(busbar_subscription_set_callback(sub, count_message, &c, count_drop),
                 BUSBAR_INVALID_ARGUMENT);
    busbar_message *msg = NULL;
    CHECK_STATUS(busbar_subscription_next(sub, 0, &msg), BUSBAR_INVALID_ARGUMENT);
    for (int i = 0; i < 99; i++) CHECK_OK(busbar_publish(bus, "events.more", NULL, 0, NULL, 0));
    busbar_message *reply = NULL;
    CHECK_OK(busbar_request(bus, "events.ping", NULL, 0, WAIT_MS, &reply));
    if (reply) {
        char *text = message_text(reply);
        CHECK_STR(text, "pong");
        free(text);
    }
    busbar_message_free(reply);
    wait_for(&c.calls, 101);
    wait_for(&c.answered, 1); /* counted just after the reply went out */
    CHECK(atomic_load(&c.calls) == 101);
    CHECK(atomic_load(&c.off_main_thread) == 101);
    CHECK(atomic_load(&c.answered) == 1);
    CHECK(atomic_load(&c.drops) == 0);
    /* Free waits for the callback task: afterwards the drop function has run, once. */
    busbar_subscription_free(sub);
    CHECK(atomic_load(&c.drops) == 1);
    CHECK(c.kept != NULL);
    if (c.kept) CHECK_STR(subject_of(c.kept), "events.first");
    busbar_message_free(c.kept);
    busbar_bus_free(bus);
}

struct self_freeing {
    busbar_subscription *sub;
    atomic_int calls;
    atomic_int drops;
};

static void free_own_subscription(void *userdata, const busbar_message *msg, busbar_status st) {
    (void)msg;
    (void)st;
    struct self_freeing *s = userdata;
    if (atomic_fetch_add(&s->calls, 1) == 0) busbar_subscription_free(s->sub);
}

static void self_freeing_drop(void *userdata) {
    struct self_freeing *s = userdata;
    atomic_fetch_add(&s->drops, 1);
}

static void test_callback_may_free_its_own_subscription(void) {
    busbar_bus *bus = connect_bus();
    struct self_freeing s = {0};
    CHECK_OK(busbar_subscribe(bus, "once", &s.sub));
    CHECK_OK(busbar_subscription_set_callback(s.sub, free_own_subscription, &s, self_freeing_drop));
    for (int i = 0; i < 5; i++) CHECK_OK(busbar_publish(bus, "once", NULL, 0, NULL, 0));
    wait_for(&s.drops, 1);
    CHECK(atomic_load(&s.drops) == 1);
    CHECK(atomic_load(&s.calls) == 1); /* unsubscribed inside the first call */
    busbar_bus_free(bus);
}

static void test_lag_is_reported(void) {
    if (nats_url != NULL) return; /* the NATS run covers the shared paths; lag timing is local */
    busbar_bus *bus = NULL;
    CHECK_OK(busbar_connect_json("{\"backpressure\":\"lag\",\"subscription_capacity\":2}", &bus));
    busbar_subscription *sub = NULL;
    CHECK_OK(busbar_subscribe(bus, "busy", &sub));
    for (int i = 0; i < 5; i++) CHECK_OK(busbar_publish(bus, "busy", NULL, 0, NULL, 0));
    busbar_message *msg = NULL;
    CHECK_OK(busbar_subscription_next(sub, WAIT_MS, &msg));
    busbar_message_free(msg);
    CHECK_OK(busbar_subscription_next(sub, WAIT_MS, &msg));
    busbar_message_free(msg);
    CHECK_STATUS(busbar_subscription_next(sub, WAIT_MS, &msg), BUSBAR_LAGGED);
    CHECK(msg == NULL);
    CHECK_ERROR_MENTIONS("3 messages");
    CHECK_STATUS(busbar_subscription_next(sub, 0, &msg), BUSBAR_TIMEOUT);
    busbar_stats stats;
    CHECK_OK(busbar_bus_stats(bus, &stats));
    CHECK(stats.missed == 3);
    busbar_subscription_free(sub);
    busbar_bus_free(bus);
}

static void test_drain_delivers_what_is_buffered_then_ends(void) {
    busbar_bus *bus = connect_bus();
    busbar_subscription *sub = NULL;
    busbar_message *msg = NULL;
    CHECK_OK(busbar_subscribe(bus, "drained", &sub));
    CHECK_OK(busbar_publish(bus, "drained", (const uint8_t *)"1", 1, NULL, 0));
    CHECK_OK(busbar_publish(bus, "drained", (const uint8_t *)"2", 1, NULL, 0));
    CHECK_OK(busbar_flush(bus));
    /* On NATS the client may still be routing them: wait until the first is in. */
    CHECK_OK(busbar_subscription_next(sub, WAIT_MS, &msg));
    busbar_message_free(msg);
    CHECK_OK(busbar_subscription_drain(sub));
    CHECK_OK(busbar_publish(bus, "drained", (const uint8_t *)"3", 1, NULL, 0));
    CHECK_OK(busbar_subscription_next(sub, WAIT_MS, &msg));
    if (msg) {
        char *text = message_text(msg);
        CHECK_STR(text, "2");
        free(text);
    }
    busbar_message_free(msg);
    CHECK_STATUS(busbar_subscription_next(sub, WAIT_MS, &msg), BUSBAR_CLOSED);
    busbar_subscription_free(sub);
    busbar_bus_free(bus);
}

static void test_callbacks_are_told_about_lag(void) {
    if (nats_url != NULL) return;
    busbar_bus *bus = NULL;
    CHECK_OK(busbar_connect_json("{\"backpressure\":\"lag\",\"subscription_capacity\":1}", &bus));
    busbar_subscription *sub = NULL;
    CHECK_OK(busbar_subscribe(bus, "busy", &sub));
    for (int i = 0; i < 4; i++) CHECK_OK(busbar_publish(bus, "busy", NULL, 0, NULL, 0));
    struct counter c = {0};
    c.main_thread = pthread_self();
    CHECK_OK(busbar_subscription_set_callback(sub, count_message, &c, count_drop));
    wait_for(&c.lagged, 1);
    wait_for(&c.calls, 1);
    CHECK(atomic_load(&c.lagged) == 1);
    CHECK(atomic_load(&c.calls) == 1);
    busbar_subscription_free(sub);
    CHECK(atomic_load(&c.drops) == 1);
    busbar_message_free(c.kept);
    busbar_bus_free(bus);
}

/* A loopback port where nothing listens: bound, then closed. */
static int closed_port(void) {
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in addr = {0};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof addr;
    if (fd < 0 || bind(fd, (struct sockaddr *)&addr, sizeof addr) != 0 ||
        getsockname(fd, (struct sockaddr *)&addr, &len) != 0) {
        if (fd >= 0) close(fd);
        return -1;
    }
    close(fd);
    return ntohs(addr.sin_port);
}

static void test_a_dead_nats_server_is_a_backend_error(void) {
    int port = closed_port();
    CHECK(port > 0);
    char json[128], url[64];
    snprintf(url, sizeof url, "nats://127.0.0.1:%d", port);
    snprintf(json, sizeof json, "{\"backend\":\"nats\",\"nats_url\":\"%s\"}", url);
    busbar_bus *bus = NULL;
    CHECK_STATUS(busbar_connect_json(json, &bus), BUSBAR_BACKEND);
    CHECK(bus == NULL);
    CHECK_ERROR_MENTIONS(url);
}

static void *unsubscribe_later(void *arg) {
    sleep_ms(50);
    busbar_subscription_unsubscribe(arg);
    return NULL;
}

static void test_unsubscribe_from_another_thread_ends_a_wait(void) {
    busbar_bus *bus = connect_bus();
    busbar_subscription *sub = NULL;
    CHECK_OK(busbar_subscribe(bus, "quiet", &sub));
    pthread_t thread;
    pthread_create(&thread, NULL, unsubscribe_later, sub);
    busbar_message *msg = NULL;
    CHECK_STATUS(busbar_subscription_next(sub, BUSBAR_WAIT_FOREVER, &msg), BUSBAR_CLOSED);
    pthread_join(thread, NULL);
    CHECK_STATUS(busbar_subscription_next(sub, 0, &msg), BUSBAR_CLOSED);
    busbar_subscription_free(sub);
    busbar_bus_free(bus);
}

/* ---- configuration ------------------------------------------------------------ */

static void test_configuration_and_environment(void) {
    busbar_config *config = NULL;
    busbar_bus *bus = NULL;
    uint8_t big[64] = {0};
    CHECK_OK(busbar_config_new(&config));
    CHECK_STATUS(busbar_config_set(config, "max_payload", "1MB"), BUSBAR_INVALID_ARGUMENT);
    CHECK_ERROR_MENTIONS("1MB");
    CHECK_STATUS(busbar_config_set(config, "bakend", "nats"), BUSBAR_INVALID_ARGUMENT);
    CHECK_ERROR_MENTIONS("bakend");
    CHECK_STATUS(busbar_config_set(config, NULL, "x"), BUSBAR_INVALID_ARGUMENT);
    CHECK_STATUS(busbar_config_set(NULL, "source", "x"), BUSBAR_INVALID_ARGUMENT);
    CHECK_STATUS(busbar_config_set(config, "source", "\xfe"), BUSBAR_INVALID_ARGUMENT);
    CHECK_OK(busbar_config_set(config, "max_payload", "16"));
    CHECK_OK(busbar_config_set(config, "source", "c-suite"));
    CHECK_OK(busbar_connect(config, &bus));
    busbar_config_free(config);
    CHECK_STATUS(busbar_publish(bus, "big", big, 17, NULL, 0), BUSBAR_PAYLOAD_TOO_LARGE);
    CHECK_ERROR_MENTIONS("17 bytes");
    CHECK_ERROR_MENTIONS("16 bytes");
    busbar_subscription *sub = NULL;
    busbar_message *msg = NULL;
    CHECK_OK(busbar_subscribe(bus, "big", &sub));
    CHECK_OK(busbar_publish(bus, "big", big, 16, NULL, 0));
    CHECK_OK(busbar_subscription_next(sub, WAIT_MS, &msg));
    const char *source = NULL;
    if (msg) CHECK_OK(busbar_message_source(msg, &source));
    CHECK_STR(source, "c-suite");
    busbar_message_free(msg);
    busbar_subscription_free(sub);
    busbar_bus_free(bus);

    /* The environment is honoured by busbar_connect(NULL), busbar_config_new and JSON. */
    setenv("BUSBAR_MAX_PAYLOAD", "32", 1);
    CHECK_OK(busbar_connect(NULL, &bus));
    CHECK_STATUS(busbar_publish(bus, "big", big, 33, NULL, 0), BUSBAR_PAYLOAD_TOO_LARGE);
    CHECK_OK(busbar_publish(bus, "big", big, 32, NULL, 0));
    busbar_bus_free(bus);
    CHECK_OK(busbar_connect_json("{\"max_payload\": 48}", &bus)); /* explicit beats environment */
    CHECK_STATUS(busbar_publish(bus, "big", big, 49, NULL, 0), BUSBAR_PAYLOAD_TOO_LARGE);
    CHECK_OK(busbar_publish(bus, "big", big, 48, NULL, 0));
    busbar_bus_free(bus);
    unsetenv("BUSBAR_MAX_PAYLOAD");
    setenv("BUSBAR_BAKEND", "memory", 1); /* a typo is an error, not ignored */
    CHECK_STATUS(busbar_config_new(&config), BUSBAR_INVALID_ARGUMENT);
    CHECK(config == NULL);
    CHECK_ERROR_MENTIONS("BUSBAR_BAKEND");
    CHECK_STATUS(busbar_connect(NULL, &bus), BUSBAR_INVALID_ARGUMENT);
    CHECK(bus == NULL);
    unsetenv("BUSBAR_BAKEND");

    CHECK_STATUS(busbar_connect_json("{\"max_payload\": ", &bus), BUSBAR_INVALID_ARGUMENT);
    CHECK_ERROR_MENTIONS("not valid JSON");
    CHECK_STATUS(busbar_connect_json("[1,2]", &bus), BUSBAR_INVALID_ARGUMENT);
    CHECK_STATUS(busbar_connect_json("{\"backend\": {\"x\": 1}}", &bus), BUSBAR_INVALID_ARGUMENT);
    CHECK_STATUS(busbar_connect_json("{\"backend\": \"kafka\"}", &bus), BUSBAR_INVALID_ARGUMENT);
    CHECK_ERROR_MENTIONS("kafka");
    CHECK_STATUS(busbar_connect_json(NULL, &bus), BUSBAR_INVALID_ARGUMENT);
    CHECK_STATUS(busbar_connect_json("{}", NULL), BUSBAR_INVALID_ARGUMENT);
    CHECK_STATUS(busbar_config_new(NULL), BUSBAR_INVALID_ARGUMENT);
}

/* ---- bad input and use after close -------------------------------------------- */

static void test_bad_input_is_an_error_never_a_crash(void) {
    busbar_bus *bus = connect_bus();
    busbar_subscription *sub = NULL;
    busbar_message *msg = NULL;
    const uint8_t *data = NULL;
    size_t len = 0;
    const char *text = NULL;

    CHECK_STATUS(busbar_publish(NULL, "a", NULL, 0, NULL, 0), BUSBAR_INVALID_ARGUMENT);
    CHECK_ERROR_MENTIONS("bus is NULL");
    CHECK_STATUS(busbar_publish(bus, NULL, NULL, 0, NULL, 0), BUSBAR_INVALID_ARGUMENT);
    CHECK_STATUS(busbar_publish(bus, "a.\xff.b", NULL, 0, NULL, 0), BUSBAR_INVALID_ARGUMENT);
    CHECK_ERROR_MENTIONS("UTF-8");
    CHECK_STATUS(busbar_publish(bus, "orders..eu", NULL, 0, NULL, 0), BUSBAR_INVALID_SUBJECT);
    CHECK_ERROR_MENTIONS("orders..eu");
    CHECK_STATUS(busbar_publish(bus, "orders.*", NULL, 0, NULL, 0), BUSBAR_INVALID_SUBJECT);
    CHECK_STATUS(busbar_publish(bus, "a", NULL, 5, NULL, 0), BUSBAR_INVALID_ARGUMENT);
    CHECK_STATUS(busbar_publish(bus, "a", (const uint8_t *)"x", SIZE_MAX, NULL, 0),
                 BUSBAR_INVALID_ARGUMENT);
    CHECK_ERROR_MENTIONS("does not fit");
    CHECK_STATUS(busbar_publish(bus, "a", NULL, 0, NULL, 1), BUSBAR_INVALID_ARGUMENT);
    busbar_header reserved[] = {{"ce-id", "1"}};
    CHECK_STATUS(busbar_publish(bus, "a", NULL, 0, reserved, 1), BUSBAR_INVALID_ARGUMENT);
    CHECK_ERROR_MENTIONS("reserved");
    busbar_header spaced[] = {{"bad name", "1"}};
    CHECK_STATUS(busbar_publish(bus, "a", NULL, 0, spaced, 1), BUSBAR_INVALID_ARGUMENT);
    busbar_header injected[] = {{"x", "line\r\nInjected: 1"}};
    CHECK_STATUS(busbar_publish(bus, "a", NULL, 0, injected, 1), BUSBAR_INVALID_ARGUMENT);
    busbar_header null_value[] = {{"x", NULL}};
    CHECK_STATUS(busbar_publish(bus, "a", NULL, 0, null_value, 1), BUSBAR_INVALID_ARGUMENT);
    CHECK_ERROR_MENTIONS("headers[0].value");

    CHECK_STATUS(busbar_subscribe(bus, "a.>.b", &sub), BUSBAR_INVALID_SUBJECT);
    CHECK(sub == NULL);
    CHECK_STATUS(busbar_subscribe(bus, "a", NULL), BUSBAR_INVALID_ARGUMENT);
    CHECK_STATUS(busbar_queue_subscribe(bus, "a", "two words", &sub), BUSBAR_INVALID_ARGUMENT);
    CHECK_STATUS(busbar_queue_subscribe(bus, "a", NULL, &sub), BUSBAR_INVALID_ARGUMENT);
    CHECK_STATUS(busbar_request(bus, "a.*", NULL, 0, 10, &msg), BUSBAR_INVALID_SUBJECT);
    CHECK_STATUS(busbar_request(bus, "a", NULL, 0, 10, NULL), BUSBAR_INVALID_ARGUMENT);
    CHECK_STATUS(busbar_flush(NULL), BUSBAR_INVALID_ARGUMENT);
    CHECK_STATUS(busbar_close(NULL), BUSBAR_INVALID_ARGUMENT);
    CHECK_STATUS(busbar_bus_stats(bus, NULL), BUSBAR_INVALID_ARGUMENT);

    CHECK_STATUS(busbar_subscription_next(NULL, 0, &msg), BUSBAR_INVALID_ARGUMENT);
    CHECK_STATUS(busbar_subscription_unsubscribe(NULL), BUSBAR_INVALID_ARGUMENT);
    CHECK_STATUS(busbar_subscription_drain(NULL), BUSBAR_INVALID_ARGUMENT);
    CHECK_OK(busbar_subscribe(bus, "a", &sub));
    CHECK_STATUS(busbar_subscription_next(sub, 0, NULL), BUSBAR_INVALID_ARGUMENT);
    CHECK_STATUS(busbar_subscription_set_callback(sub, NULL, NULL, NULL), BUSBAR_INVALID_ARGUMENT);
    CHECK_ERROR_MENTIONS("callback is NULL");

    CHECK_STATUS(busbar_message_subject(NULL, &text), BUSBAR_INVALID_ARGUMENT);
    CHECK_STATUS(busbar_message_data(NULL, &data, &len), BUSBAR_INVALID_ARGUMENT);
    CHECK_STATUS(busbar_message_header(NULL, "a", &text), BUSBAR_INVALID_ARGUMENT);
    CHECK_STATUS(busbar_message_respond(NULL, NULL, 0), BUSBAR_INVALID_ARGUMENT);
    CHECK_STATUS(busbar_message_clone(NULL, &msg), BUSBAR_INVALID_ARGUMENT);
    CHECK_OK(busbar_publish(bus, "a", NULL, 0, NULL, 0));
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
    CHECK_OK(busbar_subscribe(bus, "held", &sub));
    CHECK_OK(busbar_publish(bus, "held", (const uint8_t *)"kept", 4, NULL, 0));
    /* A request received before close, answered after it. */
    busbar_subscription *responder = NULL;
    CHECK_OK(busbar_subscribe(bus, "ask", &responder));
    CHECK_STATUS(busbar_request(bus, "ask", NULL, 0, 1, &msg), BUSBAR_TIMEOUT);
    CHECK_OK(busbar_subscription_next(responder, WAIT_MS, &request));
    CHECK_OK(busbar_flush(bus));

    CHECK_OK(busbar_close(bus));
    CHECK_OK(busbar_close(bus)); /* closing twice is fine */
    CHECK_STATUS(busbar_publish(bus, "held", NULL, 0, NULL, 0), BUSBAR_CLOSED);
    CHECK_ERROR_MENTIONS("closed");
    CHECK_STATUS(busbar_subscribe(bus, "held", &late), BUSBAR_CLOSED);
    CHECK(late == NULL);
    CHECK_STATUS(busbar_queue_subscribe(bus, "held", "g", &late), BUSBAR_CLOSED);
    CHECK_STATUS(busbar_request(bus, "ask", NULL, 0, 10, &msg), BUSBAR_CLOSED);
    CHECK_STATUS(busbar_flush(bus), BUSBAR_CLOSED);
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

/* ---- durable streams ------------------------------------------------------------ */
/* Each test declares its own stream over its own subjects: on NATS every stream of the
 * run lives in one server. */

static const char *header_of(const busbar_message *msg, const char *name) {
    const char *value = NULL;
    CHECK_OK(busbar_message_header(msg, name, &value));
    return value;
}

static uint32_t attempt_of(const busbar_message *msg) {
    uint32_t attempt = 0;
    CHECK_OK(busbar_message_attempt(msg, &attempt));
    return attempt;
}

static uint64_t sequence_of(const busbar_message *msg) {
    uint64_t sequence = 0;
    CHECK_OK(busbar_message_sequence(msg, &sequence));
    return sequence;
}

/* A bus with durable stream `name` over `subject`. */
static busbar_bus *connect_with_stream(const char *name, const char *subject) {
    busbar_bus *bus = connect_bus();
    CHECK_OK(busbar_bus_declare_stream(bus, name, &subject, 1, NULL, NULL));
    return bus;
}

static void publish_durable_text(busbar_bus *bus, const char *subject, const char *text) {
    CHECK_OK(busbar_bus_publish_durable(bus, subject, (const uint8_t *)text, strlen(text), NULL, 0,
                                        NULL, NULL));
}

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
    CHECK_OK(busbar_subscribe(bus, "c.plain", &plain));
    CHECK_OK(busbar_publish(bus, "c.plain", NULL, 0, NULL, 0));
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
    CHECK_OK(busbar_close(bus));
    CHECK_STATUS(busbar_bus_publish_durable(bus, "c.errors.x", NULL, 0, NULL, 0, NULL, NULL),
                 BUSBAR_CLOSED);
    CHECK_STATUS(busbar_bus_declare_stream(bus, "C_ERRORS", subjects, 1, NULL, NULL), BUSBAR_CLOSED);
    CHECK_STATUS(busbar_durable_subscription_next(sub, WAIT_MS, &msg), BUSBAR_CLOSED);
    busbar_durable_subscription_free(sub);
    busbar_durable_subscription_free(NULL);
    busbar_bus_free(bus);
}

/* Issue 12: a 10,000-token pattern overflowed the subject trie's recursion (SIGSEGV inside
 * busbar_subscribe); a subject over a NATS server's 4096-byte control line made the server
 * drop the connection. Both are invalid_subject now, with a short message; subjects at the
 * limits (2000 bytes, 256 tokens) work; numeric options out of range are invalid_argument. */
static char *repeat_tokens(const char *token, size_t count, const char *last) {
    size_t len = count * (strlen(token) + 1) + strlen(last) + 1;
    char *s = calloc(len, 1);
    for (size_t i = 0; i < count; i++) {
        strcat(s, token);
        strcat(s, ".");
    }
    strcat(s, last);
    return s;
}

static void test_deep_and_long_subjects_and_numbers(void) {
    busbar_bus *bus = connect_bus();
    busbar_subscription *sub = NULL;
    busbar_message *msg = NULL;
    char *deep = repeat_tokens("a", 9999, "a"); /* 10,000 tokens, 19,999 bytes */
    CHECK_STATUS(busbar_subscribe(bus, deep, &sub), BUSBAR_INVALID_SUBJECT);
    CHECK(sub == NULL);
    CHECK_ERROR_MENTIONS("limit of 2000 bytes");
    CHECK(strlen(busbar_last_error()) < 300);
    CHECK_STATUS(busbar_publish(bus, deep, NULL, 0, NULL, 0), BUSBAR_INVALID_SUBJECT);
    CHECK_STATUS(busbar_validate_pattern(deep), BUSBAR_INVALID_SUBJECT);
    free(deep);
    char *too_deep = repeat_tokens("*", 300, ">");
    CHECK_STATUS(busbar_queue_subscribe(bus, too_deep, "workers", &sub), BUSBAR_INVALID_SUBJECT);
    CHECK_ERROR_MENTIONS("limit of 256 tokens");
    free(too_deep);
    char *long_subject = calloc(5001, 1);
    memset(long_subject, 'x', 5000);
    CHECK_STATUS(busbar_publish(bus, long_subject, NULL, 0, NULL, 0), BUSBAR_INVALID_SUBJECT);
    CHECK_STATUS(busbar_request(bus, long_subject, NULL, 0, 100, &msg), BUSBAR_INVALID_SUBJECT);
    CHECK(msg == NULL);
    CHECK_STATUS(busbar_subscribe(bus, long_subject, &sub), BUSBAR_INVALID_SUBJECT);
    CHECK_STATUS(busbar_queue_subscribe(bus, "c.long", long_subject, &sub), BUSBAR_INVALID_ARGUMENT);
    free(long_subject);

    /* At the limits: 2000 bytes with a wildcard, and 256 tokens. */
    char *longest = calloc(2001, 1);
    memset(longest, 'p', 2000);
    longest[1996] = '.';
    char *longest_pattern = strdup(longest);
    strcpy(longest_pattern + 1997, "*");
    char *deepest = repeat_tokens("d", 255, "d");
    busbar_subscription *deep_sub = NULL;
    CHECK_OK(busbar_subscribe(bus, longest_pattern, &sub));
    CHECK_OK(busbar_subscribe(bus, deepest, &deep_sub));
    CHECK_OK(busbar_flush(bus));
    CHECK_OK(busbar_publish(bus, longest, (const uint8_t *)"long", 4, NULL, 0));
    CHECK_OK(busbar_publish(bus, deepest, (const uint8_t *)"deep", 4, NULL, 0));
    CHECK_OK(busbar_subscription_next(sub, WAIT_MS, &msg));
    if (msg != NULL) CHECK_STR(subject_of(msg), longest);
    busbar_message_free(msg);
    msg = NULL;
    CHECK_OK(busbar_subscription_next(deep_sub, WAIT_MS, &msg));
    if (msg != NULL) CHECK_STR(subject_of(msg), deepest);
    busbar_message_free(msg);
    busbar_subscription_free(sub);
    busbar_subscription_free(deep_sub);
    free(longest);
    free(longest_pattern);
    free(deepest);

    /* Numbers: ack_wait_ms = UINT64_MAX was an opaque backend error on NATS. */
    const char *subjects[] = {"c.limits.>"};
    CHECK_OK(busbar_bus_declare_stream(bus, "C_LIMITS", subjects, 1, NULL, NULL));
    busbar_consumer_options opts = {0};
    opts.ack_wait_ms = UINT64_MAX;
    busbar_durable_subscription *durable = NULL;
    CHECK_STATUS(busbar_bus_durable_subscribe(bus, "C_LIMITS", "c", &opts, &durable),
                 BUSBAR_INVALID_ARGUMENT);
    CHECK_ERROR_MENTIONS("ack_wait");
    CHECK(durable == NULL);
    CHECK_STATUS(busbar_request(bus, "c.limits.x", NULL, 0, UINT64_MAX - 1, &msg),
                 BUSBAR_INVALID_ARGUMENT);
    busbar_config *config = NULL;
    CHECK_OK(busbar_config_new(&config));
    CHECK_STATUS(busbar_config_set(config, "subscription_capacity", "2305843009213693952"),
                 BUSBAR_INVALID_ARGUMENT);
    CHECK_ERROR_MENTIONS("subscription_capacity");
    busbar_config_free(config);
    busbar_bus_free(bus);
}

int main(int argc, char **argv) {
    /* No BUSBAR_* variable for this: core refuses unknown ones, rightly. */
    nats_url = argc > 1 ? argv[1] : NULL;
    printf("busbar C suite on the %s bus\n", nats_url ? nats_url : "in-memory");
    RUN(test_status_codes);
    RUN(test_subject_vectors);
    RUN(test_subject_functions_refuse_bad_input);
    RUN(test_publish_subscribe_with_headers);
    RUN(test_wildcards_and_queue_groups);
    RUN(test_request_reply);
    RUN(test_callbacks_run_on_runtime_threads);
    RUN(test_callback_may_free_its_own_subscription);
    RUN(test_lag_is_reported);
    RUN(test_callbacks_are_told_about_lag);
    RUN(test_drain_delivers_what_is_buffered_then_ends);
    RUN(test_unsubscribe_from_another_thread_ends_a_wait);
    RUN(test_a_dead_nats_server_is_a_backend_error);
    RUN(test_configuration_and_environment);
    RUN(test_bad_input_is_an_error_never_a_crash);
    RUN(test_every_call_after_close_returns_closed);
    RUN(test_durable_publish_is_acked_and_deduplicated);
    RUN(test_durable_ack_and_nak_redeliver);
    RUN(test_durable_term_and_last_nak_dead_letter);
    RUN(test_durable_replay_from_a_sequence);
    RUN(test_durable_errors);
    RUN(test_deep_and_long_subjects_and_numbers);
    printf("%d checks, %d failed\n", harness_checks, harness_failures);
    return harness_failures == 0 ? 0 : 1;
}
