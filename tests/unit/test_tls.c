/* tls: loading the front end's certificate. */
#include <criterion/criterion.h>
#include <string.h>
#include <unistd.h>

#include "kailash/config.h"
#include "kailash/http.h"

/* A /sys attribute says 4096 bytes and reads fewer: the short read was freed twice (abort). */
Test(tls, short_read_is_an_error_not_a_double_free)
{
    const char *sysf = "/sys/kernel/mm/transparent_hugepage/enabled";
    if (access(sysf, R_OK) != 0)
        cr_skip_test("no %s to read short", sysf);
    kconfig cfg;
    memset(&cfg, 0, sizeof cfg);
    cfg.tls_cert_file = (char *)sysf;
    cfg.tls_key_file = (char *)sysf;
    char err[256] = "";
    cr_assert_eq(http_tls_load(&cfg, err, sizeof err), -1);
    cr_assert(strstr(err, "could not be read"), "%s", err);
}
