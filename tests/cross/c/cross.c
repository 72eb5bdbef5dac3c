/* The C participant of the cross-language test (tests/cross/run.py drives it).
 *   cross publish URL SUBJECT DATA ID TYPE CONTENT_TYPE CORRELATION_ID CLASSIFICATION
 *         TRACEPARENT TRACESTATE [HEADER_NAME HEADER_VALUE]...
 *   cross read URL COUNT   # prints "ready", then one JSON line per message received
 *   cross discover URL NAME  # prints {"ping": [...], "info": [...]} for services NAME (discover.py)
 *   cross serve URL NAME     # a service NAME 1.2.3, endpoint "echo" on svc.NAME.echo;
 *                            # prints "ready ID", serves until stdin closes (discover.py)
 */
#define _POSIX_C_SOURCE 200809L
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "busbar.h"

static int fail(const char *what, busbar_status status) {
    fprintf(stderr, "%s: [%s] %s\n", what, busbar_status_code(status), busbar_last_error());
    return 1;
}

/* A JSON string (or null): UTF-8 passes as is, quotes, backslashes and controls escaped. */
static void json_string(const char *s) {
    if (s == NULL) {
        fputs("null", stdout);
        return;
    }
    putchar('"');
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        if (*p == '"' || *p == '\\') {
            printf("\\%c", *p);
        } else if (*p < 0x20) {
            printf("\\u%04x", *p);
        } else {
            putchar(*p);
        }
    }
    putchar('"');
}

typedef busbar_status (*text_accessor)(const busbar_message *, const char **);

static int field(const busbar_message *msg, const char *name, text_accessor read, int first) {
    const char *value = NULL;
    busbar_status status = read(msg, &value);
    if (status != BUSBAR_OK) return fail(name, status);
    printf("%s\"%s\":", first ? "" : ",", name);
    json_string(value);
    return 0;
}

static int print_message(const busbar_message *msg) {
    static const struct {
        const char *name;
        text_accessor read;
    } fields[] = {
        {"subject", busbar_message_subject},
        {"id", busbar_message_id},
        {"type", busbar_message_event_type},
        {"content_type", busbar_message_content_type},
        {"correlation_id", busbar_message_correlation_id},
        {"classification", busbar_message_classification},
        {"traceparent", busbar_message_traceparent},
        {"tracestate", busbar_message_tracestate},
        {"keyid", busbar_message_keyid},
    };
    putchar('{');
    for (size_t i = 0; i < sizeof fields / sizeof fields[0]; i++) {
        if (field(msg, fields[i].name, fields[i].read, i == 0)) return 1;
    }
    const uint8_t *data = NULL;
    size_t len = 0;
    busbar_status status = busbar_message_data(msg, &data, &len);
    if (status != BUSBAR_OK) return fail("data", status);
    char *text = malloc(len + 1);
    if (text == NULL) return 1;
    if (len > 0) memcpy(text, data, len);
    text[len] = '\0';
    fputs(",\"data\":", stdout);
    json_string(text);
    free(text);
    int64_t time_ms = 0;
    status = busbar_message_time_ms(msg, &time_ms);
    if (status != BUSBAR_OK) return fail("time_ms", status);
    printf(",\"time_ms\":%" PRId64 ",\"headers\":{", time_ms);
    size_t count = 0;
    busbar_message_header_count(msg, &count);
    for (size_t i = 0; i < count; i++) {
        const char *name = NULL, *value = NULL;
        status = busbar_message_header_at(msg, i, &name, &value);
        if (status != BUSBAR_OK) return fail("header", status);
        if (i > 0) putchar(',');
        json_string(name);
        putchar(':');
        json_string(value);
    }
    puts("}}");
    fflush(stdout);
    return 0;
}

static int publish(busbar_bus *bus, int argc, char **argv) {
    if (argc < 9) return fail("publish needs nine attributes", BUSBAR_INVALID_ARGUMENT);
    size_t headers_len = (size_t)(argc - 9) / 2;
    busbar_header headers[16];
    if (headers_len > 16) headers_len = 16;
    for (size_t i = 0; i < headers_len; i++) {
        headers[i].name = argv[9 + 2 * i];
        headers[i].value = argv[10 + 2 * i];
    }
    busbar_publish_options opts = {0};
    opts.id = argv[2];
    opts.event_type = argv[3];
    opts.content_type = argv[4];
    opts.correlation_id = argv[5];
    opts.classification = argv[6];
    opts.traceparent = argv[7];
    opts.tracestate = argv[8];
    opts.headers = headers;
    opts.headers_len = headers_len;
    busbar_status status = busbar_bus_publish_with(bus, argv[0], (const uint8_t *)argv[1], strlen(argv[1]), &opts);
    if (status != BUSBAR_OK) return fail("publish", status);
    status = busbar_bus_flush(bus);
    return status == BUSBAR_OK ? 0 : fail("flush", status);
}

