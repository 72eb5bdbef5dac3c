/* The whole API in one scenario, the same in examples/python/tour.py and
 * examples/node/tour.js: publish with every attribute and read them back, serve requests,
 * watch connection events, and subscribe as a principal under a policy
 * (docs/design.md §9).
 *
 *   make -C examples/c tour && target/c/tour    # BUSBAR_BACKEND=nats BUSBAR_NATS_URL=... for NATS
 */
#define _POSIX_C_SOURCE 200809L
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "busbar.h"

#define CHECK(call)                                                                      \
    do {                                                                                 \
        busbar_status s_ = (call);                                                       \
        if (s_ != BUSBAR_OK) {                                                           \
            fprintf(stderr, "%s: [%s] %s\n", #call, busbar_status_code(s_), busbar_last_error()); \
            exit(1);                                                                     \
        }                                                                                \
    } while (0)

static const char *text(const busbar_message *msg, busbar_status (*read)(const busbar_message *, const char **)) {
    const char *value = NULL;
    CHECK(read(msg, &value));
    return value ? value : "(none)";
}

static void attributes(busbar_bus *bus) {
    busbar_subscription *sub = NULL;
    CHECK(busbar_bus_subscribe(bus, "tour.attrs", &sub));
    busbar_header headers[] = {{"tenant", "st-marys"}};
    busbar_publish_options opts = {0};
    opts.id = "order-7";
    opts.event_type = "com.example.order.created";
    opts.content_type = "application/json";
    opts.correlation_id = "corr-1";
    opts.classification = "internal";
    opts.traceparent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    opts.tracestate = "tour=1";
    opts.headers = headers;
    opts.headers_len = 1;
    CHECK(busbar_bus_publish_with(bus, "tour.attrs", (const uint8_t *)"{\"qty\":1}", 9, &opts));
    busbar_message *msg = NULL;
    CHECK(busbar_subscription_next(sub, 5000, &msg));
    printf("read %s %s %s %s\n", text(msg, busbar_message_id), text(msg, busbar_message_event_type),
           text(msg, busbar_message_content_type), text(msg, busbar_message_correlation_id));
    const char *tenant = NULL;
    CHECK(busbar_message_header(msg, "tenant", &tenant));
    printf("     %s %s tenant=%s keyid=%s\n", text(msg, busbar_message_classification),
           text(msg, busbar_message_tracestate), tenant, text(msg, busbar_message_keyid));
    busbar_message_free(msg);
    busbar_subscription_free(sub);
}

static busbar_status upper(void *userdata, const busbar_message *request) {
    (void)userdata;
    const uint8_t *data = NULL;
    size_t len = 0;
    busbar_message_data(request, &data, &len);
    char reply[64] = {0};
    for (size_t i = 0; i < len && i < sizeof reply - 1; i++)
        reply[i] = (char)(data[i] >= 'a' && data[i] <= 'z' ? data[i] - 'a' + 'A' : data[i]);
    return busbar_message_respond(request, (const uint8_t *)reply, strlen(reply));
}

struct server {
    busbar_subscription *sub;
    uint64_t served;
};

static void *serve_thread(void *arg) {
    struct server *s = arg;
    CHECK(busbar_subscription_serve(s->sub, upper, NULL, &s->served));
    return NULL;
}

static void serving(busbar_bus *bus) {
    struct server s = {0};
    CHECK(busbar_bus_subscribe(bus, "tour.upper", &s.sub));
    pthread_t thread;
    pthread_create(&thread, NULL, serve_thread, &s);
    busbar_header headers[] = {{"caller", "tour"}};
    busbar_publish_options opts = {0};
    opts.headers = headers;
    opts.headers_len = 1;
    busbar_message *reply = NULL;
    CHECK(busbar_bus_request_with(bus, "tour.upper", (const uint8_t *)"hello", 5, &opts, 2000, &reply));
    const uint8_t *data = NULL;
    size_t len = 0;
    CHECK(busbar_message_data(reply, &data, &len));
    printf("served: %.*s\n", (int)len, (const char *)data);
    busbar_message_free(reply);
    CHECK(busbar_subscription_unsubscribe(s.sub));
    pthread_join(thread, NULL);
    printf("answered %llu request(s)\n", (unsigned long long)s.served);
    busbar_subscription_free(s.sub);
}

static void on_event(void *userdata, busbar_connection_event event, const char *detail) {
    (void)userdata;
    printf("connection event: %s%s%s\n", busbar_connection_event_kind(event), detail ? " " : "", detail ? detail : "");
}

static void as_principal(void) {
    char path[] = "/tmp/busbar-tour-XXXXXX";
    int fd = mkstemp(path);
    if (fd < 0) exit(1);
    const char *policy = "{\"classes\":[\"pii\"],\"fields\":[{\"path\":\"/ssn\",\"class\":\"pii\","
                         "\"action\":\"partial\",\"keep\":4}],\"grants\":{\"hr\":[\"pii\"]}}";
    if (write(fd, policy, strlen(policy)) != (ssize_t)strlen(policy)) exit(1);
    close(fd);
    busbar_config *config = NULL;
    CHECK(busbar_config_new(&config));
    CHECK(busbar_config_set(config, "policy", path));
    busbar_bus *bus = NULL;
    CHECK(busbar_connect(config, &bus));
    busbar_config_free(config);
    busbar_principal clerk = {"clerk", NULL, 0};
    const char *classes[] = {"pii"};
    busbar_subscribe_as_options filter = {0};
    filter.classes = classes;
    filter.classes_len = 1;
    busbar_subscription *sub = NULL;
    CHECK(busbar_bus_subscribe_as(bus, &clerk, "staff.>", &filter, &sub));
    const char *joined = "{\"ssn\":\"123-45-6789\"}";
    CHECK(busbar_bus_publish(bus, "staff.joined", (const uint8_t *)joined, strlen(joined), NULL, 0));
    busbar_message *msg = NULL;
    CHECK(busbar_subscription_next(sub, 5000, &msg));
    const uint8_t *data = NULL;
    size_t len = 0;
    CHECK(busbar_message_data(msg, &data, &len));
    busbar_policy_stats stats;
    CHECK(busbar_bus_policy_stats(bus, &stats));
    printf("clerk sees %.*s; policy counters: %llu masked\n", (int)len, (const char *)data,
           (unsigned long long)stats.masked);
    busbar_message_free(msg);
    busbar_subscription_free(sub);
    busbar_bus_free(bus);
    unlink(path);
}

int main(void) {
    busbar_bus *bus = NULL;
    CHECK(busbar_connect(NULL, &bus));
    /* Disconnects, reconnects, slow consumers, lame duck: on a runtime thread. The
     * in-memory bus has no connection, so nothing is printed there. */
    CHECK(busbar_bus_connection_events(bus, on_event, NULL, NULL));
    attributes(bus);
    serving(bus);
    busbar_bus_free(bus);
    as_principal();
    return 0;
}
