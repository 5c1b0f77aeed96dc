/* catalog.c - placeholder: only the schema step, until the SQLite catalog lands. */
#include "dripd/catalog.h"

int catalog_migrate(const char *data_dir)
{
    (void)data_dir;
    return 0;
}
