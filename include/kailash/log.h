/* log: the daemon's own messages (JSON lines on stderr) and the access log (JSON lines on stdout).
 * Thread-safe: each line is written with one write(2). */
#ifndef KAILASH_LOG_H
#define KAILASH_LOG_H

enum { LOG_DEBUG = 0, LOG_INFO = 1, LOG_WARN = 2, LOG_ERROR = 3 };

/* Parses "debug" | "info" | "warn" | "error"; -1 if none. */
int log_level_parse(const char *s);
void log_set_level(int level);
/* One JSON line {"time","level","msg"} on stderr when level is enabled. Never pass secrets. */
void log_msg(int level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Queues one complete access-log line (text must end with '\n') for stdout; lines are never split
 * or interleaved, and reach stdout when the thread's buffer fills or at the next log_access_flush. */
void log_access_line(const char *text, unsigned long len);
/* Writes every thread's queued lines (the main thread calls it every 100 ms). */
void log_access_flush(void);
/* Flushes and frees the buffers; call at exit, after every other thread has stopped. */
void log_shutdown(void);

#endif
