/* busbar C suite, int_observe: metrics (OpenMetrics text), health and the log callback,
 * on the in-memory bus or a NATS server.
 *
 *   tests/c/Makefile builds it; scripts/test-c.sh runs it plainly, under valgrind (the
 *   leak run), and against a private nats-server (its URL as the first argument).
 */
#define _POSIX_C_SOURCE 200809L
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "support.h"

/* ---- metrics and health ------------------------------------------------------ */

static void test_metrics_count_by_pattern(void) {
    busbar_bus *bus = connect_bus();
    busbar_subscription *sub = NULL;
    CHECK_OK(busbar_queue_subscribe(bus, "orders.*", "workers", &sub));
    for (int i = 0; i < 3; i++) {
        CHECK_OK(busbar_publish(bus, "orders.created", NULL, 0, NULL, 0));
    }
    CHECK_OK(busbar_flush(bus));
    for (int i = 0; i < 3; i++) {
        busbar_message *msg = NULL;
        CHECK_OK(busbar_subscription_next(sub, WAIT_MS, &msg));
        busbar_message_free(msg);
    }
    char *text = NULL;
    CHECK_OK(busbar_bus_metrics(bus, &text));
    CHECK(text != NULL);
    if (text != NULL) {
        CHECK(strstr(text, "busbar_subscription_delivered_total{pattern=\"orders.*\",queue_group=\"workers\"} 3\n") != NULL);
        CHECK(strstr(text, "busbar_connected 1\n") != NULL);
        CHECK(strstr(text, "orders.created") == NULL); /* never a concrete subject */
        size_t len = strlen(text);
        CHECK(len > 6 && strcmp(text + len - 6, "# EOF\n") == 0);
    }
    busbar_string_free(text);
    busbar_string_free(NULL);
    CHECK_STATUS(busbar_bus_metrics(bus, NULL), BUSBAR_INVALID_ARGUMENT);
    CHECK_STATUS(busbar_bus_metrics(NULL, &text), BUSBAR_INVALID_ARGUMENT);

    busbar_health health;
    char *last_error = (char *)"x";
    CHECK_OK(busbar_bus_health(bus, &health, &last_error));
    CHECK(health.state == BUSBAR_STATE_CONNECTED);
    CHECK(health.ready);
    CHECK(health.subscriptions == 1);
    CHECK(health.pending_requests == 0);
    CHECK(last_error == NULL);
    CHECK_OK(busbar_bus_health(bus, &health, NULL));
    CHECK_STATUS(busbar_bus_health(bus, NULL, NULL), BUSBAR_INVALID_ARGUMENT);

    busbar_subscription_free(sub);
    CHECK_OK(busbar_close(bus));
    CHECK_OK(busbar_bus_health(bus, &health, NULL));
    CHECK(health.state == BUSBAR_STATE_CLOSED);
    CHECK(!health.ready);
    busbar_bus_free(bus);
}

/* An open request circuit (the breaker, breaker_failures=1) is counted in busbar_health
 * and named in busbar_bus_health_json. */
static void test_health_names_open_circuits(void) {
    busbar_bus *bus = connect_bus_with("breaker_failures", "1");
    busbar_health health;
    CHECK_OK(busbar_bus_health(bus, &health, NULL));
    CHECK(health.open_circuits == 0);
    busbar_message *reply = NULL;
    CHECK_STATUS(busbar_bus_request(bus, "svc.down", NULL, 0, WAIT_MS, &reply), BUSBAR_NO_RESPONDERS);
    CHECK(reply == NULL);
    CHECK_OK(busbar_bus_health(bus, &health, NULL));
    CHECK(health.open_circuits == 1);
    char *json = NULL;
    CHECK_OK(busbar_bus_health_json(bus, &json));
    CHECK(json != NULL && strstr(json, "\"open_circuit_subjects\":[\"svc.down\"]") != NULL);
    CHECK(json != NULL && strstr(json, "\"open_circuits\":1") != NULL);
    busbar_string_free(json);
    char *text = NULL;
    CHECK_OK(busbar_bus_metrics(bus, &text));
    CHECK(text != NULL && strstr(text, "\nbusbar_open_circuits 1\n") != NULL);
    busbar_string_free(text);
    CHECK_STATUS(busbar_bus_health_json(bus, NULL), BUSBAR_INVALID_ARGUMENT);
    CHECK_STATUS(busbar_bus_health_json(NULL, &json), BUSBAR_INVALID_ARGUMENT);
    CHECK_OK(busbar_close(bus));
    busbar_bus_free(bus);
}

