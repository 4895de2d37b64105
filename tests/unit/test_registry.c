/* registry: the lock-free acquire (a split reference count, see registry.c) against reload swaps.
 *
 * Readers acquire, read and release the current registry in a loop while a publisher loads and
 * swaps in new ones. A registry freed while a reader holds it, or one never freed, shows under
 * `make asan` (use after free, leak); the plain build checks what readers see. */
#include <criterion/criterion.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "kailash/engine.h"
#include "test_config_dir.h"

static kconfig *cfg;
static char dir[64];
static atomic_int stop;
static atomic_long seen;
static atomic_long broken; /* readers check in their own thread; the test asserts on the main one */

static void setup(void)
{
    cfg = test_config_dir(dir, "/tmp/kregXXXXXX");
    test_config_put(dir, "t", "{\"nodes\":{\"t\":{\"node_type\":\"TransformNode\",\"config\":{\"template\":{}}}}}");
}

static void teardown(void)
{
    config_free(cfg);
}

TestSuite(registry, .init = setup, .fini = teardown, .timeout = 60);

static registry *load(void)
{
    static const node_env nenv = {"/tmp", 1 << 20, 1000, 1};
    registry *r = registry_load(cfg, &nenv, NULL);
    cr_assert_not_null(r);
    return r;
}

static void *reader(void *arg)
{
    (void)arg;
    while (!atomic_load(&stop)) {
        registry *r = registry_acquire();
        executor *ex = r ? registry_find(r, "t") : NULL;
        if (!ex || registry_count(r) != 1 || strcmp(exec_workflow(ex)->name, "t") != 0)
            atomic_fetch_add(&broken, 1);
        registry_release(r);
        atomic_fetch_add(&seen, 1);
    }
    return NULL;
}

Test(registry, acquire_and_release_race_with_swaps)
{
    registry_publish(load());
    pthread_t th[4];
    for (int i = 0; i < 4; i++)
        pthread_create(&th[i], NULL, reader, NULL);
    long swaps = 0;
    while (swaps < 300 || atomic_load(&seen) < 100000) {
        registry_publish(load());
        swaps++;
    }
    atomic_store(&stop, 1);
    for (int i = 0; i < 4; i++)
        pthread_join(th[i], NULL);
    registry_publish(NULL);
    cr_assert_null(registry_acquire());
    cr_assert_geq(atomic_load(&seen), 100000);
    cr_assert_eq(atomic_load(&broken), 0, "readers saw %ld registries that were not whole", atomic_load(&broken));
}

Test(registry, held_registry_outlives_its_swaps)
{
    registry_publish(load());
    registry *held = registry_acquire();
    for (int i = 0; i < 5000; i++) /* more than the slot table: swapped-out ones are freed (or it waits) */
        registry_publish(load());
    cr_assert_eq(registry_count(held), 1); /* still whole, five thousand swaps later */
    cr_assert_not_null(registry_find(held, "t"));
    registry *now = registry_acquire();
    cr_assert_neq(now, held);
    registry_release(now);
    registry_release(held); /* the last reference: freed here (ASan: no leak, no use after free) */
    registry_publish(NULL);
}
