/* tls: the front end's certificate (tls.cert_file, tls.key_file), served through libmicrohttpd's
 * GnuTLS.
 *
 * The daemons take the certificate from a callback (MHD_OPTION_HTTPS_CERT_CALLBACK) rather than as
 * fixed PEM bytes, so that a reload can put a renewed certificate in place without restarting the
 * listening sockets: each new handshake gets the certificate current at that moment. A loaded set
 * (the chain and the key) is never freed while the daemons run, since a session may still point at
 * it; sets replaced by reloads are kept on a list and freed at stop (one per reload).
 *
 * The key file is read once per load, its bytes wiped after the import, and never logged: errors
 * name the file and what is wrong with it, never its contents. */
#include <gnutls/abstract.h>
#include <gnutls/gnutls.h>
#include <gnutls/x509.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "http_internal.h"

#define TLS_FILE_MAX ((size_t)1 << 20) /* a PEM chain or key larger than this is a mistake */
#define TLS_CHAIN_MAX 16

typedef struct tls_set {
    struct tls_set *older; /* sets replaced by reloads, freed at stop */
    gnutls_pcert_st chain[TLS_CHAIN_MAX];
    unsigned n;
    gnutls_privkey_t key;
} tls_set;

static _Atomic(tls_set *) g_current;
static pthread_mutex_t g_mu = PTHREAD_MUTEX_INITIALIZER; /* loads and the list of old sets */

static void set_free(tls_set *s)
{
    for (unsigned i = 0; i < s->n; i++)
        gnutls_pcert_deinit(&s->chain[i]);
    if (s->key)
        gnutls_privkey_deinit(s->key);
    free(s);
}

static void wipe(gnutls_datum_t *d)
{
    if (d->data)
        explicit_bzero(d->data, d->size);
    free(d->data);
    d->data = NULL;
}

/* path's bytes (at most TLS_FILE_MAX, a regular file) into d; 0, or -1 with err. */
static int read_pem(const char *key, const char *path, gnutls_datum_t *d, char *err, size_t errlen)
{
    FILE *f = fopen(path, "rb");
    struct stat st;
    if (!f || fstat(fileno(f), &st) != 0 || !S_ISREG(st.st_mode) || st.st_size <= 0 ||
        (size_t)st.st_size > TLS_FILE_MAX) {
        if (f)
            fclose(f);
        return util_err(err, errlen, "%s '%s': not a readable regular file of 1 byte to 1 MiB", key, path);
    }
    d->data = malloc((size_t)st.st_size);
    d->size = d->data ? (unsigned)fread(d->data, 1, (size_t)st.st_size, f) : 0;
    fclose(f);
    if (d->size != (unsigned)st.st_size) { /* a short read (a file that shrank, a /sys one): wiped, freed once */
        wipe(d);
        return util_err(err, errlen, "%s '%s': could not be read", key, path);
    }
    return 0;
}

/* Whether the key is the one the chain's first certificate was made for. */
static int key_matches(tls_set *s)
{
    unsigned char a[64], b[64];
    size_t alen = sizeof a, blen = sizeof b;
    gnutls_pubkey_t pub;
    if (gnutls_pubkey_init(&pub) != 0)
        return 0;
    int ok = gnutls_pubkey_import_privkey(pub, s->key, 0, 0) == 0 &&
             gnutls_pubkey_get_key_id(pub, GNUTLS_KEYID_USE_SHA256, a, &alen) == 0 &&
             gnutls_pubkey_get_key_id(s->chain[0].pubkey, GNUTLS_KEYID_USE_SHA256, b, &blen) == 0 && alen == blen &&
             memcmp(a, b, alen) == 0;
    gnutls_pubkey_deinit(pub);
    return ok;
}

/* A set from the two files; NULL with err. */
static tls_set *set_load(const char *cert_file, const char *key_file, char *err, size_t errlen)
{
    gnutls_datum_t cert = {0}, key = {0};
    tls_set *s = calloc(1, sizeof *s);
    if (!s || read_pem("tls.cert_file", cert_file, &cert, err, errlen) != 0 ||
        read_pem("tls.key_file", key_file, &key, err, errlen) != 0)
        goto fail;
    s->n = TLS_CHAIN_MAX;
    if (gnutls_pcert_list_import_x509_raw(s->chain, &s->n, &cert, GNUTLS_X509_FMT_PEM, 0) < 0 || s->n == 0) {
        s->n = 0;
        util_err(err, errlen, "tls.cert_file '%s': not a PEM certificate chain (of at most %d)", cert_file,
                 TLS_CHAIN_MAX);
        goto fail;
    }
    if (gnutls_privkey_init(&s->key) != 0 || gnutls_privkey_import_x509_raw(s->key, &key, GNUTLS_X509_FMT_PEM, NULL, 0) < 0) {
        util_err(err, errlen, "tls.key_file '%s': not an unencrypted PEM private key", key_file);
        goto fail;
    }
    if (!key_matches(s)) {
        util_err(err, errlen, "tls.key_file '%s' is not the key of tls.cert_file '%s'", key_file, cert_file);
        goto fail;
    }
    wipe(&key);
    free(cert.data);
    return s;
fail:
    wipe(&key);
    free(cert.data);
    if (s)
        set_free(s);
    return NULL;
}

/* gnutls_certificate_retrieve_function2: the current set, for each handshake. */
static int tls_retrieve(gnutls_session_t session, const gnutls_datum_t *req_ca_rdn, int nreqs,
                        const gnutls_pk_algorithm_t *pk_algos, int pk_algos_length, gnutls_pcert_st **pcert,
                        unsigned int *pcert_length, gnutls_privkey_t *pkey)
{
    (void)session, (void)req_ca_rdn, (void)nreqs, (void)pk_algos, (void)pk_algos_length;
    tls_set *s = atomic_load(&g_current);
    if (!s)
        return -1;
    *pcert = s->chain;
    *pcert_length = s->n;
    *pkey = s->key;
    return 0;
}

int http_tls_configured(const kconfig *cfg)
{
    return cfg->tls_cert_file && cfg->tls_key_file;
}

int http_tls_load(const kconfig *cfg, char *err, size_t errlen)
{
    if (!http_tls_configured(cfg))
        return 0;
    tls_set *s = set_load(cfg->tls_cert_file, cfg->tls_key_file, err, errlen);
    if (!s)
        return -1;
    pthread_mutex_lock(&g_mu);
    s->older = atomic_exchange(&g_current, s);
    pthread_mutex_unlock(&g_mu);
    return 0;
}

void *http_tls_callback(void)
{
    return (void *)tls_retrieve;
}

void http_tls_free(void)
{
    pthread_mutex_lock(&g_mu);
    tls_set *s = atomic_exchange(&g_current, NULL);
    while (s) {
        tls_set *older = s->older;
        set_free(s);
        s = older;
    }
    pthread_mutex_unlock(&g_mu);
}
