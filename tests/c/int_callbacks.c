/* busbar C suite, int_callbacks: Integration tests, on the in-memory bus or a NATS server: callbacks on runtime
 * threads, lag notices (pulled and in callbacks), drain, unsubscribe from another thread,
 * a dead NATS server.
 *
 *   tests/c/Makefile builds it; scripts/test-c.sh runs it plainly, under valgrind (the
 *   leak run), and against a private nats-server (its URL as the first argument).
 */
#define _POSIX_C_SOURCE 200809L
#include <fcntl.h>
#include <signal.h>
#include <sys/wait.h>

#include "support.h"

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
    CHECK_OK(busbar_bus_subscribe(bus, "events.*", &sub));
    CHECK_OK(busbar_bus_publish(bus, "events.first", (const uint8_t *)"1", 1, NULL, 0));
    CHECK_OK(busbar_bus_flush(bus));
    /* The message buffered before the callback was set goes to the callback too. */
    CHECK_OK(busbar_subscription_set_callback(sub, count_message, &c, count_drop));
    CHECK_STATUS(busbar_subscription_set_callback(sub, count_message, &c, count_drop),
                 BUSBAR_INVALID_ARGUMENT);
    busbar_message *msg = NULL;
    CHECK_STATUS(busbar_subscription_next(sub, 0, &msg), BUSBAR_INVALID_ARGUMENT);
    for (int i = 0; i < 99; i++) CHECK_OK(busbar_bus_publish(bus, "events.more", NULL, 0, NULL, 0));
    busbar_message *reply = NULL;
    CHECK_OK(busbar_bus_request(bus, "events.ping", NULL, 0, WAIT_MS, &reply));
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
    CHECK_OK(busbar_bus_subscribe(bus, "once", &s.sub));
    CHECK_OK(busbar_subscription_set_callback(s.sub, free_own_subscription, &s, self_freeing_drop));
    for (int i = 0; i < 5; i++) CHECK_OK(busbar_bus_publish(bus, "once", NULL, 0, NULL, 0));
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
    CHECK_OK(busbar_bus_subscribe(bus, "busy", &sub));
    for (int i = 0; i < 5; i++) CHECK_OK(busbar_bus_publish(bus, "busy", NULL, 0, NULL, 0));
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
    CHECK_OK(busbar_bus_subscribe(bus, "drained", &sub));
    CHECK_OK(busbar_bus_publish(bus, "drained", (const uint8_t *)"1", 1, NULL, 0));
    CHECK_OK(busbar_bus_publish(bus, "drained", (const uint8_t *)"2", 1, NULL, 0));
    CHECK_OK(busbar_bus_flush(bus));
    /* On NATS the client may still be routing them: wait until the first is in. */
    CHECK_OK(busbar_subscription_next(sub, WAIT_MS, &msg));
    busbar_message_free(msg);
    CHECK_OK(busbar_subscription_drain(sub));
    CHECK_OK(busbar_bus_publish(bus, "drained", (const uint8_t *)"3", 1, NULL, 0));
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
    CHECK_OK(busbar_bus_subscribe(bus, "busy", &sub));
    for (int i = 0; i < 4; i++) CHECK_OK(busbar_bus_publish(bus, "busy", NULL, 0, NULL, 0));
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
    CHECK_OK(busbar_bus_subscribe(bus, "quiet", &sub));
    pthread_t thread;
    pthread_create(&thread, NULL, unsubscribe_later, sub);
    busbar_message *msg = NULL;
    CHECK_STATUS(busbar_subscription_next(sub, BUSBAR_WAIT_FOREVER, &msg), BUSBAR_CLOSED);
    pthread_join(thread, NULL);
    CHECK_STATUS(busbar_subscription_next(sub, 0, &msg), BUSBAR_CLOSED);
    busbar_subscription_free(sub);
    busbar_bus_free(bus);
}

/* ---- serve, subscription counters -------------------------------------------- */

struct server {
    busbar_subscription *sub;
    busbar_status status;
    uint64_t served;
    atomic_int handled;
};

static busbar_status answer_upper(void *userdata, const busbar_message *request) {
    struct server *s = userdata;
    char *text = message_text(request);
    for (char *p = text; *p; p++)
        if (*p >= 'a' && *p <= 'z') *p = (char)(*p - 'a' + 'A');
    busbar_status status = busbar_message_respond(request, (const uint8_t *)text, strlen(text));
    free(text);
    atomic_fetch_add(&s->handled, 1);
    return status;
}

static void *serve_thread(void *arg) {
    struct server *s = arg;
    s->status = busbar_subscription_serve(s->sub, answer_upper, s, &s->served);
    return NULL;
}

static void test_serve_answers_until_the_subscription_ends(void) {
    busbar_bus *bus = connect_bus();
    struct server s = {0};
    CHECK_OK(busbar_bus_subscribe(bus, "svc.upper", &s.sub));
    pthread_t thread;
    pthread_create(&thread, NULL, serve_thread, &s);
    for (int i = 0; i < 3; i++) {
        busbar_message *reply = NULL;
        CHECK_OK(busbar_bus_request(bus, "svc.upper", (const uint8_t *)"abc", 3, WAIT_MS, &reply));
        char *text = reply ? message_text(reply) : NULL;
        CHECK_STR(text, "ABC");
        free(text);
        busbar_message_free(reply);
    }
    /* A plain message reaches the handler too (its respond fails; serving goes on). */
    CHECK_OK(busbar_bus_publish(bus, "svc.upper", (const uint8_t *)"x", 1, NULL, 0));
    wait_for(&s.handled, 4);
    busbar_subscription_counters stats;
    CHECK_OK(busbar_subscription_stats(s.sub, &stats));
    CHECK(stats.delivered == 4 && stats.missed == 0 && !stats.lagging);
    CHECK_OK(busbar_subscription_unsubscribe(s.sub));
    pthread_join(thread, NULL);
    CHECK_STATUS(s.status, BUSBAR_OK);
    CHECK(s.served == 4);
    CHECK_STATUS(busbar_subscription_serve(s.sub, NULL, NULL, NULL), BUSBAR_INVALID_ARGUMENT);
    CHECK_STATUS(busbar_subscription_stats(NULL, &stats), BUSBAR_INVALID_ARGUMENT);
    busbar_subscription_free(s.sub);
    busbar_bus_free(bus);
}

