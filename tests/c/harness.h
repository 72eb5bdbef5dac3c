/* A tiny assert harness for the busbar C suite: checks count failures and go on, so
 * one run reports every broken check; main() returns the failure count. */
#ifndef BUSBAR_TEST_HARNESS_H
#define BUSBAR_TEST_HARNESS_H

#include <stdio.h>
#include <string.h>

#include "busbar.h"

static int harness_failures = 0;
static int harness_checks = 0;

#define CHECK(cond)                                                              \
    do {                                                                         \
        harness_checks++;                                                        \
        if (!(cond)) {                                                           \
            harness_failures++;                                                  \
            fprintf(stderr, "%s:%d: CHECK failed: %s\n", __FILE__, __LINE__, #cond); \
        }                                                                        \
    } while (0)

/* Checks that `call` returns `want`; on a mismatch prints both codes and the message. */
#define CHECK_STATUS(call, want)                                                 \
    do {                                                                         \
        harness_checks++;                                                        \
        busbar_status got_ = (call);                                             \
        if (got_ != (want)) {                                                    \
            harness_failures++;                                                  \
            fprintf(stderr, "%s:%d: %s returned %s, want %s (last error: %s)\n", \
                    __FILE__, __LINE__, #call, busbar_status_code(got_),         \
                    busbar_status_code(want), busbar_last_error());              \
        }                                                                        \
    } while (0)

#define CHECK_OK(call) CHECK_STATUS(call, BUSBAR_OK)

#define CHECK_STR(got, want)                                                     \
    do {                                                                         \
        harness_checks++;                                                        \
        const char *g_ = (got), *w_ = (want);                                    \
        if (g_ == NULL || w_ == NULL ? g_ != w_ : strcmp(g_, w_) != 0) {         \
            harness_failures++;                                                  \
            fprintf(stderr, "%s:%d: %s is \"%s\", want \"%s\"\n", __FILE__,      \
                    __LINE__, #got, g_ ? g_ : "(null)", w_ ? w_ : "(null)");     \
        }                                                                        \
    } while (0)

/* The thread's last error contains `part`. */
#define CHECK_ERROR_MENTIONS(part)                                               \
    do {                                                                         \
        harness_checks++;                                                        \
        if (strstr(busbar_last_error(), (part)) == NULL) {                       \
            harness_failures++;                                                  \
            fprintf(stderr, "%s:%d: last error \"%s\" does not mention \"%s\"\n", \
                    __FILE__, __LINE__, busbar_last_error(), (part));            \
        }                                                                        \
    } while (0)

#define RUN(test)                                                                \
    do {                                                                         \
        int before_ = harness_failures;                                          \
        test();                                                                  \
        printf("%s %s\n", harness_failures == before_ ? "ok  " : "FAIL", #test); \
        fflush(stdout);                                                          \
    } while (0)

#endif
