/* busbar C suite, api_subjects: API tests: core's status codes, the shared subject vectors
 * (tests/vectors/subjects.json), the subject functions on bad input, and subjects at
 * and past the limits (deep, long) with numeric options out of range.
 *
 *   tests/c/Makefile builds it; scripts/test-c.sh runs it plainly, under valgrind (the
 *   leak run), and against a private nats-server (its URL as the first argument).
 */
#define _POSIX_C_SOURCE 200809L
#include "support.h"
#include "subject_vectors.h"

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
        {BUSBAR_CIRCUIT_OPEN, 13, "circuit_open"},
        {BUSBAR_RATE_LIMITED, 14, "rate_limited"},
        {BUSBAR_PANIC, 99, "panic"},
    };
    for (size_t i = 0; i < sizeof table / sizeof table[0]; i++) {
        CHECK((int)table[i].status == table[i].number);
        CHECK_STR(busbar_status_code(table[i].status), table[i].code);
    }
    CHECK_STR(busbar_status_code(15), "unknown");
    CHECK_STR(busbar_status_code(-1), "unknown");
}

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
    CHECK_STATUS(busbar_bus_subscribe(bus, deep, &sub), BUSBAR_INVALID_SUBJECT);
    CHECK(sub == NULL);
    CHECK_ERROR_MENTIONS("limit of 2000 bytes");
    CHECK(strlen(busbar_last_error()) < 300);
    CHECK_STATUS(busbar_bus_publish(bus, deep, NULL, 0, NULL, 0), BUSBAR_INVALID_SUBJECT);
    CHECK_STATUS(busbar_validate_pattern(deep), BUSBAR_INVALID_SUBJECT);
    free(deep);
    char *too_deep = repeat_tokens("*", 300, ">");
    CHECK_STATUS(busbar_bus_queue_subscribe(bus, too_deep, "workers", &sub), BUSBAR_INVALID_SUBJECT);
    CHECK_ERROR_MENTIONS("limit of 256 tokens");
    free(too_deep);
    char *long_subject = calloc(5001, 1);
    memset(long_subject, 'x', 5000);
    CHECK_STATUS(busbar_bus_publish(bus, long_subject, NULL, 0, NULL, 0), BUSBAR_INVALID_SUBJECT);
    CHECK_STATUS(busbar_bus_request(bus, long_subject, NULL, 0, 100, &msg), BUSBAR_INVALID_SUBJECT);
    CHECK(msg == NULL);
    CHECK_STATUS(busbar_bus_subscribe(bus, long_subject, &sub), BUSBAR_INVALID_SUBJECT);
    CHECK_STATUS(busbar_bus_queue_subscribe(bus, "c.long", long_subject, &sub), BUSBAR_INVALID_ARGUMENT);
    free(long_subject);

    /* At the limits: 2000 bytes with a wildcard, and 256 tokens. */
    char *longest = calloc(2001, 1);
    memset(longest, 'p', 2000);
    longest[1996] = '.';
    char *longest_pattern = strdup(longest);
    strcpy(longest_pattern + 1997, "*");
    char *deepest = repeat_tokens("d", 255, "d");
    busbar_subscription *deep_sub = NULL;
    CHECK_OK(busbar_bus_subscribe(bus, longest_pattern, &sub));
    CHECK_OK(busbar_bus_subscribe(bus, deepest, &deep_sub));
    CHECK_OK(busbar_bus_flush(bus));
    CHECK_OK(busbar_bus_publish(bus, longest, (const uint8_t *)"long", 4, NULL, 0));
    CHECK_OK(busbar_bus_publish(bus, deepest, (const uint8_t *)"deep", 4, NULL, 0));
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
    CHECK_STATUS(busbar_bus_request(bus, "c.limits.x", NULL, 0, UINT64_MAX - 1, &msg),
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
    suite_start(argc, argv, "api_subjects");
    RUN(test_status_codes);
    RUN(test_subject_vectors);
    RUN(test_subject_functions_refuse_bad_input);
    RUN(test_deep_and_long_subjects_and_numbers);
    return suite_end();
}