/* ---- connection events --------------------------------------------------------- */

struct events {
    atomic_int disconnected;
    atomic_int connected;
    atomic_int drops;
};

static void count_event(void *userdata, busbar_connection_event event, const char *detail) {
    struct events *e = userdata;
    (void)detail;
    if (event == BUSBAR_EVENT_DISCONNECTED) atomic_fetch_add(&e->disconnected, 1);
    if (event == BUSBAR_EVENT_CONNECTED) atomic_fetch_add(&e->connected, 1);
}

static void count_event_drop(void *userdata) {
    struct events *e = userdata;
    atomic_fetch_add(&e->drops, 1);
}

/* Starts a private nats-server on `port`; its pid, or -1. */
static pid_t start_nats_server(int port) {
    char port_text[16];
    snprintf(port_text, sizeof port_text, "%d", port);
    pid_t pid = fork();
    if (pid == 0) {
        /* Its log is not the test's output. */
        int null_fd = open("/dev/null", O_WRONLY);
        if (null_fd >= 0) {
            dup2(null_fd, STDOUT_FILENO);
            dup2(null_fd, STDERR_FILENO);
        }
        execlp("nats-server", "nats-server", "-a", "127.0.0.1", "-p", port_text, (char *)NULL);
        execl("/usr/sbin/nats-server", "nats-server", "-a", "127.0.0.1", "-p", port_text, (char *)NULL);
        _exit(127);
    }
    /* Ready once it accepts a connection. */
    for (int i = 0; i < 200; i++) {
        int fd = socket(AF_INET, SOCK_STREAM, 0);
        struct sockaddr_in addr = {0};
        addr.sin_family = AF_INET;
        addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        addr.sin_port = htons((uint16_t)port);
        int ok = fd >= 0 && connect(fd, (struct sockaddr *)&addr, sizeof addr) == 0;
        if (fd >= 0) close(fd);
        if (ok) return pid;
        sleep_ms(25);
    }
    return -1;
}

static void stop_nats_server(pid_t pid) {
    if (pid <= 0) return;
    kill(pid, SIGTERM);
    waitpid(pid, NULL, 0);
}

static int closed_port(void);

/* A server that goes away and comes back: the callback hears both, then its userdata is
 * released when the bus is freed. Runs with the NATS suite (it starts a server of its own). */
static void test_connection_events_reach_the_callback(void) {
    busbar_bus *memory = NULL;
    struct events e = {0};
    CHECK_OK(busbar_connect(NULL, &memory));
    /* No connection, no event: the userdata is released at once. */
    CHECK_OK(busbar_bus_connection_events(memory, count_event, &e, count_event_drop));
    CHECK(atomic_load(&e.drops) == 1);
    CHECK_STATUS(busbar_bus_connection_events(memory, NULL, NULL, NULL), BUSBAR_INVALID_ARGUMENT);
    busbar_bus_free(memory);
    CHECK_STR(busbar_connection_event_kind(BUSBAR_EVENT_LAME_DUCK), "lame_duck");
    if (nats_url == NULL) return;

    int port = closed_port();
    pid_t server = start_nats_server(port);
    CHECK(server > 0);
    if (server <= 0) return;
    char json[128];
    snprintf(json, sizeof json, "{\"backend\":\"nats\",\"nats_url\":\"nats://127.0.0.1:%d\"}", port);
    busbar_bus *bus = NULL;
    CHECK_OK(busbar_connect_json(json, &bus));
    struct events n = {0};
    CHECK_OK(busbar_bus_connection_events(bus, count_event, &n, count_event_drop));
    CHECK_STATUS(busbar_bus_connection_events(bus, count_event, &n, NULL), BUSBAR_INVALID_ARGUMENT);
    stop_nats_server(server);
    wait_for(&n.disconnected, 1);
    CHECK(atomic_load(&n.disconnected) >= 1);
    server = start_nats_server(port);
    wait_for(&n.connected, 1);
    CHECK(atomic_load(&n.connected) >= 1);
    CHECK(atomic_load(&n.drops) == 0);
    busbar_bus_free(bus);
    CHECK(atomic_load(&n.drops) == 1);
    stop_nats_server(server);
}

int main(int argc, char **argv) {
    suite_start(argc, argv, "int_callbacks");
    RUN(test_callbacks_run_on_runtime_threads);
    RUN(test_callback_may_free_its_own_subscription);
    RUN(test_lag_is_reported);
    RUN(test_callbacks_are_told_about_lag);
    RUN(test_drain_delivers_what_is_buffered_then_ends);
    RUN(test_unsubscribe_from_another_thread_ends_a_wait);
    RUN(test_a_dead_nats_server_is_a_backend_error);
    RUN(test_serve_answers_until_the_subscription_ends);
    RUN(test_connection_events_reach_the_callback);
    return suite_end();
}
