/* rl_script: rl_gcra's arithmetic (gcra.c) as one Lua script for Redis 7 (Lua 5.1, numbers are
 * doubles as in C), so every instance on one Redis shares one limit: the script runs atomically, and
 * takes now from Redis's own TIME (ms, microseconds as the fraction), so instances' clocks never
 * matter. Layout and result: include/kailash/ratelimit.h.
 *
 * A tat is stored as a decimal string of ms written with %.17g (an exact double round trip; Lua's
 * tostring keeps 14 digits, 10 us at epoch magnitudes), with PX ceil(tat - now): a key vanishes
 * when its bucket is full again, so idle keys cost Redis nothing. A key listed twice is decided the
 * second time against its first new tat, as rl_table_check does. The script only writes when every
 * key allows, so a refusal by one policy costs the others nothing. Under Redis Cluster the keys of
 * one call must share a slot (a {hash tag}); the caller chooses the names. */
#include "kailash/ratelimit.h"

const char rl_script_lua[] =
    "local n = tonumber(ARGV[1])\n"
    "if not n or n < 1 or n > #KEYS or #ARGV < 1 + 2 * n then\n"
    "  return redis.error_reply('ERR rl_script: want ARGV n, then T_ms and B per key, and n KEYS')\n"
    "end\n"
    "local t = redis.call('TIME')\n"
    "local now = tonumber(t[1]) * 1000 + tonumber(t[2]) / 1000\n"
    "local dbl_eps = 2.220446049250313e-16\n"
    "local old, new, rem, full, retry, moved = {}, {}, {}, {}, {}, {}\n"
    "local allowed = true\n"
    "for i = 1, n do\n"
    "  local T, B = tonumber(ARGV[2 * i]), tonumber(ARGV[2 * i + 1])\n"
    "  if not T or T ~= T or T <= 0 or T == math.huge then\n"
    "    return redis.error_reply('ERR rl_script: T_ms of key ' .. i .. ' is not a positive number')\n"
    "  end\n"
    "  if not B or B ~= B or B < 1 then B = 1 end\n"
    "  B = math.floor(B)\n"
    "  local k = KEYS[i]\n"
    "  local stored = tonumber(redis.call('GET', k) or '0') or 0\n"
    "  if stored ~= stored or stored == math.huge or stored == -math.huge then stored = 0 end\n"
    "  local tat = moved[k] or stored\n"
    "  old[i] = stored\n"
    "  local t0 = math.max(tat, now)\n"
    "  local nt = t0 + T\n"
    "  local diff, bucket = nt - now, B * T\n"
    "  local eps = math.min(T / 2, (B + 2) * (math.abs(now) + bucket) * dbl_eps)\n"
    "  if diff <= bucket + eps then\n"
    "    rem[i] = math.max(0, math.min(B - 1, math.floor((bucket + eps - diff) / T)))\n"
    "    full[i], retry[i], new[i] = diff, 0, nt\n"
    "    moved[k] = nt\n"
    "  else\n"
    "    allowed = false\n"
    "    rem[i], full[i], retry[i], new[i] = 0, t0 - now, diff - bucket, tat\n"
    "  end\n"
    "end\n"
    "local out = {}\n"
    "for i = 1, n do\n"
    "  if allowed then\n"
    "    redis.call('SET', KEYS[i], string.format('%.17g', new[i]), 'PX',\n"
    "               string.format('%.0f', math.max(1, math.ceil(new[i] - now))))\n"
    "    out[#out + 1] = 1\n"
    "    out[#out + 1] = rem[i]\n"
    "    out[#out + 1] = math.ceil(full[i])\n"
    "    out[#out + 1] = 0\n"
    "  else\n"
    "    out[#out + 1] = 0\n"
    "    out[#out + 1] = 0\n"
    "    out[#out + 1] = math.ceil(math.max(0, old[i] - now))\n"
    "    out[#out + 1] = math.ceil(retry[i])\n"
    "  end\n"
    "end\n"
    "return out\n";
