/* main.c - placeholder entry point; the supervisor lands next. */
#include <stdio.h>
#include <string.h>

int main(int argc, char **argv)
{
    if (argc > 1 && strcmp(argv[1], "--version") == 0) {
        printf("dripd %s\n", DRIPD_VERSION);
        return 0;
    }
    fprintf(stderr, "dripd: supervisor not built yet\n");
    return 1;
}
