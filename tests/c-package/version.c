/* The header's version macros agree with the library that is loaded (busbar_version()),
 * and with the version the test script expects (argv[1]). Exit status 0 when they do. */
#include <stdio.h>
#include <string.h>

#include <busbar.h>

#define STR2(x) #x
#define STR(x) STR2(x)

int main(int argc, char **argv) {
    const char *macros = STR(BUSBAR_VERSION_MAJOR) "." STR(BUSBAR_VERSION_MINOR) "." STR(BUSBAR_VERSION_PATCH);
    const char *loaded = busbar_version();
    printf("header %s (BUSBAR_VERSION \"%s\"), library %s\n", macros, BUSBAR_VERSION, loaded);
    if (strcmp(macros, BUSBAR_VERSION) != 0 || strcmp(BUSBAR_VERSION, loaded) != 0) {
        fprintf(stderr, "the header and the library disagree\n");
        return 1;
    }
    if (argc > 1 && strcmp(argv[1], loaded) != 0) {
        fprintf(stderr, "expected version %s\n", argv[1]);
        return 1;
    }
    return 0;
}