/* Discovery of NATS services: an array (tests/cross/discover.py finds a Rust service from C). */
static void test_discover(void) {
    busbar_bus *bus = connect_bus();
    char *json = NULL;
    CHECK_OK(busbar_bus_discover(bus, NULL, NULL, 50, &json));
    CHECK(json != NULL && strcmp(json, "[]") == 0);
    busbar_string_free(json);
    json = NULL;
    CHECK_OK(busbar_bus_discover(bus, "info", "nobody", 50, &json));
    CHECK(json != NULL && strcmp(json, "[]") == 0);
    busbar_string_free(json);
    CHECK_STATUS(busbar_bus_discover(bus, "PONG", NULL, 50, &json), BUSBAR_INVALID_ARGUMENT);
    CHECK_ERROR_MENTIONS("PING, INFO or STATS");
    CHECK_STATUS(busbar_bus_discover(bus, NULL, NULL, 50, NULL), BUSBAR_INVALID_ARGUMENT);
    CHECK_STATUS(busbar_bus_discover(NULL, NULL, NULL, 50, &json), BUSBAR_INVALID_ARGUMENT);
    busbar_bus_free(bus);
}

/* ---- services ------------------------------------------------------------------ */

/* Doubles a number; "-" first is an error reply with code 422, "drop" is left unanswered. */
static busbar_status double_it(void *userdata, busbar_job *job) {
    int *calls = userdata;
    (*calls)++;
    const uint8_t *data = NULL;
    size_t len = 0;
    busbar_message_data(busbar_job_request(job), &data, &len);
    char text[32] = {0};
    memcpy(text, data, len < sizeof text - 1 ? len : sizeof text - 1);
    if (strcmp(text, "drop") == 0) {
        return BUSBAR_OK;
    }
    if (text[0] == '-') {
        CHECK_OK(busbar_job_fail(job, "negative", 422));
        CHECK_STATUS(busbar_job_reply(job, NULL, 0), BUSBAR_INVALID_ARGUMENT); /* once */
        return BUSBAR_OK;
    }
    char out[32];
    int n = snprintf(out, sizeof out, "%ld", 2 * strtol(text, NULL, 10));
    CHECK_OK(busbar_job_reply(job, (const uint8_t *)out, (size_t)n));
    return BUSBAR_OK;
}

struct endpoint_run {
    busbar_service *service;
    int calls;
    uint64_t served;
    busbar_status status;
};

static void *serve_endpoint(void *arg) {
    struct endpoint_run *run = arg;
    run->status = busbar_service_endpoint_serve(run->service, "double", "calc.double", double_it, &run->calls, &run->served);
    return NULL;
}

static busbar_message *ask(busbar_bus *bus, const char *text) {
    busbar_message *reply = NULL;
    CHECK_OK(busbar_bus_request(bus, "calc.double", (const uint8_t *)text, strlen(text), WAIT_MS, &reply));
    return reply;
}

/* A service run from C: replies, error replies, a dropped request, discovery, stop. */
static void test_service_from_c(void) {
    busbar_bus *bus = connect_bus();
    struct endpoint_run run = {NULL, 0, 0, BUSBAR_OK};
    CHECK_OK(busbar_bus_start_service(bus, "calc", "1.2.3", "doubles", &run.service));
    CHECK(busbar_service_id(run.service) != NULL && strlen(busbar_service_id(run.service)) == 32);
    pthread_t thread;
    CHECK(pthread_create(&thread, NULL, serve_endpoint, &run) == 0);
    /* Until the endpoint is subscribed, a request finds no responder. */
    busbar_message *reply = NULL;
    for (int i = 0; i < 200; i++) {
        if (busbar_bus_request(bus, "calc.double", (const uint8_t *)"21", 2, WAIT_MS, &reply) == BUSBAR_OK) break;
        struct timespec pause = {0, 10 * 1000 * 1000};
        nanosleep(&pause, NULL);
    }
    CHECK(reply != NULL);
    if (reply != NULL) {
        const uint8_t *data = NULL;
        size_t len = 0;
        CHECK_OK(busbar_message_data(reply, &data, &len));
        CHECK(len == 2 && memcmp(data, "42", 2) == 0);
    }
    busbar_message_free(reply);
    reply = ask(bus, "-1");
    const char *value = NULL;
    CHECK_OK(busbar_message_header(reply, "Nats-Service-Error", &value));
    CHECK_STR(value, "negative");
    CHECK_OK(busbar_message_header(reply, "Nats-Service-Error-Code", &value));
    CHECK_STR(value, "422");
    busbar_message_free(reply);
    reply = ask(bus, "drop");
    CHECK_OK(busbar_message_header(reply, "Nats-Service-Error", &value));
    CHECK_STR(value, "the handler ended without answering");
    busbar_message_free(reply);
    char *json = NULL;
    CHECK_OK(busbar_bus_discover(bus, "STATS", "calc", 200, &json));
    CHECK(json != NULL && strstr(json, "\"num_requests\":3") != NULL && strstr(json, "\"num_errors\":2") != NULL);
    busbar_string_free(json);
    CHECK_OK(busbar_service_stop(run.service));
    CHECK(pthread_join(thread, NULL) == 0);
    CHECK(run.status == BUSBAR_OK && run.served == 3 && run.calls == 3);
    /* Bad input: NULLs and a bad subject, each invalid_argument or invalid_subject. */
    uint64_t served = 0;
    CHECK_STATUS(busbar_service_endpoint_serve(run.service, "e", "a..b", double_it, &run.calls, &served), BUSBAR_INVALID_SUBJECT);
    CHECK_STATUS(busbar_service_endpoint_serve(run.service, "e", "e.x", NULL, NULL, &served), BUSBAR_INVALID_ARGUMENT);
    CHECK_STATUS(busbar_service_endpoint_serve(NULL, "e", "e.x", double_it, NULL, &served), BUSBAR_INVALID_ARGUMENT);
    CHECK_STATUS(busbar_job_reply(NULL, NULL, 0), BUSBAR_INVALID_ARGUMENT);
    CHECK_STATUS(busbar_job_fail(NULL, "x", 500), BUSBAR_INVALID_ARGUMENT);
    CHECK(busbar_job_request(NULL) == NULL);
    CHECK(busbar_service_id(NULL) == NULL);
    busbar_service_free(run.service);
    busbar_service_free(NULL);
    busbar_service *bad = NULL;
    CHECK_STATUS(busbar_bus_start_service(bus, "bad name", "1.0.0", NULL, &bad), BUSBAR_INVALID_ARGUMENT);
    CHECK(bad == NULL);
    CHECK_STATUS(busbar_bus_start_service(bus, NULL, "1.0.0", NULL, &bad), BUSBAR_INVALID_ARGUMENT);
    CHECK_STATUS(busbar_bus_start_service(NULL, "ok", "1.0.0", NULL, &bad), BUSBAR_INVALID_ARGUMENT);
    busbar_bus_free(bus);
}

