/* busbar quickstart in C: wildcards, a queue group and a request/reply round trip,
 * the same scenario as examples/rust/quickstart.rs.
 *
 * Runs on the embedded in-memory bus by default. The same program talks to a NATS
 * server when the environment says so (BUSBAR_BACKEND=nats BUSBAR_NATS_URL=...).
 *
 *     cargo build -p busbar-ffi && make -C examples/c && target/c/quickstart
 */
#define _POSIX_C_SOURCE 200809L
#include <stdatomic.h>
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

static void publish_text(busbar_bus *bus, const char *subject, const char *text) {
    check(busbar_bus_publish(bus, subject, (const uint8_t *)text, strlen(text), NULL, 0), "publish");
}

/* Copies a message's payload into `buf` as a C string. */
static const char *text_of(const busbar_message *msg, char *buf, size_t size) {
    const uint8_t *data;
    size_t len;
    check(busbar_message_data(msg, &data, &len), "data");
    snprintf(buf, size, "%.*s", (int)len, (const char *)data);
    return buf;
}

/* Prints the subjects of the next `n` messages of `sub`, waiting at most 2 s for each. */
static void print_subjects(busbar_subscription *sub, const char *label, int n) {
    printf("   %-13s got [", label);
    for (int i = 0; i < n; i++) {
        busbar_message *msg;
        const char *subject;
        check(busbar_subscription_next(sub, 2000, &msg), "next");
        check(busbar_message_subject(msg, &subject), "subject");
        printf("%s\"%s\"", i ? ", " : "", subject);
        busbar_message_free(msg);
    }
    printf("]\n");
}

/* The responder: a callback, run on one of busbar's runtime threads. */
static atomic_int answered;

static void answer_time(void *userdata, const busbar_message *request, busbar_status status) {
    (void)userdata;
    if (status != BUSBAR_OK) return; /* a lag notice: nothing to answer */
    const char *id;
    check(busbar_message_id(request, &id), "id");
    printf("   request id            %s (seen by the responder on a runtime thread)\n", id);
    char asked[128], answer[192];
    snprintf(answer, sizeof answer, "it is tea time (you asked \"%s\")",
             text_of(request, asked, sizeof asked));
    if (busbar_message_respond(request, (const uint8_t *)answer, strlen(answer)) == BUSBAR_OK)
        atomic_fetch_add(&answered, 1);
}

int main(void) {
    busbar_bus *bus;
    check(busbar_connect(NULL, &bus), "connect"); /* NULL: configured by BUSBAR_* */
    printf("connected to the bus\n\n");

    /* 1. Subjects are dot-separated tokens. `*` matches one token, `>` one or more. */
    printf("1. wildcards\n");
    busbar_subscription *every_order, *eu_orders;
    check(busbar_bus_subscribe(bus, "orders.>", &every_order), "subscribe");
    check(busbar_bus_subscribe(bus, "orders.eu.*", &eu_orders), "subscribe");
    const char *subjects[] = {"orders.eu.created", "orders.us.created", "orders.eu.paid.late"};
    for (int i = 0; i < 3; i++) {
        publish_text(bus, subjects[i], "{\"qty\":1}");
        printf("   published %s\n", subjects[i]);
    }
    check(busbar_bus_flush(bus), "flush");
    print_subjects(every_order, "'orders.>'", 3);
    print_subjects(eu_orders, "'orders.eu.*'", 1);
    printf("   ('orders.eu.*' wants exactly one token after 'orders.eu', so it skips orders.eu.paid.late)\n\n");

    /* 2. A queue group shares the work: each message goes to one member. */
    printf("2. queue group 'workers' with two members\n");
    busbar_subscription *workers[2];
    check(busbar_bus_queue_subscribe(bus, "jobs.resize", "workers", &workers[0]), "queue_subscribe");
    check(busbar_bus_queue_subscribe(bus, "jobs.resize", "workers", &workers[1]), "queue_subscribe");
    for (int n = 1; n <= 4; n++) {
        char job[16];
        snprintf(job, sizeof job, "image-%d", n);
        publish_text(bus, "jobs.resize", job);
    }
    check(busbar_bus_flush(bus), "flush");
    /* Which member takes a job is the bus's choice (in turn in memory, at random on
     * NATS): ask both in turn until all four are in. */
    char took[2][128] = {"", ""};
    for (int got = 0, round = 0; got < 4; round++) {
        busbar_message *msg;
        busbar_status st = busbar_subscription_next(workers[round % 2], 10, &msg);
        if (st == BUSBAR_TIMEOUT) {
            if (round > 400) check(st, "collecting the jobs");
            continue;
        }
        check(st, "next");
        char job[32];
        text_of(msg, job, sizeof job);
        size_t used = strlen(took[round % 2]);
        snprintf(took[round % 2] + used, sizeof took[0] - used, "%s\"%s\"", used ? ", " : "", job);
        busbar_message_free(msg);
        got++;
    }
    printf("   worker a took [%s]\n   worker b took [%s]\n   four jobs, each done once\n\n",
           took[0], took[1]);

    /* 3. Request/reply: the request carries an inbox and a correlation id; the reply echoes it. */
    printf("3. request/reply\n");
    busbar_subscription *responder;
    check(busbar_bus_subscribe(bus, "time.now", &responder), "subscribe");
    check(busbar_subscription_set_callback(responder, answer_time, NULL, NULL), "set_callback");
    const char *question = "what time is it?";
    busbar_message *reply;
    check(busbar_bus_request(bus, "time.now", (const uint8_t *)question, strlen(question), 2000, &reply),
          "request");
    char text[256];
    const char *correlation;
    check(busbar_message_correlation_id(reply, &correlation), "correlation_id");
    printf("   reply correlation id  %s\n", correlation ? correlation : "-");
    printf("   reply: %s\n", text_of(reply, text, sizeof text));
    busbar_message_free(reply);

    /* Nobody listens on `time.later`: the request fails at once (no_responders) instead of
       waiting; on Kafka, which cannot tell who listens, it fails after its timeout. */
    busbar_status st = busbar_bus_request(bus, "time.later", (const uint8_t *)"hello?", 6, 2000, &reply);
    if (st != BUSBAR_OK)
        printf("   request to time.later failed: [%s] %s\n", busbar_status_code(st),
               busbar_last_error());
    else
        busbar_message_free(reply);

    /* Bad input gets a clear error, never a silent drop. */
    st = busbar_bus_publish(bus, "orders..eu", (const uint8_t *)"x", 1, NULL, 0);
    if (st != BUSBAR_OK)
        printf("\n4. bad input\n   publish to \"orders..eu\": [%s] %s\n", busbar_status_code(st),
               busbar_last_error());

    check(busbar_bus_close(bus), "close");
    busbar_subscription_free(responder); /* returns after the callback's last call */
    busbar_stats stats;
    check(busbar_bus_stats(bus, &stats), "stats");
    printf("\nclosed: %llu published, %llu delivered, %d request(s) answered\n",
           (unsigned long long)stats.published, (unsigned long long)stats.delivered,
           atomic_load(&answered));

    busbar_subscription_free(every_order);
    busbar_subscription_free(eu_orders);
    busbar_subscription_free(workers[0]);
    busbar_subscription_free(workers[1]);
    busbar_bus_free(bus);
    return 0;
}