static int read_messages(busbar_bus *bus, int count) {
    busbar_subscription *sub = NULL;
    busbar_status status = busbar_bus_subscribe(bus, "cross.>", &sub);
    if (status != BUSBAR_OK) return fail("subscribe", status);
    status = busbar_bus_flush(bus);
    if (status != BUSBAR_OK) return fail("flush", status);
    puts("ready");
    fflush(stdout);
    int rc = 0;
    for (int got = 0; got < count && rc == 0;) {
        busbar_message *msg = NULL;
        status = busbar_subscription_next(sub, 60000, &msg);
        if (status == BUSBAR_LAGGED) continue;
        if (status != BUSBAR_OK) {
            rc = fail("next", status);
            break;
        }
        rc = print_message(msg);
        busbar_message_free(msg);
        got++;
    }
    busbar_subscription_free(sub);
    return rc;
}

/* `discover URL NAME`: {"ping": [...], "info": [...]} for the services named NAME. */
static int discover(busbar_bus *bus, const char *name) {
    char *ping = NULL, *info = NULL;
    busbar_status status = busbar_bus_discover(bus, "PING", name, 500, &ping);
    if (status != BUSBAR_OK) return fail("discover PING", status);
    status = busbar_bus_discover(bus, "INFO", name, 500, &info);
    if (status != BUSBAR_OK) {
        busbar_string_free(ping);
        return fail("discover INFO", status);
    }
    printf("{\"ping\": %s, \"info\": %s}\n", ping, info);
    busbar_string_free(ping);
    busbar_string_free(info);
    return 0;
}

/* The endpoint "echo": answers with the request's payload. */
static busbar_status echo(void *userdata, busbar_job *job) {
    (void)userdata;
    const uint8_t *data = NULL;
    size_t len = 0;
    busbar_message_data(busbar_job_request(job), &data, &len);
    return busbar_job_reply(job, data, len);
}

struct endpoint {
    busbar_service *service;
    char subject[300];
    busbar_status status;
};

static void *serve_echo(void *arg) {
    struct endpoint *e = arg;
    e->status = busbar_service_endpoint_serve(e->service, "echo", e->subject, echo, NULL, NULL);
    return NULL;
}

/* `serve URL NAME`: the service NAME 1.2.3 with the endpoint "echo", until stdin closes. */
static int serve(busbar_bus *bus, const char *name) {
    struct endpoint e = {NULL, {0}, BUSBAR_OK};
    busbar_status status = busbar_bus_start_service(bus, name, "1.2.3", "the cross-language service", &e.service);
    if (status != BUSBAR_OK) return fail("start service", status);
    snprintf(e.subject, sizeof e.subject, "svc.%s.echo", name);
    pthread_t thread;
    if (pthread_create(&thread, NULL, serve_echo, &e) != 0) return 1;
    /* Ready once the endpoint answers (its subscription is made on the serving thread). */
    for (int i = 0; i < 500; i++) {
        busbar_message *reply = NULL;
        if (busbar_bus_request(bus, e.subject, (const uint8_t *)"?", 1, 1000, &reply) == BUSBAR_OK) {
            busbar_message_free(reply);
            break;
        }
    }
    printf("ready %s\n", busbar_service_id(e.service));
    fflush(stdout);
    while (getchar() != EOF) {
    }
    busbar_service_stop(e.service);
    pthread_join(thread, NULL);
    busbar_service_free(e.service);
    return e.status == BUSBAR_OK ? 0 : fail("serve", e.status);
}

int main(int argc, char **argv) {
    if (argc < 4) {
        fprintf(stderr, "usage: cross publish|read URL ...\n");
        return 2;
    }
    char json[1024];
    snprintf(json, sizeof json, "{\"backend\":\"nats\",\"nats_url\":\"%s\"}", argv[2]);
    busbar_bus *bus = NULL;
    busbar_status status = busbar_connect_json(json, &bus);
    if (status != BUSBAR_OK) return fail("connect", status);
    int rc = strcmp(argv[1], "publish") == 0    ? publish(bus, argc - 3, argv + 3)
             : strcmp(argv[1], "discover") == 0 ? discover(bus, argv[3])
             : strcmp(argv[1], "serve") == 0    ? serve(bus, argv[3])
                                                : read_messages(bus, atoi(argv[3]));
    status = busbar_bus_close(bus);
    busbar_bus_free(bus);
    return rc ? rc : (status == BUSBAR_OK ? 0 : fail("close", status));
}
