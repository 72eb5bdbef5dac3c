/* busbar C suite, api_config: API tests: configuration from setters, JSON and the BUSBAR_* environment.
 *
 *   tests/c/Makefile builds it; scripts/test-c.sh runs it plainly, under valgrind (the
 *   leak run), and against a private nats-server (its URL as the first argument).
 */
#define _POSIX_C_SOURCE 200809L
#include "support.h"

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
    CHECK_STATUS(busbar_bus_publish(bus, "big", big, 17, NULL, 0), BUSBAR_PAYLOAD_TOO_LARGE);
    CHECK_ERROR_MENTIONS("17 bytes");
    CHECK_ERROR_MENTIONS("16 bytes");
    busbar_subscription *sub = NULL;
    busbar_message *msg = NULL;
    CHECK_OK(busbar_bus_subscribe(bus, "big", &sub));
    CHECK_OK(busbar_bus_publish(bus, "big", big, 16, NULL, 0));
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
    CHECK_STATUS(busbar_bus_publish(bus, "big", big, 33, NULL, 0), BUSBAR_PAYLOAD_TOO_LARGE);
    CHECK_OK(busbar_bus_publish(bus, "big", big, 32, NULL, 0));
    busbar_bus_free(bus);
    CHECK_OK(busbar_connect_json("{\"max_payload\": 48}", &bus)); /* explicit beats environment */
    CHECK_STATUS(busbar_bus_publish(bus, "big", big, 49, NULL, 0), BUSBAR_PAYLOAD_TOO_LARGE);
    CHECK_OK(busbar_bus_publish(bus, "big", big, 48, NULL, 0));
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
    CHECK_STATUS(busbar_connect_json("{\"backend\": \"redis\"}", &bus), BUSBAR_INVALID_ARGUMENT);
    CHECK_ERROR_MENTIONS("redis");
    /* Core's one intake rule: a text key takes text only, as Python and JS raise TypeError. */
    CHECK_STATUS(busbar_connect_json("{\"backend\": 5}", &bus), BUSBAR_INVALID_ARGUMENT);
    CHECK_ERROR_MENTIONS("backend must be a string");
    CHECK_STATUS(busbar_connect_json("{\"max_payload\": 1.5}", &bus), BUSBAR_INVALID_ARGUMENT);
    CHECK_OK(busbar_connect_json("{\"max_payload\": 2048.0, \"encryption\": false}", &bus));
    busbar_bus_free(bus);
    bus = NULL;
    CHECK_STATUS(busbar_connect_json(NULL, &bus), BUSBAR_INVALID_ARGUMENT);
    CHECK_STATUS(busbar_connect_json("{}", NULL), BUSBAR_INVALID_ARGUMENT);
    CHECK_STATUS(busbar_config_new(NULL), BUSBAR_INVALID_ARGUMENT);
}

/* The breaker and rate limits are configuration keys, with their own statuses. */
static void test_breaker_and_rate_limit(void) {
    busbar_bus *bus = NULL;
    busbar_message *reply = NULL;
    CHECK_OK(busbar_connect_json("{\"breaker_failures\": 1, \"breaker_cooldown_ms\": 60000}", &bus));
    CHECK_STATUS(busbar_request(bus, "nobody.home", (const uint8_t *)"?", 1, 1000, &reply),
                 BUSBAR_NO_RESPONDERS);
    CHECK_STATUS(busbar_request(bus, "nobody.home", (const uint8_t *)"?", 1, 1000, &reply),
                 BUSBAR_CIRCUIT_OPEN);
    CHECK_ERROR_MENTIONS("nobody.home");
    busbar_message_free(reply);
    busbar_bus_free(bus);
    CHECK_OK(busbar_connect_json("{\"publish_rate\": 0.01, \"rate_limit_mode\": \"fail\"}", &bus));
    CHECK_OK(busbar_publish(bus, "metrics.cpu", (const uint8_t *)"1", 1, NULL, 0));
    CHECK_STATUS(busbar_publish(bus, "metrics.cpu", (const uint8_t *)"2", 1, NULL, 0), BUSBAR_RATE_LIMITED);
    CHECK_ERROR_MENTIONS("publish_rate");
    busbar_bus_free(bus);
    CHECK_STATUS(busbar_connect_json("{\"publish_buffer_full\": \"drop\"}", &bus), BUSBAR_INVALID_ARGUMENT);
}

int main(int argc, char **argv) {
    suite_start(argc, argv, "api_config");
    RUN(test_configuration_and_environment);
    RUN(test_breaker_and_rate_limit);
    return suite_end();
}