/* ---- logging ----------------------------------------------------------------- */

struct log_seen {
    pthread_mutex_t lock;
    int records;
    int lag_warnings;
    int released;
};

static void on_log(void *userdata, busbar_log_level level, const char *target, const char *message) {
    struct log_seen *seen = userdata;
    pthread_mutex_lock(&seen->lock);
    seen->records++;
    if (level == BUSBAR_LOG_WARN && strncmp(target, "busbar", 6) == 0 && strstr(message, "lag") != NULL) {
        seen->lag_warnings++;
    }
    pthread_mutex_unlock(&seen->lock);
}

static void release(void *userdata) {
    ((struct log_seen *)userdata)->released++;
}

static void test_log_callback_receives_records(void) {
    struct log_seen seen = {PTHREAD_MUTEX_INITIALIZER, 0, 0, 0};
    CHECK_OK(busbar_set_log_callback(on_log, &seen, release, BUSBAR_LOG_INFO));
    /* A lagging subscription logs a warning when its gap is reported. */
    busbar_config *config = NULL;
    busbar_bus *bus = NULL;
    CHECK_OK(busbar_config_new(&config));
    CHECK_OK(busbar_config_set(config, "backpressure", "lag"));
    CHECK_OK(busbar_config_set(config, "subscription_capacity", "1"));
    CHECK_OK(busbar_connect(config, &bus));
    busbar_config_free(config);
    busbar_subscription *sub = NULL;
    CHECK_OK(busbar_subscribe(bus, "lag.>", &sub));
    for (int i = 0; i < 3; i++) {
        CHECK_OK(busbar_publish(bus, "lag.x", NULL, 0, NULL, 0));
    }
    busbar_message *msg = NULL;
    CHECK_OK(busbar_subscription_next(sub, WAIT_MS, &msg));
    busbar_message_free(msg);
    CHECK_STATUS(busbar_subscription_next(sub, WAIT_MS, &msg), BUSBAR_LAGGED);
    busbar_subscription_free(sub);
    busbar_bus_free(bus);
    pthread_mutex_lock(&seen.lock);
    CHECK(seen.records >= 2); /* "bus connected" (info) and the lag warning */
    CHECK(seen.lag_warnings == 1);
    pthread_mutex_unlock(&seen.lock);

    /* Replacing the callback releases the old userdata; NULL stops the records. */
    CHECK_OK(busbar_set_log_callback(NULL, NULL, NULL, BUSBAR_LOG_OFF));
    CHECK(seen.released == 1);
    CHECK_STATUS(busbar_set_log_callback(on_log, &seen, release, 9), BUSBAR_INVALID_ARGUMENT);
    CHECK(seen.released == 2); /* released on failure too */
    int before = seen.records;
    busbar_bus *quiet = connect_bus();
    busbar_bus_free(quiet);
    CHECK(seen.records == before);
}

int main(int argc, char **argv) {
    suite_start(argc, argv, "int_observe");
    RUN(test_metrics_count_by_pattern);
    RUN(test_health_names_open_circuits);
    RUN(test_discover);
    RUN(test_service_from_c);
    RUN(test_log_callback_receives_records);
    return suite_end();
}
