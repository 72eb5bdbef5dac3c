/* What every program of the busbar C suite shares: the bus a test connects to (in-memory,
 * or the NATS server whose URL is the first argument), a few readers of messages, and
 * the start and end of a program. Header-only, so the checks inside count in the
 * program that runs them (harness.h's counters are per program).
 */
#ifndef BUSBAR_TEST_SUPPORT_H
#define BUSBAR_TEST_SUPPORT_H

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

/* Generous: valgrind runs this suite many times slower. */
#define WAIT_MS 10000

/* The bus every test connects to: in-memory, or the NATS server the script started. */
static const char *nats_url = NULL;

static inline void sleep_ms(long ms) {
    struct timespec t = {ms / 1000, (ms % 1000) * 1000000L};
    nanosleep(&t, NULL);
}

/* A bus on the suite's backend, with configuration key `key` set to `value` (none when
 * `key` is NULL). */
static inline busbar_bus *connect_bus_with(const char *key, const char *value) {
    busbar_config *config = NULL;
    busbar_bus *bus = NULL;
    CHECK_OK(busbar_config_new(&config));
    if (nats_url != NULL) {
        CHECK_OK(busbar_config_set(config, "backend", "nats"));
        CHECK_OK(busbar_config_set(config, "nats_url", nats_url));
    }
    if (key != NULL) CHECK_OK(busbar_config_set(config, key, value));
    CHECK_OK(busbar_connect(config, &bus));
    busbar_config_free(config);
    return bus;
}

static inline busbar_bus *connect_bus(void) { return connect_bus_with(NULL, NULL); }

static inline char *message_text(const busbar_message *msg) {
    const uint8_t *data = NULL;
    size_t len = 0;
    CHECK_OK(busbar_message_data(msg, &data, &len));
    char *text = calloc(len + 1, 1);
    if (len > 0) memcpy(text, data, len);
    return text;
}

static inline const char *subject_of(const busbar_message *msg) {
    const char *subject = NULL;
    CHECK_OK(busbar_message_subject(msg, &subject));
    return subject;
}

/* ---- durable streams ------------------------------------------------------------ */
/* Each test declares its own stream over its own subjects: on NATS every stream of the
 * run lives in one server. */

static inline const char *header_of(const busbar_message *msg, const char *name) {
    const char *value = NULL;
    CHECK_OK(busbar_message_header(msg, name, &value));
    return value;
}

static inline uint32_t attempt_of(const busbar_message *msg) {
    uint32_t attempt = 0;
    CHECK_OK(busbar_message_attempt(msg, &attempt));
    return attempt;
}

static inline uint64_t sequence_of(const busbar_message *msg) {
    uint64_t sequence = 0;
    CHECK_OK(busbar_message_sequence(msg, &sequence));
    return sequence;
}

/* A bus with durable stream `name` over `subject`. */
static inline busbar_bus *connect_with_stream(const char *name, const char *subject) {
    busbar_bus *bus = connect_bus();
    CHECK_OK(busbar_bus_declare_stream(bus, name, &subject, 1, NULL, NULL));
    return bus;
}

static inline void publish_durable_text(busbar_bus *bus, const char *subject, const char *text) {
    CHECK_OK(busbar_bus_publish_durable(bus, subject, (const uint8_t *)text, strlen(text), NULL, 0,
                                        NULL, NULL));
}


/* Reads the NATS URL (the first argument, if any) and says which bus `name` runs on. */
static inline void suite_start(int argc, char **argv, const char *name) {
    /* No BUSBAR_* variable for this: core refuses unknown ones, rightly. */
    nats_url = argc > 1 ? argv[1] : NULL;
    printf("busbar C suite, %s, on the %s bus\n", name, nats_url ? nats_url : "in-memory");
}

/* Prints the counts (scripts/test-c.sh adds them up) and the exit status. */
static inline int suite_end(void) {
    printf("%d checks, %d failed\n", harness_checks, harness_failures);
    return harness_failures == 0 ? 0 : 1;
}

#endif
