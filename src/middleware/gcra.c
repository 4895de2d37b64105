/* gcra: the GCRA arithmetic of include/kailash/ratelimit.h, pure (no clock, no state): one policy,
 * one key's tat and now give a decision and the tat after it. rl_table.c calls it under a shard's
 * lock; rl_script.c's Lua repeats it line for line for Redis.
 *
 * Doubles in ms carry rounding: at Unix-epoch magnitudes (now ~ 1.7e12 ms) one ulp is ~0.24 us, and
 * when T = window/limit is not a binary fraction (1000/3) each tat + T rounds the same way, so a
 * burst of B at one instant from an idle key can end a few ulps above B*T and refuse the B-th
 * request. The comparison therefore allows RL_GCRA_EPS (the bound on that rounding over a bucket,
 * never more than T/2): exactly B pass at one instant, and never B+1, since that needs a full T more.
 * A request can pass at most that eps (microseconds, far less at monotonic-clock magnitudes) early;
 * policies where B*ulp(now) reaches T/2 (tens of thousands of requests per minute at epoch ms) are
 * beyond what doubles can decide exactly and fall back to the plain comparison's safe side. */
#include <float.h>
#include <limits.h>
#include <math.h>

#include "kailash/ratelimit.h"

static double gcra_eps(double T, double B, double now_ms)
{
    double eps = (B + 2.0) * (fabs(now_ms) + B * T) * DBL_EPSILON;
    return eps < T / 2 ? eps : T / 2;
}

double rl_gcra(const rl_policy *p, double tat_ms, double now_ms, rl_decision *d)
{
    /* degenerate policies are read as the smallest meaningful one, never as "no limit" */
    double limit = p->limit < 1 ? 1.0 : (double)p->limit;
    double window = p->window_ms < 1 ? 1.0 : (double)p->window_ms;
    double B = p->burst < 1 ? 1.0 : (double)p->burst;
    double T = window / limit, bucket = B * T;

    if (!isfinite(tat_ms))
        tat_ms = 0; /* a corrupt tat must not lock a key out forever: read as idle */
    if (!isfinite(now_ms)) {
        /* no clock, no decision: refuse (every comparison with NaN would too), keep the tat */
        *d = (rl_decision){.allowed = 0, .remaining = 0, .full_ms = 0, .retry_ms = T};
        return tat_ms;
    }
    double t0 = tat_ms > now_ms ? tat_ms : now_ms;
    double new_tat = t0 + T, diff = new_tat - now_ms, eps = gcra_eps(T, B, now_ms);
    if (diff <= bucket + eps) {
        double r = floor((bucket + eps - diff) / T);
        if (r > B - 1)
            r = B - 1;
        d->allowed = 1;
        d->remaining = r < 0 ? 0 : (long)r;
        d->full_ms = diff;
        d->retry_ms = 0;
        return new_tat;
    }
    d->allowed = 0;
    d->remaining = 0;
    d->full_ms = t0 - now_ms;
    d->retry_ms = diff - bucket; /* > eps >= 0 */
    return tat_ms;
}

/* Whole seconds, rounded up, ignoring a microsecond of rounding noise (so 1000.0000001 ms is 1 s). */
static long gcra_ceil_s(double ms)
{
    if (!(ms > 0.001))
        return 0;
    double s = ceil((ms - 0.001) / 1000.0);
    return s > (double)(LONG_MAX / 2) ? LONG_MAX / 2 : (long)s;
}

long rl_reset_s(const rl_decision *d)
{
    if (d->allowed)
        return gcra_ceil_s(d->full_ms);
    long s = gcra_ceil_s(d->retry_ms);
    return s < 1 ? 1 : s;
}
